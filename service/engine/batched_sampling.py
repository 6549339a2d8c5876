"""The per-request sampler (service.engine.sampling) as continuous-batching logits processors.

The manager hands each processor one int32 value per request per step, built
from the request's ``logit_processor_kwargs``: temperature and top_p as float32
bits, and the noise key derived from the request's seed and its step.
"""

from __future__ import annotations

from typing import Any

import torch
from transformers import LogitsProcessorList
from transformers.generation.continuous_batching.cb_logits_processors import (
    ContinuousBatchingLogitsProcessor,
    ContinuousBatchingLogitsProcessorList,
)

from service.engine.sampling import apply_sampling, noise_key


def sampling_kwargs(temperature: float, top_p: float, seed: int) -> dict[str, Any]:
    """What ``add_request`` needs for one request's sampling."""
    return {"temperature": float(temperature), "top_p": float(top_p), "noise_seed": int(seed)}


class _FloatArgument(ContinuousBatchingLogitsProcessor):
    """Carries one float per request; applies nothing itself (see _SeededSampling)."""

    name = ""
    default = 0.0
    ignored_kwargs: tuple[str, ...] = ()

    def __init__(self) -> None:
        self.supported_kwargs = {self.name: float}

    def fill_defaults(self, int32_tensor: torch.Tensor) -> None:
        int32_tensor.copy_(torch.full_like(int32_tensor, self.default, dtype=torch.float32).view(torch.int32))

    def prepare_tensor_args(self, requests_with_new_token: list[Any]) -> torch.Tensor:
        values = [
            r.state.logit_processor_kwargs.get(self.name, self.default) for r in requests_with_new_token
        ]
        return torch.tensor(values, dtype=torch.float32).view(torch.int32)

    def __call__(self, scores: torch.Tensor, tensor_arg: torch.Tensor) -> torch.Tensor:
        return scores


class _Temperature(_FloatArgument):
    name = "temperature"
    default = 0.0


class _TopP(_FloatArgument):
    name = "top_p"
    default = 1.0


class _SeededSampling(ContinuousBatchingLogitsProcessor):
    """Runs last: reads the temperature and top_p rows stored before it and samples every row."""

    ignored_kwargs: tuple[str, ...] = ()

    def __init__(self) -> None:
        self.supported_kwargs = {"noise_seed": int}
        self.temperature: torch.Tensor | None = None
        self.top_p: torch.Tensor | None = None

    def fill_defaults(self, int32_tensor: torch.Tensor) -> None:
        int32_tensor.fill_(0)  # key 0: greedy

    def prepare_tensor_args(self, requests_with_new_token: list[Any]) -> torch.Tensor:
        keys = []
        for request in requests_with_new_token:
            state = request.state
            greedy = state.logit_processor_kwargs.get("temperature", 0.0) == 0.0
            seed = state.logit_processor_kwargs.get("noise_seed", 0)
            keys.append(0 if greedy else noise_key(seed, len(state.generated_tokens)))
        return torch.tensor(keys, dtype=torch.int32)

    def __call__(self, scores: torch.Tensor, tensor_arg: torch.Tensor) -> torch.Tensor:
        assert self.temperature is not None
        assert self.top_p is not None
        rows = scores.size(0)
        return apply_sampling(scores, self.temperature[:rows], self.top_p[:rows], tensor_arg[:rows])


class _SamplingProcessorList(ContinuousBatchingLogitsProcessorList):
    """Hands the temperature and top_p rows to the sampler, which needs all three at once."""

    def __init__(self) -> None:
        self._sampler = _SeededSampling()
        super().__init__(LogitsProcessorList([_Temperature(), _TopP(), self._sampler]))
        self.tensors_required = 3  # one argument row per processor

    def __call__(
        self, input_ids: torch.LongTensor, scores: torch.Tensor, logits_processor_args: torch.Tensor
    ) -> torch.Tensor:
        self._sampler.temperature = logits_processor_args[0].view(torch.float32)
        self._sampler.top_p = logits_processor_args[1].view(torch.float32)
        return self._sampler(scores, logits_processor_args[2])


def install_sampling_processors(manager: Any) -> None:
    """Replace the manager's processors (call before ``manager.start()``)."""
    manager.logit_processor = _SamplingProcessorList()

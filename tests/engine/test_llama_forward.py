"""The batch loop's own decode step gives transformers' logits, on the real model and on each
architecture it takes; models it does not know keep transformers' forward."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F  # noqa: N812 (the usual name)
from transformers import (
    AutoModelForCausalLM,
    DynamicCache,
    GPT2Config,
    LlamaConfig,
    MistralConfig,
    Qwen2Config,
)

from service.engine import llama_forward
from service.engine.batch_loop import transformers_decode_logits
from service.engine.cpu_linear import pack_linear_layers, packing_supported
from service.engine.decode_kernels import attention_block
from service.engine.llama_forward import LlamaForward
from service.engine.loader import load_model
from service.engine.prefill import prefill_together
from service.engine.prefill_kernels import SDPA_FROM_TOKENS, prefill_attention
from service.engine.running_batch import RunningBatch
from service.settings import Settings

pytestmark = pytest.mark.skipif(
    not packing_supported(torch.device("cpu"), torch.float32), reason="this torch build has no oneDNN"
)

STEPS = 12


class Row:
    """A running row; the decode step reads none of its fields."""


def joined(
    model: torch.nn.Module, prompts: list[list[int]], forward: LlamaForward | None = None
) -> RunningBatch:
    """Each prompt prefilled on its own (by ``forward`` if given), then joined: rows of different
    lengths, left-padded."""
    batch = RunningBatch(max_rows=8)
    for prompt in prompts:
        ids = torch.tensor([prompt])
        cache = DynamicCache()
        if forward is None:
            logits = model(input_ids=ids, past_key_values=cache, use_cache=True).logits[:, -1]
        else:
            _, logits = forward.prefill([prompt], cache)
        batch.join([Row()], cache, torch.ones_like(ids), logits.argmax(-1))  # type: ignore[list-item]
    return batch


def step(batch: RunningBatch, forward: Any) -> torch.Tensor:
    """One greedy decode step, as the batch loop takes it."""
    batch.attention_mask = F.pad(batch.attention_mask, (0, 1), value=1)
    logits = forward(batch)
    batch.next_positions = batch.next_positions + 1
    batch.next_tokens = logits.argmax(-1).unsqueeze(-1)
    return logits


def compare(model: torch.nn.Module, prompts: list[list[int]]) -> tuple[float, int]:
    """Two batches of the same prompts, one prefilled and stepped by transformers, one by
    LlamaForward: the largest logit difference and the steps whose greedy tokens differ. A row
    leaves halfway, so the slab's rows move and its padding columns are cut."""
    forward = LlamaForward.for_model(model)
    assert forward is not None

    def transformers_forward(batch: RunningBatch) -> torch.Tensor:
        return transformers_decode_logits(model, batch)

    def ours(batch: RunningBatch) -> torch.Tensor:
        assert batch.cache is not None
        return forward(
            batch.next_tokens, batch.attention_mask, batch.next_positions.unsqueeze(-1), batch.cache
        )

    worst, differing = 0.0, 0
    with torch.inference_mode():
        theirs_batch, our_batch = joined(model, prompts), joined(model, prompts, forward)
        for index in range(STEPS):
            if index == STEPS // 2:
                for batch in (theirs_batch, our_batch):
                    batch.keep(list(range(1, len(prompts))))  # the first row leaves
            expected, got = step(theirs_batch, transformers_forward), step(our_batch, ours)
            worst = max(worst, (expected - got).abs().max().item())
            differing += int(not torch.equal(theirs_batch.next_tokens, our_batch.next_tokens))
    return worst, differing


def test_the_real_model_gets_transformers_logits(real_model_cache_dir: Path, smollm2_dir: Path) -> None:
    loaded = load_model(Settings(model="smollm2-135m", cache_dir=real_model_cache_dir))
    tokenizer = loaded.tokenizer
    texts = ["Hi", "The capital of France is", "Write a poem about the sea, in the style of a sailor's song:"]
    prompts = [tokenizer.encode(text) for text in texts]

    worst, differing = compare(loaded.model, prompts)

    assert worst < 1e-3  # the same sums, some in another order
    assert differing == 0


def tiny(config_class: type, **options: Any) -> torch.nn.Module:
    config = config_class(
        vocab_size=128,
        hidden_size=64,
        intermediate_size=96,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
        **options,
    )
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32).eval()
    pack_linear_layers(model)
    return model


@pytest.mark.parametrize(
    ("config_class", "options"),
    [
        (LlamaConfig, {}),
        (LlamaConfig, {"attention_bias": True, "mlp_bias": True, "head_dim": 32}),  # biases, wider heads
        (MistralConfig, {"sliding_window": None}),
        (Qwen2Config, {"use_sliding_window": False}),  # q/k/v biases
    ],
    ids=["llama", "llama-biases", "mistral", "qwen2"],
)
def test_each_architecture_it_takes_gets_transformers_logits(
    config_class: type, options: dict[str, Any]
) -> None:
    worst, differing = compare(tiny(config_class, **options), [[1, 2, 3], [4, 5, 6, 7, 8, 9, 10], [11]])
    assert worst < 1e-4
    assert differing == 0


def test_models_it_does_not_know_keep_transformers_forward() -> None:
    unpacked = AutoModelForCausalLM.from_config(
        LlamaConfig(
            vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2
        )
    )
    gelu = tiny(LlamaConfig, hidden_act="gelu")
    windowed = tiny(MistralConfig, sliding_window=16)
    other = AutoModelForCausalLM.from_config(GPT2Config(vocab_size=64, n_embd=32, n_layer=1, n_head=2))
    pack_linear_layers(other)

    for model in (unpacked, gelu, windowed, other):
        assert LlamaForward.for_model(model) is None, type(model).__name__
    assert LlamaForward.for_model(tiny(LlamaConfig)) is not None


class Prompt:
    """A request as prefill_together reads it."""

    def __init__(self, prompt_ids: list[int]) -> None:
        self.prompt_ids, self.started_at = prompt_ids, None


_SHORT_PROMPTS = [[5, 6, 7, 8, 9], [10, 11], [12, 13, 14, 15, 16, 17, 18], [19]]
# One prompt long enough for prefill_kernels' SDPA, packed with short ones; and one alone.
_LONG_PROMPT = [(7 * i) % 120 + 3 for i in range(SDPA_FROM_TOKENS + 6)]


@pytest.mark.parametrize("kernel", [True, False], ids=["prefill-kernel", "sdpa"])
@pytest.mark.parametrize(
    "prompts",
    [_SHORT_PROMPTS, [*_SHORT_PROMPTS[:2], _LONG_PROMPT], [_LONG_PROMPT]],
    ids=["short", "mixed", "one-long"],
)
def test_a_packed_prefill_of_prompts_of_any_lengths_gives_transformers_padded_prefill(
    kernel: bool, prompts: list[list[int]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The prompts packed end to end give what transformers' left-padded pass (the batch loop's
    prefill without LlamaForward) gives: the same mask, last-position logits and cache at every
    position in use; RoPE and attention in service.engine.prefill_kernels or in torch."""
    calls = []

    def counted(*args: Any) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        calls.append(args)
        return prefill_attention(*args)

    monkeypatch.setattr(llama_forward, "prefill_attention", counted)
    if not kernel:
        monkeypatch.setattr(llama_forward, "prefill_supported", lambda states: False)
    model = tiny(LlamaConfig)
    forward = LlamaForward.for_model(model)
    assert forward is not None
    requests: Any = [Prompt(ids) for ids in prompts]
    with torch.inference_mode():
        theirs = prefill_together(model, requests, 0)
        ours = prefill_together(model, requests, 0, forward)

    assert torch.equal(ours.attention_mask, theirs.attention_mask)
    assert (theirs.logits - ours.logits).abs().max().item() < 1e-4
    in_use = theirs.attention_mask.bool()[:, None, :, None]
    for their_layer, our_layer in zip(theirs.cache.layers, ours.cache.layers, strict=True):
        assert our_layer.keys.shape == their_layer.keys.shape
        assert ((their_layer.keys - our_layer.keys) * in_use).abs().max().item() < 1e-4
        assert ((their_layer.values - our_layer.values) * in_use).abs().max().item() < 1e-4
    assert len(calls) == (len(model.model.layers) if kernel else 0)


@pytest.mark.parametrize("kernel", [True, False], ids=["slab-kernel", "sdpa"])
def test_decode_steps_run_the_kernels_on_float32_slabs_and_sdpa_otherwise(
    kernel: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = []

    def counted(*args: Any) -> torch.Tensor:
        calls.append(args)
        return attention_block(*args)

    monkeypatch.setattr(llama_forward, "attention_block", counted)
    if not kernel:
        monkeypatch.setattr(llama_forward, "slab_supported", lambda slab: False)

    worst, differing = compare(tiny(LlamaConfig), [[1, 2, 3], [4, 5, 6, 7, 8, 9, 10], [11]])

    assert worst < 1e-4
    assert differing == 0
    assert len(calls) == (STEPS * 2 if kernel else 0)  # every step, each of the 2 layers


@pytest.mark.parametrize(
    "prompts", [_SHORT_PROMPTS, [*_SHORT_PROMPTS[:2], _LONG_PROMPT]], ids=["short", "with-long"]
)
def test_a_decode_step_carrying_prompts_gives_the_step_and_their_prefill_apart(
    prompts: list[list[int]],
) -> None:
    """The rows' logits and slabs, and the carried prompts' mask, logits and cache, are what a
    decode step and a separate packed prefill give; the prompts then join and decode alike."""
    model = tiny(LlamaConfig)
    forward = LlamaForward.for_model(model)
    assert forward is not None
    running = [[1, 2, 3], [4, 5, 6, 7, 8, 9, 10], [11]]
    requests: Any = [Prompt(ids) for ids in prompts]
    rows: Any = [Row() for _ in prompts]
    with torch.inference_mode():
        apart, together = joined(model, running, forward), joined(model, running, forward)
        assert forward.carries_prompts(together.cache)
        expected = step(apart, lambda batch: forward(*inputs(batch)))
        prefilled = prefill_together(model, requests, 0, forward)
        prompt_cache = DynamicCache()
        together.attention_mask = F.pad(together.attention_mask, (0, 1), value=1)
        got, mask, prompt_logits = forward.step_carrying(*inputs(together), prompts, prompt_cache)
        together.next_positions = together.next_positions + 1
        together.next_tokens = got.argmax(-1).unsqueeze(-1)

        assert (expected - got).abs().max().item() < 1e-4
        assert torch.equal(mask, prefilled.attention_mask)
        assert (prompt_logits - prefilled.logits).abs().max().item() < 1e-4
        for ours, theirs in zip(prompt_cache.layers, prefilled.cache.layers, strict=True):
            assert (ours.keys - theirs.keys).abs().max().item() < 1e-4
            assert (ours.values - theirs.values).abs().max().item() < 1e-4
        apart.join(rows, prefilled.cache, prefilled.attention_mask, prefilled.logits.argmax(-1))
        together.join(rows, prompt_cache, mask, prompt_logits.argmax(-1))
        for _ in range(4):
            expected = step(apart, lambda batch: forward(*inputs(batch)))
            got = step(together, lambda batch: forward(*inputs(batch)))
            assert (expected - got).abs().max().item() < 1e-4
            assert torch.equal(apart.next_tokens, together.next_tokens)


def inputs(batch: RunningBatch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, Any]:
    """A decode step's inputs, as the batch loop passes them."""
    return batch.next_tokens, batch.attention_mask, batch.next_positions.unsqueeze(-1), batch.cache

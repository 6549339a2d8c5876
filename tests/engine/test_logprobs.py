"""Log-probabilities of the sampled tokens: against the model's own distribution, on both engines."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable

import pytest
import torch

from service.engine.base import Engine, Message, SamplingParams, TextDelta, TokenLogprob
from service.engine.batch_loop import BatchLoop
from service.engine.batch_request import BatchRequest
from service.engine.loader import LoadedModel, load_model
from service.engine.logprobs import named_logprobs, sampled_logprobs
from service.engine.sampling import sampling_distribution
from service.settings import Settings
from tests.engine.test_batch_loop import TOP_P, Collected, generate_reference, prompt

TOKENS = 12


@pytest.fixture(scope="module")
def loaded(settings: Settings) -> LoadedModel:
    return load_model(settings)


def teacher_forced(
    loaded: LoadedModel, prompt_ids: list[int], token_ids: list[int], temperature: float, top_p: float
) -> torch.Tensor:
    """The distribution (scores, service.engine.sampling) each token was sampled from, computed
    by one forward pass over prompt and completion, the stop tokens masked (ignore_eos)."""
    with torch.inference_mode():
        logits = loaded.model(torch.tensor([prompt_ids + token_ids])).logits[0].float()
    scores = logits[len(prompt_ids) - 1 : -1].clone()
    scores[:, list(loaded.eos_token_ids)] = float("-inf")
    rows = scores.size(0)
    return sampling_distribution(scores, torch.full((rows,), temperature), torch.full((rows,), top_p))


def test_sampled_logprobs_are_log_softmax_with_each_rows_top_tokens() -> None:
    distribution = torch.tensor([[2.0, 1.0, 0.0, float("-inf")], [0.0, 3.0, 1.0, 2.0]])
    found = sampled_logprobs(distribution, torch.tensor([1, 3]), [2, 0])

    expected = distribution.log_softmax(-1)
    assert found[0].logprob == pytest.approx(expected[0, 1].item())
    assert found[0].top_ids == (0, 1)
    assert found[0].top_logprobs == pytest.approx(expected[0, :2].tolist())
    assert found[1].logprob == pytest.approx(expected[1, 3].item())
    assert found[1].top_ids == ()


def test_named_logprobs_decode_each_token_alone_and_keep_json_finite(loaded: LoadedModel) -> None:
    tokenizer = loaded.tokenizer.backend_tokenizer
    ids = tokenizer.encode("hello world", add_special_tokens=False).ids[:2]
    found = sampled_logprobs(torch.tensor([[0.0, float("-inf"), 1.0]]), torch.tensor([0]), [3])
    masked_out = found[0].top_ids.index(1)

    named = named_logprobs(tokenizer, ids[:1], found)

    assert named[0].token == tokenizer.decode(ids[:1], skip_special_tokens=False)
    assert named[0].top[masked_out].logprob == -9999.0  # vLLM's value for -inf
    assert all(math.isfinite(item.logprob) for item in named[0].top)


@pytest.mark.parametrize("temperature", [0.0, 0.8])
def test_the_batch_loop_gives_each_rows_logprobs_under_its_own_distribution(
    loaded: LoadedModel, temperature: float
) -> None:
    # Four rows of different lengths and settings in one batch; only two ask for logprobs.
    loop = BatchLoop(loaded.model, 4, pad_token_id=0, stop_token_ids=list(loaded.eos_token_ids))
    texts = ["hello", "write a long function that sorts a list", "hi", "what is a closure?"]
    collected = [Collected() for _ in texts]
    try:
        for row, (text, sink) in enumerate(zip(texts, collected, strict=True)):
            logprobs = 3 if row % 2 == 0 else None
            loop.submit(
                BatchRequest(
                    prompt(loaded, text), TOKENS, temperature, TOP_P, row, True, sink, logprobs=logprobs
                )
            )
        for sink in collected:
            assert sink.finished.wait(60)
    finally:
        loop.stop()

    for row, (text, sink) in enumerate(zip(texts, collected, strict=True)):
        if row % 2:
            assert sink.logprobs == []
            continue
        prompt_ids = prompt(loaded, text)
        distribution = teacher_forced(loaded, prompt_ids, sink.token_ids, temperature, TOP_P)
        reference = sampled_logprobs(distribution, torch.tensor(sink.token_ids), [3] * TOKENS)
        assert len(sink.logprobs) == TOKENS
        for got, want in zip(sink.logprobs, reference, strict=True):
            assert got.logprob == pytest.approx(want.logprob, abs=1e-4)
            assert got.top_logprobs == pytest.approx(want.top_logprobs, abs=1e-4)
        if temperature == 0:  # greedy: the token is the most likely one
            assert [item.top_ids[0] for item in sink.logprobs] == sink.token_ids


@pytest.mark.parametrize("temperature", [0.0, 0.8])
def test_each_engine_streams_the_logprobs_of_the_tokens_it_generates(
    settings: Settings, engine_class: Callable[..., Engine], loaded: LoadedModel, temperature: float
) -> None:
    params = SamplingParams(
        max_new_tokens=TOKENS, temperature=temperature, top_p=TOP_P, seed=7, ignore_eos=True, logprobs=2
    )

    async def generate() -> list[TextDelta]:
        engine = engine_class(settings)
        await engine.start()
        try:
            prompt_ids = await engine.render_prompt([Message(role="user", content="hello")])
            return [
                event async for event in engine.generate(prompt_ids, params) if isinstance(event, TextDelta)
            ]
        finally:
            await engine.close()

    deltas = asyncio.run(generate())

    streamed: list[TokenLogprob] = [item for delta in deltas for item in delta.logprobs]
    prompt_ids = prompt(loaded, "hello")
    token_ids = generate_reference(loaded, prompt_ids, TOKENS, temperature, 7)
    distribution = teacher_forced(loaded, prompt_ids, token_ids, temperature, TOP_P)
    tokenizer = loaded.tokenizer.backend_tokenizer
    reference = named_logprobs(
        tokenizer, token_ids, sampled_logprobs(distribution, torch.tensor(token_ids), [2] * TOKENS)
    )
    assert [item.token for item in streamed] == [item.token for item in reference]
    assert [item.logprob for item in streamed] == pytest.approx(
        [item.logprob for item in reference], abs=1e-4
    )
    for got, want in zip(streamed, reference, strict=True):
        assert [top.token for top in got.top] == [top.token for top in want.top]
    assert deltas[-1].completion_tokens == TOKENS

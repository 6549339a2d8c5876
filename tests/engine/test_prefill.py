"""Prefill: prompts grouped by length, long ones a chunk per decode step, tokens as generate() makes them."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast
from unittest import mock

import pytest

from service.engine.base import Engine, Message, SamplingParams, TextDelta
from service.engine.batch_loop import BatchLoop
from service.engine.batch_request import BatchRequest
from service.engine.batched import BatchedEngine
from service.engine.loader import LoadedModel, load_model
from service.engine.logprobs import SampledLogprobs
from service.engine.prefill import length_groups, prefill_passes
from service.engine.running_batch import RunningBatch
from service.engine.sequential import SequentialEngine
from service.settings import Settings
from tests.engine.test_batch_loop import TOP_P, Collected, generate_reference, prompt, submit

CHUNK = 16


@dataclass
class Prompted:
    prompt_ids: list[int]
    started_at: float | None = None


def lengths(groups: list[list[Prompted]]) -> list[list[int]]:
    return [[len(request.prompt_ids) for request in group] for group in groups]


def test_similar_lengths_share_a_pass_and_a_long_prompt_gets_its_own() -> None:
    requests = [Prompted([1] * n) for n in (20, 2000, 22, 18, 25, 21, 19, 24)]

    assert lengths(length_groups(requests)) == [[18, 19, 20, 21, 22, 24, 25], [2000]]


def test_padding_stays_under_a_quarter_of_a_groups_tokens() -> None:
    requests = [Prompted([1] * n) for n in (10, 40, 100, 130, 400, 480, 1000)]

    groups = lengths(length_groups(requests))

    assert sorted(n for group in groups for n in group) == [10, 40, 100, 130, 400, 480, 1000]
    for group in groups:
        padding = len(group) * max(group) - sum(group)
        assert padding <= max(0.25 * sum(group), 16 * len(group))


def test_passes_split_a_group_and_the_budget_defers_the_rest() -> None:
    requests = [Prompted([1] * 200)] + [Prompted([1] * 40) for _ in range(8)]

    passes, deferred = prefill_passes(requests, budget_tokens=210, pass_tokens=100)

    assert lengths(passes) == [[40, 40], [40, 40], [40]]  # shortest first, 5 x 40 of the 210
    assert sorted(len(request.prompt_ids) for request in deferred) == [40, 40, 40, 200]


def test_packed_passes_count_each_prompts_own_tokens() -> None:
    requests = [Prompted([1] * n) for n in (44, 46, 52, 46, 43, 48, 47, 49)]

    padded, _ = prefill_passes(requests, budget_tokens=512, pass_tokens=256)
    packed, _ = prefill_passes(requests, budget_tokens=512, pass_tokens=256, packed=True)

    assert [len(group) for group in padded] == [4, 4]  # 256 // 52
    assert lengths(packed) == [[43, 44, 46, 46, 47], [48, 49, 52]]  # 226 tokens, then the rest


def test_with_no_stream_running_the_first_pass_takes_at_most_three_quarters_of_the_tokens() -> None:
    """Four prompts that fit one pass: three first, then the last; two: one, then the other.
    Beside running streams, four that fit one pass are one pass."""
    four = [Prompted([1] * n) for n in (46, 43, 45, 44)]
    two = [Prompted([1] * n) for n in (46, 43)]

    assert lengths(prefill_passes(four, 512, 256, packed=True, split_first=True)[0]) == [[43, 44, 45], [46]]
    assert lengths(prefill_passes(two, 512, 256, packed=True, split_first=True)[0]) == [[43], [46]]
    assert lengths(prefill_passes(four[:1], 512, 256, packed=True, split_first=True)[0]) == [[46]]
    assert lengths(prefill_passes(four, 512, 256, packed=True)[0]) == [[43, 44, 45, 46]]


def test_a_prompt_longer_than_a_pass_gets_a_pass_of_its_own() -> None:
    passes, deferred = prefill_passes([Prompted([1] * 300)], budget_tokens=512, pass_tokens=256)

    assert lengths(passes) == [[300]]
    assert deferred == []


@pytest.fixture(scope="module")
def loaded(settings: Settings) -> LoadedModel:
    return load_model(settings)


@pytest.fixture
def chunked_loop(loaded: LoadedModel) -> Iterator[BatchLoop]:
    running = BatchLoop(
        loaded.model,
        4,
        pad_token_id=0,
        stop_token_ids=[loaded.tokenizer.eos_token_id],
        prefill_chunk_tokens=CHUNK,
    )
    yield running
    running.stop()


def long_prompt(loaded: LoadedModel, repeats: int = 6) -> list[int]:
    ids = prompt(loaded, "write a long function that sorts a list of numbers quickly, please " * repeats)
    assert len(ids) > 4 * CHUNK
    return ids


def test_a_chunked_prompt_gives_generates_tokens_while_the_batch_keeps_decoding(
    loaded: LoadedModel, chunked_loop: BatchLoop
) -> None:
    short_ids, long_ids = prompt(loaded, "hello"), long_prompt(loaded)
    _, running = submit(chunked_loop, short_ids, 200)
    time.sleep(0.05)  # it is decoding before the long prompt arrives
    long_request, joined = submit(chunked_loop, long_ids, 12, temperature=0.8, seed=3)
    _, short_too = submit(chunked_loop, short_ids, 12)  # joins at once, beside the long prefill

    assert joined.finished.wait(60)
    assert running.finished.wait(60)
    assert short_too.finished.wait(60)
    assert joined.error is None
    assert joined.token_ids == generate_reference(loaded, long_ids, 12, 0.8, 3)
    assert running.token_ids == generate_reference(loaded, short_ids, 200, 0.0, 0)
    assert short_too.token_ids == generate_reference(loaded, short_ids, 12, 0.0, 0)
    assert long_request.started_at is not None


class Timed(Collected):
    """Collects the tokens and when each output arrived."""

    def __init__(self) -> None:
        super().__init__()
        self.arrivals: list[float] = []

    def __call__(
        self,
        token_ids: list[int],
        finished: bool,
        error: BaseException | None,
        logprobs: list[SampledLogprobs] | None = None,
    ) -> None:
        self.arrivals.append(time.perf_counter())
        super().__call__(token_ids, finished, error, logprobs)


def test_the_running_stream_gets_a_token_between_chunks(loaded: LoadedModel, chunked_loop: BatchLoop) -> None:
    running, joined = Timed(), Timed()
    running_request = BatchRequest(prompt(loaded, "hello"), 400, 0.0, 1.0, 0, True, running)
    chunked_loop.submit(running_request)
    time.sleep(0.05)
    long_ids = long_prompt(loaded)
    long_request = BatchRequest(long_ids, 2, 0.0, 1.0, 0, True, joined)
    chunked_loop.submit(long_request)

    assert joined.finished.wait(60)
    running_request.cancelled = True
    chunks = -(-len(long_ids) // CHUNK)
    assert long_request.started_at is not None
    during_prefill = [at for at in running.arrivals if long_request.started_at <= at < joined.arrivals[0]]
    # A decode step of the running stream after every chunk of the long prompt: none waits for it all.
    assert len(during_prefill) >= chunks - 1


def wait_for(condition: Callable[[], bool], timeout_s: float = 30.0) -> bool:
    deadline = time.perf_counter() + timeout_s
    while not condition():
        if time.perf_counter() > deadline:
            return False
        time.sleep(0.001)
    return True


def test_a_chunked_prefill_cancelled_halfway_is_dropped_and_frees_its_place(
    loaded: LoadedModel, chunked_loop: BatchLoop
) -> None:
    _, running = submit(chunked_loop, prompt(loaded, "hello"), 1500)  # one chunk per step
    # Long enough (~75 chunks) that the cancel below lands while it is still being prefilled.
    long_request, joined = submit(chunked_loop, long_prompt(loaded, repeats=40), 5)
    assert wait_for(lambda: long_request.started_at is not None), "its first chunk ran"
    long_request.cancel()

    assert wait_for(lambda: not chunked_loop._prefilling), "dropped from the chunked prefills"
    # Its place is free: three more fit beside the running one (four rows in all).
    more = [submit(chunked_loop, prompt(loaded, "hi"), 5)[1] for _ in range(3)]
    for collected in more:
        assert collected.finished.wait(30)
    assert joined.token_ids == []
    assert not joined.finished.is_set()
    assert not running.finished.is_set()


def test_a_burst_of_short_prompts_is_prefilled_a_budget_at_a_time(loaded: LoadedModel) -> None:
    eos = loaded.tokenizer.eos_token_id
    loop = BatchLoop(loaded.model, 8, pad_token_id=0, stop_token_ids=[eos], prefill_chunk_tokens=64)
    try:
        prompts = [prompt(loaded, f"question number {n}: what is {n} times {n}?") for n in range(8)]
        submitted = [submit(loop, ids, 6) for ids in prompts]
        for _, collected in submitted:
            assert collected.finished.wait(60)
    finally:
        loop.stop()

    longest = max(len(ids) for ids in prompts)
    assert 8 * longest > 64, "the burst is more than one budget"
    starts = sorted({request.started_at for request, _ in submitted})
    assert len(starts) >= -(-8 * min(len(ids) for ids in prompts) // 64), "prefilled over several steps"
    for ids, (_, collected) in zip(prompts, submitted, strict=True):
        assert collected.token_ids == generate_reference(loaded, ids, 6, 0.0, 0)


class FirstTokenTimed(Collected):
    def __init__(self) -> None:
        super().__init__()
        self.first_token_at: float | None = None

    def __call__(self, token_ids: list[int], *args: Any, **kwargs: Any) -> None:
        if token_ids and self.first_token_at is None:
            self.first_token_at = time.perf_counter()
        super().__call__(token_ids, *args, **kwargs)


def test_a_burst_is_prefilled_in_passes_each_sending_its_first_tokens_as_it_ends(loaded: LoadedModel) -> None:
    """Passes of one prompt each: the first pass's stream has its first token before the last
    pass begins, and every stream reads as generate() makes it. A 1 s arrival gap gathers all four."""
    eos = loaded.tokenizer.eos_token_id
    prompts = [prompt(loaded, f"question number {n}: what is {n} times {n}?") for n in range(4)]
    loop = BatchLoop(
        loaded.model,
        4,
        pad_token_id=0,
        stop_token_ids=[eos],
        prefill_pass_tokens=max(len(ids) for ids in prompts),
        arrival_gap_s=1.0,
    )
    submitted = []
    try:
        for ids in prompts:
            collected = FirstTokenTimed()
            request = BatchRequest(ids, 6, 0.0, TOP_P, 0, True, collected)
            loop.submit(request)
            submitted.append((request, collected))
        for _, collected in submitted:
            assert collected.finished.wait(60)
    finally:
        loop.stop()

    by_start = sorted(submitted, key=lambda pair: cast(float, pair[0].started_at))
    assert len({request.started_at for request, _ in submitted}) == 4, "one pass each"
    first_stream, last_request = by_start[0][1], by_start[-1][0]
    assert cast(float, first_stream.first_token_at) < cast(float, last_request.started_at)
    for ids, (_, collected) in zip(prompts, submitted, strict=True):
        assert collected.token_ids == generate_reference(loaded, ids, 6, 0.0, 0)


def test_an_unexpected_failure_fails_the_running_requests_and_the_loop_goes_on(
    loaded: LoadedModel, chunked_loop: BatchLoop
) -> None:
    # Mocked: dropping rows copies the whole cache and can run out of GPU memory, which a CPU
    # test cannot provoke. The first drop raises as that would.
    original_keep = RunningBatch.keep
    calls = {"n": 0}

    def keep_failing_once(self: RunningBatch, rows: list[int]) -> None:
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("CUDA out of memory (simulated)")
        original_keep(self, rows)

    with mock.patch.object(RunningBatch, "keep", keep_failing_once):
        _, running = submit(chunked_loop, prompt(loaded, "hello"), 50)
        _, ending = submit(chunked_loop, prompt(loaded, "hello"), 1)  # its row is dropped at once
        assert running.finished.wait(30)
        assert ending.finished.wait(30)
        _, after = submit(chunked_loop, prompt(loaded, "hello"), 5)
        assert after.finished.wait(30), "the loop is still running"

    assert running.error is not None or ending.error is not None
    assert after.error is None
    assert len(after.token_ids) == 5


def test_first_tokens_go_out_before_the_join_and_a_failed_join_fails_the_joining_only(
    loaded: LoadedModel, chunked_loop: BatchLoop
) -> None:
    # Mocked: a join that fails (out of memory growing the slab) cannot be provoked on a CPU.
    original_join = RunningBatch.join
    failing_ids = prompt(loaded, "hi there")
    seen: dict[str, list[int]] = {}

    def join_failing_for_one_prompt(self: RunningBatch, requests: list[BatchRequest], *args: Any) -> None:
        if requests[0].prompt_ids == failing_ids:
            seen["joining"] = list(cast(Collected, requests[0].sink).token_ids)
            raise RuntimeError("out of memory (simulated)")
        original_join(self, requests, *args)

    with mock.patch.object(RunningBatch, "join", join_failing_for_one_prompt):
        _, running = submit(chunked_loop, prompt(loaded, "hello"), 300)
        deadline = time.monotonic() + 30
        while not running.token_ids and time.monotonic() < deadline:
            time.sleep(0.01)
        _, failed = submit(chunked_loop, failing_ids, 5)  # joins the running batch
        assert failed.finished.wait(30)
        assert running.finished.wait(60)

    assert len(seen["joining"]) == 1, "the joining request had its first token before the join"
    assert isinstance(failed.error, RuntimeError)
    assert len(failed.token_ids) == 1
    assert running.error is None
    assert len(running.token_ids) == 300


def test_a_failing_chunk_fails_its_request_only(loaded: LoadedModel, chunked_loop: BatchLoop) -> None:
    bad_ids = long_prompt(loaded)
    bad_ids[3 * CHUNK] = loaded.model.config.vocab_size + 10  # no such token: the embedding fails
    _, running = submit(chunked_loop, prompt(loaded, "hello"), 60)
    _, failed = submit(chunked_loop, bad_ids, 5)

    assert failed.finished.wait(30)
    assert running.finished.wait(30)
    assert failed.error is not None
    assert failed.token_ids == []
    assert running.error is None
    assert len(running.token_ids) == 60


def test_the_setting_reaches_the_engine_and_a_chunked_prompt_reads_as_on_the_sequential_engine(
    model_cache_dir: Path,
) -> None:
    long_text = "write a long function that sorts a list of numbers quickly, please " * 6
    params = SamplingParams(max_new_tokens=16, temperature=0.8, seed=11, ignore_eos=True)

    async def text_on(engine: Engine) -> str:
        await engine.start()
        try:
            if isinstance(engine, BatchedEngine):
                assert engine._batch_loop is not None
                assert engine._batch_loop._prefill_chunk_tokens == CHUNK, "the setting reached the loop"
            prompt_ids = await engine.render_prompt([Message(role="user", content=long_text)])
            assert len(prompt_ids.token_ids) > 4 * CHUNK
            events = [event async for event in engine.generate(prompt_ids, params)]
            return "".join(event.text for event in events if isinstance(event, TextDelta))
        finally:
            await engine.close()

    base = {"model": "tiny-random", "cache_dir": model_cache_dir}
    chunked = BatchedEngine(Settings(**base, engine="batched", prefill_chunk_tokens=CHUNK))

    assert asyncio.run(text_on(chunked)) == asyncio.run(
        text_on(SequentialEngine(Settings(**base, engine="sequential")))
    )

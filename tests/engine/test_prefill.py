"""Prefill: prompts grouped by length, long ones a chunk per decode step, tokens as generate() makes them."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from service.engine.batch_loop import BatchLoop, BatchRequest
from service.engine.loader import LoadedModel, load_model
from service.engine.prefill import length_groups
from service.settings import Settings
from tests.engine.test_batch_loop import Collected, generate_reference, prompt, submit

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


def long_prompt(loaded: LoadedModel) -> list[int]:
    ids = prompt(loaded, "write a long function that sorts a list of numbers quickly, please " * 6)
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

    def __call__(self, token_ids: list[int], finished: bool, error: BaseException | None) -> None:
        self.arrivals.append(time.perf_counter())
        super().__call__(token_ids, finished, error)


def test_the_running_stream_gets_a_token_between_chunks(loaded: LoadedModel, chunked_loop: BatchLoop) -> None:
    running, joined = Timed(), Timed()
    running_request = BatchRequest(prompt(loaded, "hello"), 400, 0.0, 1.0, 0, None, running)
    chunked_loop.submit(running_request)
    time.sleep(0.05)
    long_ids = long_prompt(loaded)
    long_request = BatchRequest(long_ids, 2, 0.0, 1.0, 0, None, joined)
    chunked_loop.submit(long_request)

    assert joined.finished.wait(60)
    running_request.cancelled = True
    chunks = -(-len(long_ids) // CHUNK)
    assert long_request.started_at is not None
    during_prefill = [at for at in running.arrivals if long_request.started_at <= at < joined.arrivals[0]]
    # A decode step of the running stream after every chunk of the long prompt: none waits for it all.
    assert len(during_prefill) >= chunks - 1


def test_a_cancelled_chunked_prefill_is_dropped_and_the_loop_goes_on(
    loaded: LoadedModel, chunked_loop: BatchLoop
) -> None:
    long_request, joined = submit(chunked_loop, long_prompt(loaded), 5)
    long_request.cancelled = True
    _, after = submit(chunked_loop, prompt(loaded, "hello"), 5)

    assert after.finished.wait(30)
    time.sleep(0.1)
    assert joined.token_ids == []
    assert not joined.finished.is_set()


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

"""The hand-off from an inference thread to the event loop (service.engine.outputs.Mailbox)."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest

from service.engine.base import GenerationFinished, TextDelta
from service.engine.outputs import Mailbox, Output, stream_outputs
from service.engine.streamer import Detokenizer


class CountingMailbox(Mailbox):
    deliveries = 0

    def _deliver(self) -> None:
        self.deliveries += 1
        super()._deliver()


def test_a_burst_posted_before_the_loop_wakes_is_one_wake_up_and_keeps_its_order() -> None:
    async def scenario() -> tuple[int, list[list[Output]]]:
        mailbox = CountingMailbox(asyncio.get_running_loop())
        queues: list[asyncio.Queue[Output]] = [asyncio.Queue() for _ in range(4)]
        sinks = [mailbox.sink(q) for q in queues]

        def one_step(step: int) -> None:  # as the batch loop does: one output per running request
            for row, sink in enumerate(sinks):
                sink([step * 10 + row], step == 2, None)

        for step in range(3):
            thread = threading.Thread(target=one_step, args=(step,))
            thread.start()
            thread.join()  # the loop is not running meanwhile: the whole step is one burst
            await asyncio.sleep(0.01)
        return mailbox.deliveries, [[q.get_nowait() for _ in range(q.qsize())] for q in queues]

    deliveries, received = asyncio.run(scenario())

    assert deliveries == 3, "one wake-up per step, not one per request"
    for row, outputs in enumerate(received):
        assert outputs == [
            ([row], False, None, None),
            ([10 + row], False, None, None),
            ([20 + row], True, None, None),
        ]


def test_posts_racing_the_delivery_are_never_lost() -> None:
    async def scenario() -> list[int]:
        mailbox = Mailbox(asyncio.get_running_loop())
        outputs: asyncio.Queue[Output] = asyncio.Queue()
        sink = mailbox.sink(outputs)

        def produce() -> None:
            for token in range(2000):
                sink([token])
                if token % 100 == 0:
                    time.sleep(0.001)

        thread = threading.Thread(target=produce)
        thread.start()
        received: list[int] = []
        while len(received) < 2000:
            token_ids, _, _, _ = await asyncio.wait_for(outputs.get(), timeout=5)
            received += token_ids
        thread.join()
        return received

    assert asyncio.run(scenario()) == list(range(2000))


def test_posting_to_a_closed_loop_raises_even_with_a_wake_up_queued_before_it_closed() -> None:
    loop = asyncio.new_event_loop()
    mailbox = Mailbox(loop)
    sink = mailbox.sink(asyncio.Queue())
    sink([1])  # queues a wake-up that will never run
    loop.close()

    with pytest.raises(RuntimeError):  # not silently queued behind the first
        sink([2])
    with pytest.raises(RuntimeError):
        sink([3])


def test_a_stop_string_stops_generating_before_the_last_text_goes_out(tokenizer: Any) -> None:
    token_ids = tokenizer("first line\nsecond line", add_special_tokens=False)["input_ids"]

    async def scenario() -> list[object]:
        outputs: asyncio.Queue[Output] = asyncio.Queue()
        outputs.put_nowait((token_ids, False, None, None))
        seen: list[object] = []
        events = stream_outputs(
            outputs,
            outputs.get,
            Detokenizer(tokenizer.backend_tokenizer, ("\n",)),
            prompt_tokens=3,
            max_new_tokens=100,
            queue_s=lambda: 0.0,
            stop_generating=lambda: seen.append("stop generating"),
        )
        async for event in events:
            seen.append(event)
        return seen

    seen = asyncio.run(scenario())

    assert seen[0] == "stop generating"
    delta, finished = seen[1:]
    assert isinstance(delta, TextDelta)
    assert delta.text == "first line"
    assert isinstance(finished, GenerationFinished)
    assert finished.finish_reason == "stop"
    assert finished.completion_tokens == delta.completion_tokens < len(token_ids)

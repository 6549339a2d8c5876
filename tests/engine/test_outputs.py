"""The hand-off from an inference thread to the event loop (service.engine.outputs.Mailbox)."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from service.engine.outputs import Mailbox, Output


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
        assert outputs == [([row], False, None), ([10 + row], False, None), ([20 + row], True, None)]


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
            token_ids, _, _ = await asyncio.wait_for(outputs.get(), timeout=5)
            received += token_ids
        thread.join()
        return received

    assert asyncio.run(scenario()) == list(range(2000))


def test_posting_to_a_closed_loop_raises_and_a_later_post_raises_again() -> None:
    loop = asyncio.new_event_loop()
    mailbox = Mailbox(loop)
    sink = mailbox.sink(asyncio.Queue())
    loop.close()

    with pytest.raises(RuntimeError):
        sink([1])
    with pytest.raises(RuntimeError):  # not silently queued behind the first
        sink([2])

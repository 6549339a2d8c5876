"""``python -m loadtest.bench client``: how many streams one load-tester process can time faithfully.

A server in its own process streams to every open request one text event per
``--gap-ms`` (one timer for all streams, so the server stays cheap), after a first
event at ``--first-ms``. The load tester (``loadtest.driver.runner``) opens N streams at once,
in one process and then spread over ``--processes``, three waves of N, the first of
which opens the connections; for each N it prints the events per second the client
parsed, its CPU use (one process), and how far the TTFT and event gaps measured in
the later waves drift from what the server did. Past the limit, the client's own
delay shows up as latency: that N is where ``--processes`` is needed.

    python -m loadtest.bench client --streams 16,64,128,256 --events 100 --gap-ms 10
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import multiprocessing.connection
import resource
import statistics
import sys

from loadtest.clients import NativeClient
from loadtest.driver.processes import run_load_in_processes
from loadtest.driver.runner import LoadOutcome, LoadPlan, run_load
from loadtest.traffic.workload import PromptList


def _serve(
    port_out: multiprocessing.connection.Connection, events: int, first_s: float, gap_s: float
) -> None:
    """The streaming server (its own process): headers at once, then the events on a shared tick."""

    async def main() -> None:
        streams: set[asyncio.Queue[bytes | None]] = set()
        head = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
        text = b'data: {"text": " t"}\n\n'
        chunk = b"%x\r\n%s\r\n" % (len(text), text)
        done_data = b'event: done\ndata: {"finish_reason": "length", "usage": {"completion_tokens": %d}}\n\n'
        done = done_data % events
        done_chunk = b"%x\r\n%s\r\n0\r\n\r\n" % (len(done), done)

        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            while True:
                try:
                    request_head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError):
                    break
                length = next(
                    (
                        int(line[15:])
                        for line in request_head.lower().split(b"\r\n")
                        if line.startswith(b"content-length:")
                    ),
                    0,
                )
                await reader.readexactly(length)
                writer.write(head)
                await asyncio.sleep(first_s)
                writer.write(chunk)
                ticks: asyncio.Queue[bytes | None] = asyncio.Queue()
                streams.add(ticks)
                for _ in range(events - 1):
                    writer.write(await ticks.get() or b"")
                streams.discard(ticks)
                writer.write(done_chunk)
                await writer.drain()
            writer.close()

        async def tick() -> None:
            while True:
                await asyncio.sleep(gap_s)
                for ticks in list(streams):
                    ticks.put_nowait(chunk)

        server = await asyncio.start_server(handle, "127.0.0.1", 0, backlog=4096)
        port_out.send(server.sockets[0].getsockname()[1])
        ticker = asyncio.create_task(tick())
        async with server:
            await server.serve_forever()
        ticker.cancel()

    asyncio.run(main())


def measure(url: str, streams: int, events: int, processes: int) -> tuple[LoadOutcome, float]:
    """Three waves of ``streams`` concurrent requests, the first opening the connections (the
    warm-up phase); returns the outcome and the client's CPU seconds."""
    client = NativeClient(url, max_tokens=events)
    plan = LoadPlan(requests=3 * streams, cold=streams, concurrency=streams, request_timeout_s=120)
    before = resource.getrusage(resource.RUSAGE_SELF)
    if processes > 1:
        outcome = run_load_in_processes(client, PromptList(["hi"]), plan, processes)
    else:
        outcome = asyncio.run(run_load(client, PromptList(["hi"]), plan))
    after = resource.getrusage(resource.RUSAGE_SELF)
    return outcome, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m loadtest.bench client",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--streams", default="16,64,128,256", help="streams open at once, one wave each")
    parser.add_argument("--events", type=int, default=100, help="text events per stream")
    parser.add_argument("--first-ms", type=float, default=100.0, help="the server's time to the first event")
    parser.add_argument("--gap-ms", type=float, default=10.0, help="the server's gap between events")
    parser.add_argument("--processes", default="1,2", help="client processes to compare")
    args = parser.parse_args(argv)
    context = multiprocessing.get_context("spawn")
    receive, send = context.Pipe(duplex=False)
    server = context.Process(
        target=_serve, args=(send, args.events, args.first_ms / 1000, args.gap_ms / 1000), daemon=True
    )
    server.start()
    url = f"http://127.0.0.1:{receive.recv()}"
    print(f"server: first event at {args.first_ms:g} ms, then {args.events} events {args.gap_ms:g} ms apart")
    print("streams  processes  events/s  client CPU  TTFT p50 (+drift)  gap p50 ms  gap p99 ms  failed")
    try:
        for streams in (int(n) for n in args.streams.split(",")):
            for processes in (int(n) for n in args.processes.split(",")):
                outcome, cpu_s = measure(url, streams, args.events, processes)
                ok = [record for record in outcome.records if record.ok and record.phase == "steady"]
                gaps_ms = sorted(gap * 1000 for record in ok for gap in record.inter_token_gaps_s)
                ttft_ms = statistics.median(record.ttft_s * 1000 for record in ok) if ok else float("nan")
                events_per_s = sum(record.content_chunks for record in outcome.records) / outcome.wall_s
                cpu = f"{cpu_s / outcome.wall_s:>9.0%}" if processes == 1 else f"{'-':>9}"
                p50 = gaps_ms[len(gaps_ms) // 2] if gaps_ms else float("nan")
                p99 = gaps_ms[int(len(gaps_ms) * 0.99)] if gaps_ms else float("nan")
                print(
                    f"{streams:>7}  {processes:>9}  {events_per_s:>8.0f}  {cpu}  "
                    f"{ttft_ms:>8.1f} ({ttft_ms - args.first_ms:+6.1f})  {p50:>10.1f}  {p99:>10.1f}  "
                    f"{sum(not record.ok for record in outcome.records):>6}"
                )
    finally:
        server.terminate()
    return 0


if __name__ == "__main__":
    sys.exit(main())

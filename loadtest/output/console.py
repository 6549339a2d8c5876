"""What a person sees while a run goes: a rich progress bar, then a summary table."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from loadtest.measure.metrics import RequestRecord
from loadtest.output.report import GROUP_LABELS, billed, millis, seconds, stat

console = Console(stderr=True)


class RunProgress:
    """A progress bar over the requests; the last request's TTFT, e2e and errors beside it."""

    def __init__(self, total: int, label: str) -> None:
        self._progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("{task.fields[last]}"),
            console=console,
        )
        self._task = self._progress.add_task(label, total=total, last="")
        self._errors = 0

    def __enter__(self) -> RunProgress:
        self._progress.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._progress.stop()

    def on_record(self, record: RequestRecord) -> None:
        self._errors += not record.ok
        last = f"TTFT {seconds(record.ttft_s)} s, e2e {seconds(record.e2e_s)} s"
        if not record.ok:
            last = f"[red]{record.error_type}[/red]"
        if self._errors:
            last += f" [red]({self._errors} failed)[/red]"
        self._progress.update(self._task, advance=1, last=last)


def print_summary(results: dict[str, Any], out_dir: str) -> None:
    summary, cost, spawn = results["summary"], results["cost"], results["run"].get("spawn")
    table = Table(title=f"{results['config']['provider']}: {summary['ok']}/{summary['requests']} ok")
    for column in (
        "group",
        "n",
        "TTFT p50 s",
        "TTFT p90 s",
        "e2e p50 s",
        "ITL p50 ms",
        "TPOT p50 ms",
        "tok/s p50",
    ):
        table.add_column(column, justify="left" if column == "group" else "right", no_wrap=column == "group")
    for name, label in GROUP_LABELS.items():
        group = summary["groups"][name]
        if group["ok"]:
            table.add_row(
                label,
                str(group["ok"]),
                seconds(stat(group, "ttft_s", "p50")),
                seconds(stat(group, "ttft_s", "p90")),
                seconds(stat(group, "e2e_s", "p50")),
                millis(stat(group, "itl_s", "p50")),
                millis(stat(group, "tpot_s", "p50")),
                seconds(stat(group, "tokens_per_s", "p50"), 1),
            )
    console.print(table)
    problems = [record for record in results["requests"] if record.get("count_problem")]
    if problems:
        console.print(
            f"[bold red]{len(problems)} request(s) with a token count that contradicts the stream, "
            "left out of tokens/s, ITL and TPOT:[/]"
        )
        for record in problems[:5]:
            console.print(f"  request {record['index']}: {record['count_problem']}")
    errors = summary["error_types"]
    if errors:
        console.print("errors: " + ", ".join(f"{name} {count}" for name, count in errors.items()))
    if spawn:
        console.print(f"cold start: process start to /ready in {spawn['ready_s']:.2f} s")
    server_startup = results["run"].get("server_startup")
    if server_startup:
        phases = server_startup["startup"]
        console.print(
            f"server start-up: imports {phases['import_s']:.2f} s, weights {phases['load_s']:.2f} s, "
            f"warm-up {phases['warmup_s']:.2f} s, ready at {phases['ready_s']:.2f} s"
        )
    ready_wait = results["run"].get("ready_wait")
    if ready_wait:
        console.print(f"cold start: first poll to /ready 200 in {ready_wait['ready_s']:.2f} s")
    if billed(cost):
        container = " + container" if cost.get("container") else ""
        console.print(
            f"cost: ${cost['run_usd']:.6f} for the run ({cost['gpu']}{container}, {cost['source']})"
        )
    console.print(f"wrote {out_dir}/results.json, report.md, report.html and plots")

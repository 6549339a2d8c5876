"""``python -m loadtest`` (or ``python loadtest/run.py``): measure cold start, TTFT, latency,
tokens/s and cost of one deployment. From the repository root:

    python -m loadtest --spawn "python -m service --model smollm2-135m" --out runs/local
    python -m loadtest --url https://...modal.run --provider modal --gpu A100-80GB --out runs/modal
    python -m loadtest --compare runs/local runs/modal --out runs/compare

docs/load-testing.md defines every number and shows each provider's command.
"""

from __future__ import annotations

import sys
from pathlib import Path

from pydantic import ValidationError
from pydantic_core import ErrorDetails
from pydantic_settings import CliApp

from loadtest.driver.experiment import RunConfig, run_experiment
from loadtest.driver.search import highest_passing, write_search
from loadtest.options import PROG, LoadTestOptions
from loadtest.output.comparison import render_comparison, write_comparison
from loadtest.output.console import RunProgress, console, print_summary


def parse_args(argv: list[str] | None = None) -> LoadTestOptions:
    """The options from the command line; a bad flag or combination exits with status 2, as argparse does."""
    args = sys.argv[1:] if argv is None else argv
    try:
        return CliApp.run(LoadTestOptions, cli_args=args)
    except ValidationError as exc:
        problems = "; ".join(_flag_problem(error) for error in exc.errors())
        print(f"usage: {PROG} [-h] ...\n{PROG}: error: {problems}", file=sys.stderr)
        raise SystemExit(2) from None


def _flag_problem(error: ErrorDetails) -> str:
    message = error["msg"].removeprefix("Value error, ")
    if not error["loc"]:
        return message
    return f"--{str(error['loc'][0]).replace('_', '-')}: {message}"


def compare(run_dirs: list[Path], out_dir: Path | None) -> None:
    if out_dir is None:
        print(render_comparison(run_dirs))
        return
    written = write_comparison(run_dirs, out_dir)
    console.print("wrote " + ", ".join(str(path) for path in written))


def main(argv: list[str] | None = None) -> int:
    """Exit status 0 when at least one request succeeded in every run, 1 otherwise."""
    options = parse_args(argv)
    if options.compare:
        compare(options.compare, options.out)
        return 0
    assert options.out is not None  # LoadTestOptions requires it without --compare
    try:
        if options.search:
            return search(options, options.out)
        configs = planned_runs(options, options.out)
        every_run_answered = True
        for config in configs:
            results = run_experiment(config, progress=RunProgress)
            print_summary(results, str(config.out_dir))
            every_run_answered &= results["summary"]["ok"] > 0
    except (ValueError, RuntimeError, TimeoutError) as exc:
        console.print(f"[red]error:[/red] {exc}")
        return 2
    if len(configs) > 1:
        compare([config.out_dir for config in configs], options.out)
    return 0 if every_run_answered else 1


def planned_runs(options: LoadTestOptions, out: Path) -> list[RunConfig]:
    """One run, or one per level of --sweep (OUT/cN) or --rate-sweep (OUT/rR)."""
    if options.sweep:
        return [options.run_config(out / f"c{level}", level) for level in options.sweep]
    if options.rate_sweep:
        return [
            options.run_config(out / f"r{rate:g}", options.concurrency, rate) for rate in options.rate_sweep
        ]
    return [options.run_config(out, options.concurrency, options.rate)]


def search(options: LoadTestOptions, out: Path) -> int:
    """The highest concurrency or rate whose p99s meet --slo; each probe is a run in OUT/search-*."""
    by_rate = options.search == "rate"

    def probe(level: float) -> bool:
        name = f"search-r{level:g}" if by_rate else f"search-c{int(level)}"
        if by_rate:
            config = options.run_config(out / name, 1, level)
        else:
            config = options.run_config(out / name, int(level))
        results = run_experiment(config, progress=RunProgress)
        print_summary(results, str(config.out_dir))
        return bool(results["slo"]["met_at_p99"])

    start = (options.rate or 1.0) if by_rate else 1.0
    outcome = highest_passing(probe, start, options.search_max, integer=not by_rate)
    assert options.search is not None
    assert options.slo is not None
    console.print(f"[bold]{write_search(out, options.search, options.slo, outcome)}[/bold]")
    return 0 if outcome.best is not None else 1


if __name__ == "__main__":
    sys.exit(main())

"""``python -m loadtest`` (or ``python loadtest/run.py``): measure cold start, TTFT, latency,
tokens/s and cost of one deployment. From the repository root:

    python -m loadtest --spawn "python -m service --model smollm2-135m" --out runs/local
    python -m loadtest --url https://...modal.run --provider modal --gpu A100-80GB --out runs/modal
    python -m loadtest --compare runs/local runs/modal --out runs/compare

docs/load-testing.md defines every number and shows each provider's command.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from loadtest.clients.providers import PROTOCOLS, PROVIDERS
from loadtest.driver.experiment import RunConfig, run_experiment
from loadtest.driver.runner import LoadPlan
from loadtest.driver.search import highest_passing, write_search
from loadtest.output.comparison import render_comparison
from loadtest.output.console import RunProgress, console, print_summary
from loadtest.traffic.arrivals import ARRIVALS
from loadtest.traffic.prompts import DEFAULT_PROMPTS_FILE

COMPARE_FILE = "compare.md"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m loadtest", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--url", help="the server's root URL (RunPod queue: https://api.runpod.ai/v2/ENDPOINT_ID)"
    )
    parser.add_argument(
        "--provider", choices=sorted(PROVIDERS), default="local", help="credentials and prices"
    )
    parser.add_argument("--protocol", choices=PROTOCOLS, help="override the provider's protocol")
    parser.add_argument("--out", type=Path, help="directory for results.json, report.md and plots")
    parser.add_argument("--requests", type=int, default=30, help="requests to send (default 30)")
    parser.add_argument("--cold", type=int, default=5, help="the first N are the warm-up phase (default 5)")
    parser.add_argument("--max-tokens", type=int, default=512, help="tokens per answer (default 512)")
    parser.add_argument(
        "--concurrency", type=int, default=1, help="requests in flight (default 1: sequential)"
    )
    parser.add_argument("--sweep", help="concurrency levels, e.g. 1,4,8,16: one run each into OUT/cN")
    parser.add_argument(
        "--rate",
        type=float,
        help="requests per second, sent on schedule (an open loop) instead of --concurrency",
    )
    parser.add_argument(
        "--arrivals", choices=ARRIVALS, default="constant", help="with --rate (default constant)"
    )
    parser.add_argument(
        "--seed", type=int, default=0, help="Poisson arrivals: the same seed, the same schedule"
    )
    parser.add_argument(
        "--max-in-flight", type=int, default=256, help="with --rate: streams open at most (default 256)"
    )
    parser.add_argument("--rate-sweep", help="rates, e.g. 0.5,1,2,4: one run each into OUT/rR")
    parser.add_argument(
        "--slo", help="objectives in seconds, e.g. ttft=0.5,tpot=0.05,e2e=30: good requests and goodput"
    )
    parser.add_argument(
        "--search",
        choices=("concurrency", "rate"),
        help="with --slo: find the highest concurrency or rate whose p99s meet it (runs into OUT/search-*)",
    )
    parser.add_argument(
        "--search-max", type=float, default=64, help="the highest level --search tries (default 64)"
    )
    parser.add_argument("--prompts", type=Path, default=DEFAULT_PROMPTS_FILE, help="one prompt per line")
    parser.add_argument(
        "--input-tokens",
        type=int,
        help="synthetic prompts of N tokens, chat template included, sized before the clock starts "
        "(with --tokenizer, else by calibration requests to the server)",
    )
    parser.add_argument(
        "--tokenizer",
        help="the served model's tokenizer (a directory, a hub id in the local cache, or a built-in "
        "name such as smollm2-135m) to size --input-tokens prompts exactly; without it, two "
        "calibration requests go to the server first and its first measured request is not cold",
    )
    parser.add_argument(
        "--dataset", type=Path, help='JSONL rows {"prompt": ..., "output_tokens": N}: per-row output lengths'
    )
    parser.add_argument(
        "--processes",
        type=int,
        default=1,
        help="spread the streams over N client processes (docs/load-testing.md: limits)",
    )
    parser.add_argument(
        "--model", help="model name for OpenAI-compatible servers (default: the first listed)"
    )
    parser.add_argument(
        "--no-ignore-eos",
        dest="ignore_eos",
        action="store_false",
        help="do not send ignore_eos (api.openai.com rejects it); lengths then vary",
    )
    parser.add_argument("--gpu", help="GPU for the price table, e.g. A100-80GB, H100, 'H100 PRO'")
    parser.add_argument(
        "--price-per-second", type=float, help="USD per second for the whole worker, instead of the tables"
    )
    parser.add_argument(
        "--cpu-cores", type=float, help="Modal, Beam: CPU cores billed (default: what the shim reserves)"
    )
    parser.add_argument(
        "--memory-gib", type=float, help="Modal, Beam: memory billed, GiB (default: what the shim reserves)"
    )
    parser.add_argument(
        "--spawn", help='start this server command first, e.g. "python -m service --model smollm2-135m"'
    )
    parser.add_argument("--spawn-timeout", type=float, default=600.0, help="seconds to wait for /ready")
    parser.add_argument(
        "--wait-ready",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="poll /ready (up to SECONDS) before the first request and time the cold start there: "
        "for cold starts longer than a provider's proxy waits (docs/deploying.md: long cold starts)",
    )
    parser.add_argument("--request-timeout", type=float, default=600.0, help="seconds per request at most")
    parser.add_argument(
        "--max-duration", type=float, default=3600.0, help="seconds for the whole run at most"
    )
    parser.add_argument(
        "--poll-interval", type=float, default=0.2, help="RunPod queue: seconds between polls"
    )
    parser.add_argument("--compare", nargs="+", type=Path, metavar="DIR", help="compare finished runs")
    args = parser.parse_args(argv)
    if not args.compare and args.out is None:
        parser.error("--out is required")
    if not args.compare and args.url is None and args.spawn is None:
        parser.error("give --url, --spawn, or both")
    if min(args.requests, args.max_tokens, args.concurrency, args.max_in_flight, args.processes) < 1:
        parser.error(
            "--requests, --max-tokens, --concurrency, --max-in-flight and --processes must be at least 1"
        )
    if args.cold < 0:
        parser.error("--cold must be at least 0")
    if args.rate is not None and args.rate <= 0:
        parser.error("--rate must be above 0")
    if args.search and not args.slo:
        parser.error("--search needs --slo")
    if sum(bool(option) for option in (args.sweep, args.rate_sweep, args.search)) > 1:
        parser.error("give one of --sweep, --rate-sweep and --search")
    return args


def config_for(
    args: argparse.Namespace, out_dir: Path, concurrency: int, rate: float | None = None
) -> RunConfig:
    plan = LoadPlan(
        args.requests,
        args.cold,
        concurrency,
        args.request_timeout,
        args.max_duration,
        rate_per_s=rate,
        arrivals=args.arrivals,
        seed=args.seed,
        max_in_flight=args.max_in_flight,
    )
    return RunConfig(
        out_dir=out_dir,
        url=args.url,
        provider=args.provider,
        protocol=args.protocol,
        plan=plan,
        max_tokens=args.max_tokens,
        ignore_eos=args.ignore_eos,
        model=args.model,
        gpu=args.gpu,
        price_per_second=args.price_per_second,
        cpu_cores=args.cpu_cores,
        memory_gib=args.memory_gib,
        prompts_file=args.prompts,
        spawn=args.spawn,
        spawn_timeout_s=args.spawn_timeout,
        poll_interval_s=args.poll_interval,
        wait_ready_s=args.wait_ready,
        input_tokens=args.input_tokens,
        tokenizer=args.tokenizer,
        dataset=args.dataset,
        slo=args.slo,
        processes=args.processes,
    )


def compare(run_dirs: list[Path], out_dir: Path | None) -> None:
    markdown = render_comparison(run_dirs)
    if out_dir is None:
        print(markdown)
        return
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / COMPARE_FILE).write_text(markdown, encoding="utf-8")
    console.print(f"wrote {out_dir / COMPARE_FILE}")


def main(argv: list[str] | None = None) -> int:
    """Exit status 0 when at least one request succeeded in every run, 1 otherwise."""
    args = parse_args(argv)
    if args.compare:
        compare(args.compare, args.out)
        return 0
    try:
        if args.search:
            return search(args)
        configs = planned_runs(args)
        every_run_answered = True
        for config in configs:
            results = run_experiment(config, progress=RunProgress)
            print_summary(results, str(config.out_dir))
            every_run_answered &= results["summary"]["ok"] > 0
    except (ValueError, RuntimeError, TimeoutError) as exc:
        console.print(f"[red]error:[/red] {exc}")
        return 2
    if len(configs) > 1:
        compare([config.out_dir for config in configs], args.out)
    return 0 if every_run_answered else 1


def planned_runs(args: argparse.Namespace) -> list[RunConfig]:
    """One run, or one per level of --sweep (OUT/cN) or --rate-sweep (OUT/rR)."""
    if args.sweep:
        levels = [int(level) for level in args.sweep.split(",")]
        return [config_for(args, args.out / f"c{level}", level) for level in levels]
    if args.rate_sweep:
        rates = [float(rate) for rate in args.rate_sweep.split(",")]
        return [config_for(args, args.out / f"r{rate:g}", args.concurrency, rate) for rate in rates]
    return [config_for(args, args.out, args.concurrency, args.rate)]


def search(args: argparse.Namespace) -> int:
    """The highest concurrency or rate whose p99s meet --slo; each probe is a run in OUT/search-*."""
    by_rate = args.search == "rate"

    def probe(level: float) -> bool:
        name = f"search-r{level:g}" if by_rate else f"search-c{int(level)}"
        config = config_for(args, args.out / name, 1 if by_rate else int(level), level if by_rate else None)
        results = run_experiment(config, progress=RunProgress)
        print_summary(results, str(config.out_dir))
        return bool(results["slo"]["met_at_p99"])

    start = (args.rate or 1.0) if by_rate else 1.0
    outcome = highest_passing(probe, start, args.search_max, integer=not by_rate)
    console.print(f"[bold]{write_search(args.out, args.search, args.slo, outcome)}[/bold]")
    return 0 if outcome.best is not None else 1


if __name__ == "__main__":
    sys.exit(main())

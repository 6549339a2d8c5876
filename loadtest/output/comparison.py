"""The ``--compare`` report: several runs side by side, one row each."""

from __future__ import annotations

from pathlib import Path

from loadtest.output.html import write_html
from loadtest.output.plots import COMPARE_PNG, plot_comparison
from loadtest.output.report import billed, millis, seconds, stat, steady_group, table, usd
from loadtest.output.results import read_results

COMPARE_MD = "compare.md"
COMPARE_HTML = "compare.html"


def write_comparison(run_dirs: list[Path], out_dir: Path) -> list[Path]:
    """compare.md, the overlaid plot and compare.html (self-contained) into ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    runs = [(str(run_dir), read_results(run_dir)["requests"]) for run_dir in run_dirs]
    plot_comparison(runs, out_dir / COMPARE_PNG)
    markdown = render_comparison(run_dirs) + f"\n![{COMPARE_PNG}]({COMPARE_PNG})\n"
    (out_dir / COMPARE_MD).write_text(markdown, encoding="utf-8")
    page = write_html(markdown, "Load test comparison", out_dir, COMPARE_HTML)
    return [out_dir / COMPARE_MD, out_dir / COMPARE_PNG, page]


def render_comparison(run_dirs: list[Path]) -> str:
    """One table, one row per run: cold start, cold and warm TTFT, warm latency and tokens/s, cost."""
    header = [
        "run",
        "provider",
        "GPU",
        "ok",
        "spawn→ready s",
        "cold TTFT s",
        "warm TTFT p50 s",
        "warm TTFT p90 s",
    ]
    header += [
        "warm e2e p50 s",
        "warm TPOT p50 ms",
        "warm tok/s p50",
        "tokens/s overall",
        "$ run",
        "$ / 1M tokens",
    ]
    rows = []
    for run_dir in run_dirs:
        results = read_results(run_dir)
        config, summary, cost = results["config"], results["summary"], results["cost"]
        warm = summary["groups"][steady_group(summary)]
        cold = summary["groups"]["cold" if summary["cold_known"] else "warmup"]
        spawn = results["run"].get("spawn")
        rows.append(
            [
                f"`{run_dir}`",
                f"{config['provider']} ({config['protocol']})",
                config.get("gpu") or "–",
                f"{summary['ok']}/{summary['requests']}",
                seconds(spawn["ready_s"], 2) if spawn else "–",
                seconds(stat(cold, "ttft_s", "max")),
                seconds(stat(warm, "ttft_s", "p50")),
                seconds(stat(warm, "ttft_s", "p90")),
                seconds(stat(warm, "e2e_s", "p50")),
                millis(stat(warm, "tpot_s", "p50")),
                seconds(stat(warm, "tokens_per_s", "p50"), 1),
                seconds(summary["throughput_tokens_per_s"], 1),
                usd(cost.get("run_usd")) if billed(cost) else "–",
                usd(cost.get("per_million_output_tokens_usd")) if billed(cost) else "–",
            ]
        )
    notes = [
        "- cold TTFT: the largest TTFT among cold requests "
        "(among the warm-up phase where the server reports no instance)",
        "- warm: requests that met an already-answering instance (the steady phase where unknown)",
        "- definitions: docs/load-testing.md; each run's report.md has the details",
    ]
    return "\n".join(["# Load test comparison", "", *table(header, rows), "", *notes]) + "\n"

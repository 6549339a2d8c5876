"""PNG plots of one run: TTFT and latency per request in order (cold ones marked), and distributions."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only: no display on servers and CI

import matplotlib.pyplot as plt
from matplotlib.ticker import MaxNLocator

PER_REQUEST_PNG = "per_request.png"
DISTRIBUTIONS_PNG = "distributions.png"
TTFT_BY_INPUT_PNG = "ttft_by_input_length.png"


def _values(records: list[dict[str, Any]], metric: str) -> tuple[list[int], list[float]]:
    chosen = [record for record in records if record["ok"] and record[metric] is not None]
    return [record["index"] for record in chosen], [record[metric] for record in chosen]


def plot_per_request(records: list[dict[str, Any]], cold_requests: int, title: str, path: Path) -> None:
    figure, axes = plt.subplots(2, 1, figsize=(10, 6.5), sharex=True)
    for axis, metric, label in (
        (axes[0], "ttft_s", "TTFT (s)"),
        (axes[1], "e2e_s", "end-to-end latency (s)"),
    ):
        indices, values = _values(records, metric)
        axis.plot(indices, values, marker="o", markersize=4, linewidth=1, color="tab:blue", label="request")
        cold = [(r["index"], r[metric]) for r in records if r["cold"] and r["ok"] and r[metric] is not None]
        if cold:
            axis.scatter(
                *zip(*cold, strict=True),
                s=90,
                facecolors="none",
                edgecolors="tab:red",
                linewidths=2,
                label="cold (new instance)",
                zorder=3,
            )
        failed = [r["index"] for r in records if not r["ok"]]
        if failed:
            axis.scatter(failed, [0] * len(failed), marker="x", color="black", label="failed", zorder=3)
        if cold_requests:
            axis.axvspan(-0.5, cold_requests - 0.5, color="tab:orange", alpha=0.12, label="warm-up phase")
        axis.set_ylabel(label)
        axis.set_ylim(bottom=0)
        axis.grid(alpha=0.3)
    axes[0].legend(loc="upper right", fontsize=8)
    axes[1].set_xlabel("request, in the order sent")
    figure.suptitle(title)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def plot_distributions(records: list[dict[str, Any]], title: str, path: Path) -> None:
    ok = [record for record in records if record["ok"]]
    gaps_ms = [gap * 1000 for record in ok for gap in record["inter_token_gaps_s"]]
    panels = (
        ("TTFT (s)", [r["ttft_s"] for r in ok if r["ttft_s"] is not None]),
        ("end-to-end latency (s)", [r["e2e_s"] for r in ok if r["e2e_s"] is not None]),
        ("inter-token gap (ms), every gap of every request", gaps_ms),
        ("output tokens/s per request", [r["tokens_per_s"] for r in ok if r["tokens_per_s"] is not None]),
    )
    figure, axes = plt.subplots(2, 2, figsize=(10, 6.5))
    for axis, (label, values) in zip(axes.flat, panels, strict=True):
        if values:
            axis.hist(values, bins=min(40, max(5, len(values) // 2)), color="tab:blue", alpha=0.8)
        else:
            axis.text(0.5, 0.5, "no data", ha="center", va="center", transform=axis.transAxes)
        axis.set_xlabel(label)
        axis.set_ylabel("count")
        axis.yaxis.set_major_locator(MaxNLocator(integer=True))  # counts: no 0.5 ticks
        axis.grid(alpha=0.3)
    figure.suptitle(title)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def plot_ttft_by_input_length(records: list[dict[str, Any]], title: str, path: Path) -> None:
    """Prefill shows here: TTFT against the server's count of prompt tokens, one point a request."""
    points = [
        (r["prompt_tokens"], r["ttft_s"]) for r in records if r["ok"] and r["prompt_tokens"] and r["ttft_s"]
    ]
    figure, axis = plt.subplots(figsize=(8, 5))
    if points:
        axis.scatter(*zip(*points, strict=True), s=25, color="tab:blue", alpha=0.8)
        # Room on the right: the longest prompts are often the point of the plot.
        axis.set_xlim(0, max(tokens for tokens, _ in points) * 1.1)
    else:
        axis.set_xlim(left=0)
    axis.xaxis.set_major_locator(MaxNLocator(integer=True))
    axis.set_xlabel("input tokens (server's usage.prompt_tokens)")
    axis.set_ylabel("TTFT (s)")
    axis.set_ylim(bottom=0)
    axis.grid(alpha=0.3)
    figure.suptitle(title)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def write_plots(results: dict[str, Any], out_dir: Path, title: str) -> list[str]:
    """The plots into ``out_dir``; returns their file names."""
    records, cold = results["requests"], results["config"]["cold"]
    plot_per_request(records, cold, title, out_dir / PER_REQUEST_PNG)
    plot_distributions(records, title, out_dir / DISTRIBUTIONS_PNG)
    plot_ttft_by_input_length(records, title, out_dir / TTFT_BY_INPUT_PNG)
    return [PER_REQUEST_PNG, DISTRIBUTIONS_PNG, TTFT_BY_INPUT_PNG]


COMPARE_PNG = "compare.png"


def plot_comparison(runs: list[tuple[str, list[dict[str, Any]]]], path: Path) -> None:
    """Runs overlaid: the share of requests with TTFT and end-to-end latency at most x (CDFs)."""
    figure, axes = plt.subplots(1, 2, figsize=(11, 4.5))
    panels = ((axes[0], "ttft_s", "TTFT (s)"), (axes[1], "e2e_s", "end-to-end latency (s)"))
    for axis, metric, label in panels:
        for name, records in runs:
            values = sorted(r[metric] for r in records if r["ok"] and r[metric] is not None)
            if values:
                shares = [(rank + 1) / len(values) for rank in range(len(values))]
                axis.step(values, shares, where="post", label=name)
        axis.set_xlabel(label)
        axis.set_ylabel("share of successful requests")
        axis.set_xlim(left=0)
        axis.set_ylim(0, 1.02)
        axis.grid(alpha=0.3)
    axes[0].legend(fontsize=8, loc="lower right")
    figure.suptitle("every request of each run")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)

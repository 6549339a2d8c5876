"""report.md for one run (output/comparison.py: several runs side by side)."""

from __future__ import annotations

from typing import Any

from loadtest.output.results import DEFINITIONS

# "cold"/"warm" say whether the instance was new; the phases are positions in the run. Named
# apart, since "warm" beside "warm-up phase" read as the same rows twice.
GROUP_LABELS = {
    "all": "all",
    "cold": "new instance (cold)",
    "warm": "instance already up",
    "warmup": "first --cold requests",
    "steady": "the rest (steady)",
}


def seconds(value: float | None, digits: int = 3) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def millis(value: float | None) -> str:
    return "–" if value is None else f"{value * 1000:.1f}"


def usd(value: float | None) -> str:
    return "–" if value is None else f"${value:.6f}" if value < 0.01 else f"${value:.4f}"


def table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


def stat(group: dict[str, Any], metric: str, key: str) -> float | None:
    described = group["metrics"].get(metric)
    return None if described is None else described[key]


def steady_group(summary: dict[str, Any]) -> str:
    """Warm requests when the server says which are cold, else the steady phase."""
    return "warm" if summary["cold_known"] and summary["groups"]["warm"]["ok"] else "steady"


def run_title(results: dict[str, Any]) -> str:
    config = results["config"]
    gpu = f", {config['gpu']}" if config.get("gpu") else ""
    spawn = results["run"].get("spawn")
    cold_start = f"; process start to ready {spawn['ready_s']:.2f} s" if spawn else ""
    return f"{config['provider']} ({config['protocol']}{gpu}){cold_start}"


def summary_rows(summary: dict[str, Any]) -> list[list[str]]:
    rows = []
    for name, label in GROUP_LABELS.items():
        group = summary["groups"][name]
        if not group["requests"]:
            continue
        rows.append(
            [
                label,
                f"{group['ok']}/{group['requests']}",
                seconds(stat(group, "ttft_s", "p50")),
                seconds(stat(group, "ttft_s", "p90")),
                seconds(stat(group, "ttft_s", "p95")),
                seconds(stat(group, "ttft_s", "p99")),
                seconds(stat(group, "ttft_s", "std")),
                seconds(stat(group, "e2e_s", "p50")),
                seconds(stat(group, "e2e_s", "p95")),
                millis(stat(group, "itl_s", "p50")),
                millis(stat(group, "event_gap_s", "p50")),
                millis(stat(group, "tpot_s", "p50")),
                seconds(stat(group, "tokens_per_s", "p50"), 1),
            ]
        )
    return rows


SUMMARY_HEADER = [
    "requests",
    "ok",
    "TTFT p50 s",
    "TTFT p90 s",
    "TTFT p95 s",
    "TTFT p99 s",
    "TTFT std s",
    "e2e p50 s",
    "e2e p95 s",
    "ITL p50 ms",
    "event gap p50 ms",
    "TPOT p50 ms",
    "tok/s p50",
]


def render_report(results: dict[str, Any], plot_files: list[str]) -> str:
    config, run, summary, cost = results["config"], results["run"], results["summary"], results["cost"]
    lines = [
        f"# Load test: {run_title(results)}",
        "",
        f"- URL: `{config['url']}`; started {run['started_at_iso']}",
        f"- {config['requests']} requests of {config['max_tokens']} tokens "
        f"(ignore_eos: {config['ignore_eos']}), concurrency {config['concurrency']}; "
        f"the first {config['cold']} are the warm-up phase",
        f"- wall time {seconds(summary['wall_s'], 2)} s; {summary['ok']} ok, {summary['errors']} failed; "
        f"{summary['output_tokens']} output tokens, "
        f"{seconds(summary['throughput_tokens_per_s'], 1)} tokens/s overall"
        + (
            f", {seconds(summary['steady']['throughput_tokens_per_s'], 1)} in the steady phase"
            if summary.get("steady")
            else ""
        )
        + f"; {summary['input_tokens']} input tokens, {seconds(summary['input_tokens_per_s'], 1)} tokens/s",
    ]
    spawn = run.get("spawn")
    if spawn:
        lines.append(
            f"- cold start (`--spawn`): process start to `/ready` 200 in **{seconds(spawn['ready_s'], 2)} s**"
        )
    if config.get("rate_per_s"):
        lines.append(
            f"- arrivals: {config['arrivals']} at {config['rate_per_s']:g} requests/s "
            f"(seed {config['seed']}), at most {config['max_in_flight']} streams open; "
            "latencies count from the scheduled time"
        )
    input_length = summary.get("input_length")
    if input_length:
        observed = input_length["prompt_tokens"]
        lines.append(
            f"- input: synthetic prompts for {input_length['target']} tokens; the server counted "
            f"p50 {observed['p50']:.0f} (min {observed['min']:.0f}, max {observed['max']:.0f}), "
            f"{input_length['off_by_over_10pct']} off by over 10%"
        )
    sizing = run.get("prompt_sizing")  # absent in results written before it existed
    if sizing and sizing["method"] == "calibration":
        lines.append(
            f"- prompts sized by {sizing['calibration_requests']} calibration requests before the run "
            f"({sizing['tokens_per_word']} tokens per word): the server was no longer cold when "
            "the run began; pass --tokenizer to size them locally"
        )
    if summary.get("count_problems"):
        lines.append(
            f"- **{summary['count_problems']} request(s) whose token count contradicts the stream**, "
            "left out of every token-based number (see the requests table)"
        )
    slo = results.get("slo")
    if slo:
        lines.append(
            f"- objectives {slo['objectives']}: {slo['good']}/{slo['requests']} good; goodput "
            f"{seconds(slo['goodput_tokens_per_s'], 1)} tokens/s, "
            f"{usd(slo['usd_per_good_request'])} per good request; "
            f"p99s {'meet' if slo['met_at_p99'] else 'miss'} them"
        )
    server_startup = run.get("server_startup")
    if server_startup:
        phases = server_startup["startup"]
        instance = (server_startup.get("instance") or {}).get("id", "?")
        lines.append(
            f"- the server's own start-up (instance {instance}, from its /ready after the run): "
            f"imports {seconds(phases.get('import_s'), 2)} s, weights {seconds(phases.get('load_s'), 2)} s, "
            f"warm-up {seconds(phases.get('warmup_s'), 2)} s; process start to ready "
            f"{seconds(phases.get('ready_s'), 2)} s"
        )
    ready_wait = run.get("ready_wait")
    if ready_wait:
        lines.append(
            f"- cold start (`--wait-ready`): first poll to `/ready` 200 in "
            f"**{seconds(ready_wait['ready_s'], 2)} s** ({ready_wait['polls']} polls)"
        )
    if not summary["cold_known"]:
        lines.append("- the server reports no instance, so cold and warm are unknown; see the phases")
    if run.get("stopped_by_deadline"):
        lines.append(
            f"- stopped by --max-duration ({config['max_duration_s']} s) before all requests were sent"
        )
    if config["protocol"] == "runpod-queue":
        lines.append(
            "- RunPod queue API: TTFT is what a client of `/run` + `/stream` polling sees, queueing "
            f"and up to one polling interval ({config['poll_interval_s']} s) included; gaps are per poll"
        )
    if summary["token_count_mismatches"]:
        lines.append(
            f"- **{summary['token_count_mismatches']} request(s) where usage.completion_tokens "
            "differs from the number of text events** "
            "(several tokens per event, or tokens that decode to no text)"
        )
    if summary["error_types"]:
        errors = ", ".join(f"{name}: {count}" for name, count in summary["error_types"].items())
        lines.append(f"- errors by type: {errors}")
    lines += ["", "## Summary", "", *table(SUMMARY_HEADER, summary_rows(summary))]
    lines += instance_lines(results.get("instances") or [])  # absent in results written before it
    lines += ["", "## Cost", ""]
    lines += cost_lines(cost)
    lines += ["", "## Requests", "", *request_table(results["requests"]), "", "## Definitions", ""]
    lines += [f"- `{name}`: {meaning}" for name, meaning in DEFINITIONS.items()]
    if plot_files:
        lines += ["", "## Plots", ""] + [f"![{name}]({name})" for name in plot_files]
    return "\n".join(lines) + "\n"


def instance_lines(instances: list[dict[str, Any]]) -> list[str]:
    """Which instance served what; those that came up during the run are marked (scale-ups)."""
    if not instances:
        return []
    rows = [
        [
            f"`{row['instance_id']}`" + (" (new)" if row["started_during_run"] else ""),
            f"{row['ok']}/{row['requests']}",
            f"#{row['first_request']} at {row['first_seen_s']:.1f} s",
            seconds(row["ttft_p50_s"]),
            seconds(row["tokens_per_s_p50"], 1),
            str(row["output_tokens"]),
        ]
        for row in instances
    ]
    header = ["instance", "ok", "first request", "TTFT p50 s", "tok/s p50", "output tokens"]
    new = sum(row["started_during_run"] for row in instances)
    note = (
        f"{len(instances)} instance(s) answered; {new} started during the run "
        "(new: a scale-up or a replacement)."
    )
    return ["", "## Instances", "", note, "", *table(header, rows)]


def billed(cost: dict[str, Any]) -> bool:
    """Whether the run has a price above zero (a local run is costed at 0: nothing to tabulate)."""
    return bool(cost["known"]) and (cost.get("run_usd") or 0) > 0


def cost_lines(cost: dict[str, Any]) -> list[str]:
    if not cost["known"]:
        return [cost["note"]]
    if not billed(cost):
        return [f"{cost['gpu']}: {cost['source']}; pass --price-per-second to cost the run."]
    source = f"{cost['source']}, {cost['date'] or 'undated'}"
    container = cost.get("container")
    container_part = (
        ""
        if container is None
        else f", plus {container['cpu_cores']:g} CPU cores and {container['memory_gib']:g} GiB at "
        f"${container['usd_per_s']:.7f}/s ({container['source']}, {container['date'] or 'undated'})"
    )
    return [
        f"{cost['gpu']} at ${cost['usd_per_s']}/s ({source}){container_part}, billed for the run's wall "
        f"time {seconds(cost['billed_s'], 2)} s (one worker; idle time before scale-down not included):",
        "",
        *table(
            ["run", "per request", "per 1M output tokens"],
            [
                [
                    usd(cost["run_usd"]),
                    usd(cost["per_request_usd"]),
                    usd(cost["per_million_output_tokens_usd"]),
                ]
            ],
        ),
    ]


def request_table(records: list[dict[str, Any]]) -> list[str]:
    header = ["#", "phase", "cold", "status", "TTFB s", "TTFT s", "e2e s", "ITL ms", "TPOT ms"]
    header += ["tokens (usage/events)", "tok/s", "instance", "error"]
    rows = []
    for record in records:
        cold = "?" if record["cold"] is None else ("cold" if record["cold"] else "warm")
        usage = record["usage_completion_tokens"]
        tokens = f"{'–' if usage is None else usage}/{record['content_chunks']}"
        if record.get("count_problem"):
            tokens += f" ✗ {record['count_problem']}"
        elif record["token_count_mismatch"]:
            tokens += " ⚠"
        rows.append(
            [
                str(record["index"]),
                record["phase"],
                cold,
                str(record["http_status"] or "–"),
                seconds(record["time_to_first_byte_s"]),
                seconds(record["ttft_s"]),
                seconds(record["e2e_s"]),
                millis(record["itl_s"]),
                millis(record["tpot_s"]),
                tokens,
                seconds(record["tokens_per_s"], 1),
                record["instance_id"] or "–",
                (record["error"] or "").replace("|", "/")[:80],
            ]
        )
    return table(header, rows)

"""What a run leaves behind: the printed table, docs/bench/<stem>.json and .md, the machine.

The printed table and the markdown carry the same rows: per server, the single
stream as a ratio to raw generate, then each concurrency level's aggregate tokens/s
with its ratio to the same server's single stream and to transformers serve with
continuous batching, and p50/p99 time to first token; then the targets.
"""

from __future__ import annotations

import json
import os
import platform
import sys
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from loadtest.bench.lib.servers import TRANSFORMERS_SERVE_CB, VLLM
from loadtest.bench.lib.summary import ratio


def machine_info() -> dict[str, Any]:
    """CPU count and model (from /proc/cpuinfo where there is one), Python and package versions, date."""
    versions = {}
    for package in ("torch", "transformers", "tokenizers", "fastapi", "uvicorn", "httpx"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    return {
        "cpu_count": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "cpu_model": _cpu_model(),
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "versions": versions,
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def _cpu_model(cpuinfo: Path = Path("/proc/cpuinfo")) -> str:
    try:
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _fmt(value: float | None, spec: str, suffix: str = "") -> str:
    return "-" if value is None else f"{value:{spec}}{suffix}"


def _ms(value_s: float | None) -> str:
    return _fmt(None if value_s is None else value_s * 1000, ".1f")


def table_rows(results: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the one table: single stream rows ("1s") and one row per concurrency level."""
    servers = results["servers"]
    # The peer every level is compared with: vLLM when it ran, else transformers serve's CB.
    peer = VLLM if (servers.get(VLLM) or {}).get("available") else TRANSFORMERS_SERVE_CB
    header = [
        "server",
        "c",
        "tok/s",
        "x raw",
        "x own 1-stream",
        "x vllm" if peer == VLLM else "x ts-cb",
        "TTFT p50 ms",
        "p99 ms",
        "TTFT-prefill ms",
        "ready s",
    ]
    peer_levels = {level["concurrency"]: level for level in (servers.get(peer) or {}).get("levels", [])}
    rows = []
    for name, server in servers.items():
        if not server.get("available"):
            rows.append([name, "-", "not available: " + str(server.get("reason", "")), *[""] * 7])
            continue
        single = server["single_stream"]
        rows.append(
            [
                name,
                "1s",
                _fmt(single["served_tokens_per_s"], ".0f"),
                _fmt(single["served_over_raw"], ".2f"),
                "",
                "",
                _ms(single["served_ttft_s"]),
                "",
                _ms(single["ttft_minus_prefill_s"]),
                _fmt(server.get("ready_s"), ".1f"),
            ]
        )
        for level in server["levels"]:
            tokens_per_s = level["aggregate_tokens_per_s"]
            peer_level = peer_levels.get(level["concurrency"]) or {}
            flags = " !" if level["failed"] or level["wrong_length"] else ""
            rows.append(
                [
                    name,
                    str(level["concurrency"]),
                    _fmt(tokens_per_s, ".0f") + flags,
                    _fmt(ratio(tokens_per_s, single["raw_tokens_per_s"]), ".2f"),
                    _fmt(ratio(tokens_per_s, single["served_tokens_per_s"]), ".2f"),
                    _fmt(ratio(tokens_per_s, peer_level.get("aggregate_tokens_per_s")), ".2f"),
                    _ms(level["ttft_p50_s"]),
                    _ms(level["ttft_p99_s"]),
                    "",
                    "",
                ]
            )
    return header, rows


def _headline(results: dict[str, Any]) -> str:
    config, raw = results["config"], results["raw"]
    return (
        f"model {config['model']} ({config['parameters'] / 1e6:.1f}M parameters), {config['tokens']} tokens "
        f"per request (exact), {config['device']} {config['dtype']}, {config['threads']} torch thread(s); "
        f"raw generate {_fmt(raw['tokens_per_s'], '.0f')} tok/s, prefill {_ms(raw['prefill_s'])} ms "
        "(medians of the raw runs interleaved with every server's single streams)"
        + _memory_bound_line(results.get("memory_bound"))
    )


def _memory_bound_line(bound: dict[str, Any] | None) -> str:
    if not bound:
        return ""
    fraction = bound["raw_fraction_of_bound"]
    return (
        f"; weights {bound['weight_bytes'] / 1e9:.3f} GB, measured copy bandwidth "
        f"{bound['bandwidth_bytes_per_s'] / 1e9:.1f} GB/s: single-stream decode bound "
        f"{bound['bound_tokens_per_s']:.0f} tok/s, raw generate at {_fmt(fraction, '.0%')} of it"
    )


def _target_lines(results: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    return [
        (target["status"], target["name"], _fmt(target["value"], ".3f"), target["threshold"])
        for target in results["targets"]
    ]


def render_text(results: dict[str, Any]) -> str:
    header, rows = table_rows(results)
    measured = [header, *(row for row in rows if row[1] != "-")]  # "-": a server not available
    widths = [max(len(row[i]) for row in measured) for i in range(len(header))]
    lines = [_headline(results), ""]
    for row in [header, *rows]:
        if row[1] == "-":
            lines.append(f"{row[0]:<{widths[0]}}  {row[2]}")
        else:
            lines.append(
                "  ".join(
                    cell.rjust(width) if i else cell.ljust(width)
                    for i, (cell, width) in enumerate(zip(row, widths, strict=True))
                )
            )
    lines += ["", "targets:"]
    lines += [
        f"  {status:<6} {name}: {value} (target {threshold})"
        for status, name, value, threshold in _target_lines(results)
    ]
    return "\n".join(lines)


def render_markdown(results: dict[str, Any]) -> str:
    machine = results["machine"]
    versions = ", ".join(f"{name} {version}" for name, version in machine["versions"].items() if version)
    header, rows = table_rows(results)
    lines = [
        "# Engine benchmark",
        "",
        f"{machine['date']}; {machine['cpu_count']} CPUs ({machine['cpu_model']}), {machine['platform']}; "
        f"Python {machine['python']}, {versions}.",
        "",
        _headline(results) + ".",
        "",
        "Rows `1s`: single streams interleaved with raw generate (median tokens/s, its ratio to raw, "
        "median TTFT and TTFT minus raw prefill). Rows `c`: that many requests in flight, "
        "aggregate tokens/s over the level's wall time, p50/p99 TTFT. `!`: some requests failed or "
        "had another length (see the JSON).",
        "",
        "| " + " | ".join(header) + " |",
        "| " + " | ".join("---" for _ in header) + " |",
    ]
    for row in rows:
        lines.append("| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |")
    lines += ["", "| status | target | measured | threshold |", "| --- | --- | --- | --- |"]
    lines += [
        f"| {status} | {name} | {value} | {threshold} |"
        for status, name, value, threshold in _target_lines(results)
    ]
    lines += ["", "Command: `" + results["config"]["command_line"] + "`", ""]
    return "\n".join(lines)


def write_outputs(results: dict[str, Any], out_dir: Path, stem: str) -> tuple[Path, Path]:
    """Write ``stem``.json and ``stem``.md into ``out_dir``; return both paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path, markdown_path = out_dir / f"{stem}.json", out_dir / f"{stem}.md"
    json_path.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    markdown_path.write_text(render_markdown(results), encoding="utf-8")
    return json_path, markdown_path

"""results.json: the configuration, one record per request, the summary and the cost of one run."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

RESULTS_FILE = "results.json"
SCHEMA = "llm-serving-loadtest/1"

DEFINITIONS = {
    "time_to_first_byte_s": "request sent to the first byte of the response body",
    "ttft_s": "request sent to the first event carrying generated text (role-only and empty chunks excluded)",
    "itl_s": "(last text event - first text event) / (output_tokens - 1): per token, as guidellm defines it",
    "event_gap_s": "mean of the gaps between consecutive text events, as they arrived at the client",
    "send_delay_s": "--rate: how long after its scheduled time the request was sent (all streams in flight)",
    "steady": "throughput of the steady phase over its own span: first steady request due to its last answer",
    "tpot_s": "(e2e_s - ttft_s) / (output_tokens - 1)",
    "e2e_s": "request sent to the final event (done / [DONE] / the final poll)",
    "output_tokens": "the server's usage.completion_tokens; the text-event count is content_chunks",
    "tokens_per_s": "output_tokens / e2e_s",
    "cold": "the request met an instance that started after the run began, before it had answered anyone",
    "phase": "warmup: the first --cold requests; steady: the rest",
}


def write_results(out_dir: Path, results: dict[str, Any]) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / RESULTS_FILE
    path.write_text(json.dumps({"schema": SCHEMA, **results}, indent=2) + "\n", encoding="utf-8")
    return path


def read_results(run_dir: Path) -> dict[str, Any]:
    """Raises FileNotFoundError when ``run_dir`` holds no results.json."""
    return json.loads((run_dir / RESULTS_FILE).read_text(encoding="utf-8"))

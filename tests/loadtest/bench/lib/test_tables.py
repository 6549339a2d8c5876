"""What a run writes: the printed table, the JSON and markdown files, the machine description."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from loadtest.bench.lib.tables import machine_info, render_text, table_rows, write_outputs


def level(concurrency: int, tokens_per_s: float) -> dict[str, Any]:
    return {
        "concurrency": concurrency,
        "aggregate_tokens_per_s": tokens_per_s,
        "ttft_p50_s": 0.010,
        "ttft_p99_s": 0.020,
        "failed": 0,
        "wrong_length": 0,
    }


def results() -> dict[str, Any]:
    single = {
        "raw_tokens_per_s": 200.0,
        "served_tokens_per_s": 190.0,
        "served_over_raw": 0.95,
        "served_ttft_s": 0.012,
        "ttft_minus_prefill_s": 0.004,
    }
    return {
        "config": {
            "model": "bench-10m",
            "parameters": 10_218_560,
            "tokens": 128,
            "device": "cpu",
            "dtype": "float32",
            "threads": 1,
            "command_line": "python -m loadtest.bench engine",
        },
        "machine": machine_info(),
        "raw": {"tokens_per_s": 200.0, "prefill_s": 0.008},
        "servers": {
            "sequential": {
                "available": True,
                "single_stream": single,
                "levels": [level(1, 180.0), level(8, 190.0)],
            },
            "batched": {"available": False, "reason": "no --engine flag"},
            "transformers-serve-cb": {
                "available": True,
                "single_stream": single,
                "levels": [level(1, 90.0), level(8, 380.0)],
            },
        },
        "targets": [
            {
                "name": "sequential: TTFT - raw prefill (s)",
                "value": 0.004,
                "threshold": "<= 0.010",
                "status": "met",
            }
        ],
    }


def test_rows_give_ratios_to_raw_to_the_own_single_stream_and_to_transformers_serve_cb() -> None:
    header, rows = table_rows(results())

    sequential_at_8 = next(row for row in rows if row[:2] == ["sequential", "8"])
    by_column = dict(zip(header, sequential_at_8, strict=True))
    assert by_column["tok/s"] == "190"
    assert by_column["x raw"] == "0.95"
    assert by_column["x own 1-stream"] == "1.00"
    assert by_column["x ts-cb"] == "0.50"
    assert by_column["TTFT p50 ms"] == "10.0"
    assert by_column["p99 ms"] == "20.0"


def test_with_vllm_measured_every_level_is_compared_with_it_and_ready_times_shown() -> None:
    measured = results()
    measured["servers"]["vllm"] = {
        "available": True,
        "ready_s": 52.0,
        "single_stream": measured["servers"]["sequential"]["single_stream"],
        "levels": [level(1, 200.0), level(8, 95.0)],
    }
    measured["servers"]["sequential"]["ready_s"] = 5.0
    header, rows = table_rows(measured)

    columns = {tuple(row[:2]): dict(zip(header, row, strict=True)) for row in rows if row[1] != "-"}
    assert "x ts-cb" not in header
    assert columns["sequential", "8"]["x vllm"] == "2.00"
    assert columns["sequential", "1s"]["ready s"] == "5.0"
    assert columns["vllm", "1s"]["ready s"] == "52.0"


def test_the_text_table_shows_unavailable_servers_and_the_targets_with_their_status() -> None:
    text = render_text(results())

    assert "batched" in text
    assert "not available: no --engine flag" in text
    assert "met    sequential: TTFT - raw prefill (s): 0.004 (target <= 0.010)" in text
    assert "raw generate 200 tok/s, prefill 8.0 ms" in text


def test_markdown_names_the_machine_and_versions(tmp_path: Path) -> None:
    json_path, markdown_path = write_outputs(results(), tmp_path / "bench", "engine-bench-cpu")

    markdown = markdown_path.read_text()
    assert markdown_path.name == "engine-bench-cpu.md"
    assert "CPUs (" in markdown
    assert "torch " in markdown
    assert "transformers " in markdown
    assert "| sequential | 8 | 190 | 0.95 | 1.00 | 0.50 | 10.0 | 20.0 |  |" in markdown
    assert "| met | sequential: TTFT - raw prefill (s) | 0.004 | <= 0.010 |" in markdown
    assert json.loads(json_path.read_text())["servers"]["batched"]["available"] is False


def test_machine_info_has_the_cpu_python_and_package_versions() -> None:
    machine = machine_info()

    assert machine["cpu_count"] >= 1
    assert machine["cpu_model"]
    assert machine["python"].count(".") == 2
    assert machine["versions"]["torch"]
    assert machine["versions"]["transformers"]

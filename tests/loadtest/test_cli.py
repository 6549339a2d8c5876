"""``python loadtest/run.py`` end to end: the real service on the tiny model, and the scripted server."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from loadtest import cli
from tests.conftest import GatedLoader, serve
from tests.loadtest.scripted_server import Script, done_event, scripted_server, text_event

REPO = Path(__file__).resolve().parents[2]
TOKENS = 24


def read_results(out_dir: Path) -> dict[str, Any]:
    return json.loads((out_dir / "results.json").read_text())


def test_spawn_measures_cold_start_and_splits_cold_from_warm(tmp_path: Path) -> None:
    """The Done-when command, smaller: the first request meets the new process, the rest a warm one."""
    out_dir = tmp_path / "local"
    command = [sys.executable, "loadtest/run.py", "--spawn", "python -m service --model tiny-random"]
    command += ["--out", str(out_dir), "--requests", "4", "--cold", "2", "--max-tokens", str(TOKENS)]

    finished = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=240, check=False)

    assert finished.returncode == 0, finished.stderr[-2000:]
    results = read_results(out_dir)
    assert results["run"]["spawn"]["ready_s"] > 0
    records = results["requests"]
    # The server's own account of its start, from the instance that served the run.
    server_startup = results["run"]["server_startup"]
    assert server_startup["instance"]["id"] == records[0]["instance_id"]
    phases = server_startup["startup"]
    assert phases["import_s"] > 0
    assert phases["load_s"] > 0
    assert phases["ready_s"] <= results["run"]["spawn"]["ready_s"] + 0.5
    assert "the server's own start-up" in (out_dir / "report.md").read_text()
    assert [record["cold"] for record in records] == [True, False, False, False]
    [instance] = results["instances"]
    assert instance["instance_id"] == records[0]["instance_id"]
    assert instance["requests"] == 4
    assert instance["started_during_run"]  # spawned by the run: a new instance
    assert "## Instances" in (out_dir / "report.md").read_text()
    assert [record["phase"] for record in records] == ["warmup", "warmup", "steady", "steady"]
    assert all(record["ok"] and record["http_status"] == 200 for record in records)
    assert all(record["output_tokens"] == record["usage_completion_tokens"] == TOKENS for record in records)
    assert all(record["ttft_s"] <= record["e2e_s"] for record in records)
    summary = results["summary"]
    assert summary["groups"]["cold"]["ok"] == 1
    assert summary["groups"]["warm"]["ok"] == 3
    stats = {"mean", "std", "p50", "p90", "p95", "p99", "min", "max"}
    assert set(summary["groups"]["all"]["metrics"]["ttft_s"]) == stats
    assert summary["steady"]["output_tokens"] == 2 * TOKENS
    assert summary["input_tokens"] == sum(record["prompt_tokens"] for record in records) > 0
    assert results["cost"]["run_usd"] == 0.0
    for name in ("report.md", "per_request.png", "distributions.png"):
        assert (out_dir / name).stat().st_size > 0
    page = (out_dir / "report.html").read_text()
    assert page.count('src="data:image/png;base64,') == 3  # every plot inline: one file to send
    assert "the server's own start-up" in page


def test_the_openai_endpoint_counts_tokens_like_the_native_one(server_url: str, tmp_path: Path) -> None:
    out_dir = tmp_path / "openai"

    status = cli.main(
        [
            "--url",
            f"{server_url}/v1",
            "--provider",
            "openai",
            "--out",
            str(out_dir),
            "--requests",
            "2",
            "--cold",
            "1",
            "--max-tokens",
            str(TOKENS),
        ]
    )

    assert status == 0
    results = read_results(out_dir)
    assert results["config"]["protocol"] == "openai"
    assert results["config"]["model"] == "tiny-random"  # discovered from /v1/models
    for record in results["requests"]:
        assert record["output_tokens"] == TOKENS
        assert record["output_tokens_source"] == "usage"
        assert record["cold"] is None  # OpenAI chunks do not say which instance answered
    assert "cold and warm are unknown" in (out_dir / "report.md").read_text()


def test_a_sweep_runs_each_level_and_compares_them(server_url: str, tmp_path: Path) -> None:
    status = cli.main(
        [
            "--url",
            server_url,
            "--out",
            str(tmp_path),
            "--sweep",
            "1,2",
            "--requests",
            "2",
            "--cold",
            "0",
            "--max-tokens",
            "8",
        ]
    )

    assert status == 0
    assert read_results(tmp_path / "c1")["config"]["concurrency"] == 1
    assert read_results(tmp_path / "c2")["config"]["concurrency"] == 2
    comparison = (tmp_path / "compare.md").read_text()
    assert f"`{tmp_path / 'c1'}`" in comparison
    assert f"`{tmp_path / 'c2'}`" in comparison


def test_compare_puts_runs_side_by_side_with_their_cost(server_url: str, tmp_path: Path) -> None:
    for name, gpu in (("modal", "A100-80GB"), ("runpod", "L4")):
        cli.main(
            [
                "--url",
                server_url,
                "--provider",
                name,
                "--gpu",
                gpu,
                "--out",
                str(tmp_path / name),
                "--requests",
                "2",
                "--cold",
                "1",
                "--max-tokens",
                "8",
            ]
        )

    status = cli.main(
        ["--compare", str(tmp_path / "modal"), str(tmp_path / "runpod"), "--out", str(tmp_path)]
    )

    assert status == 0
    lines = (tmp_path / "compare.md").read_text().splitlines()
    modal_row = next(line for line in lines if "modal (native)" in line)
    runpod_row = next(line for line in lines if "runpod (native)" in line)
    assert "A100-80GB" in modal_row
    assert "L4" in runpod_row
    assert "$" in modal_row
    assert (tmp_path / "compare.png").stat().st_size > 0
    page = (tmp_path / "compare.html").read_text()
    assert "A100-80GB" in page
    assert 'src="data:image/png;base64,' in page


def test_api_keys_are_sent_but_never_written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    secret = "sk-do-not-write-me-0123456789"
    monkeypatch.setenv("RUNPOD_API_KEY", secret)
    with scripted_server() as server:
        server.scripts["/v1/chat"] = Script(steps=[(0.0, text_event("a")), (0.0, done_event(1))])

        status = cli.main(
            [
                "--url",
                server.url,
                "--provider",
                "runpod",
                "--out",
                str(tmp_path),
                "--requests",
                "1",
                "--cold",
                "0",
                "--max-tokens",
                "1",
            ]
        )

    assert status == 0
    assert server.requests[0].headers["authorization"] == f"Bearer {secret}"
    for written in tmp_path.iterdir():
        assert secret.encode() not in written.read_bytes(), written.name
    assert read_results(tmp_path)["config"]["credentials_from_env"] == ["RUNPOD_API_KEY"]


def test_when_every_request_fails_the_exit_status_says_so(tmp_path: Path) -> None:
    with scripted_server() as server:
        server.scripts["/v1/chat"] = Script(status=429, content_type="application/json", steps=[(0.0, b"{}")])

        status = cli.main(["--url", server.url, "--out", str(tmp_path), "--requests", "2", "--cold", "0"])

    assert status == 1
    assert read_results(tmp_path)["summary"]["error_types"] == {"http_error": 2}


def test_wait_ready_times_a_cold_start_before_the_first_request(
    gated_app: tuple[Any, GatedLoader], tmp_path: Path
) -> None:
    # A start longer than a proxy waits (Modal: 150 s) cannot be timed inside a request: poll /ready.
    app, loader = gated_app
    with serve(app, wait_ready=False) as url:
        threading.Timer(1.5, loader.gate.set).start()
        status = cli.main(
            [
                "--url",
                url,
                "--wait-ready",
                "60",
                "--out",
                str(tmp_path),
                "--requests",
                "2",
                "--max-tokens",
                "4",
            ]
        )

    assert status == 0
    results = read_results(tmp_path)
    assert results["run"]["ready_wait"]["ready_s"] >= 1.0
    assert results["run"]["ready_wait"]["polls"] >= 2
    assert all(record["ok"] for record in results["requests"])
    assert "--wait-ready" in (tmp_path / "report.md").read_text()


def test_poisson_arrivals_synthetic_input_lengths_and_goodput_on_the_real_server(
    server_url: str, settings: Any, tmp_path: Path
) -> None:
    from service.engine.loader import resolve_model_path

    args = [
        "--url",
        server_url,
        "--out",
        str(tmp_path),
        "--requests",
        "8",
        "--cold",
        "0",
        "--max-tokens",
        "6",
    ]
    args += ["--rate", "20", "--arrivals", "poisson", "--seed", "3", "--input-tokens", "96"]
    args += ["--tokenizer", resolve_model_path(settings)]

    status = cli.main([*args, "--slo", "ttft=30,e2e=60"])

    assert status == 0
    results = read_results(tmp_path)
    records = results["requests"]
    assert all(record["ok"] and record["target_input_tokens"] == 96 for record in records)
    # Sized with the model's tokenizer before the clock: every prompt, the first included, is the
    # target, or one under it (a character more may make two tokens).
    assert all(abs(record["prompt_tokens"] - 96) <= 1 for record in records), [
        record["prompt_tokens"] for record in records
    ]
    assert results["run"]["prompt_sizing"]["method"] == "tokenizer"
    assert results["summary"]["input_length"]["target"] == 96
    assert results["summary"]["input_tokens_per_s"] > 0
    assert results["slo"]["good"] == 8
    assert results["slo"]["met_at_p99"] is True
    assert all(record["meets_slo"] for record in records)
    assert results["config"]["rate_per_s"] == 20
    report = (tmp_path / "report.md").read_text()
    assert "poisson at 20 requests/s" in report
    assert "8/8 good" in report
    assert (tmp_path / "ttft_by_input_length.png").stat().st_size > 0


def test_without_a_tokenizer_prompts_are_sized_by_calibration_before_the_run(
    server_url: str, tmp_path: Path
) -> None:
    args = ["--url", server_url, "--out", str(tmp_path), "--requests", "4", "--cold", "1"]

    status = cli.main([*args, "--max-tokens", "4", "--input-tokens", "200"])

    assert status == 0
    results = read_results(tmp_path)
    counts = [record["prompt_tokens"] for record in results["requests"]]
    # The first request too: the server's ratio was learned before the clock started.
    assert all(abs(count - 200) <= 20 for count in counts), counts
    assert results["run"]["prompt_sizing"]["method"] == "calibration"
    assert "calibration requests before the run" in (tmp_path / "report.md").read_text()


def test_a_dataset_sets_each_requests_output_length(server_url: str, tmp_path: Path) -> None:
    dataset = tmp_path / "rows.jsonl"
    rows = [{"prompt": "short one", "output_tokens": 3}, {"prompt": "a longer one", "output_tokens": 9}]
    dataset.write_text("\n".join(json.dumps(row) for row in rows) + "\n")

    status = cli.main(
        ["--url", server_url, "--out", str(tmp_path / "run"), "--requests", "4", "--dataset", str(dataset)]
    )

    assert status == 0
    records = read_results(tmp_path / "run")["requests"]
    assert [record["usage_completion_tokens"] for record in records] == [3, 9, 3, 9]
    assert [record["max_tokens"] for record in records] == [3, 9, 3, 9]


def test_processes_split_the_requests_and_merge_their_records(server_url: str, tmp_path: Path) -> None:
    args = [
        "--url",
        server_url,
        "--out",
        str(tmp_path),
        "--requests",
        "6",
        "--cold",
        "2",
        "--max-tokens",
        "4",
    ]

    status = cli.main([*args, "--processes", "2", "--concurrency", "2"])

    assert status == 0
    records = read_results(tmp_path)["requests"]
    assert [record["index"] for record in records] == list(range(6))
    assert all(record["ok"] and record["usage_completion_tokens"] == 4 for record in records)
    assert [record["phase"] for record in records] == ["warmup"] * 2 + ["steady"] * 4


def test_search_finds_the_highest_concurrency_meeting_the_objectives(tmp_path: Path) -> None:
    with scripted_server() as server:
        server.scripts["/v1/chat"] = Script(steps=[(0.05, text_event("a")), (0.0, done_event(1))])

        args = ["--url", server.url, "--out", str(tmp_path), "--requests", "4", "--cold", "0"]
        status = cli.main([*args, "--slo", "ttft=5", "--search", "concurrency", "--search-max", "3"])

    assert status == 0
    search = json.loads((tmp_path / "search.json").read_text())
    assert search["best"] == 3
    assert search["reached_maximum"] is True
    assert [level for level, _ in search["probes"]] == [1, 2, 3]
    assert (tmp_path / "search-c3" / "results.json").exists()


@pytest.mark.parametrize(
    ("command", "usage"),
    [
        (["-m", "loadtest", "--help"], "usage: python -m loadtest"),
        (["loadtest/run.py", "--help"], "usage: python -m loadtest"),  # the alias kept for old docs
        (["-m", "loadtest.bench", "engine", "--help"], "usage: python -m loadtest.bench engine"),
        (["-m", "loadtest.bench", "stream", "--help"], "usage: python -m loadtest.bench stream"),
        (["-m", "loadtest.bench", "client", "--help"], "usage: python -m loadtest.bench client"),
    ],
)
def test_each_entry_point_runs_from_the_repository_root(command: list[str], usage: str) -> None:
    finished = subprocess.run(
        [sys.executable, *command], cwd=REPO, capture_output=True, text=True, timeout=120
    )

    assert finished.returncode == 0, finished.stderr[-2000:]
    assert finished.stdout.startswith(usage)


def test_the_bench_entry_point_names_its_benchmarks_when_given_none() -> None:
    finished = subprocess.run(
        [sys.executable, "-m", "loadtest.bench"], cwd=REPO, capture_output=True, text=True
    )

    assert finished.returncode == 2
    assert "engine|stream|client" in finished.stderr

"""The load tester's flags come from one model, LoadTestOptions: its defaults, checks and the
RunConfig it builds. No server: parsing only."""

from __future__ import annotations

from pathlib import Path

import pytest

from loadtest import cli
from loadtest.driver.runner import LoadPlan
from loadtest.options import LoadTestOptions
from scripts.settings_table import loadtest_options_table

DOCS = Path(__file__).resolve().parents[2] / "docs"


def test_the_defaults_are_the_load_plans_and_the_experiments() -> None:
    options = cli.parse_args(["--url", "http://127.0.0.1:1", "--out", "runs/x"])
    config = options.run_config(Path("runs/x"), options.concurrency)

    assert config.plan == LoadPlan()
    assert (config.max_tokens, config.ignore_eos, config.provider) == (512, True, "local")
    assert config.resolved_protocol == "native"


def test_flags_keep_their_names_lists_and_negations() -> None:
    options = cli.parse_args(
        [
            "--spawn", "python -m service", "--out", "o", "--sweep", "1,4,8",
            "--no-ignore-eos", "--request-timeout", "5", "--max-duration", "9",
        ]
    )  # fmt: skip
    configs = cli.planned_runs(options, Path("o"))

    assert [config.plan.concurrency for config in configs] == [1, 4, 8]
    assert [config.out_dir for config in configs] == [Path("o/c1"), Path("o/c4"), Path("o/c8")]
    assert {(c.ignore_eos, c.plan.request_timeout_s, c.plan.max_duration_s) for c in configs} == {
        (False, 5.0, 9.0)
    }


def test_compare_takes_several_directories_and_needs_nothing_else() -> None:
    options = cli.parse_args(["--compare", "runs/a", "runs/b"])

    assert options.compare == [Path("runs/a"), Path("runs/b")]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--url", "http://h"], "--out is required"),
        (["--out", "o"], "give --url, --spawn, or both"),
        (["--url", "http://h", "--out", "o", "--requests", "0"], "--requests: Input should be greater"),
        (["--url", "http://h", "--out", "o", "--provider", "nope"], "--provider: unknown provider 'nope'"),
        (["--url", "http://h", "--out", "o", "--search", "rate"], "--search needs --slo"),
        (["--url", "http://h", "--out", "o", "--sweep", "1", "--rate-sweep", "1"], "give one of"),
        (["--url", "http://h", "--out", "o", "--arrivals", "bursty"], "--arrivals: Input should be"),
    ],
)
def test_a_bad_flag_exits_2_and_says_which(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        cli.parse_args(argv)

    assert exited.value.code == 2
    assert message in capsys.readouterr().err


def test_the_docs_list_every_option() -> None:
    page = (DOCS / "load-testing.md").read_text()

    assert loadtest_options_table() in page, (
        "regenerate with: python scripts/settings_table.py --loadtest --write docs/load-testing.md"
    )
    assert len(LoadTestOptions.model_fields) == page.count("\n| `--")

"""--spawn: the command it runs, the URL it measures, and what it writes down."""

from __future__ import annotations

from loadtest.driver.spawn import command_and_url, redact_command


def test_a_command_without_a_port_gets_a_free_one_on_localhost() -> None:
    argv, url = command_and_url("python -m service --model tiny-random", None)

    assert argv[:4] == ["python", "-m", "service", "--model"]
    port = argv[argv.index("--port") + 1]
    assert argv[argv.index("--host") + 1] == "127.0.0.1"
    assert url == f"http://127.0.0.1:{port}"


def test_a_command_with_a_port_is_measured_on_that_port() -> None:
    argv, url = command_and_url("python -m service --host 0.0.0.0 --port 9123", None)

    assert argv[-1] == "9123"
    assert url == "http://127.0.0.1:9123"


def test_secret_flag_values_are_redacted() -> None:
    argv = ["python", "-m", "service", "--api-key", "s3cret", "--hf-token=tok", "--port", "1"]

    assert redact_command(argv) == [
        "python",
        "-m",
        "service",
        "--api-key",
        "***",
        "--hf-token=***",
        "--port",
        "1",
    ]

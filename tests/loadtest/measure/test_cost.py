"""Cost arithmetic, checked against sums done by hand."""

from __future__ import annotations

from pathlib import Path

import pytest

from loadtest.measure.cost import (
    CONTAINER_RATES,
    PRICES,
    find_price,
    resolve_container,
    resolve_price,
    run_cost,
)


def test_a_modal_a100_run_costs_price_times_wall_time() -> None:
    price = resolve_price("modal", "A100-80GB", None)

    cost = run_cost(price, billed_s=100.0, requests=30, output_tokens=15_360)

    # 0.000694 $/s x 100 s = $0.0694; / 30 requests = $0.0023133...; / 15,360 tokens x 1M = $4.5182...
    assert cost["run_usd"] == pytest.approx(0.0694)
    assert cost["per_request_usd"] == pytest.approx(0.00231333, rel=1e-5)
    assert cost["per_million_output_tokens_usd"] == pytest.approx(4.518229, rel=1e-6)
    assert cost["source"].startswith("modal.com/pricing")
    assert cost["date"] == "2026-07-01"


def test_runpod_queue_is_priced_from_runpods_table_and_gpu_names_are_forgiving() -> None:
    price = resolve_price("runpod-queue", "h100 pro", None)

    assert price is not None
    assert price.usd_per_s == 0.00116
    # 0.00116 x 12.5 s = $0.0145
    assert run_cost(price, 12.5, 5, 2560)["run_usd"] == pytest.approx(0.0145)


def test_an_explicit_price_per_second_overrides_the_table() -> None:
    price = resolve_price("modal", "A100-80GB", 0.001)

    assert price is not None
    assert price.usd_per_s == 0.001
    assert price.source == "--price-per-second"
    assert run_cost(price, 60.0, 3, 0)["per_million_output_tokens_usd"] is None


def test_local_is_free_and_a_cloud_run_without_a_gpu_has_no_price() -> None:
    local = resolve_price("local", None, None)
    assert local is not None
    assert run_cost(local, 50.0, 30, 1000)["run_usd"] == 0.0
    assert resolve_price("beam", None, None) is None
    assert run_cost(None, 50.0, 30, 1000)["known"] is False


def test_an_unlisted_gpu_is_an_error_naming_the_listed_ones() -> None:
    with pytest.raises(ValueError, match="A10G, H100"):
        resolve_price("beam", "B200", None)


def test_every_price_has_a_source_and_every_dated_one_an_iso_date() -> None:
    assert find_price("beam", "A10G") is not None
    for price in PRICES:
        assert price.source
        assert price.usd_per_s > 0
        assert price.date is None or len(price.date) == len("2026-07-01")


def test_the_readme_price_table_lists_every_price_with_its_source() -> None:
    readme = (Path(__file__).resolve().parents[3] / "docs" / "load-testing.md").read_text()

    for price in PRICES:
        row = next(
            (line for line in readme.splitlines() if f"| {price.gpu} | {price.usd_per_s} |" in line), None
        )
        assert row is not None, f"README lacks {price.provider} {price.gpu}"
        assert price.source in row
        assert (price.date or "undated") in row


def test_modal_and_beam_add_the_containers_cpu_and_memory_to_the_gpu() -> None:
    gpu = resolve_price("beam", "H100", None)
    container = resolve_container("beam", None, None)  # what deploy/beam.py reserves: 4 cores, 32 GiB

    assert container is not None
    assert (container.cpu_cores, container.memory_gib) == (4, 32)
    cost = run_cost(gpu, billed_s=100.0, requests=10, output_tokens=5120, container=container)

    # GPU 0.000972 x 100 = $0.0972; container (4 x 0.0000528 + 32 x 0.0000056) x 100 = $0.03904
    assert cost["gpu_usd"] == pytest.approx(0.0972)
    assert cost["container_usd"] == pytest.approx(0.03904)
    assert cost["run_usd"] == pytest.approx(0.13624)
    assert cost["container"]["cpu_cores"] == 4


def test_the_container_size_follows_flags_then_deploy_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DEPLOY_MODAL_CPU", "8")
    modal = resolve_container("modal", None, 16)

    assert modal is not None
    # 8 x 0.0000131 + 16 x 0.00000222 = 0.00014032 $/s
    assert modal.usd_per_s == pytest.approx(0.00014032)
    assert resolve_container("runpod", None, None) is None  # a GPU worker's price covers it
    assert resolve_container("local", 4, 8) is None


def test_a_price_per_second_override_is_the_whole_price() -> None:
    price = resolve_price("modal", "H100", 0.002)

    cost = run_cost(price, 10.0, 1, 100, resolve_container("modal", None, None))

    assert cost["run_usd"] == pytest.approx(0.02)
    assert cost["container"] is None


def test_the_readme_lists_every_container_rate_with_its_source() -> None:
    readme = (Path(__file__).resolve().parents[3] / "docs" / "load-testing.md").read_text()

    for rates in CONTAINER_RATES:
        core, gib = (f"{usd:.10f}".rstrip("0") for usd in (rates.usd_per_core_s, rates.usd_per_gib_s))
        row = f"| {core} | {gib} | {rates.source}, {rates.date or 'undated'} |"
        assert row in readme, f"README lacks {rates.provider}'s CPU and memory rates"

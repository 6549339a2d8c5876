"""The path a packed linear layer runs at a few rows: every path gives torch's linear layer, the
measurement picks the fastest per bucket of rows, and the loader measures it on the real model."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F  # noqa: N812 (the usual name)

from service.engine.cpu_linear import PackedLinear, PackedProjections, linear_paths
from service.engine.linear_paths import KERNEL, MKL, ONEDNN, ROW_BUCKETS, LinearPaths, measure_paths
from service.engine.loader import load_model
from service.settings import Settings


def test_rows_take_the_choice_of_the_smallest_bucket_that_holds_them() -> None:
    paths = LinearPaths()
    paths.by_bucket.update({1: MKL, 2: KERNEL, 4: ONEDNN, 8: MKL, 16: ONEDNN})

    assert [paths.for_rows(rows) for rows in (1, 2, 3, 4, 5, 8, 9, 16, 17, 400)] == [
        MKL,
        KERNEL,
        ONEDNN,
        ONEDNN,
        MKL,
        MKL,
        ONEDNN,
        ONEDNN,
        ONEDNN,
        ONEDNN,
    ]


@pytest.mark.parametrize("path", [ONEDNN, MKL, KERNEL])
@pytest.mark.parametrize("rows", [1, 3])
def test_every_path_gives_torchs_linear(path: str, rows: int) -> None:
    torch.manual_seed(rows)
    linear, sibling = torch.nn.Linear(64, 48, bias=True), torch.nn.Linear(64, 16, bias=False)
    hidden = torch.randn(rows, 64)
    with torch.inference_mode():
        expected = F.linear(hidden, linear.weight, linear.bias)
        expected_pair = torch.cat([expected, F.linear(hidden, sibling.weight)], dim=-1)
        got = PackedLinear(linear, LinearPaths()).run(hidden, path)
        got_pair = PackedProjections([linear, sibling], LinearPaths()).run(hidden, path)
        unbiased = PackedLinear(sibling, LinearPaths()).run(hidden, path)

    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(got_pair, expected_pair, rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(unbiased, expected_pair[:, 48:], rtol=1e-5, atol=1e-4)


class Timed:
    """A layer whose paths take known times (fake: the choice, not the arithmetic, is under test):
    MKL fast at 1-2 rows and slow past them, the kernel always slow, oneDNN in between. The
    differences are tens of milliseconds, so a loaded machine cannot swap the order."""

    in_features = 8

    def __init__(self) -> None:
        self.calls: list[tuple[int, str]] = []

    def run(self, hidden: torch.Tensor, path: str) -> torch.Tensor:
        rows = hidden.shape[0]
        self.calls.append((rows, path))
        fast_mkl = path == MKL and rows <= 2
        time.sleep(0.001 if fast_mkl else 0.02 if path == ONEDNN else 0.06)
        return hidden


def test_the_measurement_picks_the_fastest_path_per_bucket_and_the_kernel_only_at_a_few_rows() -> None:
    paths, layer = LinearPaths(), Timed()

    measured = measure_paths(paths, [layer], repeats=1)

    assert paths.by_bucket == {1: MKL, 2: MKL, 4: ONEDNN, 8: ONEDNN, 16: ONEDNN}
    assert sorted(measured) == list(ROW_BUCKETS)
    assert set(measured[1]) == {ONEDNN, MKL, KERNEL}
    assert set(measured[8]) == {ONEDNN, MKL}
    assert measured[1][MKL] < measured[1][ONEDNN] < measured[1][KERNEL]
    assert {path for rows, path in layer.calls if rows > 4} == {ONEDNN, MKL}


def test_the_loader_measures_the_paths_and_greedy_decoding_keeps_its_tokens_on_every_path(
    real_model_cache_dir: Path, smollm2_dir: Path
) -> None:
    """SmolLM2 loaded as served: its layers share one measured table; with every bucket forced
    to each path, and with row-major weights off (oneDNN only), the same greedy tokens."""
    settings = Settings(model="smollm2-135m", cache_dir=real_model_cache_dir)
    loaded = load_model(settings)
    without = load_model(settings.model_copy(update={"few_rows_kernel": False}))
    paths = linear_paths(loaded.model)
    assert paths is not None
    assert linear_paths(without.model) is None
    assert set(paths.by_bucket.values()) <= {ONEDNN, MKL, KERNEL}
    ids = torch.tensor([loaded.tokenizer.encode("The capital of France is")])

    def greedy(model: torch.nn.Module) -> list[int]:
        with torch.inference_mode():
            return model.generate(ids, max_new_tokens=24, do_sample=False)[0].tolist()  # type: ignore[operator]

    expected = greedy(without.model)
    kernel_where_it_can = {bucket: KERNEL if bucket <= 4 else ONEDNN for bucket in ROW_BUCKETS}
    for table in (dict.fromkeys(ROW_BUCKETS, ONEDNN), dict.fromkeys(ROW_BUCKETS, MKL), kernel_where_it_can):
        paths.by_bucket = table
        assert greedy(loaded.model) == expected, table

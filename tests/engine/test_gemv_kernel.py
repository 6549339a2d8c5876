"""The few-rows linear kernel gives torch's linear layer; packed layers use it only at the rows the
table of paths gives it (service.engine.linear_paths), at most MAX_ROWS."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F  # noqa: N812 (the usual name)

from service.engine.cpu_linear import PackedLinear, PackedProjections
from service.engine.gemv_kernel import MAX_ROWS, few_rows_linear
from service.engine.linear_paths import LinearPaths


@pytest.mark.parametrize("rows", [1, 2, MAX_ROWS])
@pytest.mark.parametrize("with_bias", [True, False])
@pytest.mark.parametrize(("width", "outputs"), [(576, 960), (40, 33), (7, 1)])
def test_the_kernel_gives_torchs_linear(rows: int, with_bias: bool, width: int, outputs: int) -> None:
    generator = torch.Generator().manual_seed(rows * 1000 + width + outputs)
    hidden = torch.randn(1, rows, width, generator=generator)
    weight = torch.randn(outputs, width, generator=generator)
    bias = torch.randn(outputs, generator=generator) if with_bias else torch.zeros(outputs)

    got = few_rows_linear(hidden, weight, bias)

    assert got.shape == (1, rows, outputs)
    torch.testing.assert_close(got, F.linear(hidden, weight, bias), rtol=1e-5, atol=1e-4)


def _calls(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Records the rows of each call of the kernel from cpu_linear."""
    import service.engine.cpu_linear as cpu_linear

    rows: list[int] = []

    def counted(hidden: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        rows.append(hidden.numel() // hidden.shape[-1])
        return few_rows_linear(hidden, weight, bias)

    monkeypatch.setattr(cpu_linear, "few_rows_linear", counted)
    return rows


@pytest.mark.parametrize("rows", [1, MAX_ROWS, MAX_ROWS + 1, 46])
def test_by_the_unmeasured_table_packed_layers_use_the_kernel_up_to_max_rows_and_onednn_past_them(
    rows: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    torch.manual_seed(0)
    linear, sibling = torch.nn.Linear(64, 48, bias=True), torch.nn.Linear(64, 16, bias=False)
    hidden = torch.randn(rows, 64)
    calls = _calls(monkeypatch)
    with torch.inference_mode():
        expected = linear(hidden), torch.cat([linear(hidden), sibling(hidden)], dim=-1)
        got = PackedLinear(linear, LinearPaths())(hidden)
        got_pair = PackedProjections([linear, sibling], LinearPaths()).project(hidden)

    torch.testing.assert_close(got, expected[0], rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(got_pair, expected[1], rtol=1e-5, atol=1e-4)
    assert calls == ([rows, rows] if rows <= MAX_ROWS else [])


def test_without_the_kernel_packed_layers_keep_no_row_major_weights(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = _calls(monkeypatch)
    with torch.inference_mode():
        PackedLinear(torch.nn.Linear(8, 4))(torch.randn(1, 8))
    assert calls == []

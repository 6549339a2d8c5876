"""report.html / compare.html: the markdown as one page, plots inlined, nothing fetched."""

from __future__ import annotations

import base64
import re
from pathlib import Path

from loadtest.output.html import render_html
from loadtest.output.report import GROUP_LABELS, billed, cost_lines

PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
)


def test_tables_render_and_linked_plots_are_inlined(tmp_path: Path) -> None:
    (tmp_path / "per_request.png").write_bytes(PNG)
    markdown = "# Load test\n\n| a | b |\n| --- | --- |\n| 1 | 2 |\n\n![per_request.png](per_request.png)\n"

    page = render_html(markdown, "Load test <local>", tmp_path)

    assert "<title>Load test &lt;local&gt;</title>" in page
    assert "<table>" in page
    assert "<td>2</td>" in page
    sources = re.findall(r'src="([^"]+)"', page)
    assert sources == ["data:image/png;base64," + base64.b64encode(PNG).decode()]
    assert "http://" not in page
    assert "https://" not in page


def test_a_missing_plot_stays_a_link_rather_than_failing(tmp_path: Path) -> None:
    page = render_html("![gone.png](gone.png)\n", "t", tmp_path)

    assert 'src="gone.png"' in page


def test_group_labels_tell_the_instance_from_the_phase() -> None:
    labels = list(GROUP_LABELS.values())

    assert len(set(labels)) == len(labels)
    assert not any(label == "warm" for label in labels)
    assert "instance already up" in labels


def test_a_run_on_your_own_hardware_prints_no_table_of_zero_dollars() -> None:
    local = {
        "known": True,
        "gpu": "this machine",
        "usd_per_s": 0.0,
        "source": "your own hardware: no per-second bill",
        "date": None,
        "run_usd": 0.0,
    }

    lines = cost_lines(local)

    assert not billed(local)
    assert lines == [
        "this machine: your own hardware: no per-second bill; pass --price-per-second to cost the run."
    ]
    assert not any("$0.0" in line for line in lines)

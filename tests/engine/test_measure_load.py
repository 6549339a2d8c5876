"""scripts/measure_load.py runs end to end (on the tiny model: its ratio means nothing there)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from service.engine.tiny_model import ensure_tiny_model


def test_measure_load_reports_read_load_and_their_ratio(model_cache_dir: Path, tmp_path: Path) -> None:
    model_dir = ensure_tiny_model(model_cache_dir)
    report_path = tmp_path / "load.json"

    command = [sys.executable, "scripts/measure_load.py", "--model-dir", str(model_dir), "--repeats", "1"]
    result = subprocess.run(
        [*command, "--cache-dir", str(model_cache_dir), "--json", str(report_path)],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).resolve().parents[2],
    )

    report = json.loads(report_path.read_text())
    assert report["weight_bytes"] == (model_dir / "model.safetensors").stat().st_size
    assert all(report["medians"][key] > 0 for key in ("read_fresh_s", "read_copy_s", "load_s", "touch_s"))
    medians = report["medians"]
    assert report["ratios"]["load / read_copy"] == medians["load_s"] / medians["read_copy_s"]
    assert f"target load <= 1.5x read_copy: {report['verdict']}" in result.stdout

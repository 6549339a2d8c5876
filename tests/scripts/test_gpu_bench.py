"""scripts/gpu_bench.sh, the one prepared GPU run, works end to end as a CPU dry run.

On a GPU it is the same script with the defaults (random:mistral-7b, cuda, 512 tokens);
here the tiny model and a few tokens check the glue: both parts run, their tables and the
archive land in OUT.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]


def test_a_cpu_dry_run_leaves_both_parts_results(tmp_path: Path, model_cache_dir: Path) -> None:
    out = tmp_path / "out"
    env = {
        **os.environ,
        "OUT": str(out),
        "WHEELS": "none",
        "MODEL": "tiny-random",
        "DEVICE": "cpu",
        "TOKENS": "4",
        "LOAD_LEVELS": "2",
        "PYTHON": sys.executable,
        "HOME": str(tmp_path),  # bench_engine's default cache dir: keep it out of the user's
    }

    result = subprocess.run(
        ["bash", "scripts/gpu_bench.sh"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )

    assert result.returncode == 0, result.stdout + result.stderr
    assert "== single: exit 0" in result.stdout
    assert "== load: exit 0" in result.stdout
    # At most 8 files: what the device tool brings back from one call.
    assert sorted(path.name for path in out.iterdir()) == [
        "engine-bench-cpu-load.json",
        "engine-bench-cpu-load.md",
        "engine-bench-cpu-single.json",
        "engine-bench-cpu-single.md",
        "load-logs.tar.gz",
        "machine.txt",
        "single-logs.tar.gz",
    ]
    with tarfile.open(out / "single-logs.tar.gz") as archive:
        names = archive.getnames()
    assert "single.log" in names
    assert any(name.endswith("engine-bench-cpu-single-logs/sequential.log") for name in names)


def test_an_unknown_part_is_refused(tmp_path: Path) -> None:
    env = {**os.environ, "OUT": str(tmp_path), "WHEELS": "none", "PYTHON": sys.executable}

    result = subprocess.run(
        ["bash", "scripts/gpu_bench.sh", "warp"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert result.returncode == 2
    assert "unknown part warp" in result.stderr

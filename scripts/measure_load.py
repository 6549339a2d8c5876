"""Weight load vs reading the files from the page cache, for a ~0.5B-parameter model.

    python scripts/measure_load.py                      # random:mistral-0.5b, 5 rounds
    python scripts/measure_load.py --model-dir DIR      # any local safetensors model
    python scripts/measure_load.py --json out.json

Builds ``random:mistral-0.5b`` (501M parameters, float32 on CPU: 2.0 GB of
safetensors) once under the cache directory, reads the files once so they sit in
the page cache, then runs rounds of fresh processes, interleaved and in
alternating order:

- ``read``: every ``*.safetensors`` file read into memory. ``read_fresh_s`` is
  ``f.read()`` into a new buffer; ``read_copy_s`` is ``readinto`` a buffer whose
  pages are already mapped, i.e. the copy out of the page cache alone (the floor).
- ``load``: ``service.engine.loader.load_model`` as the server's load phase runs
  it (imports done first, untimed): weights and tokenizer. ``touch_s`` then reads
  one value from every 4 KiB page of every parameter, so a loader that maps the
  files and reads them later cannot look faster than it is.

Prints the medians and ``load / read``; the target is ``load_s <= 1.5 x read_copy_s``.
A fresh process per measurement: the server loads once per process, so the
first load's costs (lazy imports, first page faults) are the ones that count.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

MODEL = "random:mistral-0.5b"
TARGET_RATIO = 1.5
_PAGE_BYTES = 4096
_CHUNK_BYTES = 1 << 24


def safetensors_files(model_dir: Path) -> list[Path]:
    files = sorted(model_dir.glob("*.safetensors"))
    if not files:
        raise SystemExit(f"{model_dir}: no .safetensors files")
    return files


def measure_read(model_dir: Path) -> dict[str, float]:
    """Read every weight file into new memory, then again into memory already mapped."""
    files = safetensors_files(model_dir)
    started = time.perf_counter()
    fresh = []
    for path in files:
        with open(path, "rb") as weights:
            fresh.append(weights.read())
    read_fresh_s = time.perf_counter() - started
    del fresh
    buffers = [bytearray(path.stat().st_size) for path in files]  # zero-filled: every page mapped
    started = time.perf_counter()
    for path, buffer in zip(files, buffers, strict=True):
        with open(path, "rb", buffering=0) as weights:
            view, done = memoryview(buffer), 0
            while done < len(buffer):
                done += weights.readinto(view[done:]) or 0
    read_copy_s = time.perf_counter() - started
    return {"read_fresh_s": read_fresh_s, "read_copy_s": read_copy_s}


def measure_load(model_dir: Path, cache_dir: Path) -> dict[str, float]:
    """``load_model`` as the server calls it, then a first touch of every weight page."""
    import torch

    from service.engine.loader import load_model
    from service.settings import Settings

    settings = Settings(model=str(model_dir), cache_dir=cache_dir, device="cpu", dtype="auto")
    started = time.perf_counter()
    loaded = load_model(settings)
    load_s = time.perf_counter() - started
    started = time.perf_counter()
    with torch.inference_mode():
        for parameter in loaded.model.parameters():
            flat = parameter.reshape(-1)
            float(flat[:: max(1, _PAGE_BYTES // flat.element_size())].sum())
    touch_s = time.perf_counter() - started
    parameters = sum(p.numel() for p in loaded.model.parameters())
    return {"load_s": load_s, "touch_s": touch_s, "parameters": float(parameters)}


def run_child(kind: str, model_dir: Path, cache_dir: Path) -> dict[str, float]:
    command = [sys.executable, __file__, "--child", kind, "--model-dir", str(model_dir)]
    command += ["--cache-dir", str(cache_dir)]
    env = {**os.environ, "TRANSFORMERS_VERBOSITY": "error", "TQDM_DISABLE": "1"}
    result = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    if result.returncode != 0:
        raise SystemExit(f"{kind} failed:\n{result.stderr}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def warm_page_cache(model_dir: Path) -> None:
    for path in model_dir.iterdir():
        if path.is_file():
            with open(path, "rb", buffering=0) as source:
                while source.read(_CHUNK_BYTES):
                    pass


def ensure_model_dir(cache_dir: Path) -> Path:
    from loadtest.bench.lib.model import resolve_bench_model

    return resolve_bench_model(MODEL, cache_dir, device="cpu", dtype="float32")


def main() -> None:
    from service.settings import Settings

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--model-dir", type=Path, help=f"a local model (default: {MODEL}, built once)")
    parser.add_argument("--cache-dir", type=Path, help="where the model is built (default: the server's)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json", type=Path, help="also write the rounds and medians here")
    parser.add_argument("--child", choices=("read", "load"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.cache_dir = args.cache_dir or Settings().cache_dir  # CACHE_DIR as the server reads it

    if args.child == "read":
        print(json.dumps(measure_read(args.model_dir)))
        return
    if args.child == "load":
        print(json.dumps(measure_load(args.model_dir, args.cache_dir)))
        return

    started = time.perf_counter()
    model_dir = args.model_dir or ensure_model_dir(args.cache_dir)
    built_s = time.perf_counter() - started
    weight_bytes = sum(path.stat().st_size for path in safetensors_files(model_dir))
    print(f"model {model_dir} ({weight_bytes / 1e9:.2f} GB of safetensors; at hand in {built_s:.1f} s)")
    warm_page_cache(model_dir)
    run_child("read", model_dir, args.cache_dir)  # one warm read, not counted

    rounds: list[dict[str, float]] = []
    for index in range(args.repeats):
        order = ("read", "load") if index % 2 == 0 else ("load", "read")
        measured: dict[str, float] = {}
        for kind in order:
            measured.update(run_child(kind, model_dir, args.cache_dir))
        rounds.append(measured)
        print(
            f"round {index + 1}: read fresh {measured['read_fresh_s']:.3f} s, "
            f"copy {measured['read_copy_s']:.3f} s; load {measured['load_s']:.3f} s, "
            f"touch {measured['touch_s']:.3f} s",
            flush=True,
        )

    medians = {key: statistics.median(r[key] for r in rounds) for key in rounds[0]}
    ratios = {
        "load / read_copy": medians["load_s"] / medians["read_copy_s"],
        "load / read_fresh": medians["load_s"] / medians["read_fresh_s"],
        "(load + touch) / read_copy": (medians["load_s"] + medians["touch_s"]) / medians["read_copy_s"],
    }
    print(f"\nmedians of {args.repeats} rounds, {medians['parameters'] / 1e6:.0f}M parameters:")
    for key in ("read_fresh_s", "read_copy_s", "load_s", "touch_s"):
        print(f"  {key:13s} {medians[key]:.3f}")
    for name, ratio in ratios.items():
        print(f"  {name:27s} {ratio:.2f}x")
    verdict = "met" if ratios["load / read_copy"] <= TARGET_RATIO else "missed"
    print(f"target load <= {TARGET_RATIO}x read_copy: {verdict}")
    if args.json:
        report = {"model_dir": str(model_dir), "weight_bytes": weight_bytes, "rounds": rounds}
        report.update(medians=medians, ratios=ratios, target_ratio=TARGET_RATIO, verdict=verdict)
        args.json.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()

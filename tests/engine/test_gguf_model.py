"""--model file.gguf: which path names a GGUF file, and the conversion cache keyed by the file's hash.

The conversion itself (dequantize, save as safetensors) is what the built-in smollm2-135m
goes through (tests/engine/test_real_model.py; a user's file end to end is a slow test).
Here the converter is replaced by one that records its calls: what is tested is the cache.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from service.engine import gguf_model
from service.engine.gguf_model import ensure_converted, find_gguf_file


def test_a_gguf_file_or_a_directory_holding_one_names_it(tmp_path: Path) -> None:
    gguf = tmp_path / "models" / "llama.Q4_0.gguf"
    gguf.parent.mkdir()
    gguf.write_bytes(b"GGUF")

    assert find_gguf_file(str(gguf)) == gguf.resolve()
    assert find_gguf_file(str(gguf.parent)) == gguf.resolve()


def test_a_transformers_directory_or_a_hub_id_is_not_gguf(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("{}")
    (tmp_path / "also.gguf").write_bytes(b"GGUF")

    assert find_gguf_file(str(tmp_path)) is None
    assert find_gguf_file("mistralai/Mistral-7B-Instruct-v0.3") is None


def test_a_directory_with_several_gguf_files_is_refused_naming_them(tmp_path: Path) -> None:
    for name in ("a.gguf", "b.gguf"):
        (tmp_path / name).write_bytes(b"GGUF")

    with pytest.raises(ValueError, match=r"a\.gguf, b\.gguf"):
        find_gguf_file(str(tmp_path))


def test_a_file_is_converted_once_and_a_changed_file_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    converted: list[Path] = []

    def record(gguf_file: Path, out_dir: Path) -> None:
        converted.append(gguf_file)
        (out_dir / "config.json").write_text("{}")

    monkeypatch.setattr(gguf_model, "convert_gguf", record)
    gguf = tmp_path / "model.gguf"
    gguf.write_bytes(b"GGUF one")
    cache = tmp_path / "cache"

    first = ensure_converted(gguf, cache)
    again = ensure_converted(gguf, cache)
    gguf.write_bytes(b"GGUF two")
    changed = ensure_converted(gguf, cache)

    assert first == again != changed
    assert converted == [gguf, gguf]
    assert sorted(path.name for path in cache.iterdir()) == sorted([first.name, changed.name])

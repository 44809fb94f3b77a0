from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("torch")
from editproof.errors import InvalidInputError, NotFoundError, UsageError
from editproof.lm import load_model, parse_source
from editproof.lm.loading import resolve_device, resolve_dtype


def test_load_local(tiny_dir: Path) -> None:
    lm = load_model(parse_source(str(tiny_dir)), device="cpu")
    assert lm.device == "cpu" and lm.dtype == "float32"
    assert lm.tokenizer is not None and not lm.model.training
    assert all(not p.requires_grad for p in lm.model.parameters())


def test_dtype_override(tiny_dir: Path) -> None:
    lm = load_model(parse_source(str(tiny_dir)), device="cpu", dtype="bf16", tokenizer=False)
    assert lm.dtype == "bfloat16" and lm.tokenizer is None


def test_hub_offline_missing_names_the_model(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    with pytest.raises(NotFoundError, match=r"no-such-org/no-such-model@v1.*--net 1"):
        load_model(parse_source("no-such-org/no-such-model@v1"), device="cpu")


def test_not_a_model(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text('{"model_type": "nonsense-arch"}')
    with pytest.raises(InvalidInputError, match="cannot load model"):
        load_model(parse_source(str(tmp_path)), device="cpu")


def test_device_and_dtype_resolution() -> None:
    import torch

    assert resolve_device("cpu") == "cpu"
    assert resolve_dtype("auto", "cpu") == torch.float32
    assert resolve_dtype("auto", "cuda:0") == torch.bfloat16
    with pytest.raises(UsageError):
        resolve_device("tpu")
    with pytest.raises(UsageError):
        resolve_dtype("int3", "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(UsageError, match="no CUDA"):
            resolve_device("cuda")

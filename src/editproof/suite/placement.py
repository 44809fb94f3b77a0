"""Memory-aware placement: how many GPUs a model needs, from its weight files alone.

The estimate reads file sizes (safetensors shards of a local directory or of the hub
cache's snapshot), never the weights. A model whose weights plus working headroom exceed one
GPU gets a group of GPUs, loaded across them by ``device_map``.
"""

from __future__ import annotations

import math
import os
import shutil
import subprocess
from pathlib import Path

from editproof.lm import parse_source

# Weights x this = memory a worker needs (activations, logits chunks, undo journal copies).
HEADROOM = 1.25
# A random-init model is built in bf16 on GPUs (the only place its size matters here).
RANDOM_BYTES_PER_PARAM = 2
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".gguf", ".pt")


def weight_bytes(model: str) -> int | None:
    """Bytes of the model's weight files, or None when they cannot be found without loading."""
    src = parse_source(model)
    if src.kind == "demo":
        return None
    if src.kind == "gguf" and src.path is not None:
        return src.path.stat().st_size
    if src.kind == "random" and src.path is not None:
        from editproof.lm.random_init import estimate_parameters, read_config

        params = estimate_parameters(read_config(src.path))
        return params * RANDOM_BYTES_PER_PARAM if params else None
    folder: Path | None = src.path if src.kind == "local" else _hub_snapshot(src.repo_id)
    if folder is None or not folder.is_dir():
        return None
    total = sum(p.stat().st_size for p in folder.iterdir() if p.name.endswith(_WEIGHT_SUFFIXES))
    return total or None


def _hub_snapshot(repo_id: str | None) -> Path | None:
    if repo_id is None:
        return None
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return None
    found = try_to_load_from_cache(repo_id, "config.json")
    return Path(found).parent if isinstance(found, str) else None


def gpus_needed(model_bytes: int | None, gpu_bytes: int | None) -> int:
    """1 when unknown or when it fits; else ceil(bytes x headroom / one GPU)."""
    if not model_bytes or not gpu_bytes:
        return 1
    return max(1, math.ceil(model_bytes * HEADROOM / gpu_bytes))


def gpu_memory(visible: list[str]) -> dict[str, int]:
    """Total memory per visible GPU id, asked from nvidia-smi (no CUDA context in the driver)."""
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return {}
    try:
        out = subprocess.run(
            [exe, "--query-gpu=index,memory.total", "--format=csv,noheader,nounits"],
            capture_output=True,
            text=True,
            timeout=20,
            check=True,
            env={**os.environ, "CUDA_VISIBLE_DEVICES": ""},
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return {}
    mem = {}
    for line in out.splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) == 2 and parts[0].isdigit() and parts[1].isdigit():
            mem[parts[0]] = int(parts[1]) * 1024 * 1024
    return {g: mem[g] for g in visible if g in mem}

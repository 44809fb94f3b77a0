"""Weight digests: sha256 per tensor, combined into one model digest.

Per-tensor digests let an edit prove that restoring the tensors it touched gave back the
exact baseline bytes without rehashing the rest. Tensors are hashed on worker threads:
``hashlib`` releases the GIL on large buffers, which matters for 7B models (~11 s serial).
"""

from __future__ import annotations

import hashlib
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class WeightDigest:
    sha256: str
    tensors: dict[str, str]  # name -> "dtype shape sha256"
    n_tensors: int
    n_bytes: int


def tensor_sha256(tensor: Any) -> str:
    """sha256 of a tensor's raw bytes in its own dtype (bf16 included), C order."""
    import torch

    flat = tensor.detach().contiguous().reshape(-1)
    raw = flat.view(torch.uint8).cpu().numpy()
    return hashlib.sha256(memoryview(raw)).hexdigest()


def weight_digest(model: Any, names: list[str] | None = None) -> WeightDigest:
    """Digest of ``model.state_dict()`` (parameters and persistent buffers).

    Tied tensors appear under each of their names and are hashed once.
    """
    state = model.state_dict()
    keys = sorted(state) if names is None else sorted(names)
    unique: dict[tuple[int, tuple[int, ...], str], Any] = {}
    key_of: dict[str, tuple[int, tuple[int, ...], str]] = {}
    for name in keys:
        t = state[name]
        k = (t.data_ptr(), tuple(t.shape), str(t.dtype))
        key_of[name] = k
        unique.setdefault(k, t)
    workers = max(1, min(8, os.cpu_count() or 1))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        hashed = dict(zip(unique, pool.map(tensor_sha256, unique.values()), strict=True))
    lines: dict[str, str] = {}
    n_bytes = 0
    for name in keys:
        t = state[name]
        dtype = str(t.dtype).removeprefix("torch.")
        lines[name] = f"{dtype} {list(t.shape)} {hashed[key_of[name]]}"
        n_bytes += t.numel() * t.element_size()
    return WeightDigest(
        sha256=digest_from_lines(lines), tensors=lines, n_tensors=len(keys), n_bytes=n_bytes
    )


def digest_from_lines(lines: dict[str, str]) -> str:
    """The model digest from per-tensor lines: sha256 over ``name\tline\n`` in name order.

    Lets an edit compute the edited model's digest by rehashing only the tensors it touched.
    """
    total = hashlib.sha256()
    for name in sorted(lines):
        total.update(f"{name}\t{lines[name]}\n".encode())
    return total.hexdigest()


def aliases(model: Any, names: list[str]) -> list[str]:
    """``names`` plus every state-dict name sharing storage with one of them (tied weights)."""
    state = model.state_dict()
    ptrs = {state[n].data_ptr() for n in names if n in state}
    return sorted({n for n, t in state.items() if t.data_ptr() in ptrs} | set(names) & set(state))

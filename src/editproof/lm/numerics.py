"""CPU numerics for forward passes: subnormal floats flushed to zero, inside a scope only.

A fault that drives activations to extreme scales (``scale_explosion``, ``extreme_quant``)
fills CPU tensors with subnormal floats (below 1.2e-38), and x86 arithmetic on those is
slow: such a subject's forward passes on the demo took up to 7x longer. Inside
``flush_denormals`` they become zero. A healthy model never produces them (its per-window
numbers are bit-identical either way). The setting is process-wide in torch, so it is
switched on for the forward passes alone and switched back off after the outermost scope.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

_lock = threading.Lock()
_depth = 0


@contextmanager
def flush_denormals(device: str) -> Iterator[None]:
    global _depth
    if not device.startswith("cpu"):
        yield
        return
    import torch

    with _lock:
        _depth += 1
        if _depth == 1:
            torch.set_flush_denormal(True)
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0:
                torch.set_flush_denormal(False)

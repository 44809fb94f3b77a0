"""Matrices with a chosen spectrum, for tests of the singular-value estimators."""

from __future__ import annotations

from typing import Any


def with_spectrum(rows: int, cols: int, values: Any, gen: Any) -> Any:
    """U diag(values) Vᵀ (rows x cols, cols = len(values)) with random orthonormal U and V
    drawn from ``gen``, U first."""
    import torch

    u, _ = torch.linalg.qr(torch.randn(rows, cols, generator=gen))
    v, _ = torch.linalg.qr(torch.randn(cols, cols, generator=gen))
    return u @ torch.diag(values) @ v.T

"""Tail summary of per-window loss differences.

A mean can hide a few windows that got much worse; these numbers show how bad the worst
windows are and how much of the text (by windows and by tokens) got worse at all.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

from editproof.errors import InvalidInputError
from editproof.stats.bootstrap import _paired_deltas


def quantile_key(level: float) -> str:
    """Dictionary key for a quantile level: 0.95 → "q95", 0.999 → "q99.9"."""
    # Rounding hides binary noise such as 0.29 * 100 == 28.999999999999996.
    return f"q{round(level * 100, 6):g}"


@dataclass(frozen=True)
class TailSummary:
    """Upper-tail statistics of Δ = subject - baseline over windows."""

    n: int
    epsilon: float
    max_delta: float
    quantile_levels: tuple[float, ...]
    quantile_values: tuple[float, ...]  # unweighted, linear interpolation
    tail_mass: float  # fraction of windows with Δ > epsilon
    tail_mass_weighted: float  # fraction of tokens in such windows

    def quantile(self, level: float) -> float:
        """Value of a quantile that was requested when the summary was made."""
        for lvl, value in zip(self.quantile_levels, self.quantile_values, strict=True):
            if lvl == level:
                return value
        raise KeyError(level)

    def to_dict(self) -> dict[str, float | int]:
        out: dict[str, float | int] = {
            "n": self.n,
            "epsilon": self.epsilon,
            "max_delta": self.max_delta,
        }
        for lvl, value in zip(self.quantile_levels, self.quantile_values, strict=True):
            out[quantile_key(lvl)] = value
        out["tail_mass"] = self.tail_mass
        out["tail_mass_weighted"] = self.tail_mass_weighted
        return out


def delta_tail_summary(
    subject: ArrayLike,
    baseline: ArrayLike,
    weights: ArrayLike,
    *,
    epsilon: float = 1e-4,
    quantiles: Sequence[float] = (0.5, 0.9, 0.95, 0.99),
) -> TailSummary:
    """Summarise the upper tail of per-window Δ; weights are per-window token counts."""
    delta, w = _paired_deltas(subject, baseline, weights)
    if not (isinstance(epsilon, int | float) and math.isfinite(epsilon)):
        raise InvalidInputError(f"epsilon must be a finite number, got {epsilon!r}")
    levels = tuple(float(q) for q in quantiles)
    if not all(0.0 <= q <= 1.0 for q in levels):
        raise InvalidInputError(f"quantiles must lie in [0, 1], got {list(levels)}")
    # Distinct keys keep to_dict() lossless.
    if len({quantile_key(q) for q in levels}) != len(levels):
        raise InvalidInputError(f"quantiles must be distinct, got {list(levels)}")

    values = np.quantile(delta, levels, method="linear") if levels else np.empty(0)
    worse = delta > epsilon
    return TailSummary(
        n=int(delta.shape[0]),
        epsilon=float(epsilon),
        max_delta=float(np.max(delta)),
        quantile_levels=levels,
        quantile_values=tuple(float(v) for v in values),
        tail_mass=float(np.count_nonzero(worse) / delta.shape[0]),
        tail_mass_weighted=float(np.sum(w[worse]) / np.sum(w)),
    )

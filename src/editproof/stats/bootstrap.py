"""Paired window bootstrap of the token-weighted mean log-loss difference.

Windows are the resampling unit: a window's subject and baseline losses come from the same
text, so they are resampled together (paired) and the per-window difference carries all the
information. The statistic is a ratio of sums, Σ wΔ / Σ w, which is exactly the per-token mean
difference when ``w`` are token counts.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from statistics import NormalDist
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray

from editproof.errors import InvalidInputError

Method = Literal["bca", "percentile"]
_METHODS: tuple[str, ...] = ("bca", "percentile")

# Index-matrix cells per chunk (~2M int64 = 16 MiB): bounds memory for any input size while
# keeping each numpy call large enough to amortise its overhead.
_CHUNK_CELLS = 1 << 21
# All-equal differences within this absolute spread leave nothing to resample.
_NO_VARIATION_ATOL = 1e-12
# Keeps Φ⁻¹ finite when every replicate lies on one side of the estimate.
_Z0_CLIP = 1e-6
# Replicates within this fraction of the data's scale count as ties with the estimate, so
# rounding noise in the sums cannot flip them between "below" and "above".
_TIE_RTOL = 1e-10

_NORMAL = NormalDist()

FloatArray = NDArray[np.float64]


@dataclass(frozen=True)
class BootstrapResult:
    """Point estimate and confidence interval of the token-weighted mean Δ."""

    estimate: float
    low: float
    high: float
    method: str  # method actually used (percentile after a BCa fallback)
    requested_method: str
    replicates: int
    alpha: float
    seed: int
    n: int
    degenerate: bool
    degenerate_reason: str | None
    fallback_reason: str | None

    def to_dict(self) -> dict[str, float | int | str | bool | None]:
        return asdict(self)


def _as_1d(name: str, values: ArrayLike) -> FloatArray:
    try:
        arr = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise InvalidInputError(f"{name} must be numeric") from exc
    if arr.ndim != 1:
        raise InvalidInputError(f"{name} must be 1-D, got {arr.ndim}-D")
    if not np.all(np.isfinite(arr)):
        raise InvalidInputError(f"{name} contains non-finite values")
    return arr


def _check_weights(weights: FloatArray, n: int) -> None:
    if weights.shape[0] != n:
        raise InvalidInputError(f"weights has length {weights.shape[0]}, expected {n}")
    if np.any(weights <= 0):
        raise InvalidInputError("weights must be positive")


def weighted_mean(values: ArrayLike, weights: ArrayLike) -> float:
    """Σ w·v / Σ w for finite values and positive weights of the same non-zero length."""
    v = _as_1d("values", values)
    w = _as_1d("weights", weights)
    _check_weights(w, v.shape[0])
    if v.shape[0] == 0:
        raise InvalidInputError("cannot take the mean of zero values")
    result = float(np.dot(w, v) / np.sum(w))
    if not math.isfinite(result):
        raise InvalidInputError("weighted mean overflowed")
    return result


def _paired_deltas(
    subject: ArrayLike, baseline: ArrayLike, weights: ArrayLike
) -> tuple[FloatArray, FloatArray]:
    """Validate a paired sample and return (Δ = subject - baseline, weights)."""
    s = _as_1d("subject", subject)
    b = _as_1d("baseline", baseline)
    w = _as_1d("weights", weights)
    if s.shape[0] != b.shape[0]:
        raise InvalidInputError(
            f"subject and baseline differ in length ({s.shape[0]} vs {b.shape[0]})"
        )
    _check_weights(w, s.shape[0])
    if s.shape[0] == 0:
        raise InvalidInputError("no windows to compare")
    with np.errstate(over="ignore"):  # overflow is reported as an input error just below
        delta = s - b
    if not np.all(np.isfinite(delta)) or not math.isfinite(float(np.dot(w, delta))):
        raise InvalidInputError("loss differences overflowed")
    return delta, w


def _replicate_statistics(
    delta: FloatArray,
    weights: FloatArray,
    replicates: int,
    seed: int,
    *,
    chunk_size: int | None = None,
) -> FloatArray:
    """Ratio-of-sums statistic on ``replicates`` window resamples, drawn chunk by chunk.

    Indices come from one generator in row order; PCG64 keeps any half-used 32-bit draw in
    its own state, so splitting the rows into chunks yields the same stream as one big draw.
    """
    n = delta.shape[0]
    if chunk_size is None:
        chunk_size = max(1, _CHUNK_CELLS // n)
    rng = np.random.default_rng(seed)
    wd = weights * delta
    out = np.empty(replicates, dtype=np.float64)
    for start in range(0, replicates, chunk_size):
        stop = min(start + chunk_size, replicates)
        idx = rng.integers(0, n, size=(stop - start, n))
        out[start:stop] = wd[idx].sum(axis=1) / weights[idx].sum(axis=1)
    return out


def _acceleration(delta: FloatArray, weights: FloatArray, estimate: float) -> float | None:
    """BCa acceleration from the leave-one-out jackknife; None when undefined.

    θ_(i) - θ̂ = w_i(θ̂ - Δ_i)/(W - w_i) is algebraically equal to the textbook
    (S - w_iΔ_i)/(W - w_i) - S/W but avoids cancelling two large sums, and is O(n).
    """
    total = float(np.sum(weights))
    rest = total - weights
    if np.any(rest <= 0):
        return None
    dev = weights * (estimate - delta) / rest
    u = dev.mean() - dev  # θ̄ - θ_(i)
    den = 6.0 * math.pow(float(np.sum(u * u)), 1.5)
    num = float(np.sum(u**3))
    if den == 0.0 or not math.isfinite(den) or not math.isfinite(num):
        return None
    return num / den


def _bca_levels(
    reps: FloatArray, estimate: float, accel: float, alpha: float, scale: float
) -> tuple[float, float] | None:
    """BCa-adjusted quantile levels for the two bounds; None when they are not usable."""
    tol = _TIE_RTOL * scale
    below = np.count_nonzero(reps < estimate - tol)
    ties = np.count_nonzero(np.abs(reps - estimate) <= tol)
    frac = (below + 0.5 * ties) / reps.shape[0]
    z0 = _NORMAL.inv_cdf(min(max(frac, _Z0_CLIP), 1.0 - _Z0_CLIP))
    levels = []
    for p in (alpha / 2.0, 1.0 - alpha / 2.0):
        zz = z0 + _NORMAL.inv_cdf(p)
        denom = 1.0 - accel * zz
        # A non-positive denominator makes the level map non-monotone: the formula breaks down.
        if not denom > 0.0:
            return None
        level = _NORMAL.cdf(z0 + zz / denom)
        if not math.isfinite(level):
            return None
        levels.append(level)
    return levels[0], levels[1]


def paired_delta_bootstrap(
    subject: ArrayLike,
    baseline: ArrayLike,
    weights: ArrayLike,
    *,
    method: Method = "bca",
    replicates: int = 2000,
    alpha: float = 0.05,
    seed: int = 0,
) -> BootstrapResult:
    """Confidence interval for Σ w(subject - baseline) / Σ w by paired window bootstrap."""
    delta, w = _paired_deltas(subject, baseline, weights)
    if method not in _METHODS:
        raise InvalidInputError(f"unknown bootstrap method {method!r} (use 'bca' or 'percentile')")
    if isinstance(replicates, bool) or not isinstance(replicates, int) or replicates < 1:
        raise InvalidInputError(f"replicates must be a positive integer, got {replicates!r}")
    if not (isinstance(alpha, int | float) and 0.0 < alpha < 1.0):
        raise InvalidInputError(f"alpha must be in (0, 1), got {alpha!r}")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise InvalidInputError(f"seed must be a non-negative integer, got {seed!r}")

    n = delta.shape[0]
    estimate = float(np.dot(w, delta) / np.sum(w))

    def finish(
        low: float,
        high: float,
        used: str = method,
        degenerate_reason: str | None = None,
        fallback_reason: str | None = None,
    ) -> BootstrapResult:
        return BootstrapResult(
            estimate=estimate,
            low=low,
            high=high,
            method=used,
            requested_method=method,
            replicates=replicates,
            alpha=float(alpha),
            seed=seed,
            n=n,
            degenerate=degenerate_reason is not None,
            degenerate_reason=degenerate_reason,
            fallback_reason=fallback_reason,
        )

    # Nothing to resample: every replicate would equal the estimate (up to rounding).
    if n == 1:
        return finish(estimate, estimate, degenerate_reason="single_window")
    if float(np.ptp(delta)) <= _NO_VARIATION_ATOL:
        return finish(estimate, estimate, degenerate_reason="no_variation")

    reps = _replicate_statistics(delta, w, replicates, seed)
    levels = (alpha / 2.0, 1.0 - alpha / 2.0)
    used: str = method
    fallback: str | None = None
    if method == "bca":
        accel = _acceleration(delta, w, estimate)
        bca = None
        if accel is None:
            fallback = "acceleration_undefined"
        else:
            scale = max(float(np.max(np.abs(delta))), abs(estimate))
            bca = _bca_levels(reps, estimate, accel, alpha, scale)
            if bca is None:
                fallback = "bca_levels_not_finite"
        if bca is None:
            used = "percentile"
        else:
            levels = bca
    low, high = np.quantile(reps, levels, method="linear")
    return finish(float(low), float(high), used, fallback_reason=fallback)

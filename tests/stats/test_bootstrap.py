"""Tests for the paired window bootstrap."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats as sps

from editproof.errors import InvalidInputError
from editproof.stats import BootstrapResult, paired_delta_bootstrap, weighted_mean
from editproof.stats.bootstrap import _replicate_statistics


def _data(n: int = 80, seed: int = 1) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Skewed paired losses with varied token counts, like real windows."""
    rng = np.random.default_rng(seed)
    baseline = rng.uniform(2.0, 4.0, n)
    subject = baseline + rng.lognormal(-3.0, 1.0, n) - 0.03
    weights = rng.integers(64, 513, n).astype(float)
    return subject, baseline, weights


# --- degenerate inputs -------------------------------------------------------------------


def test_single_window_is_degenerate() -> None:
    r = paired_delta_bootstrap([3.5], [3.0], [10.0])
    assert (r.estimate, r.low, r.high) == (0.5, 0.5, 0.5)
    assert r.degenerate and r.degenerate_reason == "single_window"
    assert r.method == "bca" and r.fallback_reason is None and r.n == 1


@pytest.mark.parametrize("method", ["bca", "percentile"])
def test_all_equal_deltas_are_degenerate(method: Any) -> None:
    base = np.array([1.0, 2.0, 3.0, 4.0])
    r = paired_delta_bootstrap(base + 0.25, base, [1, 2, 3, 4], method=method)
    assert r.low == r.estimate == r.high == 0.25
    assert r.degenerate and r.degenerate_reason == "no_variation"


def test_near_equal_deltas_within_tolerance_are_degenerate() -> None:
    r = paired_delta_bootstrap([0.1, 0.1 + 1e-13, 0.1], [0, 0, 0], [1, 1, 1])
    assert r.degenerate and r.degenerate_reason == "no_variation"
    assert r.low == r.estimate == r.high


def test_small_variation_is_not_degenerate() -> None:
    r = paired_delta_bootstrap([0.0, 1e-9, 2e-9], [0, 0, 0], [1, 1, 1], replicates=200)
    assert not r.degenerate and r.degenerate_reason is None
    assert r.low < r.high


# --- validation ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "kwargs", "match"),
    [
        (([], [], []), {}, "no windows"),
        (([1.0, 2.0], [1.0], [1.0, 1.0]), {}, "length"),
        (([1.0, 2.0], [1.0, 2.0], [1.0]), {}, "length"),
        (([1.0, math.nan], [1.0, 2.0], [1.0, 1.0]), {}, "non-finite"),
        (([1.0, 2.0], [1.0, math.inf], [1.0, 1.0]), {}, "non-finite"),
        (([1.0, 2.0], [1.0, 2.0], [1.0, 0.0]), {}, "positive"),
        (([1.0, 2.0], [1.0, 2.0], [1.0, -3.0]), {}, "positive"),
        (([[1.0, 2.0]], [[1.0, 2.0]], [[1.0, 1.0]]), {}, "1-D"),
        ((["a", "b"], [1.0, 2.0], [1.0, 1.0]), {}, "numeric"),
        (([1e308, 2.0], [-1e308, 2.0], [1.0, 1.0]), {}, "overflow"),
        (([1.0, 2.0], [0.0, 0.0], [1.0, 1.0]), {"replicates": 0}, "replicates"),
        (([1.0, 2.0], [0.0, 0.0], [1.0, 1.0]), {"replicates": 2.5}, "replicates"),
        (([1.0, 2.0], [0.0, 0.0], [1.0, 1.0]), {"alpha": 0.0}, "alpha"),
        (([1.0, 2.0], [0.0, 0.0], [1.0, 1.0]), {"alpha": 1.0}, "alpha"),
        (([1.0, 2.0], [0.0, 0.0], [1.0, 1.0]), {"alpha": math.nan}, "alpha"),
        (([1.0, 2.0], [0.0, 0.0], [1.0, 1.0]), {"method": "bc"}, "method"),
        (([1.0, 2.0], [0.0, 0.0], [1.0, 1.0]), {"seed": -1}, "seed"),
    ],
)
def test_invalid_inputs(args: tuple[Any, ...], kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(InvalidInputError, match=match) as info:
        paired_delta_bootstrap(*args, **kwargs)
    assert "\n" not in str(info.value)


def test_weighted_mean_validation_and_value() -> None:
    assert weighted_mean([1.0, 3.0], [3.0, 1.0]) == pytest.approx(1.5)
    for values, weights in [([], []), ([1.0], [0.0]), ([1.0, 2.0], [1.0]), ([math.nan], [1.0])]:
        with pytest.raises(InvalidInputError):
            weighted_mean(values, weights)


# --- determinism and chunking -------------------------------------------------------------


def test_same_seed_same_result_different_seed_different_interval() -> None:
    s, b, w = _data()
    r1 = paired_delta_bootstrap(s, b, w, seed=7)
    r2 = paired_delta_bootstrap(s, b, w, seed=7)
    r3 = paired_delta_bootstrap(s, b, w, seed=8)
    assert r1 == r2
    assert r3.estimate == r1.estimate
    assert (r3.low, r3.high) != (r1.low, r1.high)


@pytest.mark.parametrize("n", [1, 5, 37])
def test_replicates_do_not_depend_on_chunk_size(n: int) -> None:
    rng = np.random.default_rng(3)
    delta = rng.normal(size=n)
    w = rng.uniform(1.0, 5.0, n)
    whole = _replicate_statistics(delta, w, 301, seed=11, chunk_size=301)
    for chunk in (1, 2, 7, 64, 1000):
        np.testing.assert_array_equal(
            _replicate_statistics(delta, w, 301, seed=11, chunk_size=chunk), whole
        )
    np.testing.assert_array_equal(_replicate_statistics(delta, w, 301, seed=11), whole)


def test_replicates_match_explicit_resampling() -> None:
    """Each replicate is the ratio of sums over one uniform resample of whole windows."""
    delta = np.array([0.5, -1.0, 2.0, 0.25])
    w = np.array([10.0, 20.0, 5.0, 1.0])
    reps = _replicate_statistics(delta, w, 50, seed=4, chunk_size=3)
    idx = np.random.default_rng(4).integers(0, 4, size=(50, 4))
    expected = [(w[i] * delta[i]).sum() / w[i].sum() for i in idx]
    np.testing.assert_allclose(reps, expected, rtol=1e-14)


# --- equivariance, nesting, weights -------------------------------------------------------


@pytest.mark.parametrize("method", ["bca", "percentile"])
@pytest.mark.parametrize("shift", [0.3, -2.0, 7.5])
def test_shift_moves_estimate_and_bounds(method: Any, shift: float) -> None:
    s, b, w = _data()
    r0 = paired_delta_bootstrap(s, b, w, method=method, seed=5)
    r1 = paired_delta_bootstrap(s + shift, b, w, method=method, seed=5)
    tol = 1e-12 * (1.0 + abs(shift) + float(np.max(np.abs(s - b))))
    assert r1.estimate == pytest.approx(r0.estimate + shift, abs=tol)
    assert r1.low == pytest.approx(r0.low + shift, abs=tol)
    assert r1.high == pytest.approx(r0.high + shift, abs=tol)
    assert r1.method == r0.method == method


@pytest.mark.parametrize("method", ["bca", "percentile"])
def test_interval_contains_estimate_and_larger_alpha_is_narrower(method: Any) -> None:
    s, b, w = _data()
    wide = paired_delta_bootstrap(s, b, w, method=method, alpha=0.05)
    narrow = paired_delta_bootstrap(s, b, w, method=method, alpha=0.3)
    assert wide.low < wide.estimate < wide.high
    assert wide.low < narrow.low < narrow.high < wide.high
    assert wide.fallback_reason is None and wide.method == method


def test_estimate_is_ratio_of_sums() -> None:
    s, b, w = _data()
    r = paired_delta_bootstrap(s, b, w, method="percentile", replicates=10)
    assert r.estimate == pytest.approx(np.sum(w * (s - b)) / np.sum(w), rel=1e-13)
    assert r.estimate != pytest.approx(np.mean(s - b), rel=1e-6)


def test_heavy_window_pulls_estimate_and_interval() -> None:
    delta = np.array([0.0, 0.1, -0.1, 0.05, 10.0])
    light = paired_delta_bootstrap(delta, np.zeros(5), np.ones(5))
    heavy = paired_delta_bootstrap(delta, np.zeros(5), [1.0, 1.0, 1.0, 1.0, 1e6])
    assert light.estimate == pytest.approx(np.mean(delta))
    assert heavy.estimate > 9.99
    assert heavy.high > light.high


# --- agreement with scipy -----------------------------------------------------------------


def _scipy_interval(data: tuple[np.ndarray, ...], statistic: Any, method: str) -> tuple[float, ...]:
    res = sps.bootstrap(
        data,
        statistic,
        paired=len(data) > 1,
        vectorized=True,
        n_resamples=20_000,
        confidence_level=0.95,
        method=method,
        rng=np.random.default_rng(123),
    )
    return float(res.confidence_interval.low), float(res.confidence_interval.high)


def _assert_close(ours: BootstrapResult, theirs: tuple[float, ...]) -> None:
    width = ours.high - ours.low
    assert abs(ours.low - theirs[0]) < 0.05 * width
    assert abs(ours.high - theirs[1]) < 0.05 * width


@pytest.mark.parametrize(("method", "scipy_method"), [("bca", "BCa"), ("percentile", "percentile")])
def test_matches_scipy_unweighted(method: Any, scipy_method: str) -> None:
    rng = np.random.default_rng(2024)
    delta = rng.lognormal(0.0, 1.0, 100)  # strongly right-skewed, so BCa != percentile
    ours = paired_delta_bootstrap(
        delta, np.zeros(100), np.ones(100), method=method, replicates=20_000, seed=9
    )
    assert ours.method == method
    _assert_close(ours, _scipy_interval((delta,), np.mean, scipy_method))


def test_matches_scipy_weighted_paired_bca() -> None:
    """scipy's paired BCa with a ratio-of-sums statistic uses the same weighted jackknife."""
    rng = np.random.default_rng(77)
    delta = rng.lognormal(0.0, 1.0, 100)
    w = rng.integers(1, 300, 100).astype(float)

    def ratio(d: np.ndarray, ww: np.ndarray, axis: int = -1) -> np.ndarray:
        return np.sum(d * ww, axis=axis) / np.sum(ww, axis=axis)

    ours = paired_delta_bootstrap(delta, np.zeros(100), w, replicates=20_000, seed=9)
    unweighted = paired_delta_bootstrap(delta, np.zeros(100), np.ones(100), replicates=2000)
    assert ours.estimate != pytest.approx(unweighted.estimate, rel=1e-3)
    _assert_close(ours, _scipy_interval((delta, w), ratio, "BCa"))


# --- properties ---------------------------------------------------------------------------

_finite = st.floats(-5.0, 5.0, allow_nan=False, allow_infinity=False)


@st.composite
def _paired(draw: st.DrawFn) -> tuple[list[float], list[float], list[float]]:
    n = draw(st.integers(1, 25))
    subject = draw(st.lists(_finite, min_size=n, max_size=n))
    # Often reuse the subject shifted by a constant, so all-equal deltas actually occur.
    if draw(st.booleans()):
        c = draw(_finite)
        baseline = [x - c for x in subject]
    else:
        baseline = draw(st.lists(_finite, min_size=n, max_size=n))
    weights = draw(st.lists(st.floats(0.5, 1000.0), min_size=n, max_size=n))
    return subject, baseline, weights


@settings(max_examples=50, deadline=None)
@given(data=_paired(), method=st.sampled_from(["bca", "percentile"]), alpha=st.floats(0.01, 0.5))
def test_property_bounds_ordered_and_degenerate_iff_constant(
    data: tuple[list[float], list[float], list[float]], method: Any, alpha: float
) -> None:
    s, b, w = data
    r = paired_delta_bootstrap(s, b, w, method=method, alpha=alpha, replicates=100)
    delta = np.asarray(s) - np.asarray(b)
    assert r.low <= r.high
    assert all(math.isfinite(x) for x in (r.low, r.estimate, r.high))
    assert r.degenerate == (len(s) == 1 or float(np.ptp(delta)) <= 1e-12)
    if r.degenerate:
        assert r.low == r.estimate == r.high
    # The statistic is a weighted mean, so every replicate (hence every bound) lies in range.
    slack = 1e-9 * (1.0 + float(np.max(np.abs(delta))))
    assert delta.min() - slack <= r.low and r.high <= delta.max() + slack


def test_to_dict_round_trips_fields() -> None:
    s, b, w = _data(n=20)
    r = paired_delta_bootstrap(s, b, w, replicates=50)
    d = r.to_dict()
    assert BootstrapResult(**d) == r  # type: ignore[arg-type]
    assert d["requested_method"] == "bca" and d["replicates"] == 50


# --- BCa fallback -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("accel", "reason"), [(None, "acceleration_undefined"), (50.0, "bca_levels_not_finite")]
)
def test_bca_falls_back_to_percentile(
    monkeypatch: pytest.MonkeyPatch, accel: float | None, reason: str
) -> None:
    import editproof.stats.bootstrap as mod

    s, b, w = _data()
    percentile = paired_delta_bootstrap(s, b, w, method="percentile")
    monkeypatch.setattr(mod, "_acceleration", lambda *_: accel)
    r = paired_delta_bootstrap(s, b, w, method="bca")
    assert r.method == "percentile" and r.requested_method == "bca"
    assert r.fallback_reason == reason
    assert (r.low, r.high) == (percentile.low, percentile.high)

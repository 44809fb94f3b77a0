"""Tests for the per-window tail summary."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

from editproof.errors import InvalidInputError
from editproof.stats import delta_tail_summary, quantile_key


def test_hand_computed_summary() -> None:
    base = np.zeros(5)
    subject = np.array([-0.2, 0.0, 0.00005, 0.3, 1.0])
    weights = np.array([10.0, 10.0, 10.0, 30.0, 40.0])
    t = delta_tail_summary(subject, base, weights, quantiles=(0.5, 0.75, 1.0))
    assert t.n == 5 and t.max_delta == 1.0
    assert t.quantile_values == pytest.approx((0.00005, 0.3, 1.0))
    assert t.quantile(0.75) == pytest.approx(0.3)
    assert t.tail_mass == pytest.approx(2 / 5)  # 0.00005 is below the default epsilon
    assert t.tail_mass_weighted == pytest.approx(70 / 100)


def test_quantiles_are_unweighted_linear() -> None:
    rng = np.random.default_rng(0)
    delta = rng.normal(size=101)
    w = rng.uniform(1, 100, 101)
    t = delta_tail_summary(delta, np.zeros(101), w)
    expected = np.quantile(delta, [0.5, 0.9, 0.95, 0.99], method="linear")
    np.testing.assert_allclose(t.quantile_values, expected, rtol=0, atol=0)


def test_epsilon_threshold_is_strict() -> None:
    t = delta_tail_summary([0.1, 0.2], [0.0, 0.0], [1.0, 3.0], epsilon=0.1)
    assert t.tail_mass == 0.5 and t.tail_mass_weighted == 0.75
    none = delta_tail_summary([0.1, 0.2], [0.0, 0.0], [1.0, 3.0], epsilon=0.2)
    assert none.tail_mass == 0.0 and none.tail_mass_weighted == 0.0


def test_to_dict_keys() -> None:
    t = delta_tail_summary([0.0, 1.0, 2.0], [0.0, 0.0, 0.0], [1.0, 1.0, 1.0])
    d = t.to_dict()
    assert list(d) == [
        "n",
        "epsilon",
        "max_delta",
        "q50",
        "q90",
        "q95",
        "q99",
        "tail_mass",
        "tail_mass_weighted",
    ]
    assert d["q50"] == 1.0 and d["max_delta"] == 2.0 and d["n"] == 3


@pytest.mark.parametrize(
    ("level", "key"), [(0.5, "q50"), (0.95, "q95"), (0.999, "q99.9"), (0.29, "q29"), (1.0, "q100")]
)
def test_quantile_key(level: float, key: str) -> None:
    assert quantile_key(level) == key


def test_missing_quantile_raises_key_error() -> None:
    t = delta_tail_summary([0.0, 1.0], [0.0, 0.0], [1.0, 1.0], quantiles=(0.5,))
    with pytest.raises(KeyError):
        t.quantile(0.9)


@pytest.mark.parametrize(
    ("args", "kwargs", "match"),
    [
        (([], [], []), {}, "no windows"),
        (([1.0], [1.0, 2.0], [1.0]), {}, "length"),
        (([1.0], [math.nan], [1.0]), {}, "non-finite"),
        (([1.0], [0.0], [0.0]), {}, "positive"),
        (([1.0], [0.0], [1.0]), {"epsilon": math.inf}, "epsilon"),
        (([1.0], [0.0], [1.0]), {"quantiles": (0.5, 1.5)}, r"\[0, 1\]"),
        (([1.0], [0.0], [1.0]), {"quantiles": (0.5, 0.5)}, "distinct"),
    ],
)
def test_invalid_inputs(args: tuple[Any, ...], kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(InvalidInputError, match=match):
        delta_tail_summary(*args, **kwargs)

from __future__ import annotations

import pytest
from pydantic import ValidationError

from editproof.errors import UsageError
from editproof.policy import TIER_NAMES, load_tier, policy_digest


@pytest.mark.parametrize(
    ("name", "limit", "floor", "reps", "coverage"),
    [
        ("balanced", 1.10, 50000, 1200, 180),
        ("conservative", 1.05, 20000, 1500, 220),
        ("aggressive", 1.20, 50000, 800, 140),
    ],
)
def test_reference_values(name: str, limit: float, floor: int, reps: int, coverage: int) -> None:
    tier = load_tier(name)
    assert tier.ratio_limit == limit and tier.min_tokens == floor
    assert tier.hysteresis == 0.002 and tier.drift_band == (0.95, 1.05)
    assert tier.bootstrap.replicates == reps and tier.coverage.final == coverage


def test_all_tiers_load_and_digests_differ() -> None:
    digests = {load_tier(n).digest() for n in TIER_NAMES}
    assert len(digests) == len(TIER_NAMES)
    assert all(len(d) == 16 for d in digests)


def test_digest_is_canonical() -> None:
    assert policy_digest({"a": 1, "b": [1, 2]}) == policy_digest({"b": [1, 2], "a": 1})
    tier = load_tier("balanced")
    changed = tier.model_copy(update={"ratio_limit": 1.11})
    assert changed.digest() != tier.digest()


def test_unknown_tier() -> None:
    with pytest.raises(UsageError, match="balanced, conservative, aggressive"):
        load_tier("lenient")


def test_policy_validation() -> None:
    data = load_tier("balanced").model_dump()
    data["drift_band"] = (1.02, 1.05)
    with pytest.raises(ValidationError):
        type(load_tier("balanced")).model_validate(data)
    tier = load_tier("balanced")
    with pytest.raises(ValidationError):
        tier.ratio_limit = 2.0  # type: ignore[misc]

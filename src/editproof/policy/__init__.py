"""Policies: packaged tiers and the digest that pins which thresholds judged a run."""

from editproof.policy.guards import (
    GuardPolicies,
    InvariantsPolicy,
    RmtPolicy,
    SpectralPolicy,
    VariancePolicy,
)
from editproof.policy.tiers import (
    TIER_NAMES,
    BootstrapPolicy,
    CoveragePolicy,
    TailPolicy,
    TierPolicy,
    load_tier,
    policy_digest,
)

__all__ = [
    "TIER_NAMES",
    "BootstrapPolicy",
    "CoveragePolicy",
    "GuardPolicies",
    "InvariantsPolicy",
    "RmtPolicy",
    "SpectralPolicy",
    "TailPolicy",
    "TierPolicy",
    "VariancePolicy",
    "load_tier",
    "policy_digest",
]

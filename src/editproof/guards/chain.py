"""Run the guard chain: baseline signatures once, then each subject judged against them.

Order: invariants, spectral, rmt, variance. Every guard measures the subject while it is
live (edits are still applied), compares with the cached baseline signature, and variance
additionally A/B-tests its proposed scales on the live subject through hooks that are always
removed. Probe scenarios also get their sidecar evidence (``rmt_probe`` / ``ve_probe``).
"""

from __future__ import annotations

import time
from typing import Any

from editproof.guards.base import Guard, MeasureContext, Signature
from editproof.guards.invariants import InvariantsGuard
from editproof.guards.probes import rmt_probe, ve_probe
from editproof.guards.rmt import RmtGuard
from editproof.guards.spectral import SpectralGuard
from editproof.guards.variance import VarianceGuard
from editproof.policy import GuardPolicies
from editproof.report.derive import guards_status
from editproof.report.model import GuardResult, GuardsSection

GUARD_ORDER = ("invariants", "spectral", "rmt", "variance")
# Probe edits and the sidecar each one produces: name -> (guard, builder).
PROBE_SIDECARS = {
    "rmt_norm_noise": ("rmt", "rmt_probe"),
    "ve_mlp_scale_skew": ("variance", "ve_probe"),
}


def default_guards() -> list[Guard]:
    return [InvariantsGuard(), SpectralGuard(), RmtGuard(), VarianceGuard()]


def _policy(policies: GuardPolicies, name: str) -> dict[str, Any]:
    policy: dict[str, Any] = getattr(policies, name).model_dump(mode="json")
    return policy


def measure_all(
    model: Any, ctx: MeasureContext, policies: GuardPolicies, guards: list[Guard] | None = None
) -> dict[str, Signature]:
    """Signatures of every guard on ``model`` (the baseline's are cached by the caller)."""
    return {
        g.name: g.measure(model, ctx, _policy(policies, g.name)) for g in guards or default_guards()
    }


def judge_all(
    model: Any,
    ctx: MeasureContext,
    policies: GuardPolicies,
    baseline: dict[str, Signature],
    *,
    probe: str | None = None,
    guards: list[Guard] | None = None,
) -> GuardsSection:
    """Measure the live subject and compare every guard with the baseline's signature."""
    results: list[GuardResult] = []
    probes: dict[str, dict[str, Any]] = {}
    for guard in guards or default_guards():
        policy = _policy(policies, guard.name)
        started = time.perf_counter()
        subject = guard.measure(model, ctx, policy)
        result = guard.compare(baseline[guard.name], subject, policy)
        if isinstance(guard, VarianceGuard):
            proposals: dict[str, float] = result.details.get("proposals", {})
            if proposals:
                result = guard.with_ab(result, guard.ab_test(model, ctx, proposals, policy))
        result = result.model_copy(update={"seconds": time.perf_counter() - started})
        results.append(result)
        sidecar = PROBE_SIDECARS.get(probe or "")
        if sidecar and sidecar[0] == guard.name:
            build = rmt_probe if sidecar[1] == "rmt_probe" else ve_probe
            probes[sidecar[1]] = build(baseline[guard.name], subject, result)
    status = guards_status(results)
    return GuardsSection(status=status, results=results, probes=probes)

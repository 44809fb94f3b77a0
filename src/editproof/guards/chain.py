"""Run the guard chain: baseline signatures once, then each subject judged against them.

Order: invariants, spectral, rmt, variance. Every guard measures the subject while it is
live (edits are still applied), compares with the cached baseline signature, and variance
additionally A/B-tests its proposed scales on the live subject through hooks that are always
removed. Probe scenarios also get their sidecar evidence (``rmt_probe`` / ``ve_probe``).

The activation guards (those with a ``tap`` method: rmt and variance) read one forward pass
per distinct window sample between them (:mod:`._activations`); with the tiers' equal
window counts that is a single pass for both.
"""

from __future__ import annotations

import time
from typing import Any

from editproof.guards._activations import ActivationTap, run_taps
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


def warm_libraries(device: str, dtype: str | None = None) -> None:
    """Load now what the guards' first measurement on ``device`` would otherwise load on the
    critical path, so that a caller can do it on a thread beside other GPU work; elsewhere
    than CUDA nothing.

    On CUDA: cuSOLVER and its handle (the spectral guard's ``eigvalsh``: 0.16 s of the first
    baseline measurement on an H200) through both of the solvers it reaches (one matrix,
    ``syevd``; a batch of small ones, ``syevjBatched``), and the kernels of each guard's
    arithmetic, run on small tensors of the weights' ``dtype`` (a torch dtype's name;
    bfloat16 when not given or not a floating type): the spectral guard's Lanczos steps,
    the RMT guard's token-space products and iterations, the variance guard's statistics.
    No model is touched (no hook, no forward) and no random generator is drawn from, so it
    can run beside a measurement.
    """
    if not device.startswith("cuda"):
        return
    import torch

    from editproof.guards._edge_risk import EdgeRiskSums
    from editproof.guards._spectral_measure import matrix_stats
    from editproof.guards.variance import energy_stats

    named = getattr(torch, dtype or "", None)
    half = named if isinstance(named, torch.dtype) and named.is_floating_point else torch.bfloat16
    with torch.no_grad():
        eye = torch.eye(2, device=device)
        torch.linalg.eigvalsh(eye.unsqueeze(0))
        torch.linalg.eigvalsh(eye.expand(2, 2, 2).contiguous())
        ramp = torch.linspace(-1.0, 1.0, 2 * 48 * 32, device=device).view(2, 48, 32)
        weights = torch.sin(ramp * 7.0).to(half)
        matrix_stats(weights, torch.cos(ramp[:, 0, :]), 10)
        act = torch.sin(ramp * 3.0).to(half)
        mask = torch.ones(2, 48, dtype=torch.bool, device=device)
        sums = EdgeRiskSums(10, 0)
        sums.add("warm", act, mask)
        sums.totals()
        energy_stats({"warm": [(act.float().square().mean(dim=-1), mask)]})


def _policy(policies: GuardPolicies, name: str) -> dict[str, Any]:
    policy: dict[str, Any] = getattr(policies, name).model_dump(mode="json")
    return policy


def measure_all(
    model: Any, ctx: MeasureContext, policies: GuardPolicies, guards: list[Guard] | None = None
) -> dict[str, Signature]:
    """Signatures of every guard on ``model`` (the baseline's are cached by the caller)."""
    return _measure(model, ctx, policies, guards or default_guards())


def _measure(
    model: Any, ctx: MeasureContext, policies: GuardPolicies, guards: list[Guard]
) -> dict[str, Signature]:
    """Each guard's signature, in guard order; the taps of the activation guards share
    their forward passes."""
    found: dict[str, Signature] = {}
    taps: list[ActivationTap] = []
    for guard in guards:
        tap = getattr(guard, "tap", None)
        if tap is None:
            found[guard.name] = guard.measure(model, ctx, _policy(policies, guard.name))
            continue
        got: ActivationTap | Signature = tap(model, ctx, _policy(policies, guard.name))
        if isinstance(got, Signature):
            found[guard.name] = got
        else:
            taps.append(got)
    for tap_, signature in zip(taps, run_taps(model, ctx, taps), strict=True):
        found[tap_.guard] = signature
    return {g.name: found[g.name] for g in guards}


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
    chosen = guards or default_guards()
    signatures = _measure(model, ctx, policies, chosen)
    for guard in chosen:
        policy = _policy(policies, guard.name)
        started = time.perf_counter()
        subject = signatures[guard.name]
        result = guard.compare(baseline[guard.name], subject, policy)
        if isinstance(guard, VarianceGuard):
            proposals: dict[str, float] = result.details.get("proposals", {})
            if proposals:
                result = guard.with_ab(result, guard.ab_test(model, ctx, proposals, policy))
        # Its measuring (a share of any pass it shared) plus comparing and any A/B test.
        seconds = subject.seconds + time.perf_counter() - started
        result = result.model_copy(update={"seconds": seconds})
        results.append(result)
        sidecar = PROBE_SIDECARS.get(probe or "")
        if sidecar and sidecar[0] == guard.name:
            build = rmt_probe if sidecar[1] == "rmt_probe" else ve_probe
            probes[sidecar[1]] = build(baseline[guard.name], subject, result)
    status = guards_status(results)
    return GuardsSection(status=status, results=results, probes=probes)

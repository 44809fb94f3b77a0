"""Variance guard (informational): would rescaling residual branches undo the edit's drift?

``measure`` records mean(y²) of every decoder layer's attn/ffn branch output on the
calibration windows (the first ``policy.windows`` of the evaluation: the preview set comes
first). ``compare`` proposes alpha = √(var_base / var_subject) per branch (clamped, deadbanded,
capped) without needing a model. ``ab_test`` then checks on the subject whether the proposed
scales actually lower the paired per-window loss; the scales live only in forward hooks that
are removed in a ``finally``, so the subject's weights are never touched. Unlike the
reference, which may enable the correction, this guard only reports what it would do.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from typing import Any

import numpy as np

from editproof.errors import EditproofError
from editproof.guards._branches import (
    Branch,
    hooked,
    residual_branches,
    run_windows,
    scaled,
    window_hashes,
)
from editproof.guards.base import MeasureContext, Signature, contract_mismatch
from editproof.measure.nll import measure_nll
from editproof.policy.guards import VariancePolicy
from editproof.report.model import GuardResult
from editproof.stats import paired_delta_bootstrap


def _policy(policy: VariancePolicy | Mapping[str, Any]) -> VariancePolicy:
    return policy if isinstance(policy, VariancePolicy) else VariancePolicy.model_validate(policy)


def calibration_indices(n_windows: int, policy: VariancePolicy) -> list[int]:
    return list(range(min(policy.windows, n_windows)))


def propose_scales(
    base: Mapping[str, float | None], subject: Mapping[str, float | None], policy: VariancePolicy
) -> dict[str, float]:
    """alpha per branch restoring the baseline's output variance, largest |alpha - 1| first.

    Branches with a non-finite or zero variance on either side get no proposal: no finite
    scale restores a dead or exploded branch.
    """
    low, high = policy.clamp
    found: list[tuple[float, str, float]] = []
    for name, vb in base.items():
        vs = subject.get(name)
        if vb is None or vs is None or not (vb > 0 and vs > 0):
            continue
        if not (math.isfinite(vb) and math.isfinite(vs)):
            continue
        alpha = min(max(math.sqrt(vb / vs), low), high)
        if abs(alpha - 1.0) >= policy.deadband:
            found.append((-abs(alpha - 1.0), name, alpha))
    found.sort()
    if policy.max_adjusted_modules:
        found = found[: policy.max_adjusted_modules]
    return {name: alpha for _, name, alpha in found}


def ab_decision(ci_low: float, ci_high: float, gain: float, min_effect: float) -> tuple[bool, str]:
    """Enable iff the loss change's CI lies wholly on the improving side and gain ≥ min_effect."""
    if ci_high < 0:
        return (True, "ci_gain_met") if gain >= min_effect else (False, "gain_below_threshold")
    return False, "regression_detected" if ci_low > 0 else "ci_contains_zero"


class VarianceGuard:
    name = "variance"

    def measure(
        self, model: Any, ctx: MeasureContext, policy: VariancePolicy | Mapping[str, Any]
    ) -> Signature:
        started = time.perf_counter()
        pol = _policy(policy)
        indices = calibration_indices(len(ctx.windows), pol)
        sample = [list(ctx.windows[i]) for i in indices]
        branches = residual_branches(model)
        sq: dict[str, float] = {}
        count: dict[str, float] = {}

        def on_output(branch: Branch, out: Any, mask: Any) -> None:
            y = out.float()[mask]  # valid tokens x features
            # float64 sums: thousands of tokens x hidden would lose digits in fp32.
            sq[branch.name] = sq.get(branch.name, 0.0) + float(y.double().square().sum())
            count[branch.name] = count.get(branch.name, 0.0) + float(y.numel())

        with hooked(branches, on_output) as set_mask:
            run_windows(
                model, sample, batch_size=ctx.batch_size, device=ctx.device, set_mask=set_mask
            )
        data = {
            "branches": {
                b.name: {
                    "family": b.family,
                    "layer": b.layer,
                    "mean_sq": _json_float(sq[b.name] / count[b.name]),
                }
                for b in branches
                if count.get(b.name)
            },
            "device": ctx.device,
        }
        contract = {
            "statistic": "mean(y^2) of residual-branch outputs over calibration tokens",
            "calibration": {
                "policy": "first",
                "of": len(ctx.windows),
                "indices": indices,
                "token_hashes": window_hashes(sample),
            },
        }
        return Signature(
            guard=self.name, contract=contract, data=data, seconds=time.perf_counter() - started
        )

    def compare(
        self,
        baseline: Signature,
        subject: Signature,
        policy: VariancePolicy | Mapping[str, Any],
    ) -> GuardResult:
        mismatch = contract_mismatch(self.name, baseline, subject)
        if mismatch is not None:
            # Informational guard: a mismatch is worth a warning, never a failed run.
            return mismatch.model_copy(update={"status": "warn", "enforced": False})
        pol = _policy(policy)
        base = {n: b["mean_sq"] for n, b in baseline.data["branches"].items()}
        subj = {n: b["mean_sq"] for n, b in subject.data["branches"].items()}
        proposals = propose_scales(base, subj, pol)
        low, high = pol.clamp
        return GuardResult(
            name=self.name,
            status="pass",
            enforced=False,
            measured={"proposed_scales": float(len(proposals))},
            thresholds={
                "deadband": pol.deadband,
                "clamp_low": low,
                "clamp_high": high,
                "min_effect": pol.min_effect,
                "max_adjusted_modules": float(pol.max_adjusted_modules),
            },
            seconds=subject.seconds,
            contract_digest=subject.contract_digest,
            details={
                "proposals": proposals,
                "variance": {
                    n: {"base": base[n], "subject": subj.get(n)} for n in sorted(proposals)
                },
                "calibration": subject.contract["calibration"],
            },
        )

    def ab_test(
        self,
        model: Any,
        ctx: MeasureContext,
        proposed: Mapping[str, float],
        policy: VariancePolicy | Mapping[str, Any],
    ) -> dict[str, Any]:
        """Paired A/B of per-window NLL on the calibration windows, scales off (A) / on (B).

        Returns a JSON-able dict; ``ok`` is False (with ``error``) when the test could not
        run (non-finite losses, device errors). The model is unchanged either way.
        """
        started = time.perf_counter()
        pol = _policy(policy)
        indices = calibration_indices(len(ctx.windows), pol)
        sample = [list(ctx.windows[i]) for i in indices]
        # One-sided gate: the upper bound of a (1 - 2alpha) two-sided interval is a (1 - alpha)
        # one-sided bound; the two-sided gate uses the (1 - alpha) interval as it is.
        level = 2 * pol.alpha if pol.one_sided and pol.alpha < 0.5 else pol.alpha
        out: dict[str, Any] = {
            "ok": True,
            "scales": dict(proposed),
            "window_indices": indices,
            "token_hashes": window_hashes(sample),
            "seed": ctx.seed,
            "one_sided": pol.one_sided,
            "ci_alpha": level,
        }
        if not proposed:
            return {**out, "would_enable": False, "reason": "no_scales", "seconds": 0.0}
        try:
            branches = residual_branches(model)
            a = measure_nll(model, sample, batch_size=ctx.batch_size, device=ctx.device)
            with scaled(branches, dict(proposed)):
                b = measure_nll(model, sample, batch_size=ctx.batch_size, device=ctx.device)
            boot = paired_delta_bootstrap(
                b.mean_nll,
                a.mean_nll,
                a.token_counts,
                replicates=pol.replicates,
                alpha=level,
                seed=ctx.seed,
            )
        except (EditproofError, RuntimeError, ValueError) as exc:
            # torch device/OOM errors are RuntimeErrors; non-finite losses InvalidInputError.
            return {
                **out,
                "ok": False,
                "error": f"{type(exc).__name__}: {exc}",
                "would_enable": False,
                "reason": "ab_failed",
                "seconds": time.perf_counter() - started,
            }
        gain = -boot.estimate
        enable, reason = ab_decision(boot.low, boot.high, gain, pol.min_effect)
        return {
            **out,
            "ppl_a": _ppl(a.mean_nll, a.token_counts),
            "ppl_b": _ppl(b.mean_nll, b.token_counts),
            "mean_delta": boot.estimate,
            "gain": gain,
            "ci_low": boot.low,
            "ci_high": boot.high,
            "would_enable": enable,
            "reason": reason,
            "bootstrap": boot.to_dict(),
            "seconds": time.perf_counter() - started,
        }

    def with_ab(self, result: GuardResult, ab: Mapping[str, Any]) -> GuardResult:
        """``result`` from :meth:`compare` completed with an :meth:`ab_test` outcome."""
        measured = dict(result.measured)
        for key in ("gain", "ci_low", "ci_high"):
            value = ab.get(key)
            if isinstance(value, float) and math.isfinite(value):
                measured[key] = value
        measured["would_enable"] = 1.0 if ab.get("would_enable") else 0.0
        failed = not ab.get("ok", False)
        violations = [*result.violations]
        if failed:
            violations.append(f"A/B test could not run: {ab.get('error', 'unknown error')}")
        return result.model_copy(
            update={
                "status": "warn" if failed else result.status,
                "measured": measured,
                "violations": violations,
                "seconds": result.seconds + float(ab.get("seconds", 0.0)),
                "details": {**result.details, "ab": dict(ab)},
            }
        )


def _ppl(nll: Any, tokens: Any) -> float | None:
    mean = float(np.dot(nll, tokens) / np.sum(tokens))
    return math.exp(mean) if mean < 700 else None  # exp overflows float64 past ~709


def _json_float(value: float) -> float | None:
    return value if math.isfinite(value) else None

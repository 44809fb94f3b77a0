"""Variance guard (informational): would rescaling residual branches undo the edit's drift?

``measure`` records, for every decoder layer's attn/ffn branch output on the calibration
windows (``policy.windows`` evenly spaced over the evaluation, the RMT guard's sample, so
both read one shared forward pass: :mod:`._activations`), the
*typical token's* energy: the median over tokens of the token's mean(y²) over features
(``median_sq``), and for reference the plain mean(y²) (``mean_sq``). ``compare`` proposes
alpha = √(median_base / median_subject) per branch (clamped, deadbanded, capped) without
needing a model. The median, not the mean: a few attention-sink tokens (each window's first
token, some delimiters) carry outputs hundreds of times larger than the rest, so mean(y²) of
a deep branch moved by 10-25 % under clean 5-bit, fp8 and 15 %-prune edits, as much as a
0.9 x scaled down projection moves its own branch, and every clean edit got a proposal.
``ab_test`` then checks on the subject whether the proposed scales actually lower the paired
per-window loss; the scales live only in forward hooks that are removed in a ``finally``, so
the subject's weights are never touched. Unlike the reference, which may enable the
correction, this guard only reports what it would do.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from typing import Any

import numpy as np

from editproof.errors import EditproofError
from editproof.guards._activations import ActivationTap, measured
from editproof.guards._branches import (
    Branch,
    pick_evenly,
    residual_branches,
    scaled,
    unchanged_baseline,
    window_hashes,
)
from editproof.guards.base import MeasureContext, Signature, contract_mismatch
from editproof.measure.nll import WindowNLL, measure_nll
from editproof.policy.guards import VariancePolicy
from editproof.report.model import GuardResult
from editproof.stats import paired_delta_bootstrap


def _policy(policy: VariancePolicy | Mapping[str, Any]) -> VariancePolicy:
    return policy if isinstance(policy, VariancePolicy) else VariancePolicy.model_validate(policy)


def calibration_indices(n_windows: int, policy: VariancePolicy) -> list[int]:
    """Evenly spaced over the evaluation, as the RMT guard picks its sample: with equal
    window counts the two guards read one shared activation pass."""
    return pick_evenly(n_windows, policy.windows)


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


def max_deviation(
    base: Mapping[str, float | None], subject: Mapping[str, float | None], policy: VariancePolicy
) -> float:
    """The largest |alpha - 1| over the branches (clamped alpha, no deadband, no cap)."""
    loose = policy.model_copy(update={"deadband": 0.0, "max_adjusted_modules": 0})
    return max((abs(a - 1.0) for a in propose_scales(base, subject, loose).values()), default=0.0)


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
        return measured(model, ctx, self.tap(model, ctx, policy))

    def tap(
        self, model: Any, ctx: MeasureContext, policy: VariancePolicy | Mapping[str, Any]
    ) -> ActivationTap | Signature:
        """This guard's share of an activation pass (:mod:`._activations`), or the
        baseline's signature when the subject is bit-identical to it."""
        started = time.perf_counter()
        pol = _policy(policy)
        indices = calibration_indices(len(ctx.windows), pol)
        sample = [list(ctx.windows[i]) for i in indices]
        contract = {
            "statistic": (
                "per residual branch: median over calibration tokens of the token's mean(y^2) "
                "over features (linear interpolation); mean(y^2) over all tokens for reference"
            ),
            "calibration": {
                "policy": "evenly_spaced",
                "of": len(ctx.windows),
                "indices": indices,
                "token_hashes": window_hashes(sample),
            },
            "version": 3,
        }
        same = unchanged_baseline(ctx, self.name, contract)
        if same is not None:
            return same.model_copy(update={"seconds": time.perf_counter() - started})
        branches = residual_branches(model)
        per_token: dict[str, list[tuple[Any, Any]]] = {}

        def on_output(branch: Branch, out: Any, mask: Any) -> None:
            # Each token's mean square over features (fp32 over d), kept on the device with
            # the batch's mask: selecting the valid tokens now would stall the GPU per branch.
            energy = out.float().square().mean(dim=-1)
            per_token.setdefault(branch.name, []).append((energy, mask))

        def finish() -> Signature:
            return _signature(ctx, contract, branches, per_token)

        return ActivationTap(self.name, tuple(indices), branches, on_output, finish, started)

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
        base = {n: b["median_sq"] for n, b in baseline.data["branches"].items()}
        subj = {n: b["median_sq"] for n, b in subject.data["branches"].items()}
        proposals = propose_scales(base, subj, pol)
        low, high = pol.clamp
        # The largest |alpha - 1| before the deadband: how close the edit came to a proposal.
        deviation = max_deviation(base, subj, pol)
        return GuardResult(
            name=self.name,
            status="pass",
            enforced=False,
            measured={"proposed_scales": float(len(proposals)), "max_scale_deviation": deviation},
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
            # Arm A is the subject as it is: the evaluator has measured exactly that on these
            # windows already (``ctx.subject_nll``); only arm B needs a forward pass.
            a = _measured_arm(ctx, indices)
            out["a_reused"] = a is not None
            if a is None:
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


def _signature(
    ctx: MeasureContext,
    contract: dict[str, Any],
    branches: list[Branch],
    per_token: dict[str, list[tuple[Any, Any]]],
) -> Signature:
    """Mean and median of each branch's per-token energies (one transfer per device)."""
    stats = energy_stats(per_token)
    data = {
        "branches": {
            b.name: {
                "family": b.family,
                "layer": b.layer,
                "mean_sq": _json_float(stats[b.name][0]),
                "median_sq": _json_float(stats[b.name][1]),
            }
            for b in branches
            if b.name in stats
        },
        "device": ctx.device,
    }
    return Signature(guard=VarianceGuard.name, contract=contract, data=data)


# Elements per torch.quantile call (its input is limited to 2^24).
_QUANTILE_ELEMENTS = 1 << 23


def energy_stats(per_token: dict[str, list[tuple[Any, Any]]]) -> dict[str, tuple[float, float]]:
    """(mean, median) in float64 of each branch's valid-token energies.

    Branches that saw the same batches (the same mask objects, so the same device) are
    stacked: one selection of the valid tokens, one mean and one quantile for all of them.
    """
    import torch

    groups: dict[tuple[int, ...], list[str]] = {}
    for name, batches in per_token.items():
        groups.setdefault(tuple(id(mask) for _, mask in batches), []).append(name)
    stats: dict[str, tuple[float, float]] = {}
    for names in groups.values():
        masks = [mask for _, mask in per_token[names[0]]]
        valid = torch.cat([m.reshape(-1) for m in masks])
        step = max(1, _QUANTILE_ELEMENTS // max(1, valid.numel()))
        for i in range(0, len(names), step):
            part = names[i : i + step]
            energy = torch.stack(
                [torch.cat([e.reshape(-1) for e, _ in per_token[n]]) for n in part]
            )
            tokens = energy[:, valid].double()
            both = torch.stack([tokens.mean(dim=1), tokens.quantile(0.5, dim=1)], dim=1)
            stats.update(zip(part, [(r[0], r[1]) for r in both.tolist()], strict=True))
    return stats


def _measured_arm(ctx: MeasureContext, indices: list[int]) -> WindowNLL | None:
    """The subject's per-window NLL on ``indices`` from the evaluator, when it gave them."""
    nll = ctx.subject_nll
    if nll is None or len(nll.mean_nll) != len(ctx.windows):
        return None
    pick = np.asarray(indices, dtype=np.int64)
    return WindowNLL(nll.mean_nll[pick], nll.token_counts[pick], nll.telemetry)


def _ppl(nll: Any, tokens: Any) -> float | None:
    mean = float(np.dot(nll, tokens) / np.sum(tokens))
    return math.exp(mean) if mean < 700 else None  # exp overflows float64 past ~709


def _json_float(value: float) -> float | None:
    return value if math.isfinite(value) else None

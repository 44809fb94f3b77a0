"""Derived numbers of a report, computed from its raw per-window data alone.

The builder and ``report verify`` both call these functions: a report verifies when
deriving again from the stored raw data reproduces every stored number exactly.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import numpy as np

from editproof.policy import TierPolicy
from editproof.report.model import (
    ArmSummary,
    BootstrapInfo,
    Drift,
    Gate,
    GuardResult,
    GuardsSection,
    PrimaryMetric,
    Status,
    TailInfo,
    WindowSet,
)
from editproof.stats import delta_tail_summary, paired_delta_bootstrap, quantile_key

# Below this many replicates a BCa interval is too noisy to gate on (flagged unstable).
MIN_STABLE_REPLICATES = 200
TAIL_QUANTILES = (0.5, 0.9, 0.95, 0.99)


def _finite(values: Sequence[float | None]) -> bool:
    return all(v is not None and math.isfinite(v) for v in values)


def _exp(x: float) -> float | None:
    try:
        value = math.exp(x)
    except OverflowError:
        return None
    return value if math.isfinite(value) else None


def perplexity(windows: WindowSet) -> float | None:
    """exp of the token-weighted mean NLL; None when any window is non-finite or empty."""
    if not windows.mean_nll or not _finite(windows.mean_nll):
        return None
    nll = np.asarray(windows.mean_nll, dtype=np.float64)
    tokens = np.asarray(windows.token_counts, dtype=np.float64)
    if tokens.sum() <= 0:
        return None
    return _exp(float((nll * tokens).sum() / tokens.sum()))


def arm_summary(preview: WindowSet, final: WindowSet) -> ArmSummary:
    both = list(preview.mean_nll) + list(final.mean_nll)
    return ArmSummary(
        ppl_preview=perplexity(preview),
        ppl_final=perplexity(final),
        tokens_preview=int(sum(preview.token_counts)),
        tokens_final=int(sum(final.token_counts)),
        non_finite_windows=sum(1 for v in both if v is None or not math.isfinite(v)),
    )


def pairing_problem(baseline: WindowSet, subject: WindowSet) -> str | None:
    """Why the two arms are not the same windows in the same order, or None."""
    if baseline.window_ids != subject.window_ids:
        return "window ids differ between baseline and subject"
    if baseline.token_hashes != subject.token_hashes:
        return "token hashes differ between baseline and subject"
    if baseline.token_counts != subject.token_counts:
        return "token counts differ between baseline and subject"
    return None


def primary_metric(
    baseline: WindowSet,
    subject: WindowSet,
    policy: TierPolicy,
    *,
    seed: int,
    n_preview: int | None = None,
) -> PrimaryMetric:
    """Ratio of subject to baseline perplexity on the final windows, with a paired BCa CI.

    ``n_preview`` (the preview window count) only feeds the coverage check.
    """
    base_ppl, subj_ppl = perplexity(baseline), perplexity(subject)
    unstable: list[str] = []
    if n_preview is not None and n_preview < policy.coverage.preview:
        unstable.append(f"{n_preview} preview windows < coverage floor {policy.coverage.preview}")
    if len(subject.window_ids) < policy.coverage.final:
        unstable.append(
            f"{len(subject.window_ids)} final windows < coverage floor {policy.coverage.final}"
        )
    if policy.bootstrap.replicates < MIN_STABLE_REPLICATES:
        unstable.append(f"{policy.bootstrap.replicates} replicates < {MIN_STABLE_REPLICATES}")
    reason = pairing_problem(baseline, subject)
    if reason is None and not (_finite(baseline.mean_nll) and _finite(subject.mean_nll)):
        reason = "non-finite window loss"
    if reason is None and not subject.window_ids:
        reason = "no final windows"
    if reason is not None:
        return PrimaryMetric(
            baseline_ppl=base_ppl,
            subject_ppl=subj_ppl,
            delta_log=None,
            ratio=None,
            ci_log=None,
            display_ci=None,
            bootstrap=None,
            tail=None,
            invalid=True,
            invalid_reason=reason,
            unstable=bool(unstable),
            unstable_reasons=unstable,
        )
    subj = np.asarray(subject.mean_nll, dtype=np.float64)
    base = np.asarray(baseline.mean_nll, dtype=np.float64)
    weights = np.asarray(subject.token_counts, dtype=np.float64)
    boot = paired_delta_bootstrap(
        subj,
        base,
        weights,
        method=policy.bootstrap.method,
        replicates=policy.bootstrap.replicates,
        alpha=policy.bootstrap.alpha,
        seed=seed,
    )
    levels = tuple(sorted({*TAIL_QUANTILES, policy.tail.quantile}))
    tail = delta_tail_summary(subj, base, weights, epsilon=policy.tail.epsilon, quantiles=levels)
    ratio, lo, hi = _exp(boot.estimate), _exp(boot.low), _exp(boot.high)
    invalid = ratio is None or lo is None or hi is None
    return PrimaryMetric(
        baseline_ppl=base_ppl,
        subject_ppl=subj_ppl,
        delta_log=boot.estimate,
        ratio=ratio,
        ci_log=(boot.low, boot.high),
        display_ci=None if lo is None or hi is None else (lo, hi),
        bootstrap=BootstrapInfo(
            method=boot.method,
            requested_method=boot.requested_method,
            replicates=boot.replicates,
            alpha=boot.alpha,
            seed=boot.seed,
            n=boot.n,
            degenerate=boot.degenerate,
            degenerate_reason=boot.degenerate_reason,
            fallback_reason=boot.fallback_reason,
        ),
        tail=TailInfo(
            n=tail.n,
            epsilon=tail.epsilon,
            max_delta=tail.max_delta,
            quantiles={quantile_key(q): tail.quantile(q) for q in levels},
            tail_mass=tail.tail_mass,
            tail_mass_weighted=tail.tail_mass_weighted,
        ),
        invalid=invalid,
        invalid_reason="perplexity ratio overflows" if invalid else None,
        unstable=bool(unstable),
        unstable_reasons=unstable,
    )


def drift(baseline: ArmSummary, subject: ArmSummary, policy: TierPolicy) -> Drift:
    def ratio(s: ArmSummary) -> float | None:
        if s.ppl_preview is None or s.ppl_final is None or s.ppl_preview <= 0:
            return None
        return s.ppl_final / s.ppl_preview

    subj, base = ratio(subject), ratio(baseline)
    paired = subj / base if subj is not None and base not in (None, 0.0) else None
    return Drift(subject=subj, baseline=base, paired=paired, band=policy.drift_band)


def token_floor(policy: TierPolicy, tokens_available: int) -> int:
    return max(policy.min_tokens, math.ceil(tokens_available * policy.min_token_fraction))


def gates(
    pm: PrimaryMetric,
    dr: Drift,
    subject: ArmSummary,
    policy: TierPolicy,
    *,
    tokens_available: int,
    floor_relaxed: bool,
) -> list[Gate]:
    limit = policy.ratio_limit + policy.hysteresis
    upper = pm.display_ci[1] if pm.display_ci else None
    out = [
        _ratio_gate("ratio", pm.ratio, limit, policy),
        _ratio_gate("ratio_ci_upper", upper, limit, policy),
    ]
    low, high = dr.band
    out.append(
        Gate(
            name="drift",
            passed=dr.paired is not None and low <= dr.paired <= high,
            enforced=True,
            measured=dr.paired,
            threshold=(low, high),
            comparison="within",
            note="subject final/preview perplexity drift divided by the baseline's",
        )
    )
    floor = token_floor(policy, tokens_available)
    tokens = subject.tokens_preview + subject.tokens_final
    met = tokens >= floor
    out.append(
        Gate(
            name="token_floor",
            passed=met or floor_relaxed,
            enforced=True,
            measured=float(tokens),
            threshold=float(floor),
            comparison=">=",
            relaxed=floor_relaxed and not met,
            note=(
                "floor relaxed (recorded in policy.relax_reason)"
                if floor_relaxed and not met
                else "evaluated target tokens, preview + final"
            ),
        )
    )
    out.extend(_tail_gate(pm, policy))
    return out


def _ratio_gate(name: str, value: float | None, limit: float, policy: TierPolicy) -> Gate:
    passed = value is not None and value <= limit
    note = ""
    if passed and value is not None and value > policy.ratio_limit:
        note = f"passes only within hysteresis ({policy.hysteresis})"
    elif value is None:
        note = "primary metric invalid"
    return Gate(
        name=name,
        passed=passed,
        enforced=True,
        measured=value,
        threshold=limit,
        comparison="<=",
        note=note,
    )


def _tail_gate(pm: PrimaryMetric, policy: TierPolicy) -> list[Gate]:
    tail_policy = policy.tail
    if tail_policy.mode == "off":
        return []
    key = quantile_key(tail_policy.quantile)
    enforced = tail_policy.mode == "fail"
    if pm.tail is None or pm.tail.n < tail_policy.min_windows:
        n = pm.tail.n if pm.tail else 0
        return [
            Gate(
                name="tail",
                passed=True,
                enforced=False,
                measured=None,
                threshold=tail_policy.quantile_max,
                comparison="<=",
                note=f"not evaluated: {n} windows < {tail_policy.min_windows}",
            )
        ]
    value = pm.tail.quantiles[key]
    passed = value <= tail_policy.quantile_max and pm.tail.tail_mass <= tail_policy.mass_max
    return [
        Gate(
            name="tail",
            passed=passed,
            enforced=enforced,
            measured=value,
            threshold=tail_policy.quantile_max,
            comparison="<=",
            note=f"{key} of per-window delta log-loss (mode {tail_policy.mode})",
        )
    ]


def guards_status(results: Sequence[GuardResult]) -> Literal["not_run", "pass", "warn", "fail"]:
    """Worst status over the *enforced* guards; ``not_run`` when there are none."""
    statuses = [r.status for r in results if r.enforced]
    if not results:
        return "not_run"
    if "fail" in statuses:
        return "fail"
    return "warn" if "warn" in statuses else "pass"


def validation_flags(
    pm: PrimaryMetric, gate_list: Sequence[Gate], guards: GuardsSection
) -> dict[str, bool]:
    """The named booleans a verdict reads. A guard that did not run counts as passing."""
    passed = {g.name: g.passed for g in gate_list}
    status = {r.name: r.status for r in guards.results}
    variance = next((r for r in guards.results if r.name == "variance"), None)
    return {
        "primary_metric_acceptable": not pm.invalid
        and passed.get("ratio", False)
        and passed.get("ratio_ci_upper", False),
        "primary_metric_invalid": pm.invalid,
        "preview_final_drift_acceptable": passed.get("drift", False),
        "token_floor_acceptable": passed.get("token_floor", False),
        "primary_metric_tail_acceptable": passed.get("tail", True),
        "guards_run": bool(guards.results),
        "invariants_pass": status.get("invariants", "pass") != "fail",
        "spectral_stable": status.get("spectral", "pass") != "fail",
        "rmt_stable": status.get("rmt", "pass") != "fail",
        "variance_signal": bool(
            variance
            and (
                variance.measured.get("proposed_scales", 0) > 0
                or variance.measured.get("would_enable", 0) > 0
            )
        ),
    }


def overall_status(gate_list: Sequence[Gate], guards: GuardsSection) -> Status:
    """PASS iff every enforced gate passed and no enforced guard failed."""
    ok = all(g.passed for g in gate_list if g.enforced) and guards.status != "fail"
    return "PASS" if ok else "FAIL"

"""Spectral guard: per-matrix sigma_max of the subject against the same matrix's baseline value.

Each distinct 2-D weight (and each slice of a fused 3-D expert stack) gets sigma_max by a
few Lanczos steps (``_spectral_measure``), its Frobenius norm (for the stable rank) and a
norm-collapse statistic (smallest row/column norm over the median). ``compare`` judges every
matrix two ways: against its family, ``z = (sigma_subj - sigma_base) / sd_family`` (the
spread of the *baseline's* matrices of the family), through family-level multiple testing;
and against itself, ``d = |log(sigma_subj / sigma_base)|`` over a per-family bound, which
catches one matrix scaled by 1.4 even where the family spread is wide. Both kinds of flag
count as caps (warn; fail beyond ``max_caps``); sigma ratios, stable rank and norm collapse
are hard per-matrix bounds.
"""

from __future__ import annotations

import math
import statistics
import time
from dataclasses import dataclass
from typing import Any

from editproof.guards._spectral_measure import ESTIMATOR, compute_dtype, measure_all, reusable
from editproof.guards.base import MeasureContext, Signature, contract_mismatch
from editproof.policy.guards import SpectralPolicy
from editproof.report.model import GuardResult, GuardStatus

_TINY = 1e-30
# Relative-change scale that stands in for sd when a family's baseline spread is zero.
_REL_SCALE = 0.1
_TOP = 5
_LIST_MAX = 10


@dataclass(frozen=True)
class _Row:
    name: str
    family: str
    z: float
    p: float
    ratio: float  # sigma_subj / sigma_base, both floored
    # subj / base; 1.0 (nothing to judge) where the baseline's statistic is 0.
    stable_rank: float
    norm_collapse: float

    @property
    def log_ratio(self) -> float:
        """d = |log(sigma_subj / sigma_base)|: the matrix against its own baseline."""
        return abs(math.log(self.ratio))


class SpectralGuard:
    name = "spectral"

    def measure(self, model: Any, ctx: MeasureContext, policy: dict[str, Any]) -> Signature:
        start = time.perf_counter()
        iters = SpectralPolicy.model_validate(policy).power_iters
        contract = {
            **ESTIMATOR,
            "iters": iters,
            "seed": ctx.seed,
            "dtype": compute_dtype(model),
        }
        reuse = reusable(ctx, self.name, contract)
        matrices = measure_all(model, iters, ctx.seed, reuse)
        return Signature(
            guard=self.name,
            contract=contract,
            data={"matrices": matrices},
            seconds=time.perf_counter() - start,
        )

    def compare(
        self, baseline: Signature, subject: Signature, policy: dict[str, Any]
    ) -> GuardResult:
        start = time.perf_counter()
        mismatch = contract_mismatch(self.name, baseline, subject)
        if mismatch is not None:
            return mismatch
        pol = SpectralPolicy.model_validate(policy)
        base: dict[str, dict[str, Any]] = baseline.data["matrices"]
        subj: dict[str, dict[str, Any]] = subject.data["matrices"]

        # Per-family spread of sigma over the baseline's finite matrices.
        by_family: dict[str, list[float]] = {}
        for rec in base.values():
            if _finite(rec):
                by_family.setdefault(rec["family"], []).append(rec["sigma"])
        sd = {f: statistics.pstdev(v) for f, v in by_family.items()}  # ddof 0
        floor = max(1e-12 * max((s for v in by_family.values() for s in v), default=0.0), _TINY)

        rows: list[_Row] = []
        non_finite: list[str] = []
        for name in sorted(base.keys() & subj.keys()):
            b, s = base[name], subj[name]
            if not _finite(b):
                continue  # a broken baseline matrix cannot anchor a comparison
            if not _finite(s):
                non_finite.append(name)
                continue
            rows.append(_row(name, b, s, sd.get(b["family"], 0.0), floor))

        kappa = {f: _kappa(pol, f) for f in {r.family for r in rows}}
        candidates = [r for r in rows if abs(r.z) > kappa[r.family]]
        m = len(kappa)  # families with at least one compared matrix
        selected, fam_p = _select(candidates, m, pol)
        z_caps = [r for r in candidates if r.family in selected]
        bound = {f: _log_bound(pol, f) for f in kappa}
        flagged = [r for r in rows if r.log_ratio > bound[r.family]]
        in_z = {r.name for r in z_caps}
        caps = z_caps + [r for r in flagged if r.name not in in_z]

        ratios = [max(r.ratio, 1 / r.ratio) for r in rows]
        too_far = [r for r, x in zip(rows, ratios, strict=True) if x > pol.max_sigma_ratio]
        degen_fail, degen_warn = _degeneracy(rows, pol)
        violations: list[str] = []
        if len(caps) > pol.max_caps:
            violations.append(f"caps: {len(caps)} > max_caps {pol.max_caps}")
        violations += _listed(
            f"z_cap: {r.name} z={r.z:+.2f} beyond kappa {kappa[r.family]:g} ({r.family})"
            for r in z_caps
        )
        violations += _listed(
            f"log_ratio: {r.name} |log sigma ratio| {r.log_ratio:.4f} beyond "
            f"{bound[r.family]:g} ({r.family})"
            for r in flagged
        )
        violations += _listed(f"non_finite: {n} sigma not finite" for n in non_finite)
        violations += _listed(
            f"sigma_ratio: {r.name} {r.ratio:.4g} outside [1/{pol.max_sigma_ratio:g}, "
            f"{pol.max_sigma_ratio:g}]"
            for r in too_far
        )
        violations += _listed(degen_fail) + _listed(degen_warn)

        status: GuardStatus = "pass"
        if len(caps) > pol.max_caps or non_finite or too_far or degen_fail:
            status = "fail"
        elif caps or degen_warn:
            status = "warn"

        measured = {
            "caps": len(caps),
            "candidates": len(candidates),
            "z_caps": len(z_caps),
            "log_ratio_flags": len(flagged),
            "max_abs_z": max((abs(r.z) for r in rows), default=0.0),
            "max_log_ratio": max((r.log_ratio for r in rows), default=0.0),
            "max_sigma_ratio": max(ratios, default=1.0),
            "min_stable_rank_ratio": min((r.stable_rank for r in rows), default=1.0),
            "min_norm_collapse_ratio": min((r.norm_collapse for r in rows), default=1.0),
            "matrices": len(rows),
            "missing_matrices": len(base.keys() - subj.keys()),
            "extra_matrices": len(subj.keys() - base.keys()),
            "non_finite_matrices": len(non_finite),
        }
        thresholds = {
            "max_caps": float(pol.max_caps),
            **{f"kappa_{f}": float(v) for f, v in sorted(pol.kappa.items())},
            **{f"max_log_ratio_{f}": float(v) for f, v in sorted(pol.max_log_ratio.items())},
            "max_sigma_ratio": pol.max_sigma_ratio,
            "stable_rank_fail": pol.stable_rank_fail,
            "stable_rank_warn": pol.stable_rank_warn,
            "norm_collapse_fail": pol.norm_collapse_fail,
            "norm_collapse_warn": pol.norm_collapse_warn,
            "alpha": pol.alpha,
        }
        top = sorted(rows, key=lambda r: (-abs(r.z), r.name))[:_TOP]
        top_d = sorted(rows, key=lambda r: (-r.log_ratio, r.name))[:_TOP]
        families = {
            f: {
                "count": len(by_family.get(f, [])),
                "sd": sd.get(f, 0.0),
                "sd_zero": sd.get(f, 0.0) == 0.0,
                "kappa": k,
                "max_abs_z": max((abs(r.z) for r in rows if r.family == f), default=0.0),
                "max_log_ratio_bound": bound[f],
                "max_log_ratio": max((r.log_ratio for r in rows if r.family == f), default=0.0),
                "log_ratio_flags": sum(r.family == f for r in flagged),
                "caps": sum(r.family == f for r in caps),
                "p_min": fam_p.get(f),
            }
            for f, k in sorted(kappa.items())
        }
        details = {
            "top_z": [
                {"name": r.name, "family": r.family, "z": r.z, "sigma_ratio": r.ratio} for r in top
            ],
            "top_log_ratio": [
                {"name": r.name, "family": r.family, "log_ratio": r.log_ratio} for r in top_d
            ],
            "families": families,
            "selected_families": sorted(selected),
            "multiple_testing": {"method": pol.multiple_testing, "alpha": pol.alpha, "m": m},
            "sd_zero_note": (
                f"families with zero baseline spread use z = relative sigma change / {_REL_SCALE}"
            ),
        }
        return GuardResult(
            name=self.name,
            status=status,
            measured={k: float(v) for k, v in measured.items()},
            thresholds=thresholds,
            violations=violations,
            seconds=subject.seconds + time.perf_counter() - start,
            contract_digest=subject.contract_digest,
            details=details,
        )


# --- compare helpers ------------------------------------------------------------------------


def _finite(rec: dict[str, Any]) -> bool:
    return all(rec.get(k) is not None for k in ("sigma", "stable_rank", "norm_collapse"))


def _row(name: str, b: dict[str, Any], s: dict[str, Any], sd: float, floor: float) -> _Row:
    sb, ss = max(b["sigma"], floor), max(s["sigma"], floor)
    ratio = ss / sb
    # Unfloored difference over the family spread; relative change when there is no spread.
    z = (s["sigma"] - b["sigma"]) / sd if sd > 0 else (ratio - 1) / _REL_SCALE
    return _Row(
        name=name,
        family=b["family"],
        z=z,
        p=math.erfc(abs(z) / math.sqrt(2)),
        ratio=ratio,
        stable_rank=s["stable_rank"] / b["stable_rank"] if b["stable_rank"] > 0 else 1.0,
        norm_collapse=s["norm_collapse"] / b["norm_collapse"] if b["norm_collapse"] > 0 else 1.0,
    )


def _degeneracy(rows: list[_Row], pol: SpectralPolicy) -> tuple[list[str], list[str]]:
    """Stable-rank and norm-collapse ratio violations, split into fail and warn lines."""
    fail: list[str] = []
    warn: list[str] = []
    for key, lo, hi in (
        ("stable_rank", pol.stable_rank_fail, pol.stable_rank_warn),
        ("norm_collapse", pol.norm_collapse_fail, pol.norm_collapse_warn),
    ):
        for r in rows:
            value: float = getattr(r, key)
            if value < lo:
                fail.append(f"{key}: {r.name} ratio {value:.3f} < {lo:g}")
            elif value < hi:
                warn.append(f"{key}: {r.name} ratio {value:.3f} < {hi:g}")
    return fail, warn


def _kappa(pol: SpectralPolicy, family: str) -> float:
    # A family the policy leaves out gets the strictest kappa it names, never a free pass.
    values: dict[str, float] = {str(k): v for k, v in pol.kappa.items()}
    return values.get(family, min(values.values(), default=3.0))


def _log_bound(pol: SpectralPolicy, family: str) -> float:
    """The family's bound on |log sigma ratio|; inf (no check) when the policy names none."""
    values: dict[str, float] = {str(k): v for k, v in pol.max_log_ratio.items()}
    # Like kappa: a family the policy leaves out gets the strictest bound it names.
    return values.get(family, min(values.values(), default=math.inf))


def _select(
    candidates: list[_Row], m: int, pol: SpectralPolicy
) -> tuple[set[str], dict[str, float]]:
    """Families whose smallest candidate p survives BH or Bonferroni over ``m`` families."""
    fam_p: dict[str, float] = {}
    for r in candidates:
        fam_p[r.family] = min(r.p, fam_p.get(r.family, 1.0))
    if m == 0:
        return set(), fam_p
    if pol.multiple_testing == "bonferroni":
        return {f for f, p in fam_p.items() if p <= pol.alpha / m}, fam_p
    ordered = sorted(fam_p.items(), key=lambda kv: (kv[1], kv[0]))
    k = max((i for i, (_, p) in enumerate(ordered, 1) if p <= pol.alpha * i / m), default=0)
    return {f for f, _ in ordered[:k]}, fam_p


def _listed(lines: Any) -> list[str]:
    items = list(lines)
    if len(items) > _LIST_MAX:
        return [*items[:_LIST_MAX], f"... and {len(items) - _LIST_MAX} more"]
    return items

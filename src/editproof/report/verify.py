"""Recompute a report's numbers from its raw per-window data and compare.

Checks, in order: pairing and counts; per-arm perplexities; primary metric (ratio, log CI
and display CI via the same seeded bootstrap); tail; drift; policy digest; gate values and
outcomes; overall status. The result lists every disagreement, not just the first.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from editproof.data import plan_digest_of
from editproof.policy import TIER_NAMES, load_tier
from editproof.report import derive
from editproof.report.model import GUARD_ENFORCEMENT, EvaluationReport, WindowSet

# Stored floats round-trip through JSON exactly; the tolerance only absorbs summation order.
REL_TOL = 1e-9


@dataclass
class VerifyResult:
    ok: bool
    checks: int
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # facts a reader should know; not failures


class _Checker:
    def __init__(self) -> None:
        self.checks = 0
        self.problems: list[str] = []

    def expect(self, cond: bool, problem: str) -> None:
        self.checks += 1
        if not cond:
            self.problems.append(problem)

    def same(self, what: str, stored: Any, recomputed: Any) -> None:
        self.expect(
            _close(stored, recomputed), f"{what}: stored {stored!r}, recomputed {recomputed!r}"
        )


def _close(a: Any, b: Any) -> bool:
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_close(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_close(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float | int) and isinstance(b, float | int) and not isinstance(a, bool):
        return math.isclose(float(a), float(b), rel_tol=REL_TOL, abs_tol=1e-12)
    return bool(a == b)


def verify_report(report: EvaluationReport) -> VerifyResult:
    c = _Checker()
    ds, pol = report.dataset, report.policy.tier
    for arm_name, arm in (("baseline", report.baseline), ("subject", report.subject)):
        for split, ws, n in (
            ("preview", arm.preview, ds.n_preview),
            ("final", arm.final, ds.n_final),
        ):
            _check_windows(c, f"{arm_name}.{split}", ws, n)
        ids = set(arm.preview.window_ids) & set(arm.final.window_ids)
        c.expect(not ids, f"{arm_name}: {len(ids)} window(s) in both preview and final")
        recomputed = derive.arm_summary(arm.preview, arm.final)
        for key, value in recomputed.model_dump().items():
            c.same(f"{arm_name}.summary.{key}", getattr(arm.summary, key), value)
    for split in ("preview", "final"):
        reason = derive.pairing_problem(
            getattr(report.baseline, split), getattr(report.subject, split)
        )
        c.expect(reason is None, f"{split}: {reason}")

    pm = derive.primary_metric(
        report.baseline.final,
        report.subject.final,
        pol,
        seed=report.provenance.seeds.get("bootstrap", -1),
        n_preview=len(report.subject.preview.window_ids),
    )
    for key, value in pm.model_dump().items():
        c.same(f"primary_metric.{key}", report.primary_metric.model_dump()[key], value)
    if report.primary_metric.bootstrap is not None:
        c.expect(
            report.primary_metric.bootstrap.seed == report.provenance.seeds.get("bootstrap"),
            "primary_metric.bootstrap.seed differs from provenance.seeds.bootstrap",
        )
    dr = derive.drift(report.baseline.summary, report.subject.summary, pol)
    for key, value in dr.model_dump().items():
        c.same(f"drift.{key}", report.drift.model_dump()[key], value)
    c.same("policy.digest", report.policy.digest, pol.digest())
    base = report.baseline
    c.same(
        "dataset.plan_digest",
        ds.plan_digest,
        plan_digest_of(
            list(zip(base.preview.window_ids, base.preview.token_hashes, strict=False)),
            list(zip(base.final.window_ids, base.final.token_hashes, strict=False)),
        ),
    )

    gates = derive.gates(
        pm,
        dr,
        report.subject.summary,
        pol,
        tokens_available=ds.tokens_available,
        floor_relaxed=report.policy.token_floor_relaxed,
    )
    stored = {g.name: g for g in report.gates}
    c.same("gate names", sorted(stored), sorted(g.name for g in gates))
    for gate in gates:
        if gate.name in stored:
            for key, value in gate.model_dump().items():
                c.same(f"gates.{gate.name}.{key}", stored[gate.name].model_dump()[key], value)
    c.same("status", report.status, derive.overall_status(gates, report.guards))
    flags = derive.validation_flags(pm, gates, report.guards)
    for key, value in flags.items():
        c.same(f"validation.{key}", report.validation.get(key), value)
    extra = sorted(set(report.validation) - set(flags))
    c.expect(not extra, f"validation: unknown flags {extra}")
    _check_guards(c, report)
    notes = []
    if pol.name in TIER_NAMES and pol != load_tier(pol.name):
        notes.append(
            f"the report's '{pol.name}' thresholds differ from the packaged tier of that name "
            "(a preset or an older version); the gates were judged with the report's own"
        )
    return VerifyResult(ok=not c.problems, checks=c.checks, problems=c.problems, notes=notes)


def _check_windows(c: _Checker, where: str, ws: WindowSet, expected: int) -> None:
    lengths = {len(ws.window_ids), len(ws.token_hashes), len(ws.token_counts), len(ws.mean_nll)}
    c.expect(
        len(lengths) == 1, f"{where}: per-window arrays have different lengths {sorted(lengths)}"
    )
    c.expect(
        len(ws.window_ids) == expected,
        f"{where}: {len(ws.window_ids)} windows, dataset says {expected}",
    )
    c.expect(len(set(ws.window_ids)) == len(ws.window_ids), f"{where}: duplicate window ids")
    c.expect(all(t > 0 for t in ws.token_counts), f"{where}: a window has no target tokens")


def _check_guards(c: _Checker, report: EvaluationReport) -> None:
    g = report.guards
    if g.status == "not_run":
        c.expect(not g.results, "guards: status not_run but results present")
        return
    c.same("guards.status", g.status, derive.guards_status(g.results))
    names = [r.name for r in g.results]
    # The chain is fixed: dropping a failed guard, or marking it informational, must show.
    c.same("guards: names", names, list(GUARD_ENFORCEMENT))
    for r in g.results:
        if r.name in GUARD_ENFORCEMENT:
            c.same(f"guards.{r.name}.enforced", r.enforced, GUARD_ENFORCEMENT[r.name])
    for r in g.results:
        # An enforced guard fails exactly when it lists a reason to.
        if r.enforced and r.status == "fail":
            c.expect(bool(r.violations), f"guards.{r.name}: status fail without violations")
        c.expect(
            r.contract_digest is None or len(r.contract_digest) == 16,
            f"guards.{r.name}: malformed contract digest",
        )

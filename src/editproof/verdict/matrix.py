"""The detection matrix: every planned run of every scenario on every model, with each gate
of its report and each guard's key measured values against their thresholds.

A run without a report still gets a row (``missing`` or ``task_failure``), so the matrix
shows the whole plan. Guard values are read from ``GuardResult.measured`` and
``.thresholds``; RMT's per-family relative change is subject/base - 1 of the stored edge
risks, the quantity its ε bounds.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

from editproof.report.model import EvaluationReport, GuardResult
from editproof.verdict.catalogue import Scenario
from editproof.verdict.evidence import Evidence, counted
from editproof.verdict.model import Record
from editproof.verdict.records import probe_field
from editproof.verdict.views import (
    DetectionMatrix,
    GateCell,
    GuardCell,
    GuardValue,
    MatrixRow,
    Observed,
)

GUARDS = ("invariants", "spectral", "rmt", "variance")
Cmp = Literal["<=", ">="] | None
# Per guard: (measured key, threshold key or None, comparison).
GUARD_KEYS: dict[str, list[tuple[str, str | None, Cmp]]] = {
    "invariants": [
        ("non_finite_values", None, None),
        ("shape_changes", None, None),
        ("vocab_changes", None, None),
        ("missing_tensors", None, None),
        ("extra_tensors", None, None),
        ("tying_changes", None, None),
        ("structure_changed", None, None),
    ],
    "spectral": [
        ("caps", "max_caps", "<="),
        ("max_abs_z", None, None),
        ("max_sigma_ratio", "max_sigma_ratio", "<="),
        ("min_stable_rank_ratio", "stable_rank_fail", ">="),
        ("min_norm_collapse_ratio", "norm_collapse_fail", ">="),
    ],
    "rmt": [
        ("max_delta", None, None),
        ("max_module_delta", "module_epsilon", "<="),
    ],
    "variance": [
        ("proposed_scales", None, None),
        ("would_enable", None, None),
        ("gain", "min_effect", ">="),
    ],
}
# Probe fields shown in the matrix (the ones detectors read).
_PROBE_FIELDS = {"rmt_probe": ("stable",), "ve_probe": ("signal", "proposed_scales")}


def _value(key: str, measured: float | None, threshold: float | None, cmp: Cmp) -> GuardValue:
    within: bool | None = None
    if measured is not None and threshold is not None and cmp is not None:
        within = measured <= threshold if cmp == "<=" else measured >= threshold
    return GuardValue(
        key=key,
        measured=measured,
        threshold=threshold,
        comparison=cmp if threshold is not None else None,
        within=within,
    )


def _rmt_families(result: GuardResult) -> list[GuardValue]:
    out = []
    for key in sorted(result.thresholds):
        if not key.startswith("epsilon_"):
            continue
        fam = key.removeprefix("epsilon_")
        base = result.measured.get(f"edge_risk_{fam}_base")
        subj = result.measured.get(f"edge_risk_{fam}_subject")
        delta = subj / base - 1.0 if base and subj is not None and base > 0 else None
        out.append(_value(f"delta_{fam}", delta, result.thresholds[key], "<="))
    return out


def guard_cell(report: EvaluationReport, name: str) -> GuardCell:
    result = next((r for r in report.guards.results if r.name == name), None)
    if result is None:
        return GuardCell(name=name, status="not_run", enforced=None, values=[], violations=0)
    values = [
        _value(key, result.measured.get(key), result.thresholds.get(t) if t else None, cmp)
        for key, t, cmp in GUARD_KEYS.get(name, [])
        if key in result.measured
    ]
    if name == "rmt":
        values = _rmt_families(result) + values
    return GuardCell(
        name=name,
        status=result.status,
        enforced=result.enforced,
        values=values,
        violations=len(result.violations),
    )


def _probes(report: EvaluationReport) -> dict[str, dict[str, Observed]]:
    return {
        probe: {f: probe_field(report, probe, f) for f in fields}
        for probe, fields in _PROBE_FIELDS.items()
        if probe in report.guards.probes
    }


def _row(record: Record, report: EvaluationReport) -> MatrixRow:
    gates = [
        GateCell(
            name=g.name,
            measured=g.measured,
            threshold=g.threshold,
            comparison=g.comparison,
            passed=g.passed,
            enforced=g.enforced,
            relaxed=g.relaxed,
        )
        for g in report.gates
    ]
    guards = [guard_cell(report, name) for name in GUARDS]
    return record_row(record, gates=gates, guards=guards, probes=_probes(report))


def record_row(
    record: Record,
    *,
    gates: list[GateCell] | None = None,
    guards: list[GuardCell] | None = None,
    probes: dict[str, dict[str, Observed]] | None = None,
    note: str = "",
) -> MatrixRow:
    """A matrix row from a record's own fields; its report's cells when given."""
    return MatrixRow(
        model=record.model,
        scenario=record.scenario,
        category=record.category,
        strictness=record.strictness,
        run=record.run,
        outcome="report",
        path=record.path,
        status=record.status,
        ratio=record.ratio,
        ci_upper=record.ci_upper,
        gates=gates or [],
        guards=guards or [],
        probes=probes or {},
        guard_flags=dict(record.guard_flags),
        detectors_hit=record.detectors_hit,
        requirement_met=record.requirement_met,
        note=note,
    )


def detection_matrix(
    ev: Evidence, reports: Mapping[str, tuple[EvaluationReport, bytes]]
) -> DetectionMatrix:
    rows: list[MatrixRow] = []
    for m in ev.models:
        for s in ev.scenarios:
            by_run: dict[int, MatrixRow] = {
                r.run: _row(r, reports[r.path][0]) for r in ev.records_of(m, s.id)
            }
            for f in ev.failures_of(m, s.id):
                by_run[f.run] = _absent(m, s, f.run, "task_failure", f"{f.kind}: {f.error}")
            for k in ev.missing_runs(m, s):
                by_run[k] = _absent(m, s, k, "missing", "no report")
            rows.extend(by_run[k] for k in sorted(by_run))
    return DetectionMatrix(suite=ev.inputs.suite, models=ev.models, guards=list(GUARDS), rows=rows)


def _absent(
    model: str, scenario: Scenario, run: int, outcome: Literal["missing", "task_failure"], note: str
) -> MatrixRow:
    """A planned run without a report: it fails its requirement when the scenario counts."""
    return MatrixRow(
        model=model,
        scenario=scenario.id,
        category=scenario.category,
        strictness=scenario.strictness,
        run=run,
        outcome=outcome,
        path=None,
        status=None,
        ratio=None,
        ci_upper=None,
        gates=[],
        guards=[],
        probes={},
        guard_flags={},
        detectors_hit=None,
        requirement_met=False if counted(scenario) else None,
        note=note,
    )

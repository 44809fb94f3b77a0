"""Records: one flat row per planned scenario run, for pandas, DuckDB and spreadsheets.

``record_rows`` lays out the whole plan the way the verdict sees it: every run with a report,
every task failure (``ERROR``), every planned run with neither (``MISSING``) and every run of
a skipped scenario (``SKIPPED``), ordered by model (as listed), scenario (catalogue order)
and run. Each row carries the report's facts (weights, edit, primary metric, tokens, every
gate and guard of a fixed catalogue) and the verdict's judgement of it (detectors,
requirement, the requirements it failed).

Two serializations of the same ``RecordRow``: ``records.jsonl`` (one JSON object a line,
native types) and ``records.csv`` (the flat columns of ``CSV_COLUMNS``; see docs/formats.md).
The gate and guard columns come from fixed catalogues (``GATES``, ``GUARD_KEYS``), never from
the data, so two runs always have the same header.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from editproof.report.model import EvaluationReport, Gate
from editproof.verdict.catalogue import Category, GuardLevel, Intent, PrimaryGuard, Strictness
from editproof.verdict.evidence import Evidence, counted
from editproof.verdict.matrix import GUARD_KEYS, GUARDS
from editproof.verdict.model import CORE_GUARDS, FinalVerdict, Record, VerdictInputs

RECORDS_FORMAT = "editproof.records"
RECORDS_SCHEMA_VERSION = 1
# The gates a report can hold (report.derive.gates), in report order; absent ones read not_run.
GATES: tuple[str, ...] = ("ratio", "ratio_ci_upper", "drift", "token_floor", "tail")
# Joins list cells in the CSV; no detector test, reason or requirement name contains it.
LIST_SEPARATOR = ";"

RowStatus = Literal["PASS", "FAIL", "ERROR", "MISSING", "SKIPPED"]
Requirement = Literal["met", "not_met", "none"]
Reports = Mapping[str, tuple[EvaluationReport, bytes]]


def _keys(names: tuple[str, ...]) -> dict[str, Any]:
    """JSON Schema keywords for a dict that holds exactly ``names``."""
    return {"required": list(names), "propertyNames": {"enum": list(names)}}


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class GateValue(_Model):
    """``pass``/``fail`` for an enforced gate, ``warn`` for a failing unenforced one,
    ``not_run`` when the report has no such gate (or there is no report)."""

    status: GuardLevel
    measured: float | None


class GuardValue(_Model):
    status: GuardLevel
    measured: dict[str, float | None]  # exactly the keys of GUARD_KEYS[guard]


class RecordRow(_Model):
    format: Literal["editproof.records"] = "editproof.records"
    schema_version: Literal[1] = 1
    suite: str
    model: str
    model_weight_sha256: str | None  # the evaluated (baseline) weights; from any report of it
    subject_weight_sha256: str | None
    scenario: str
    category: Category
    strictness: Strictness
    intent: Intent
    primary_guard: PrimaryGuard
    primary_guard_required: bool
    failure_class: str
    run: int = Field(ge=1)
    status: RowStatus
    passed: bool  # the report's status is PASS (False without a report)
    requirement: Requirement  # what this run had to show; none: nothing per run
    failed_requirements: list[str]  # verdict requirements that name this run
    reasons: list[str]  # why the report FAILED: one per failing enforced gate or guard
    note: str  # ERROR: kind and first error line; SKIPPED: reason; MISSING: no report
    edit_label: str | None
    edit_spec: str | None
    edit_type: str | None
    edit_kind: str | None
    edit_params: dict[str, Any] | None  # the resolved parameters the edit ran with
    edit_rel_error: float | None
    tuned_source: str | None
    ratio: float | None
    ci_lower: float | None
    ci_upper: float | None
    baseline_ppl: float | None
    subject_ppl: float | None
    primary_metric_invalid: bool
    tokens_preview: int | None  # subject tokens evaluated (what token_floor counts)
    tokens_final: int | None
    non_finite_windows: int | None
    gates: dict[str, GateValue] = Field(json_schema_extra=_keys(GATES))
    guards: dict[str, GuardValue] = Field(json_schema_extra=_keys(GUARDS))
    # Did each core guard flag this run (the verdict record's guard_flags)?
    flags: dict[str, bool] = Field(json_schema_extra=_keys(CORE_GUARDS))
    primary_guard_hit: bool
    signaled: bool
    detectors_hit: bool
    detectors_hit_tests: list[str]  # the detector tests that hit
    seconds: float | None  # the evaluation's wall time (provenance.timings.total)
    tool_version: str | None
    policy_digest: str | None
    report_path: str | None  # relative to the suite's run directory
    report_digest: str | None  # sha256 of the report file's bytes

    @model_validator(mode="after")
    def _fixed_keys(self) -> RecordRow:
        if list(self.gates) != list(GATES):
            raise ValueError(f"gates must be exactly {list(GATES)}")
        if list(self.guards) != list(GUARDS):
            raise ValueError(f"guards must be exactly {list(GUARDS)}")
        for name, value in self.guards.items():
            if list(value.measured) != guard_keys(name):
                raise ValueError(f"guards.{name}.measured must be exactly {guard_keys(name)}")
        if list(self.flags) != list(CORE_GUARDS):
            raise ValueError(f"flags must be exactly {list(CORE_GUARDS)}")
        return self


def guard_keys(guard: str) -> list[str]:
    return [key for key, _, _ in GUARD_KEYS[guard]]


def _columns() -> list[str]:
    columns: list[str] = []
    for name in RecordRow.model_fields:
        if name == "gates":
            columns += [f"gate_{g}_{part}" for g in GATES for part in ("status", "measured")]
        elif name == "guards":
            for guard in GUARDS:
                columns += [f"guard_{guard}_status"]
                columns += [f"guard_{guard}_{key}" for key in guard_keys(guard)]
        elif name == "flags":
            columns += [f"flag_{g}" for g in CORE_GUARDS]
        else:
            columns.append(name)
    return columns


# The CSV header, in order: the row's fields with gates, guards and flags spread out.
CSV_COLUMNS: tuple[str, ...] = tuple(_columns())


# --- building -----------------------------------------------------------------------------


def _finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


def _gate(gates: list[Gate], name: str) -> GateValue:
    gate = next((g for g in gates if g.name == name), None)
    if gate is None:
        return GateValue(status="not_run", measured=None)
    status: GuardLevel = "pass" if gate.passed else ("fail" if gate.enforced else "warn")
    return GateValue(status=status, measured=_finite(gate.measured))


def _guard(report: EvaluationReport | None, name: str) -> GuardValue:
    result = (
        None if report is None else next((r for r in report.guards.results if r.name == name), None)
    )
    measured = {} if result is None else result.measured
    return GuardValue(
        status="not_run" if result is None else result.status,
        measured={key: _finite(measured.get(key)) for key in guard_keys(name)},
    )


def _no_report(report: EvaluationReport | None) -> dict[str, Any]:
    """The report's own facts; all empty without a report."""
    if report is None:
        return {
            "subject_weight_sha256": None,
            "edit_label": None,
            "edit_spec": None,
            "edit_type": None,
            "edit_kind": None,
            "edit_params": None,
            "edit_rel_error": None,
            "tuned_source": None,
            "ratio": None,
            "ci_lower": None,
            "ci_upper": None,
            "baseline_ppl": None,
            "subject_ppl": None,
            "primary_metric_invalid": False,
            "tokens_preview": None,
            "tokens_final": None,
            "non_finite_windows": None,
            "gates": {g: GateValue(status="not_run", measured=None) for g in GATES},
            "seconds": None,
            "tool_version": None,
            "policy_digest": None,
        }
    pm, edit, summary = report.primary_metric, report.edit, report.subject.summary
    record = edit.record or {}
    rel_error = record.get("rel_error")
    return {
        "subject_weight_sha256": report.subject.model.weight_sha256,
        "edit_label": edit.label,
        "edit_spec": edit.spec,
        "edit_type": record.get("type"),
        "edit_kind": record.get("kind"),
        "edit_params": record.get("params"),
        "edit_rel_error": _finite(rel_error) if isinstance(rel_error, int | float) else None,
        "tuned_source": edit.tuned_source,
        "ratio": _finite(pm.ratio),
        "ci_lower": _finite(pm.display_ci[0]) if pm.display_ci else None,
        "ci_upper": _finite(pm.display_ci[1]) if pm.display_ci else None,
        "baseline_ppl": _finite(pm.baseline_ppl),
        "subject_ppl": _finite(pm.subject_ppl),
        "primary_metric_invalid": pm.invalid,
        "tokens_preview": summary.tokens_preview,
        "tokens_final": summary.tokens_final,
        "non_finite_windows": summary.non_finite_windows,
        "gates": {g: _gate(report.gates, g) for g in GATES},
        "seconds": _finite(report.provenance.timings.get("total")),
        "tool_version": report.tool.version,
        "policy_digest": report.policy.digest,
    }


def _requirement(met: bool | None) -> Requirement:
    return "none" if met is None else ("met" if met else "not_met")


def record_rows(v: FinalVerdict, inputs: VerdictInputs, reports: Reports) -> list[RecordRow]:
    """Every planned run of the verdict's plan as a row (see the module doc).

    ``v`` must be ``compile_verdict(inputs, reports)``; ``reports`` maps a record's path to
    its parsed report (the bytes are not read again: the record holds their sha256).
    """
    ev = Evidence.build(inputs, v.records)
    failed: dict[tuple[str, str, int], list[str]] = {}
    for fr in v.failed_requirements:
        for run in fr.failures:
            names = failed.setdefault((run.model, run.scenario, run.run), [])
            if fr.requirement not in names:
                names.append(fr.requirement)
    skipped = {(x.model, x.scenario): x.reason for x in v.skipped}
    weights = {r.model: reports[r.path][0].baseline.model.weight_sha256 for r in v.records}
    rows: list[RecordRow] = []
    for m in ev.models:
        for s in ev.scenarios:
            base: dict[str, Any] = {
                "suite": v.suite,
                "model": m,
                "model_weight_sha256": weights.get(m),
                "scenario": s.id,
                "category": s.category,
                "strictness": s.strictness,
                "intent": s.intent,
                "primary_guard": s.primary_guard,
                "primary_guard_required": s.requirements.primary_guard_required,
                "failure_class": s.failure_class,
            }
            by_run: dict[int, dict[str, Any]] = {}
            for rec in ev.records_of(m, s.id):
                by_run[rec.run] = _from_record(rec, reports[rec.path][0])
            # A run without a report fails its requirement when the scenario counts.
            absent: Requirement = "not_met" if counted(s) else "none"
            for f in ev.failures_of(m, s.id):
                first = f.error.strip().splitlines()[0] if f.error.strip() else ""
                by_run[f.run] = _absent("ERROR", f"{f.kind}: {first}", absent)
            for k in ev.missing_runs(m, s):
                by_run[k] = _absent("MISSING", "no report", absent)
            if (m, s.id) in skipped:
                for k in range(1, inputs.planned_runs(s) + 1):
                    by_run.setdefault(k, _absent("SKIPPED", skipped[(m, s.id)], "none"))
            for k in sorted(by_run):
                cells = by_run[k]
                rows.append(
                    RecordRow(
                        **base,
                        run=k,
                        failed_requirements=failed.get((m, s.id, k), []),
                        **cells,
                    )
                )
    return rows


def _absent(status: RowStatus, note: str, requirement: Requirement) -> dict[str, Any]:
    return {
        **_no_report(None),
        "status": status,
        "passed": False,
        "requirement": requirement,
        "reasons": [],
        "note": note,
        "guards": {g: _guard(None, g) for g in GUARDS},
        "flags": dict.fromkeys(CORE_GUARDS, False),
        "primary_guard_hit": False,
        "signaled": False,
        "detectors_hit": False,
        "detectors_hit_tests": [],
        "report_path": None,
        "report_digest": None,
    }


def _from_record(rec: Record, report: EvaluationReport) -> dict[str, Any]:
    return {
        **_no_report(report),
        "status": rec.status,
        "passed": rec.passed,
        "requirement": _requirement(rec.requirement_met),
        "reasons": list(rec.reasons),
        "note": "",
        "guards": {g: _guard(report, g) for g in GUARDS},
        "flags": {g: rec.guard_flags.get(g, False) for g in CORE_GUARDS},
        "primary_guard_hit": rec.primary_guard_hit,
        "signaled": rec.signaled,
        "detectors_hit": rec.detectors_hit,
        "detectors_hit_tests": [d.test for d in rec.detectors if d.hit],
        "report_path": rec.path,
        "report_digest": rec.report_digest,
    }


# --- serializing --------------------------------------------------------------------------


def records_jsonl(rows: list[RecordRow]) -> str:
    """One compact JSON object a line, keys in field order, UTF-8 kept as is."""
    return "".join(
        json.dumps(r.model_dump(mode="json"), ensure_ascii=False, allow_nan=False) + "\n"
        for r in rows
    )


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, list):
        return LIST_SEPARATOR.join(str(x) for x in value)
    if isinstance(value, dict):
        return json.dumps(value, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return str(value)


def flat_row(row: RecordRow) -> dict[str, Any]:
    """The row as ``CSV_COLUMNS`` -> native value (None where the cell is empty)."""
    out: dict[str, Any] = {}
    for name in RecordRow.model_fields:
        value = getattr(row, name)
        if name == "gates":
            for g, gate in row.gates.items():
                out[f"gate_{g}_status"] = gate.status
                out[f"gate_{g}_measured"] = gate.measured
        elif name == "guards":
            for guard, gv in row.guards.items():
                out[f"guard_{guard}_status"] = gv.status
                out.update({f"guard_{guard}_{k}": x for k, x in gv.measured.items()})
        elif name == "flags":
            out.update({f"flag_{g}": flag for g, flag in row.flags.items()})
        else:
            out[name] = value
    return out


def records_csv(rows: list[RecordRow]) -> str:
    """RFC 4180: one header row, CRLF line ends, quotes only where needed; empty cell for a
    missing value, booleans as true/false, lists joined by ``;``, edit params as JSON."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\r\n", quoting=csv.QUOTE_MINIMAL)
    writer.writerow(CSV_COLUMNS)
    for row in rows:
        flat = flat_row(row)
        writer.writerow([_cell(flat[c]) for c in CSV_COLUMNS])
    return buf.getvalue()

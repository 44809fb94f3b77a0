"""Semantic checks on a pack's own bytes: every report recomputed from its raw numbers, and
the final verdict recomputed from those reports and the verdict inputs, so a forged verdict
or summary is caught even in an unsigned pack."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import PurePosixPath
from typing import Any

from pydantic import ValidationError

from editproof.errors import EditproofError
from editproof.pack import layout as L
from editproof.pack import strictjson
from editproof.report.io import parse_report
from editproof.report.model import EvaluationReport
from editproof.report.verify import VerifyResult, verify_report
from editproof.verdict.compile import compile_verdict, inputs_digest
from editproof.verdict.model import FinalVerdict, VerdictInputs
from editproof.verdict.text import final_verdict_text

VERIFY_FORMAT = "editproof.report-verification"
# results/ file -> the FinalVerdict field it holds
SUMMARY_FIELDS = {
    "category_summary.json": "category_summary",
    "guard_signal_summary.json": "guard_signal_summary",
    "guard_intervention_summary.json": "guard_intervention_summary",
    "scenario_signal_summary.json": "scenario_signal_summary",
    "detection_matrix.json": "detection_matrix",
}


def load_report_bytes(data: bytes, source: str) -> EvaluationReport:
    """A report parsed from exactly these bytes; duplicate keys are an error."""
    strictjson.loads(data, allow_nan=True)  # raises StrictJSONError on duplicate keys
    return parse_report(data, source)


def verify_record(report_path: str, result: VerifyResult) -> dict[str, Any]:
    """What ``verify.json`` next to a report holds."""
    return {
        "format": VERIFY_FORMAT,
        "schema_version": 1,
        "report": PurePosixPath(report_path).name,
        "ok": result.ok,
        "checks": result.checks,
        "problems": result.problems,
        "notes": result.notes,
    }


def check_reports(files: Mapping[str, bytes]) -> tuple[int, list[str]]:
    """Recompute every ``certs/**/evaluation.report.json``; compare each ``verify.json``.
    Returns (reports checked, problems)."""
    problems: list[str] = []
    reports = sorted(p for p in files if p.startswith(L.CERTS + "/") and p.endswith(L.REPORT_NAME))
    for path in reports:
        try:
            report = load_report_bytes(files[path], path)
        except (EditproofError, strictjson.StrictJSONError) as exc:
            problems.append(f"{path}: {exc}")
            continue
        result = verify_report(report)
        if not result.ok:
            problems.append(
                f"{path}: {len(result.problems)} of {result.checks} checks fail: "
                + "; ".join(result.problems[:3])
            )
        sidecar = str(PurePosixPath(path).with_name(L.VERIFY_NAME))
        if sidecar not in files:
            problems.append(f"{sidecar}: missing")
            continue
        try:
            stored = strictjson.loads(files[sidecar])
        except strictjson.StrictJSONError as exc:
            problems.append(f"{sidecar}: {exc}")
            continue
        if stored != verify_record(path, result):
            problems.append(f"{sidecar}: differs from the recomputation")
    return len(reports), problems


def check_verdict(files: Mapping[str, bytes]) -> tuple[str | None, list[str]]:
    """Recompute the final verdict, its text and every summary from the pack's reports and
    ``metadata/verdict_inputs.json``. Returns (verdict as stored, problems)."""
    need = (L.FINAL_VERDICT, L.FINAL_VERDICT_TEXT, L.META_VERDICT_INPUTS)
    missing = [p for p in need if p not in files]
    if missing:
        return None, [f"{p}: not in the pack" for p in missing]
    try:
        stored = FinalVerdict.model_validate(strictjson.loads(files[L.FINAL_VERDICT]))
        inputs = VerdictInputs.model_validate(strictjson.loads(files[L.META_VERDICT_INPUTS]))
    except (strictjson.StrictJSONError, ValidationError) as exc:
        return None, [f"verdict or its inputs do not parse: {str(exc).splitlines()[0]}"]
    problems: list[str] = []
    if inputs_digest(inputs) != stored.inputs_digest:
        problems.append("metadata/verdict_inputs.json is not what the verdict was compiled from")
    reports: dict[str, tuple[EvaluationReport, bytes]] = {}
    for ref in inputs.reports:
        try:
            path = f"{L.cert_dir(ref.path)}/{L.REPORT_NAME}"
        except ValueError as exc:
            problems.append(str(exc))
            continue
        if path not in files:
            problems.append(f"{path}: the verdict counts it, the pack does not hold it")
            continue
        try:
            reports[ref.path] = (load_report_bytes(files[path], path), files[path])
        except (EditproofError, strictjson.StrictJSONError) as exc:
            problems.append(f"{path}: {exc}")
    if problems:
        return stored.verdict, problems
    try:
        again = compile_verdict(inputs, reports)
    except EditproofError as exc:
        return stored.verdict, [f"verdict cannot be recomputed: {exc}"]
    again = again.model_copy(update={"generated_at": stored.generated_at})
    if again.model_dump(mode="json") != stored.model_dump(mode="json"):
        problems.append(
            f"results/final_verdict.json says {stored.verdict}; recomputed from the pack's "
            f"reports it is {again.verdict}"
            if again.verdict != stored.verdict
            else "results/final_verdict.json differs from its recomputation"
        )
    if files[L.FINAL_VERDICT_TEXT].decode("utf-8", "replace") != final_verdict_text(again):
        problems.append("results/final_verdict.txt differs from the recomputed verdict")
    for name, fld in SUMMARY_FIELDS.items():
        path = f"{L.RESULTS}/{name}"
        if path not in files:
            problems.append(f"{path}: not in the pack")
            continue
        try:
            ok = strictjson.loads(files[path]) == getattr(again, fld).model_dump(mode="json")
        except strictjson.StrictJSONError as exc:
            problems.append(f"{path}: {exc}")
            continue
        if not ok:
            problems.append(f"{path} differs from its recomputation")
    return stored.verdict, problems

"""Reading the suite's reports and inputs, writing the verdict files (atomically)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from pathlib import Path

from pydantic import BaseModel, ValidationError

from editproof.errors import (
    InvalidInputError,
    MalformedReportError,
    NotFoundError,
    OutputError,
    validation_summary,
)
from editproof.fileio import atomic_write_text
from editproof.report.io import parse_report
from editproof.report.model import EvaluationReport
from editproof.verdict.export_records import record_rows, records_csv, records_jsonl
from editproof.verdict.junit import junit_xml
from editproof.verdict.model import FinalVerdict, ReportRef, VerdictInputs
from editproof.verdict.text import final_verdict_text

FINAL_JSON = "final_verdict.json"
FINAL_TEXT = "final_verdict.txt"
CATEGORY_SUMMARY = "category_summary.json"
GUARD_SIGNAL_SUMMARY = "guard_signal_summary.json"
GUARD_INTERVENTION_SUMMARY = "guard_intervention_summary.json"
SCENARIO_SIGNAL_SUMMARY = "scenario_signal_summary.json"
DETECTION_MATRIX = "detection_matrix.json"
RECORDS_JSONL = "records.jsonl"
RECORDS_CSV = "records.csv"
JUNIT_XML = "junit.xml"
VERDICT_FILES = (
    FINAL_JSON,
    FINAL_TEXT,
    CATEGORY_SUMMARY,
    GUARD_SIGNAL_SUMMARY,
    GUARD_INTERVENTION_SUMMARY,
    SCENARIO_SIGNAL_SUMMARY,
    DETECTION_MATRIX,
)
# Written beside the verdict files by every suite run (write_records).
RECORD_FILES = (RECORDS_JSONL, RECORDS_CSV, JUNIT_XML)


def model_json(model: BaseModel) -> str:
    return model.model_dump_json(indent=2) + "\n"


def write_verdict(
    reports_dir: Path, v: FinalVerdict, *, generated_at: str | None = None
) -> list[Path]:
    """Write the verdict, its text and each summary as its own file, atomically.

    ``final_verdict.json`` (and its text) get ``generated_at`` (now, UTC, unless given);
    the other files hold no timestamp.
    """
    stamp = generated_at or datetime.now(UTC).isoformat(timespec="seconds")
    stamped = v.model_copy(update={"generated_at": stamp})
    texts = {
        FINAL_JSON: model_json(stamped),
        FINAL_TEXT: final_verdict_text(stamped),
        CATEGORY_SUMMARY: model_json(v.category_summary),
        GUARD_SIGNAL_SUMMARY: model_json(v.guard_signal_summary),
        GUARD_INTERVENTION_SUMMARY: model_json(v.guard_intervention_summary),
        SCENARIO_SIGNAL_SUMMARY: model_json(v.scenario_signal_summary),
        DETECTION_MATRIX: model_json(v.detection_matrix),
    }
    return _write_all(reports_dir, texts)


def write_records(
    reports_dir: Path,
    v: FinalVerdict,
    inputs: VerdictInputs,
    reports: Mapping[str, tuple[EvaluationReport, bytes]],
) -> list[Path]:
    """Write ``records.jsonl``, ``records.csv`` and ``junit.xml`` of a compiled verdict,
    each atomically; ``v`` must be ``compile_verdict(inputs, reports)``."""
    rows = record_rows(v, inputs, reports)
    texts = {
        RECORDS_JSONL: records_jsonl(rows),
        RECORDS_CSV: records_csv(rows),
        JUNIT_XML: junit_xml(v, rows),
    }
    return _write_all(reports_dir, texts)


def _write_all(reports_dir: Path, texts: Mapping[str, str]) -> list[Path]:
    written = []
    for name, text in texts.items():
        path = reports_dir / name
        try:
            atomic_write_text(path, text)
        except OSError as exc:
            raise OutputError(f"cannot write '{path}': {exc.strerror}") from None
        written.append(path)
    return written


def load_reports(
    run_dir: Path, refs: Iterable[ReportRef]
) -> dict[str, tuple[EvaluationReport, bytes]]:
    """Each referenced report, parsed from the exact bytes that are hashed into its record.

    A missing file raises NotFoundError; a malformed one InvalidInputError naming the path.
    """
    out: dict[str, tuple[EvaluationReport, bytes]] = {}
    for ref in refs:
        path = run_dir / ref.path
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise NotFoundError(f"report {ref.path} not found in run dir {run_dir}") from None
        except OSError as exc:
            raise InvalidInputError(f"report {ref.path}: cannot read ({exc.strerror})") from None
        try:
            out[ref.path] = (parse_report(data, ref.path), data)
        except MalformedReportError as exc:
            raise InvalidInputError(f"malformed report {exc.message}") from None
    return out


def parse_inputs(text: str | bytes, source: str) -> VerdictInputs:
    """Verdict inputs from JSON; errors name the source and the first wrong field."""
    try:
        data = json.loads(text)
    except (UnicodeDecodeError, ValueError) as exc:
        raise InvalidInputError(f"verdict inputs {source}: not valid JSON ({exc})") from None
    try:
        return VerdictInputs.model_validate(data)
    except ValidationError as exc:
        raise InvalidInputError(f"verdict inputs {source}: {validation_summary(exc)}") from None


def load_inputs(path: Path) -> VerdictInputs:
    if not path.is_file():
        raise NotFoundError(f"verdict inputs not found: {path}")
    return parse_inputs(path.read_bytes(), str(path))

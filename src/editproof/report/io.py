"""Reading and writing report files. Writes are atomic: temp file, fsync, rename."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from pydantic import ValidationError

from editproof.errors import MalformedReportError, NotFoundError, OutputError
from editproof.report.model import EvaluationReport

REPORT_NAME = "evaluation.report.json"
HTML_NAME = "evaluation.html"


def report_json(report: EvaluationReport) -> str:
    return report.model_dump_json(indent=2) + "\n"


def load_report(path: str | Path) -> EvaluationReport:
    """Parse and validate a report file; errors name the file and the first problem."""
    p = Path(path)
    if p.is_dir():
        p = p / REPORT_NAME
    if not p.is_file():
        raise NotFoundError(f"report file '{path}' does not exist")
    return parse_report(p.read_bytes(), str(p))


def parse_report(data: str | bytes, source: str) -> EvaluationReport:
    """Parse and validate report JSON; errors name ``source`` and the first problem."""
    try:
        raw = json.loads(data)
    except (UnicodeDecodeError, ValueError) as exc:
        raise MalformedReportError(f"{source}: not valid JSON ({exc})") from None
    if not isinstance(raw, dict) or raw.get("format") != "editproof.evaluation-report":
        raise MalformedReportError(f"{source}: not an editproof evaluation report (format field)")
    try:
        return EvaluationReport.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(x) for x in first["loc"]) or "(top level)"
        raise MalformedReportError(
            f"{source}: does not match the report schema at {where}: {first['msg']}"
        ) from None


def prepare_output_dir(out: Path, *, force: bool) -> Path:
    """Create ``out`` (or check it) before any work runs, so a bad path fails in seconds.

    An existing report is never overwritten without ``force``.
    """
    if out.exists() and not out.is_dir():
        raise OutputError(f"output path '{out}' exists and is not a directory")
    if (out / REPORT_NAME).exists() and not force:
        raise OutputError(f"'{out / REPORT_NAME}' already exists; choose another --out or --force")
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=out, prefix=".write-test-"):
            pass
    except OSError as exc:
        raise OutputError(f"cannot write to output directory '{out}': {exc.strerror}") from None
    return out

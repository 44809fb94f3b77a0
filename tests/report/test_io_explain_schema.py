from __future__ import annotations

import json
from pathlib import Path

import pytest

from editproof.errors import MalformedReportError, NotFoundError, OutputError
from editproof.fileio import atomic_write_text
from editproof.report.explain import explain_lines
from editproof.report.io import load_report, prepare_output_dir, report_json
from editproof.report.schema import SCHEMAS, schema_text
from tests.report.factory import make_report

CONTRACTS = Path(__file__).resolve().parents[2] / "contracts"


@pytest.mark.parametrize("name", sorted(SCHEMAS))
def test_committed_schemas_are_in_sync(name: str) -> None:
    committed = CONTRACTS / name
    assert committed.is_file(), f"run `make schemas` to create {committed}"
    assert committed.read_text() == schema_text(SCHEMAS[name]), "run `make schemas`"


def test_report_validates_against_its_schema() -> None:
    jsonschema = pytest.importorskip("jsonschema")
    schema = json.loads((CONTRACTS / "evaluation_report.schema.json").read_text())
    jsonschema.validate(json.loads(report_json(make_report(nan=True))), schema)


@pytest.mark.parametrize(
    ("content", "match"),
    [
        ("{not json", "not valid JSON"),
        ("[]", "not an editproof evaluation report"),
        ('{"format": "other"}', "not an editproof evaluation report"),
        ('{"format": "editproof.evaluation-report", "schema_version": 1}', "does not match"),
    ],
)
def test_malformed_reports(tmp_path: Path, content: str, match: str) -> None:
    path = tmp_path / "r.json"
    path.write_text(content)
    with pytest.raises(MalformedReportError, match=match):
        load_report(path)


def test_future_schema_version_is_malformed(tmp_path: Path) -> None:
    data = json.loads(report_json(make_report()))
    data["schema_version"] = 2
    path = tmp_path / "r.json"
    path.write_text(json.dumps(data))
    with pytest.raises(MalformedReportError, match="schema_version"):
        load_report(path)


def test_missing_report(tmp_path: Path) -> None:
    with pytest.raises(NotFoundError):
        load_report(tmp_path / "nope.json")


def test_prepare_output_dir(tmp_path: Path) -> None:
    out = prepare_output_dir(tmp_path / "a" / "b", force=False)
    assert out.is_dir()
    (out / "evaluation.report.json").write_text("{}")
    with pytest.raises(OutputError, match="already exists"):
        prepare_output_dir(out, force=False)
    prepare_output_dir(out, force=True)
    assert (out / "evaluation.report.json").read_text() == "{}"  # checked, not touched


def test_atomic_write_leaves_no_temp_files(tmp_path: Path) -> None:
    target = tmp_path / "x.json"
    atomic_write_text(target, "one")
    atomic_write_text(target, "two")
    assert target.read_text() == "two"
    assert [p.name for p in tmp_path.iterdir()] == ["x.json"]


def test_explain_lists_every_gate() -> None:
    report = make_report(shift=0.3, noise=0.05, relax=False)
    lines = explain_lines(report)
    assert lines[0].startswith("FAIL")
    for gate in report.gates:
        assert any(gate.name in line for line in lines)
    assert any("FAIL" in line and "ratio " in line for line in lines)


def test_explain_invalid_metric() -> None:
    lines = explain_lines(make_report(nan=True))
    assert any("INVALID" in line for line in lines)

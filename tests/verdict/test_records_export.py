"""records.jsonl / records.csv: one row per planned run, stable columns, loads as is."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from editproof.verdict.compile import compile_verdict
from editproof.verdict.export_records import (
    CSV_COLUMNS,
    GATES,
    RecordRow,
    record_rows,
    records_csv,
    records_jsonl,
)
from editproof.verdict.model import SkippedScenario, TaskFailure
from editproof.verdict.write import RECORD_FILES, write_records
from tests.verdict.synth import (
    catastrophic_report,
    good_report,
    override,
    rmt_probe_report,
    suite,
)

CONTRACTS = Path(__file__).resolve().parents[2] / "contracts"
ODD = "m<&\"1, 'x'\n"  # a model name CSV and XML must both quote


def _mixed(model: str = "m1") -> tuple[object, object, object]:
    """A failing clean run, an errored run, a missing run and a skipped scenario."""

    def make(m: str, s, n: int):  # type: ignore[no-untyped-def]
        if s.id == "quant_4bit_clean" and n == 1:
            return catastrophic_report()
        if s.id == "fp8_e5m2_clean":
            return None  # skipped below
        if s.id == "prune_50pct_stress" and n == 2:
            return None  # a task failure below
        if s.id == "nan_injection":
            return None  # missing: neither report nor failure
        return good_report(s)

    failure = TaskFailure(
        model=model,
        scenario="prune_50pct_stress",
        run=2,
        kind="oom",
        error='CUDA out of memory, "tried" 2 GiB\nTraceback ...',
    )
    skipped = SkippedScenario(model=model, scenario="fp8_e5m2_clean", reason="no fp8, on cpu")
    inputs, reports = suite(models=(model,), make=make, failures=[failure], skipped=[skipped])
    return compile_verdict(inputs, reports), inputs, reports


def test_one_row_per_planned_run_with_the_verdicts_view() -> None:
    v, inputs, reports = _mixed()
    rows = record_rows(v, inputs, reports)  # type: ignore[arg-type]
    runs = {s.id: inputs.planned_runs(s) for s in inputs.catalogue.scenarios}  # type: ignore[attr-defined]
    assert len(rows) == sum(runs.values())
    assert len([r for r in rows if r.report_path]) == len(v.records)  # type: ignore[attr-defined]
    by = {(r.scenario, r.run): r for r in rows}
    # Order: scenario in catalogue order, then run.
    ids = [s.id for s in inputs.catalogue.scenarios]  # type: ignore[attr-defined]
    assert [(r.scenario, r.run) for r in rows] == sorted(by, key=lambda k: (ids.index(k[0]), k[1]))

    bad = by[("quant_4bit_clean", 1)]
    assert bad.status == "FAIL" and not bad.passed and bad.requirement == "not_met"
    assert bad.failed_requirements == ["clean_all_pass"]
    assert bad.reasons == ["primary_metric_fail"]
    assert bad.gates["ratio"].status == "fail" and bad.gates["ratio"].measured > 1.1  # type: ignore[operator]
    assert bad.report_digest and len(bad.report_digest) == 64
    assert bad.model_weight_sha256 and len(bad.model_weight_sha256) == 64

    ok = by[("quant_4bit_clean", 2)]
    assert ok.status == "PASS" and ok.passed and ok.requirement == "met"
    assert ok.failed_requirements == [] and ok.tokens_final and ok.ratio and ok.ci_upper

    err = by[("prune_50pct_stress", 2)]
    assert err.status == "ERROR" and err.note == 'oom: CUDA out of memory, "tried" 2 GiB'
    assert "no_task_failures" in err.failed_requirements and err.report_path is None
    assert err.model_weight_sha256 == bad.model_weight_sha256  # the model's, from its reports

    missing = by[("nan_injection", 1)]
    assert missing.status == "MISSING" and "scenario_coverage" in missing.failed_requirements

    skipped = [r for r in rows if r.scenario == "fp8_e5m2_clean"]
    assert len(skipped) == runs["fp8_e5m2_clean"]
    assert all(r.status == "SKIPPED" and r.note == "no fp8, on cpu" for r in skipped)
    assert all(r.requirement == "none" and not r.failed_requirements for r in skipped)

    probe = next(r for r in rows if r.scenario == "rmt_norm_noise")
    assert probe.detectors_hit and probe.detectors_hit_tests and probe.flags["rmt"]


def test_csv_header_is_fixed_and_loads_into_pandas_with_right_dtypes(tmp_path: Path) -> None:
    pd = pytest.importorskip("pandas")
    v, inputs, reports = _mixed()
    text = records_csv(record_rows(v, inputs, reports))  # type: ignore[arg-type]
    # A healthy run of other scenarios has exactly the same header.
    clean_inputs, clean_reports = suite()
    clean = records_csv(
        record_rows(compile_verdict(clean_inputs, clean_reports), clean_inputs, clean_reports)
    )
    assert text.split("\r\n", 1)[0] == clean.split("\r\n", 1)[0] == ",".join(CSV_COLUMNS)
    assert text.endswith("\r\n") and "\r\n\r\n" not in text

    path = tmp_path / "records.csv"
    path.write_bytes(text.encode("utf-8"))
    df = pd.read_csv(path)
    assert list(df.columns) == list(CSV_COLUMNS)
    assert len(df) == len(text.splitlines()) - 1
    for col in ("schema_version", "run"):
        assert df[col].dtype == "int64", col
    for col in ("passed", "primary_guard_required", "primary_metric_invalid", "signaled",
                "detectors_hit", "primary_guard_hit", *(c for c in CSV_COLUMNS if c.startswith("flag_"))):  # fmt: skip
        assert df[col].dtype == bool, col
    for col in ("ratio", "ci_lower", "ci_upper", "tokens_final", "gate_ratio_measured",
                "guard_spectral_caps", "seconds"):  # fmt: skip
        assert df[col].dtype == "float64", col
    for col in ("model", "scenario", "status", "requirement", "gate_ratio_status", "note"):
        assert pd.api.types.is_string_dtype(df[col]), col
    assert set(df["status"]) == {"PASS", "FAIL", "ERROR", "MISSING", "SKIPPED"}
    errored = df[df["status"] == "ERROR"].iloc[0]
    assert pd.isna(errored["ratio"]) and errored["passed"] == False  # noqa: E712
    assert errored["note"] == 'oom: CUDA out of memory, "tried" 2 GiB'
    failing = df[(df["scenario"] == "quant_4bit_clean") & (df["run"] == 1)].iloc[0]
    assert failing["failed_requirements"] == "clean_all_pass"
    assert failing["gate_ratio_status"] == "fail" and failing["ratio"] > 1.1


def test_csv_quotes_odd_names_and_round_trips_against_jsonl() -> None:
    v, inputs, reports = _mixed(ODD)
    rows = record_rows(v, inputs, reports)  # type: ignore[arg-type]
    parsed = list(csv.DictReader(io.StringIO(records_csv(rows), newline="")))
    assert len(parsed) == len(rows) and {p["model"] for p in parsed} == {ODD}
    lines = records_jsonl(rows).splitlines()
    assert len(lines) == len(rows)
    for line, cells in zip(lines, parsed, strict=True):
        data = json.loads(line)
        assert cells["ratio"] == ("" if data["ratio"] is None else repr(data["ratio"]))
        assert cells["passed"] == ("true" if data["passed"] else "false")
        assert cells["gate_drift_status"] == data["gates"]["drift"]["status"]
        assert cells["reasons"] == ";".join(data["reasons"])
        params = data["edit_params"]
        assert cells["edit_params"] == (
            "" if params is None else json.dumps(params, sort_keys=True, separators=(",", ":"))
        )


def test_jsonl_rows_validate_against_the_model_and_the_committed_schema() -> None:
    jsonschema = pytest.importorskip("jsonschema")
    schema = json.loads((CONTRACTS / "records.schema.json").read_text())
    v, inputs, reports = _mixed()
    for line in records_jsonl(record_rows(v, inputs, reports)).splitlines():  # type: ignore[arg-type]
        data = json.loads(line)
        assert data["format"] == "editproof.records" and data["schema_version"] == 1
        RecordRow.model_validate(data)
        jsonschema.validate(data, schema)
    data["gates"].pop("tail")
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(data, schema)
    with pytest.raises(ValidationError, match="gates must be exactly"):
        RecordRow.model_validate(data)
    data["gates"]["tail"] = {"status": "pass", "measured": None}
    data["guards"]["spectral"]["measured"].pop("caps")
    with pytest.raises(ValidationError, match=r"guards\.spectral\.measured"):
        RecordRow.model_validate(data)


def test_gate_and_guard_values_come_from_the_report() -> None:
    inputs, reports = suite(make=override("rmt_norm_noise", rmt_probe_report(caught=False)))
    rows = record_rows(compile_verdict(inputs, reports), inputs, reports)
    row = next(r for r in rows if r.scenario == "rmt_norm_noise")
    report = reports[row.report_path][0]  # type: ignore[index]
    assert list(row.gates) == list(GATES)
    for gate in report.gates:
        assert row.gates[gate.name].measured == gate.measured
    assert row.guards["rmt"].status == "pass" and row.guards["rmt"].measured["max_delta"] == 0.01
    assert row.guards["spectral"].measured["min_stable_rank_ratio"] is None  # not measured
    assert not row.detectors_hit and row.requirement == "not_met"
    assert "scenario_expected_detectors" in row.failed_requirements


def test_write_records_writes_three_files_atomically(tmp_path: Path) -> None:
    v, inputs, reports = _mixed()
    written = write_records(tmp_path / "reports", v, inputs, reports)  # type: ignore[arg-type]
    assert (
        [p.name for p in written]
        == list(RECORD_FILES)
        == ["records.jsonl", "records.csv", "junit.xml"]
    )
    assert sorted(p.name for p in (tmp_path / "reports").iterdir()) == sorted(RECORD_FILES)
    again = write_records(tmp_path / "reports", v, inputs, reports)  # type: ignore[arg-type]
    assert [p.read_bytes() for p in again] == [p.read_bytes() for p in written]

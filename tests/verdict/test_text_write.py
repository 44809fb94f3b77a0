from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import BaseModel

from editproof.errors import InvalidInputError, NotFoundError
from editproof.verdict.compile import compile_verdict
from editproof.verdict.model import FinalVerdict, TaskFailure
from editproof.verdict.text import final_verdict_text
from editproof.verdict.views import (
    CategorySummary,
    DetectionMatrix,
    GuardInterventionSummary,
    GuardSignalSummary,
    ScenarioSignalSummary,
)
from editproof.verdict.write import (
    VERDICT_FILES,
    load_inputs,
    load_reports,
    parse_inputs,
    write_verdict,
)
from tests.verdict.synth import catastrophic_report, good_report, override, suite

CONTRACTS = Path(__file__).resolve().parents[2] / "contracts"
RELAX = "demo suite: 1 run per scenario instead of 3/2/1"


def _failing() -> FinalVerdict:
    inputs, reports = suite(
        make=override("quant_4bit_clean", catastrophic_report(), run=1), relaxations=[RELAX]
    )
    return compile_verdict(inputs, reports)


def test_text_shows_verdict_relaxations_and_failed_requirements() -> None:
    v = _failing()
    text = final_verdict_text(v)
    lines = text.splitlines()
    assert lines[0] == "EDITPROOF SUITE — FINAL VERDICT: FAIL"
    assert f"  - {RELAX}" in lines
    assert "  [clean_all_pass] m1: quant_4bit_clean: run 1 of 3 did not PASS" in lines
    assert any(
        line.strip().startswith("run 1  m1/reports/quant_4bit_clean/run_1/evaluation.report.json")
        and "primary_metric_fail" in line
        for line in lines
    )
    assert any(line.startswith("  FAIL  clean_all_pass") for line in lines)
    # One detection-matrix row per run, with the requirement column.
    rows = [line for line in lines if line.startswith("  quant_4bit_clean ")]
    assert len(rows) == 3 and rows[0].endswith("NO") and rows[1].endswith("yes")


def test_text_of_a_passing_run_has_no_failed_lines() -> None:
    v = compile_verdict(*suite())
    text = final_verdict_text(v)
    assert text.startswith("EDITPROOF SUITE — FINAL VERDICT: PASS\n")
    assert "Relaxations" not in text and "[" not in text
    assert "pass*" in text  # the VE signal and caps below budget are marked as flagged


def test_text_lists_missing_skipped_and_failures() -> None:
    failure = TaskFailure(
        model="m1", scenario="nan_injection", run=1, kind="oom", error="out of memory"
    )
    inputs, reports = suite(
        make=lambda m, s, n: None if s.id in ("nan_injection", "inf_injection") else good_report(s),
        failures=[failure],
    )
    text = final_verdict_text(compile_verdict(inputs, reports))
    assert "  m1: inf_injection: run(s) 1" in text
    assert "  m1: nan_injection: run 1: oom: out of memory" in text
    assert "[no_task_failures] m1: nan_injection: run 1 failed without a report (oom)" in text
    assert "[scenario_coverage] m1: inf_injection: run 1 of 1 planned have no report" in text


def test_write_verdict_writes_every_file_atomically(tmp_path: Path) -> None:
    v = _failing()
    written = write_verdict(tmp_path / "reports", v, generated_at="2026-01-02T03:04:05+00:00")
    assert [p.name for p in written] == list(VERDICT_FILES)
    assert sorted(p.name for p in (tmp_path / "reports").iterdir()) == sorted(VERDICT_FILES)
    loaded = FinalVerdict.model_validate_json((tmp_path / "reports/final_verdict.json").read_text())
    assert loaded.generated_at == "2026-01-02T03:04:05+00:00"
    assert loaded.model_copy(update={"generated_at": None}) == v
    assert (
        "generated at 2026-01-02T03:04:05+00:00"
        in (tmp_path / "reports/final_verdict.txt").read_text()
    )
    pairs: list[tuple[str, type[BaseModel], BaseModel]] = [
        ("category_summary.json", CategorySummary, v.category_summary),
        ("guard_signal_summary.json", GuardSignalSummary, v.guard_signal_summary),
        ("guard_intervention_summary.json", GuardInterventionSummary, v.guard_intervention_summary),
        ("scenario_signal_summary.json", ScenarioSignalSummary, v.scenario_signal_summary),
        ("detection_matrix.json", DetectionMatrix, v.detection_matrix),
    ]
    for name, model, expected in pairs:
        text = (tmp_path / "reports" / name).read_text()
        assert model.model_validate_json(text) == expected
        assert "generated_at" not in text


def test_written_files_validate_against_committed_schemas(tmp_path: Path) -> None:
    jsonschema = pytest.importorskip("jsonschema")
    write_verdict(tmp_path, _failing())
    for name, schema in [
        ("final_verdict.json", "final_verdict.schema.json"),
        ("detection_matrix.json", "detection_matrix.schema.json"),
    ]:
        jsonschema.validate(
            json.loads((tmp_path / name).read_text()),
            json.loads((CONTRACTS / schema).read_text()),
        )


def test_load_reports_reads_bytes_and_names_bad_files(tmp_path: Path) -> None:
    inputs, reports = suite()
    refs = inputs.reports[:2]
    for ref in refs:
        (tmp_path / ref.path).parent.mkdir(parents=True)
        (tmp_path / ref.path).write_bytes(reports[ref.path][1])
    loaded = load_reports(tmp_path, refs)
    assert {k: v[1] for k, v in loaded.items()} == {r.path: reports[r.path][1] for r in refs}
    assert loaded[refs[0].path][0] == reports[refs[0].path][0]
    (tmp_path / refs[1].path).write_text('{"format": "editproof.evaluation-report"}')
    with pytest.raises(InvalidInputError, match=f"malformed report {refs[1].path}: does not match"):
        load_reports(tmp_path, refs)
    (tmp_path / refs[1].path).write_text("{")
    with pytest.raises(InvalidInputError, match=f"{refs[1].path}: not valid JSON"):
        load_reports(tmp_path, refs)
    (tmp_path / refs[1].path).unlink()
    with pytest.raises(NotFoundError, match=f"report {refs[1].path} not found"):
        load_reports(tmp_path, refs)


def test_inputs_round_trip_and_errors(tmp_path: Path) -> None:
    inputs, _ = suite(relaxations=[RELAX])
    path = tmp_path / "verdict_inputs.json"
    path.write_text(inputs.model_dump_json(indent=2))
    assert load_inputs(path) == inputs
    data = json.loads(path.read_text())
    data["reports"][0]["run"] = 0
    with pytest.raises(
        InvalidInputError, match=r"x\.json: reports\.0\.run: Input should be greater"
    ):
        parse_inputs(json.dumps(data), "x.json")
    with pytest.raises(InvalidInputError, match="not valid JSON"):
        parse_inputs("{", "x.json")
    with pytest.raises(NotFoundError):
        load_inputs(tmp_path / "absent.json")


def test_huge_ratios_keep_their_columns() -> None:
    from editproof.verdict.text import _num

    assert _num(1.01234) == "1.0123"
    assert _num(277955812171.24) == "2.78e+11" and len(_num(3.6e13)) <= 8
    assert _num(None) == "-"

"""junit.xml: one test case per planned run, parsed by junitparser and validated against a
JUnit XSD (the attributes CI readers know, closed)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from editproof.verdict.compile import compile_verdict
from editproof.verdict.export_records import record_rows
from editproof.verdict.junit import VERDICT_SUITE, junit_xml
from editproof.verdict.model import REQUIREMENTS
from tests.verdict.synth import suite
from tests.verdict.test_records_export import ODD, _mixed

XSD = Path(__file__).parent / "data" / "junit.xsd"


def _xml(model: str = "m1") -> tuple[str, Any, Any]:
    v, inputs, reports = _mixed(model)
    rows = record_rows(v, inputs, reports)  # type: ignore[arg-type]
    return junit_xml(v, rows), v, rows  # type: ignore[arg-type]


def _parse(tmp_path: Path, text: str) -> Any:
    junitparser = pytest.importorskip("junitparser")
    path = tmp_path / "junit.xml"
    path.write_text(text, encoding="utf-8")
    return junitparser.JUnitXml.fromfile(str(path))


def _validate(text: str) -> None:
    xmlschema = pytest.importorskip("xmlschema")
    xmlschema.XMLSchema(str(XSD)).validate(text)


def test_one_case_per_run_with_failure_error_and_skipped(tmp_path: Path) -> None:
    junitparser = pytest.importorskip("junitparser")
    text, v, rows = _xml()
    _validate(text)
    suites = {s.name: s for s in _parse(tmp_path, text)}
    assert list(suites) == ["m1", VERDICT_SUITE]
    model = suites["m1"]
    cases = {c.name: c for c in model}
    assert len(cases) == len(rows) == model.tests
    assert {c.classname for c in model} == {f"m1.{r.category}" for r in rows}

    bad = cases["quant_4bit_clean[run_1]"]
    (failure,) = bad.result
    assert isinstance(failure, junitparser.Failure)
    assert failure.type == "clean_all_pass"
    assert failure.message == (
        "requirement clean_all_pass failed; report "
        "m1/reports/quant_4bit_clean/run_1/evaluation.report.json"
    )
    assert "did not PASS" in failure.text and "primary_metric_fail" in failure.text
    assert bad.classname == "m1.clean" and float(bad.time) > 0
    assert cases["quant_4bit_clean[run_2]"].is_passed

    (error,) = cases["prune_50pct_stress[run_2]"].result
    assert isinstance(error, junitparser.Error) and error.type == "error"
    assert error.message.startswith('oom: CUDA out of memory, "tried" 2 GiB')
    assert "no_task_failures" in error.message
    (missing,) = cases["nan_injection[run_1]"].result
    assert isinstance(missing, junitparser.Error) and "scenario_coverage" in missing.message

    skipped = [c for c in model if c.name.startswith("fp8_e5m2_clean[")]
    assert skipped and all(c.is_skipped for c in skipped)
    assert skipped[0].result[0].message == "skipped: no fp8, on cpu"

    assert model.failures == sum(
        1 for c in model if any(isinstance(r, junitparser.Failure) for r in c.result)
    )
    assert model.errors == 2  # the task failure and the missing run
    assert model.skipped == len(skipped)

    # The verdict's requirements, one case each; the failed ones are failures.
    req = suites[VERDICT_SUITE]
    assert [c.name for c in req] == list(REQUIREMENTS)
    failed = {c.name for c in req if not c.is_passed and not c.is_skipped}
    assert failed == {f.requirement for f in v.failed_requirements}
    assert {"clean_all_pass", "no_task_failures", "scenario_coverage"} <= failed


def test_passing_verdict_has_no_failures(tmp_path: Path) -> None:
    inputs, reports = suite(models=("m1", "m2"))
    v = compile_verdict(inputs, reports)
    text = junit_xml(v, record_rows(v, inputs, reports))
    _validate(text)
    xml = _parse(tmp_path, text)
    xml.update_statistics()
    assert v.verdict == "PASS"
    assert [s.name for s in xml] == ["m1", "m2", VERDICT_SUITE]
    assert xml.failures == 0 and xml.errors == 0
    assert xml.tests == len(v.records) + len(REQUIREMENTS)


def test_names_with_markup_and_control_characters_are_escaped(tmp_path: Path) -> None:
    name = ODD + "\x00\x1b"
    text, _, rows = _xml(name)
    assert "\x00" not in text and "\x1b" not in text
    _validate(text)
    suites = list(_parse(tmp_path, text))
    assert suites[0].name == ODD + "\ufffd\ufffd"
    classes = {c.classname for c in suites[0]}
    assert f"{ODD}\ufffd\ufffd.clean" in classes
    failing = next(c for c in suites[0] if c.name == "quant_4bit_clean[run_1]")
    assert f"report {ODD}\ufffd\ufffd/reports/quant_4bit_clean" in failing.result[0].message
    assert len(list(suites[0])) == len(rows)


def test_the_schema_rejects_what_ci_readers_would_not_take() -> None:
    xmlschema = pytest.importorskip("xmlschema")
    text, _, _ = _xml()
    schema = xmlschema.XMLSchema(str(XSD))
    assert schema.is_valid(text)
    assert not schema.is_valid(text.replace('<testsuite name="m1"', "<testsuite", 1))
    assert not schema.is_valid(text.replace(' time="', ' duration="', 1))
    assert not schema.is_valid(text.replace("<testsuites ", '<testsuites skipped="1" ', 1))

from __future__ import annotations

import hashlib

import pytest

from editproof.errors import InvalidInputError
from editproof.report.io import report_json
from editproof.verdict.catalogue import (
    GuardMeasureDetector,
    GuardStatusDetector,
    ProbeDetector,
    ValidationFlagDetector,
    packaged_catalogue,
)
from editproof.verdict.model import DetectorResult, ReportRef
from editproof.verdict.records import (
    detectors_hit,
    evaluate_detector,
    failure_reasons,
    guard_flags,
    record_from_report,
)
from tests.report.factory import make_report
from tests.verdict.synth import (
    catastrophic_report,
    clean_report,
    reports_of,
    rmt_probe_report,
    subtle_spectral_report,
    ve_probe_report,
)


def test_validation_flag_detector() -> None:
    det = ValidationFlagDetector(flag="primary_metric_acceptable", expected=False)
    miss = evaluate_detector(det, clean_report(), "any_of")
    assert (miss.observed, miss.hit) == (True, False)
    assert miss.test == "validation.primary_metric_acceptable == false"
    assert evaluate_detector(det, catastrophic_report(), "any_of").hit
    absent = ValidationFlagDetector(flag="no_such_flag", expected=False)
    res = evaluate_detector(absent, clean_report(), "any_of")
    assert (res.observed, res.hit) == (None, False)


def test_guard_status_detector_reads_not_run_for_an_absent_guard() -> None:
    det = GuardStatusDetector(guard="invariants", allowed=["warn", "fail"])
    assert evaluate_detector(det, reports_of(invariants="warn"), "any_of").hit
    assert not evaluate_detector(det, clean_report(), "any_of").hit
    bare = make_report(noise=0.01)  # guards not run
    res = evaluate_detector(det, bare, "any_of")
    assert (res.observed, res.hit) == ("not_run", False)
    not_run = GuardStatusDetector(guard="rmt", allowed=["not_run"])
    assert evaluate_detector(not_run, bare, "any_of").hit


def test_guard_measure_detector() -> None:
    det = GuardMeasureDetector(guard="spectral", key="caps", min=3)
    assert evaluate_detector(det, subtle_spectral_report(caps=3), "any_of").hit
    res = evaluate_detector(det, subtle_spectral_report(caps=2), "any_of")
    assert (res.observed, res.hit) == (2.0, False)
    res = evaluate_detector(det, make_report(noise=0.01), "any_of")
    assert (res.observed, res.hit) == (None, False)
    missing_key = GuardMeasureDetector(guard="spectral", key="no_such", min=0)
    assert not evaluate_detector(missing_key, clean_report(), "any_of").hit


def test_probe_detector() -> None:
    stable = ProbeDetector(probe="rmt_probe", field="stable", expected=False)
    assert evaluate_detector(stable, rmt_probe_report(caught=True), "any_of").hit
    assert not evaluate_detector(stable, rmt_probe_report(caught=False), "any_of").hit
    absent = evaluate_detector(stable, clean_report(), "any_of")
    assert (absent.observed, absent.hit) == (None, False)
    scales = ProbeDetector(probe="ve_probe", field="proposed_scales", min=1)
    assert evaluate_detector(scales, ve_probe_report(caught=True), "any_of").hit
    assert not evaluate_detector(scales, ve_probe_report(caught=False), "any_of").hit
    # A boolean is not a number: `signal >= 1` does not hold for signal == true.
    signal_min = ProbeDetector(probe="ve_probe", field="signal", min=1)
    assert not evaluate_detector(signal_min, ve_probe_report(caught=True), "any_of").hit


def _d(group: str, hit: bool) -> DetectorResult:
    return DetectorResult(group=group, kind="probe", test="t", observed=None, hit=hit)


@pytest.mark.parametrize(
    ("results", "expected"),
    [
        ([], False),
        ([_d("any_of", False), _d("any_of", True)], True),
        ([_d("any_of", False)], False),
        ([_d("any_of", True), _d("all_of", True), _d("all_of", False)], False),
        ([_d("any_of", True), _d("all_of", True)], True),
        ([_d("all_of", True)], True),
        ([_d("all_of", False)], False),
    ],
)
def test_detectors_hit(results: list[DetectorResult], expected: bool) -> None:
    assert detectors_hit(results) is expected


def test_guard_flags() -> None:
    assert not any(guard_flags(clean_report()).values())
    assert list(guard_flags(clean_report())) == [
        "invariants",
        "spectral",
        "rmt",
        "variance",
        "primary_metric",
    ]
    assert guard_flags(reports_of(invariants="warn"))["invariants"]
    # Caps applied while the spectral guard still passes its budget: flagged.
    assert guard_flags(reports_of(spectral="pass", caps=1))["spectral"]
    # The RMT probe saw instability although the guard passed: flagged.
    probe_only = reports_of(probes={"rmt_probe": {"stable": False}})
    assert guard_flags(probe_only)["rmt"] and probe_only.status == "PASS"
    assert guard_flags(reports_of(proposed=2))["variance"]
    assert guard_flags(reports_of(probes={"ve_probe": {"signal": True}}))["variance"]
    assert guard_flags(reports_of("invalid"))["primary_metric"]
    assert guard_flags(catastrophic_report()) == {
        "invariants": False,
        "spectral": False,
        "rmt": False,
        "variance": False,
        "primary_metric": True,
    }


def test_failure_reasons() -> None:
    assert failure_reasons(clean_report()) == []
    assert failure_reasons(catastrophic_report()) == ["primary_metric_fail"]
    # Non-finite losses also leave the drift unmeasurable.
    assert failure_reasons(reports_of("invalid")) == ["primary_metric_invalid", "drift_fail"]
    assert failure_reasons(reports_of(invariants="fail", rmt="fail")) == [
        "invariants_fail",
        "rmt_fail",
    ]
    assert failure_reasons(make_report(noise=0.01, relax=False)) == ["token_floor_fail"]
    # Warnings and the informational variance guard never fail a run.
    assert failure_reasons(reports_of(spectral="warn", invariants="warn", proposed=3)) == []


def test_record_from_report() -> None:
    cat = packaged_catalogue()
    report = rmt_probe_report(caught=True, base="degraded")
    data = report_json(report).encode()
    ref = ReportRef(model="m", scenario="rmt_norm_noise", run=2, path="m/r/run_2/e.json")
    rec = record_from_report(ref, report, cat.get("rmt_norm_noise"), data)
    assert rec.report_digest == hashlib.sha256(data).hexdigest()
    assert (rec.model, rec.run, rec.path, rec.category) == ("m", 2, ref.path, "error_injection")
    assert rec.status == "FAIL" and not rec.passed
    assert rec.reasons == ["primary_metric_fail", "rmt_fail"]
    assert rec.primary_guard_hit and rec.signaled
    # Caught (any_of) but the primary metric broke (all_of): not the expected detection.
    assert [d.hit for d in rec.detectors] == [True, True, False, True, True]
    assert not rec.detectors_hit and rec.requirement_met is False
    assert rec.invariants_status == "pass" and rec.spectral_caps == 0


def test_record_requirement_met_per_strictness() -> None:
    cat = packaged_catalogue()

    def rec(sid: str, report: object) -> bool | None:
        ref = ReportRef(model="m", scenario=sid, run=1, path="p")
        return record_from_report(ref, report, cat.get(sid), b"{}").requirement_met  # type: ignore[arg-type]

    assert rec("quant_4bit_clean", clean_report()) is True
    assert rec("quant_4bit_clean", catastrophic_report()) is False
    assert rec("prune_50pct_stress", catastrophic_report()) is True
    assert rec("prune_50pct_stress", clean_report()) is False
    assert rec("inf_injection", reports_of(invariants="fail")) is True
    assert rec("quant_4bit_stress", clean_report()) is None
    assert rec("ve_mlp_scale_skew", ve_probe_report()) is True


def test_record_rejects_a_scenario_mismatch() -> None:
    cat = packaged_catalogue()
    ref = ReportRef(model="m", scenario="nan_injection", run=1, path="x/y.json")
    with pytest.raises(InvalidInputError, match=r"x/y\.json is for scenario 'nan_injection'"):
        record_from_report(ref, clean_report(), cat.get("inf_injection"), b"")


@pytest.mark.parametrize("path", ["/abs/r.json", "../r.json", "a/../../r.json", "a\\b.json"])
def test_report_ref_path_must_stay_inside_the_run_dir(path: str) -> None:
    with pytest.raises(ValueError, match="relative POSIX path"):
        ReportRef(model="m", scenario="s", run=1, path=path)

from __future__ import annotations

import random

import pytest

from editproof.errors import InvalidInputError
from editproof.report.model import EvaluationReport
from editproof.verdict.catalogue import Scenario, packaged_catalogue, select
from editproof.verdict.compile import compile_verdict
from editproof.verdict.model import FinalVerdict, ReportRef, SkippedScenario, TaskFailure
from tests.verdict.synth import (
    catastrophic_report,
    clean_report,
    good_report,
    override,
    ref_path,
    reports_of,
    rmt_probe_report,
    suite,
    ve_probe_report,
)


def _failed(v: FinalVerdict) -> set[str]:
    return {f.requirement for f in v.failed_requirements}


def _compile(**kwargs: object) -> FinalVerdict:
    return compile_verdict(*suite(**kwargs))  # type: ignore[arg-type]


def test_full_synthetic_run_passes_with_exact_counts() -> None:
    v = _compile()
    assert v.verdict == "PASS" and v.failed_requirements == []
    assert all(r.passed and r.applicable for r in v.requirements)
    c = v.counts
    assert (c.models_total, c.scenarios_total, c.runs_planned, c.records_total) == (1, 23, 35, 35)
    assert (c.runs_missing, c.task_failures, c.skipped_scenarios) == (0, 0, 0)
    assert (c.clean_total, c.clean_pass, c.stress_total, c.stress_fail) == (12, 12, 8, 4)
    assert (
        c.catastrophic_required_total,
        c.catastrophic_required_present,
        c.catastrophic_required_fail,
    ) == (4, 4, 4)
    assert (c.error_injection_total, c.error_injection_detected) == (15, 15)
    assert (
        c.informational_stress_total,
        c.informational_stress_fail,
        c.informational_stress_signaled,
    ) == (4, 0, 4)
    assert (
        c.primary_guard_required_scenarios,
        c.primary_guard_required_records,
        c.primary_guard_required_hits,
        c.primary_guard_required_scenarios_hit,
    ) == (5, 5, 5, 5)
    signals = {k: (s.flagged, s.unique) for k, s in v.guard_signal_summary.signals.items()}
    assert signals == {
        "invariants": (5, 5),
        "spectral": (9, 9),
        "rmt": (2, 2),
        "variance": (2, 2),
        "primary_metric": (5, 5),
    }
    interventions = v.guard_intervention_summary.signals
    assert (interventions["spectral_caps"].flagged, interventions["ve_signal"].flagged) == (9, 2)
    cats = v.category_summary.categories
    assert [(k, s.reports, s.any_flag) for k, s in cats.items()] == [
        ("clean", 12, 0),
        ("stress", 8, 8),
        ("error_injection", 15, 15),
    ]
    order = [(s.category, s.id) for s in v.scenario_signal_summary.scenarios]
    assert order[0] == ("clean", "fp8_e5m2_clean") and order[-1][0] == "error_injection"
    assert order == sorted(
        order, key=lambda x: (["clean", "stress", "error_injection"].index(x[0]), x[1])
    )
    assert all(s.requirement_met is not False for s in v.scenario_signal_summary.scenarios)


def test_demo_like_run_with_one_run_each_and_relaxations() -> None:
    runs = {s.id: 1 for s in packaged_catalogue().scenarios}
    relax = ["demo suite: 1 run per scenario instead of 3/2/1"]
    v = _compile(runs=runs, relaxations=relax)
    assert v.verdict == "PASS"
    assert (v.counts.runs_planned, v.counts.records_total) == (23, 23)
    assert v.relaxations == relax


def test_every_run_counts_an_earlier_clean_failure_fails_the_verdict() -> None:
    v = _compile(make=override("quant_4bit_clean", catastrophic_report(), run=1))
    assert v.verdict == "FAIL"
    assert _failed(v) == {"clean_all_pass"}
    (entry,) = v.failed_requirements
    assert (entry.model, entry.scenario) == ("m1", "quant_4bit_clean")
    assert entry.message == "m1: quant_4bit_clean: run 1 of 3 did not PASS"
    (run,) = entry.failures
    assert run.run == 1 and run.reasons == ["primary_metric_fail"]
    assert run.path == ref_path("m1", "quant_4bit_clean", 1)


def test_no_reports_fails_evidence_present() -> None:
    v = _compile(make=lambda m, s, n: None)
    assert v.verdict == "FAIL" and v.records == []
    assert "evidence_present" in _failed(v)
    assert _failed(v) == {
        "evidence_present",
        "scenario_coverage",
        "scenario_primary_guard_signal",
        "guard_primary_demonstrated",
    }
    assert v.counts.runs_missing == 35


def test_missing_gating_run_fails_coverage_and_is_listed() -> None:
    def make(m: str, s: Scenario, n: int) -> EvaluationReport | None:
        return None if s.id == "prune_12pct_clean" and n == 2 else good_report(s)

    v = _compile(make=make)
    assert _failed(v) == {"scenario_coverage"}
    (entry,) = v.failed_requirements
    assert entry.message == "m1: prune_12pct_clean: run 2 of 3 planned have no report"
    assert entry.failures[0].path is None and entry.failures[0].reasons == ["missing"]
    (missing,) = v.missing["m1"]
    assert (missing.scenario, missing.runs, missing.counted) == ("prune_12pct_clean", [2], True)


def test_missing_informational_run_is_listed_only() -> None:
    v = _compile(make=lambda m, s, n: None if s.id == "rmt_norm_noise_strong" else good_report(s))
    assert v.verdict == "PASS"
    (missing,) = v.missing["m1"]
    assert (missing.scenario, missing.counted) == ("rmt_norm_noise_strong", False)
    row = next(r for r in v.detection_matrix.rows if r.scenario == "rmt_norm_noise_strong")
    assert row.outcome == "missing" and row.requirement_met is None


def test_task_failure_of_a_gating_scenario_fails_the_verdict() -> None:
    failure = TaskFailure(
        model="m1",
        scenario="inf_injection",
        run=1,
        kind="timeout",
        error="killed after 600 s\ntrace",
    )
    v = _compile(
        make=lambda m, s, n: None if s.id == "inf_injection" else good_report(s),
        failures=[failure],
    )
    assert _failed(v) == {"no_task_failures"}  # explained, so not also "missing"
    (entry,) = v.failed_requirements
    assert entry.message == "m1: inf_injection: run 1 failed without a report (timeout)"
    assert entry.failures[0].reasons == ["timeout: killed after 600 s"]
    assert v.failures == [failure] and v.missing["m1"] == []
    row = next(r for r in v.detection_matrix.rows if r.scenario == "inf_injection")
    assert row.outcome == "task_failure" and row.requirement_met is False


def test_task_failure_of_an_informational_scenario_is_listed_only() -> None:
    failure = TaskFailure(
        model="m1", scenario="ve_mlp_scale_skew_up", run=1, kind="oom", error="CUDA out of memory"
    )
    v = _compile(
        make=lambda m, s, n: None if s.id == "ve_mlp_scale_skew_up" else good_report(s),
        failures=[failure],
    )
    assert v.verdict == "PASS" and v.counts.task_failures == 1


def test_catastrophic_edit_that_passes_fails_stress_requirements() -> None:
    v = _compile(make=override("svd_rank32_stress", clean_report(), run=2))
    assert _failed(v) == {"stress_required_fail", "stress_expected_detectors"}
    assert all(f.failures[0].run == 2 for f in v.failed_requirements)


def test_catastrophic_edit_failing_without_its_detectors() -> None:
    # It fails, but through invariants, not the primary metric its detectors watch.
    v = _compile(make=override("prune_50pct_stress", reports_of(invariants="fail")))
    assert _failed(v) == {"stress_expected_detectors"}
    (entry,) = v.failed_requirements
    assert [f.run for f in entry.failures] == [1, 2]
    assert any("primary_metric_acceptable == false" in r for r in entry.failures[0].reasons)


def test_undetected_fault_fails_error_injection_detected() -> None:
    v = _compile(make=override("shape_mismatch", clean_report()))
    assert _failed(v) == {"error_injection_detected"}
    assert v.failed_requirements[0].message == "m1: shape_mismatch: run 1 of 1 were not detected"


def test_primary_guard_signal_is_per_model() -> None:
    # extreme_quant detected on m2 through spectral only: detectors hit, primary guard not.
    def make(m: str, s: Scenario, n: int) -> EvaluationReport | None:
        if m == "m2" and s.id == "extreme_quant":
            return reports_of(spectral="fail", caps=9)
        return good_report(s)

    v = _compile(models=("m1", "m2"), make=make)
    assert _failed(v) == {"scenario_primary_guard_signal"}
    (entry,) = v.failed_requirements
    assert (entry.model, entry.scenario, entry.guard) == ("m2", "extreme_quant", "primary_metric")
    assert v.counts.primary_guard_required_scenarios_hit == 4


def test_probe_caught_but_breaking_the_primary_metric_fails_expected_detectors() -> None:
    v = _compile(make=override("rmt_norm_noise", rmt_probe_report(caught=True, base="degraded")))
    assert _failed(v) == {"scenario_expected_detectors"}
    (entry,) = v.failed_requirements
    assert entry.scenario == "rmt_norm_noise"
    assert entry.failures[0].reasons == [
        "all_of: validation.primary_metric_acceptable == true (observed False)"
    ]


def test_guard_never_demonstrated() -> None:
    v = _compile(make=override("ve_mlp_scale_skew", ve_probe_report(caught=False)))
    assert _failed(v) == {
        "scenario_primary_guard_signal",
        "scenario_expected_detectors",
        "guard_primary_demonstrated",
    }
    demo = next(f for f in v.failed_requirements if f.requirement == "guard_primary_demonstrated")
    assert demo.guard == "variance" and "ve_mlp_scale_skew" in demo.message


def test_informational_stress_without_signal_fails_the_fraction() -> None:
    def make(m: str, s: Scenario, n: int) -> EvaluationReport | None:
        if s.category == "stress" and s.strictness == "informational":
            return clean_report()
        return good_report(s)

    v = _compile(make=make)
    assert _failed(v) == {"informational_stress_min_signal_fraction"}
    (entry,) = v.failed_requirements
    assert entry.message == "0 of 4 informational stress runs signaled (0.00 < 0.5)"
    assert len(entry.failures) == 4


def test_signal_fraction_is_not_applicable_without_informational_stress() -> None:
    clean_only = select(packaged_catalogue(), "full", ["quant_4bit_clean", "fp8_e5m2_clean"])
    v = _compile(catalogue=clean_only)
    assert v.verdict == "PASS" and v.counts.records_total == 6
    fraction = next(
        r for r in v.requirements if r.requirement == "informational_stress_min_signal_fraction"
    )
    assert fraction.passed and not fraction.applicable


def test_skipped_clean_scenario_is_listed_not_missing() -> None:
    skip = SkippedScenario(
        model="m1", scenario="svd_rank32_l31_clean", reason="tuned params: skipped"
    )
    v = _compile(
        make=lambda m, s, n: None if s.id == "svd_rank32_l31_clean" else good_report(s),
        skipped=[skip],
    )
    assert v.verdict == "PASS"
    assert v.skipped == [skip] and v.missing["m1"] == []
    assert v.counts.runs_planned == 32
    assert not any(r.scenario == "svd_rank32_l31_clean" for r in v.detection_matrix.rows)


def test_purity_same_inputs_in_any_order_give_identical_json() -> None:
    inputs, reports = suite(models=("m1", "m2"))
    first = compile_verdict(inputs, reports).model_dump_json()
    assert compile_verdict(inputs, reports).model_dump_json() == first
    shuffled = list(inputs.reports)
    random.Random(7).shuffle(shuffled)
    again = inputs.model_copy(update={"reports": shuffled})
    assert compile_verdict(again, dict(reversed(reports.items()))).model_dump_json() == first
    assert compile_verdict(inputs, reports).generated_at is None


def test_detection_matrix_lists_every_planned_run() -> None:
    def make(m: str, s: Scenario, n: int) -> EvaluationReport | None:
        return None if s.id == "quant_4bit_clean" and n == 3 else good_report(s)

    v = _compile(models=("m1", "m2"), make=make)
    rows = v.detection_matrix.rows
    assert len(rows) == 70
    keys = [(r.model, r.scenario, r.run) for r in rows]
    assert len(set(keys)) == 70
    missing = [r for r in rows if r.outcome == "missing"]
    assert [(r.model, r.run, r.requirement_met) for r in missing] == [
        ("m1", 3, False),
        ("m2", 3, False),
    ]
    row = next(r for r in rows if r.scenario == "spectral_moderate_scale")
    assert [g.name for g in row.gates][:4] == ["ratio", "ratio_ci_upper", "drift", "token_floor"]
    spectral = next(g for g in row.guards if g.name == "spectral")
    caps = next(x for x in spectral.values if x.key == "caps")
    assert (spectral.status, caps.measured, caps.threshold, caps.within) == ("warn", 3.0, 5.0, True)
    rmt = next(g for g in rows[0].guards if g.name == "rmt")
    delta = next(x for x in rmt.values if x.key == "delta_ffn")
    assert delta.threshold == 0.10 and delta.within is True
    probe_row = next(r for r in rows if r.scenario == "rmt_norm_noise")
    assert probe_row.probes == {"rmt_probe": {"stable": False}}
    assert probe_row.requirement_met is True and probe_row.guard_flags["rmt"]


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"models": ["m1", "m1"]}, "listed twice in 'models'"),
        ({"runs": {"no_such": 1}}, "runs names unknown scenario 'no_such'"),
        (
            {"skipped": [SkippedScenario(model="m1", scenario="nan_injection", reason="x")]},
            "only clean scenarios can be skipped",
        ),
        (
            {"skipped": [SkippedScenario(model="m1", scenario="quant_4bit_clean", reason="x")]},
            "listed as skipped but has reports",
        ),
        (
            {"failures": [TaskFailure(model="m1", scenario="nan_injection", run=1, error="x")]},
            "listed as a task failure but has a report",
        ),
        (
            {"failures": [TaskFailure(model="m9", scenario="nan_injection", run=1, error="x")]},
            "unknown model 'm9'",
        ),
    ],
)
def test_inconsistent_inputs_are_one_line_errors(change: dict[str, object], match: str) -> None:
    inputs, reports = suite()
    with pytest.raises(InvalidInputError, match=match):
        compile_verdict(inputs.model_copy(update=change), reports)


def test_reference_errors() -> None:
    inputs, reports = suite()
    extra = ReportRef(model="m1", scenario="nan_injection", run=1, path="elsewhere.json")
    with pytest.raises(InvalidInputError, match="listed twice"):
        compile_verdict(inputs.model_copy(update={"reports": [*inputs.reports, extra]}), reports)
    unloaded = ReportRef(model="m1", scenario="nan_injection", run=2, path="nowhere.json")
    with pytest.raises(InvalidInputError, match=r"report nowhere\.json was not loaded"):
        compile_verdict(inputs.model_copy(update={"reports": [*inputs.reports, unloaded]}), reports)
    alien = ReportRef(model="m1", scenario="not_here", run=1, path=inputs.reports[0].path)
    with pytest.raises(InvalidInputError, match="not in the effective catalogue"):
        compile_verdict(inputs.model_copy(update={"reports": [alien]}), reports)

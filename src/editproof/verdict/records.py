"""One report judged against its scenario: pass/fail reasons, guard flags, detectors.

Everything here reads the report's own sections: ``validation`` flags, ``gates``,
``guards.results`` and the probe sidecars in ``guards.probes``. Nothing is recomputed from
raw data (``report verify`` does that); the record binds to the report by its sha256.
"""

from __future__ import annotations

import hashlib
import math
from typing import Any, Literal

from editproof.errors import InvalidInputError
from editproof.report.model import EvaluationReport, GuardResult
from editproof.verdict.catalogue import (
    Detector,
    GuardLevel,
    GuardMeasureDetector,
    GuardStatusDetector,
    ProbeDetector,
    Scenario,
    ValidationFlagDetector,
)
from editproof.verdict.model import CORE_GUARDS, DetectorResult, Record, ReportRef
from editproof.verdict.views import Observed

# Failing enforced gates of the primary metric map to one reason.
_PM_GATES = frozenset({"ratio", "ratio_ci_upper"})


def _json(value: bool) -> str:
    return "true" if value else "false"


def _scalar(value: Any) -> Observed:
    """A probe field as a JSON scalar; lists, objects and non-finite numbers read as None."""
    if value is None or isinstance(value, bool | str):
        return value
    if isinstance(value, int | float):
        return float(value) if math.isfinite(value) else None
    return None


def _guard(report: EvaluationReport, name: str) -> GuardResult | None:
    return next((r for r in report.guards.results if r.name == name), None)


def guard_level(report: EvaluationReport, name: str) -> GuardLevel:
    result = _guard(report, name)
    return "not_run" if result is None else result.status


def guard_measure(report: EvaluationReport, name: str, key: str) -> float | None:
    result = _guard(report, name)
    value = None if result is None else result.measured.get(key)
    return value if value is not None and math.isfinite(value) else None


def probe_field(report: EvaluationReport, probe: str, field: str) -> Observed:
    return _scalar(report.guards.probes.get(probe, {}).get(field))


def evaluate_detector(
    detector: Detector, report: EvaluationReport, group: Literal["any_of", "all_of"]
) -> DetectorResult:
    """Observe one detector on a report. Anything absent is observed as None (not hit),
    except a guard that did not run, whose status reads ``not_run``."""
    observed: Observed
    if isinstance(detector, ValidationFlagDetector):
        observed = report.validation.get(detector.flag)
        hit = observed is detector.expected
        test = f"validation.{detector.flag} == {_json(detector.expected)}"
    elif isinstance(detector, GuardStatusDetector):
        observed = guard_level(report, detector.guard)
        hit = observed in detector.allowed
        test = f"guards.{detector.guard}.status in {{{', '.join(detector.allowed)}}}"
    elif isinstance(detector, GuardMeasureDetector):
        observed = guard_measure(report, detector.guard, detector.key)
        hit = observed is not None and observed >= detector.min
        test = f"guards.{detector.guard}.measured.{detector.key} >= {detector.min:g}"
    else:
        observed, hit, test = _probe(detector, report)
    return DetectorResult(group=group, kind=detector.kind, test=test, observed=observed, hit=hit)


def _probe(detector: ProbeDetector, report: EvaluationReport) -> tuple[Observed, bool, str]:
    observed = probe_field(report, detector.probe, detector.field)
    where = f"probes.{detector.probe}.{detector.field}"
    if detector.expected is not None:
        return observed, observed is detector.expected, f"{where} == {_json(detector.expected)}"
    minimum = detector.min if detector.min is not None else 0.0
    hit = isinstance(observed, float) and observed >= minimum
    return observed, hit, f"{where} >= {minimum:g}"


def evaluate_detectors(scenario: Scenario, report: EvaluationReport) -> list[DetectorResult]:
    req = scenario.requirements
    return [evaluate_detector(d, report, "any_of") for d in req.detectors_any_of] + [
        evaluate_detector(d, report, "all_of") for d in req.detectors_all_of
    ]


def detectors_hit(results: list[DetectorResult]) -> bool:
    """any(any_of) and all(all_of); an empty any_of is satisfied when all_of is not empty;
    a scenario without detectors is never hit."""
    any_of = [d.hit for d in results if d.group == "any_of"]
    all_of = [d.hit for d in results if d.group == "all_of"]
    if not any_of and not all_of:
        return False
    return (any(any_of) if any_of else True) and all(all_of)


def ve_signal(report: EvaluationReport) -> bool:
    """The variance guard (or its VE probe) proposed scales or would enable them."""
    proposed = guard_measure(report, "variance", "proposed_scales") or 0.0
    probe_scales = probe_field(report, "ve_probe", "proposed_scales")
    return (
        report.validation.get("variance_signal") is True
        or probe_field(report, "ve_probe", "signal") is True
        or probe_field(report, "ve_probe", "would_enable") is True
        or proposed > 0
        or (isinstance(probe_scales, float) and probe_scales > 0)
    )


def guard_flags(report: EvaluationReport) -> dict[str, bool]:
    """Did each core guard flag this run? Keys in ``CORE_GUARDS`` order."""
    caps = guard_measure(report, "spectral", "caps") or 0.0
    pm_ok = report.validation.get("primary_metric_acceptable") is True
    flags = {
        "invariants": guard_level(report, "invariants") in ("warn", "fail"),
        "spectral": guard_level(report, "spectral") in ("warn", "fail") or caps >= 1,
        "rmt": guard_level(report, "rmt") == "fail"
        or probe_field(report, "rmt_probe", "stable") is False,
        "variance": ve_signal(report),
        "primary_metric": not pm_ok or report.validation.get("primary_metric_invalid") is True,
    }
    return {g: flags[g] for g in CORE_GUARDS}


def failure_reasons(report: EvaluationReport) -> list[str]:
    """Why the run failed: one reason per failing enforced gate or guard, in report order."""
    reasons: list[str] = []

    def add(reason: str) -> None:
        if reason not in reasons:
            reasons.append(reason)

    for gate in report.gates:
        if gate.enforced and not gate.passed:
            if gate.name in _PM_GATES:
                invalid = report.primary_metric.invalid
                add("primary_metric_invalid" if invalid else "primary_metric_fail")
            else:
                add(f"{gate.name}_fail")
    guard_reasons = [
        f"{r.name}_fail" for r in report.guards.results if r.enforced and r.status == "fail"
    ]
    for reason in guard_reasons:
        add(reason)
    if report.guards.status == "fail" and not guard_reasons:
        add("guards_fail")
    if report.status == "FAIL" and not reasons:
        add("status_fail")
    return reasons


def requirement_met(scenario: Scenario, passed: bool, hit: bool) -> bool | None:
    """What one run of the scenario must show: must_pass PASSED; must_fail FAILED and hit
    its detectors; must_detect, and any primary-guard-required scenario, hit its detectors.
    None for other informational scenarios (they only feed the signal fraction)."""
    if scenario.strictness == "must_pass":
        return passed
    if scenario.strictness == "must_fail":
        return not passed and hit
    if scenario.strictness == "must_detect" or scenario.requirements.primary_guard_required:
        return hit
    return None


def record_from_report(
    ref: ReportRef, report: EvaluationReport, scenario: Scenario, report_bytes: bytes
) -> Record:
    if ref.scenario != scenario.id:
        raise InvalidInputError(
            f"report {ref.path} is for scenario '{ref.scenario}', not '{scenario.id}'"
        )
    detectors = evaluate_detectors(scenario, report)
    hit = detectors_hit(detectors)
    flags = guard_flags(report)
    passed = report.status == "PASS"
    caps = guard_measure(report, "spectral", "caps")
    ci = report.primary_metric.display_ci
    return Record(
        model=ref.model,
        scenario=scenario.id,
        category=scenario.category,
        strictness=scenario.strictness,
        intent=scenario.intent,
        primary_guard=scenario.primary_guard,
        primary_guard_required=scenario.requirements.primary_guard_required,
        failure_class=scenario.failure_class,
        run=ref.run,
        path=ref.path,
        status=report.status,
        passed=passed,
        reasons=failure_reasons(report),
        guard_flags=flags,
        detectors=detectors,
        detectors_hit=hit,
        primary_guard_hit=flags[scenario.primary_guard],
        signaled=hit or any(flags.values()),
        requirement_met=requirement_met(scenario, passed, hit),
        invariants_status=guard_level(report, "invariants"),
        spectral_caps=None if caps is None else int(caps),
        ve_signal=flags["variance"],
        ratio=report.primary_metric.ratio,
        ci_upper=None if ci is None else ci[1],
        report_digest=hashlib.sha256(report_bytes).hexdigest(),
    )

"""The requirements of the final verdict. PASS iff none fails.

Every run of a scenario counts, not only the last: a clean scenario whose first run failed
fails ``clean_all_pass`` even when its later runs passed. Each failure names the model,
the scenario and every offending run with its report path (None when no report exists).
"""

from __future__ import annotations

from collections.abc import Callable

from editproof.verdict.catalogue import Scenario
from editproof.verdict.evidence import Evidence, counted
from editproof.verdict.model import (
    CORE_GUARDS,
    MIN_INFORMATIONAL_SIGNAL_FRACTION,
    REQUIREMENTS,
    FailedRequirement,
    FailedRun,
    Record,
    RequirementName,
    RequirementOutcome,
)

MEANING: dict[RequirementName, str] = {
    "evidence_present": "at least one evaluation report exists",
    "scenario_coverage": "every planned run of every gating or primary-guard-required "
    "scenario has a report or a recorded task failure, on every model",
    "no_task_failures": "no evaluation of a gating or primary-guard-required scenario "
    "failed without a report",
    "clean_all_pass": "every run of every must_pass scenario PASSED",
    "stress_required_fail": "every run of every must_fail scenario FAILED",
    "stress_expected_detectors": "every run of every must_fail scenario hit its detectors",
    "error_injection_detected": "every run of every must_detect scenario hit its detectors",
    "scenario_primary_guard_signal": "on every model, at least one run of each "
    "primary-guard-required scenario was flagged by its primary guard",
    "scenario_expected_detectors": "every run of every primary-guard-required scenario hit "
    "its detectors (any_of and all_of: a subtle probe must also stay subtle)",
    "guard_primary_demonstrated": "every core guard that is the primary guard of a "
    "primary-guard-required scenario flagged at least one of its runs",
    "informational_stress_min_signal_fraction": "at least "
    f"{MIN_INFORMATIONAL_SIGNAL_FRACTION:g} of informational stress runs signaled "
    "(not applicable without such runs)",
}

# A check returns how many items (runs, model x scenario pairs, guards) it looked at, and
# its failed entries.
Result = tuple[int, list[FailedRequirement]]
Check = Callable[[Evidence], Result]


def _runs(runs: list[int]) -> str:
    return ("run " if len(runs) == 1 else "runs ") + ", ".join(str(n) for n in runs)


def _failed(r: Record, reasons: list[str]) -> FailedRun:
    return FailedRun(model=r.model, scenario=r.scenario, run=r.run, path=r.path, reasons=reasons)


def _missed(r: Record) -> list[str]:
    return [f"{d.group}: {d.test} (observed {d.observed})" for d in r.detectors if not d.hit] or [
        "no detectors declared"
    ]


def _per_run(
    name: RequirementName,
    ev: Evidence,
    scenarios: Callable[[Scenario], bool],
    bad: Callable[[Record], bool],
    why: Callable[[Record], list[str]],
    what: str,
) -> Result:
    """One entry per (model, scenario) listing the runs for which ``bad`` holds."""
    n, out = 0, []
    for s in ev.scenarios:
        if not scenarios(s):
            continue
        for m in ev.models:
            records = ev.records_of(m, s.id)
            n += len(records)
            offending = [r for r in records if bad(r)]
            if offending:
                out.append(
                    FailedRequirement(
                        requirement=name,
                        message=f"{m}: {s.id}: {_runs([r.run for r in offending])} of "
                        f"{len(records)} {what}",
                        model=m,
                        scenario=s.id,
                        failures=[_failed(r, why(r)) for r in offending],
                    )
                )
    return n, out


def evidence_present(ev: Evidence) -> Result:
    if ev.records:
        return 1, []
    planned = sum(ev.planned(m, s) for m in ev.models for s in ev.scenarios)
    message = f"no evaluation report at all ({planned} runs planned on {len(ev.models)} model(s))"
    return 1, [FailedRequirement(requirement="evidence_present", message=message)]


def scenario_coverage(ev: Evidence) -> Result:
    n, out = 0, []
    for s in ev.scenarios:
        if not counted(s):
            continue
        for m in ev.models:
            n += ev.planned(m, s)
            missing = ev.missing_runs(m, s)
            if missing:
                out.append(
                    FailedRequirement(
                        requirement="scenario_coverage",
                        message=f"{m}: {s.id}: {_runs(missing)} of {ev.planned(m, s)} "
                        "planned have no report",
                        model=m,
                        scenario=s.id,
                        failures=[
                            FailedRun(model=m, scenario=s.id, run=k, path=None, reasons=["missing"])
                            for k in missing
                        ],
                    )
                )
    return n, out


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0] if text.strip() else ""


def no_task_failures(ev: Evidence) -> Result:
    n, out = 0, []
    for s in ev.scenarios:
        if not counted(s):
            continue
        for m in ev.models:
            n += ev.planned(m, s)
            failures = ev.failures_of(m, s.id)
            if failures:
                kinds = ", ".join(sorted({f.kind for f in failures}))
                out.append(
                    FailedRequirement(
                        requirement="no_task_failures",
                        message=f"{m}: {s.id}: {_runs([f.run for f in failures])} failed "
                        f"without a report ({kinds})",
                        model=m,
                        scenario=s.id,
                        failures=[
                            FailedRun(
                                model=m,
                                scenario=s.id,
                                run=f.run,
                                path=None,
                                reasons=[f"{f.kind}: {_first_line(f.error)}"],
                            )
                            for f in failures
                        ],
                    )
                )
    return n, out


def clean_all_pass(ev: Evidence) -> Result:
    return _per_run(
        "clean_all_pass",
        ev,
        lambda s: s.strictness == "must_pass",
        lambda r: not r.passed,
        lambda r: r.reasons,
        "did not PASS",
    )


def stress_required_fail(ev: Evidence) -> Result:
    return _per_run(
        "stress_required_fail",
        ev,
        lambda s: s.strictness == "must_fail",
        lambda r: r.passed,
        lambda r: ["passed"],
        "PASSED but must FAIL",
    )


def stress_expected_detectors(ev: Evidence) -> Result:
    return _per_run(
        "stress_expected_detectors",
        ev,
        lambda s: s.strictness == "must_fail",
        lambda r: not r.detectors_hit,
        _missed,
        "did not hit the expected detectors",
    )


def error_injection_detected(ev: Evidence) -> Result:
    return _per_run(
        "error_injection_detected",
        ev,
        lambda s: s.strictness == "must_detect",
        lambda r: not r.detectors_hit,
        _missed,
        "were not detected",
    )


def scenario_primary_guard_signal(ev: Evidence) -> Result:
    n, out = 0, []
    for s in ev.scenarios:
        if not s.requirements.primary_guard_required:
            continue
        for m in ev.models:
            n += 1
            records = ev.records_of(m, s.id)
            if any(r.primary_guard_hit for r in records):
                continue
            detail = f"none of {len(records)} runs" if records else "no report"
            out.append(
                FailedRequirement(
                    requirement="scenario_primary_guard_signal",
                    message=f"{m}: {s.id}: {detail} flagged by its primary guard {s.primary_guard}",
                    model=m,
                    scenario=s.id,
                    guard=s.primary_guard,
                    failures=[_failed(r, [f"{s.primary_guard} not flagged"]) for r in records],
                )
            )
    return n, out


def scenario_expected_detectors(ev: Evidence) -> Result:
    return _per_run(
        "scenario_expected_detectors",
        ev,
        lambda s: s.requirements.primary_guard_required,
        lambda r: not r.detectors_hit,
        _missed,
        "did not hit the expected detectors",
    )


def guard_primary_demonstrated(ev: Evidence) -> Result:
    n, out = 0, []
    for guard in CORE_GUARDS:
        ids = [
            s.id
            for s in ev.scenarios
            if s.requirements.primary_guard_required and s.primary_guard == guard
        ]
        if not ids:
            continue
        n += 1
        records = [r for sid in ids for r in ev.scenario_records(sid)]
        if not any(r.primary_guard_hit for r in records):
            out.append(
                FailedRequirement(
                    requirement="guard_primary_demonstrated",
                    message=f"guard {guard}: no run of {', '.join(ids)} was flagged by it "
                    f"({len(records)} runs)",
                    guard=guard,
                    failures=[_failed(r, [f"{guard} not flagged"]) for r in records],
                )
            )
    return n, out


def informational_stress_min_signal_fraction(ev: Evidence) -> Result:
    records = [r for r in ev.records if r.category == "stress" and r.strictness == "informational"]
    if not records:
        return 0, []
    signaled = sum(r.signaled for r in records)
    fraction = signaled / len(records)
    if fraction >= MIN_INFORMATIONAL_SIGNAL_FRACTION:
        return len(records), []
    failed = FailedRequirement(
        requirement="informational_stress_min_signal_fraction",
        message=f"{signaled} of {len(records)} informational stress runs signaled "
        f"({fraction:.2f} < {MIN_INFORMATIONAL_SIGNAL_FRACTION:g})",
        failures=[_failed(r, ["no signal"]) for r in records if not r.signaled],
    )
    return len(records), [failed]


CHECKS: dict[RequirementName, Check] = {
    "evidence_present": evidence_present,
    "scenario_coverage": scenario_coverage,
    "no_task_failures": no_task_failures,
    "clean_all_pass": clean_all_pass,
    "stress_required_fail": stress_required_fail,
    "stress_expected_detectors": stress_expected_detectors,
    "error_injection_detected": error_injection_detected,
    "scenario_primary_guard_signal": scenario_primary_guard_signal,
    "scenario_expected_detectors": scenario_expected_detectors,
    "guard_primary_demonstrated": guard_primary_demonstrated,
    "informational_stress_min_signal_fraction": informational_stress_min_signal_fraction,
}


def check_requirements(ev: Evidence) -> tuple[list[RequirementOutcome], list[FailedRequirement]]:
    """Run every check in ``REQUIREMENTS`` order. A requirement that checked nothing is not
    applicable, and passes."""
    outcomes: list[RequirementOutcome] = []
    failed: list[FailedRequirement] = []
    for name in REQUIREMENTS:
        checked, entries = CHECKS[name](ev)
        failed.extend(entries)
        outcomes.append(
            RequirementOutcome(
                requirement=name,
                passed=not entries,
                applicable=checked > 0 or bool(entries),
                checked=checked,
                failed=len(entries),
                meaning=MEANING[name],
            )
        )
    return outcomes, failed

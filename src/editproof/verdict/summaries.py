"""Counts and summaries of the records: per category, per guard, per scenario."""

from __future__ import annotations

from editproof.verdict.catalogue import CATEGORIES
from editproof.verdict.evidence import Evidence
from editproof.verdict.model import CORE_GUARDS, Counts, Record
from editproof.verdict.records import requirement_met
from editproof.verdict.views import (
    CategoryStats,
    CategorySummary,
    GuardInterventionSummary,
    GuardSignalSummary,
    ScenarioSignal,
    ScenarioSignalSummary,
    SignalCount,
)


def counts(ev: Evidence) -> Counts:
    recs = ev.records
    clean = [r for r in recs if r.category == "clean"]
    stress = [r for r in recs if r.category == "stress"]
    errors = [r for r in recs if r.category == "error_injection"]
    info_stress = [r for r in stress if r.strictness == "informational"]
    catastrophic = [s for s in ev.scenarios if s.requirements.catastrophic_required]
    cat_ids = {s.id for s in catastrophic}
    cat_records = [r for r in recs if r.scenario in cat_ids]
    pgr = [s for s in ev.scenarios if s.requirements.primary_guard_required]
    pgr_records = [r for r in recs if r.primary_guard_required]
    return Counts(
        models_total=len(ev.models),
        scenarios_total=len(ev.scenarios),
        runs_planned=sum(ev.planned(m, s) for m in ev.models for s in ev.scenarios),
        records_total=len(recs),
        runs_missing=sum(len(ev.missing_runs(m, s)) for m in ev.models for s in ev.scenarios),
        task_failures=len(ev.failures),
        skipped_scenarios=len(ev.skipped_list),
        clean_total=len(clean),
        clean_pass=sum(r.passed for r in clean),
        stress_total=len(stress),
        stress_fail=sum(not r.passed for r in stress),
        catastrophic_required_total=sum(ev.planned(m, s) for m in ev.models for s in catastrophic),
        catastrophic_required_present=len(cat_records),
        catastrophic_required_fail=sum(not r.passed for r in cat_records),
        error_injection_total=len(errors),
        error_injection_detected=sum(r.detectors_hit for r in errors),
        informational_stress_total=len(info_stress),
        informational_stress_fail=sum(not r.passed for r in info_stress),
        informational_stress_signaled=sum(r.signaled for r in info_stress),
        primary_guard_required_scenarios=len(pgr),
        primary_guard_required_records=len(pgr_records),
        primary_guard_required_hits=sum(r.primary_guard_hit for r in pgr_records),
        # Hit on every model by at least one run.
        primary_guard_required_scenarios_hit=sum(
            all(any(r.primary_guard_hit for r in ev.records_of(m, s.id)) for m in ev.models)
            for s in pgr
        ),
    )


def category_summary(ev: Evidence) -> CategorySummary:
    out: dict[str, CategoryStats] = {}
    for cat in CATEGORIES:
        recs = [r for r in ev.records if r.category == cat]
        out[cat] = CategoryStats(
            scenarios=sum(s.category == cat for s in ev.scenarios),
            reports=len(recs),
            passed=sum(r.passed for r in recs),
            failed=sum(not r.passed for r in recs),
            primary_metric_fail=sum(r.guard_flags["primary_metric"] for r in recs),
            invariants_fail=sum(r.invariants_status == "fail" for r in recs),
            invariants_warn=sum(r.invariants_status == "warn" for r in recs),
            detector_hits=sum(r.detectors_hit for r in recs),
            any_flag=sum(any(r.guard_flags.values()) for r in recs),
        )
    return CategorySummary(categories=out)


def _signal_counts(flags: list[dict[str, bool]], names: list[str]) -> dict[str, SignalCount]:
    """flagged: records where the signal is on; unique: records where it alone is on."""
    out = {}
    for name in names:
        on = [f for f in flags if f[name]]
        alone = [f for f in on if not any(f[o] for o in names if o != name)]
        out[name] = SignalCount(flagged=len(on), unique=len(alone))
    return out


def guard_signal_summary(records: list[Record]) -> GuardSignalSummary:
    flags = [r.guard_flags for r in records]
    return GuardSignalSummary(
        records_total=len(records), signals=_signal_counts(flags, list(CORE_GUARDS))
    )


def guard_intervention_summary(records: list[Record]) -> GuardInterventionSummary:
    flags = [
        {"spectral_caps": (r.spectral_caps or 0) > 0, "ve_signal": r.ve_signal} for r in records
    ]
    return GuardInterventionSummary(
        records_total=len(records),
        signals=_signal_counts(flags, ["spectral_caps", "ve_signal"]),
    )


def scenario_signal_summary(ev: Evidence) -> ScenarioSignalSummary:
    rank = {c: i for i, c in enumerate(CATEGORIES)}
    rows = []
    for s in sorted(ev.scenarios, key=lambda s: (rank[s.category], s.id)):
        recs = ev.scenario_records(s.id)
        met = [r.requirement_met for r in recs if r.requirement_met is not None]
        planned = sum(ev.planned(m, s) for m in ev.models)
        missing = sum(len(ev.missing_runs(m, s)) for m in ev.models)
        failures = sum(len(ev.failures_of(m, s.id)) for m in ev.models)
        met_all: bool | None = None
        if requirement_met(s, False, False) is not None and (planned or recs):
            met_all = all(met) and not missing + failures
            if s.requirements.primary_guard_required:
                met_all = met_all and all(
                    any(r.primary_guard_hit for r in ev.records_of(m, s.id)) for m in ev.models
                )
        rows.append(
            ScenarioSignal(
                id=s.id,
                category=s.category,
                strictness=s.strictness,
                intent=s.intent,
                primary_guard=s.primary_guard,
                primary_guard_required=s.requirements.primary_guard_required,
                runs_planned=planned,
                reports=len(recs),
                missing=missing,
                task_failures=failures,
                skipped=sum(ev.skipped(m, s.id) for m in ev.models),
                passed=sum(r.passed for r in recs),
                failed=sum(not r.passed for r in recs),
                detector_hits=sum(r.detectors_hit for r in recs),
                signaled=sum(r.signaled for r in recs),
                primary_guard_hits=sum(r.primary_guard_hit for r in recs),
                requirement_met=met_all,
            )
        )
    return ScenarioSignalSummary(scenarios=rows)

"""The verdict's view of a suite run: what was planned, what came back, what is missing.

``check_inputs`` rejects inconsistent inputs with one line (unknown model or scenario, a
run listed twice, a failure for a run that has a report, a skip of a non-clean scenario);
``Evidence`` indexes the records by (model, scenario) in a fixed order, so every
requirement and summary iterates the same way whatever order the suite listed things in.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from editproof.errors import InvalidInputError
from editproof.report.model import EvaluationReport
from editproof.verdict.catalogue import Scenario
from editproof.verdict.model import MissingRuns, Record, SkippedScenario, TaskFailure, VerdictInputs

Key = tuple[str, str]  # (model, scenario)


def check_inputs(
    inputs: VerdictInputs, reports: Mapping[str, tuple[EvaluationReport, bytes]]
) -> None:
    """Raise InvalidInputError on the first inconsistency, naming what is wrong."""
    models, ids = set(inputs.models), set(inputs.catalogue.ids)
    if len(models) != len(inputs.models):
        raise InvalidInputError("verdict inputs: a model is listed twice in 'models'")
    for sid in inputs.runs:
        if sid not in ids:
            raise InvalidInputError(f"verdict inputs: runs names unknown scenario '{sid}'")

    def known(what: str, model: str, scenario: str) -> None:
        if model not in models:
            raise InvalidInputError(f"verdict inputs: {what} names unknown model '{model}'")
        if scenario not in ids:
            raise InvalidInputError(
                f"verdict inputs: {what} names scenario '{scenario}', "
                "which is not in the effective catalogue"
            )

    runs: set[tuple[str, str, int]] = set()
    paths: set[str] = set()
    for ref in inputs.reports:
        known(f"report {ref.path}", ref.model, ref.scenario)
        if (ref.model, ref.scenario, ref.run) in runs or ref.path in paths:
            raise InvalidInputError(
                f"verdict inputs: report {ref.path} ({ref.model}, {ref.scenario}, "
                f"run {ref.run}) is listed twice"
            )
        if ref.path not in reports:
            raise InvalidInputError(f"verdict inputs: report {ref.path} was not loaded")
        runs.add((ref.model, ref.scenario, ref.run))
        paths.add(ref.path)
    failed: set[tuple[str, str, int]] = set()
    for f in inputs.failures:
        known(f"failure of {f.scenario} run {f.run}", f.model, f.scenario)
        key = (f.model, f.scenario, f.run)
        if key in runs:
            raise InvalidInputError(
                f"verdict inputs: {f.model} {f.scenario} run {f.run} is listed as a task "
                "failure but has a report"
            )
        if key in failed:
            raise InvalidInputError(
                f"verdict inputs: {f.model} {f.scenario} run {f.run} failure listed twice"
            )
        failed.add(key)
    for s in inputs.skipped:
        known(f"skipped {s.scenario}", s.model, s.scenario)
        if inputs.catalogue.get(s.scenario).category != "clean":
            raise InvalidInputError(
                f"verdict inputs: only clean scenarios can be skipped, not '{s.scenario}'"
            )
        if any(r[0] == s.model and r[1] == s.scenario for r in runs | failed):
            raise InvalidInputError(
                f"verdict inputs: {s.scenario} on {s.model} is listed as skipped "
                "but has reports or failures"
            )


@dataclass(frozen=True)
class Evidence:
    inputs: VerdictInputs
    records: list[Record]
    _records: dict[Key, list[Record]] = field(default_factory=dict)
    _failures: dict[Key, list[TaskFailure]] = field(default_factory=dict)
    _skipped: dict[Key, SkippedScenario] = field(default_factory=dict)

    @classmethod
    def build(cls, inputs: VerdictInputs, records: list[Record]) -> Evidence:
        order = {m: i for i, m in enumerate(inputs.models)}
        pos = {sid: i for i, sid in enumerate(inputs.catalogue.ids)}
        ordered = sorted(records, key=lambda r: (order[r.model], pos[r.scenario], r.run))
        ev = cls(inputs=inputs, records=ordered)
        for r in ordered:
            ev._records.setdefault((r.model, r.scenario), []).append(r)
        for f in sorted(inputs.failures, key=lambda f: (order[f.model], pos[f.scenario], f.run)):
            ev._failures.setdefault((f.model, f.scenario), []).append(f)
        for s in inputs.skipped:
            ev._skipped[(s.model, s.scenario)] = s
        return ev

    @property
    def models(self) -> list[str]:
        return list(self.inputs.models)

    @property
    def scenarios(self) -> list[Scenario]:
        return list(self.inputs.catalogue.scenarios)

    def records_of(self, model: str, scenario: str) -> list[Record]:
        return self._records.get((model, scenario), [])

    def scenario_records(self, scenario: str) -> list[Record]:
        return [r for r in self.records if r.scenario == scenario]

    def failures_of(self, model: str, scenario: str) -> list[TaskFailure]:
        return self._failures.get((model, scenario), [])

    @property
    def failures(self) -> list[TaskFailure]:
        return [f for m in self.models for s in self.scenarios for f in self.failures_of(m, s.id)]

    def skipped(self, model: str, scenario: str) -> bool:
        return (model, scenario) in self._skipped

    @property
    def skipped_list(self) -> list[SkippedScenario]:
        return [
            self._skipped[(m, s.id)]
            for m in self.models
            for s in self.scenarios
            if (m, s.id) in self._skipped
        ]

    def planned(self, model: str, scenario: Scenario) -> int:
        """Runs planned for the scenario on the model: 0 when it was skipped."""
        return 0 if self.skipped(model, scenario.id) else self.inputs.planned_runs(scenario)

    def missing_runs(self, model: str, scenario: Scenario) -> list[int]:
        """Planned runs with neither a report nor a task failure."""
        have = {r.run for r in self.records_of(model, scenario.id)}
        have |= {f.run for f in self.failures_of(model, scenario.id)}
        return [n for n in range(1, self.planned(model, scenario) + 1) if n not in have]

    def missing(self) -> dict[str, list[MissingRuns]]:
        out: dict[str, list[MissingRuns]] = {}
        for m in self.models:
            out[m] = [
                MissingRuns(
                    scenario=s.id,
                    category=s.category,
                    strictness=s.strictness,
                    counted=counted(s),
                    runs=runs,
                )
                for s in self.scenarios
                if (runs := self.missing_runs(m, s))
            ]
        return out


def counted(scenario: Scenario) -> bool:
    """Gating or primary-guard-required: its absence or task failure fails the verdict."""
    return scenario.gating or scenario.requirements.primary_guard_required

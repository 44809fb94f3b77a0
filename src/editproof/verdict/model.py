"""Contracts of the suite's final verdict: what it reads and everything it writes.

``VerdictInputs`` is what the suite hands over (models, the effective catalogue, planned runs,
report references, task failures, skipped scenarios, relaxations). ``Record`` is one report
judged against its scenario. ``FinalVerdict`` holds the verdict, the requirement outcomes,
counts, every record and the summaries; ``DetectionMatrix`` lays every gate and guard of
every run side by side. Every top-level file carries ``format`` and ``schema_version: 1``.
"""

from __future__ import annotations

from pathlib import PurePosixPath
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from editproof.report.model import Status
from editproof.verdict.catalogue import (
    Catalogue,
    Category,
    GuardLevel,
    Intent,
    PrimaryGuard,
    Scenario,
    Selection,
    Strictness,
)
from editproof.verdict.views import (
    CategorySummary,
    DetectionMatrix,
    GuardInterventionSummary,
    GuardSignalSummary,
    Observed,
    ScenarioSignalSummary,
)

INPUTS_FORMAT = "editproof.verdict-inputs"
VERDICT_FORMAT = "editproof.final-verdict"
MATRIX_FORMAT = "editproof.detection-matrix"
SCHEMA_VERSION = 1

# The guards whose flags a record carries, in the order every summary lists them.
CORE_GUARDS: tuple[PrimaryGuard, ...] = (
    "invariants",
    "spectral",
    "rmt",
    "variance",
    "primary_metric",
)
# Informational stress scenarios: at least this fraction of their runs must signal.
MIN_INFORMATIONAL_SIGNAL_FRACTION = 0.5

RequirementName = Literal[
    "evidence_present",
    "scenario_coverage",
    "no_task_failures",
    "clean_all_pass",
    "stress_required_fail",
    "stress_expected_detectors",
    "error_injection_detected",
    "scenario_primary_guard_signal",
    "scenario_expected_detectors",
    "guard_primary_demonstrated",
    "informational_stress_min_signal_fraction",
]
REQUIREMENTS: tuple[RequirementName, ...] = (
    "evidence_present",
    "scenario_coverage",
    "no_task_failures",
    "clean_all_pass",
    "stress_required_fail",
    "stress_expected_detectors",
    "error_injection_detected",
    "scenario_primary_guard_signal",
    "scenario_expected_detectors",
    "guard_primary_demonstrated",
    "informational_stress_min_signal_fraction",
)


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# --- inputs -------------------------------------------------------------------------------


class ReportRef(_Model):
    """One report the suite wrote; ``path`` is relative to the run directory."""

    model: str = Field(min_length=1)
    scenario: str = Field(min_length=1)
    run: int = Field(ge=1)
    path: str = Field(min_length=1)

    @field_validator("path")
    @classmethod
    def _relative(cls, value: str) -> str:
        parts = PurePosixPath(value).parts
        if value.startswith("/") or "\\" in value or ".." in parts or not parts:
            raise ValueError(f"'{value}' must be a relative POSIX path inside the run dir")
        return value


class TaskFailure(_Model):
    """An evaluation that produced no report."""

    model: str = Field(min_length=1)
    scenario: str = Field(min_length=1)
    run: int = Field(ge=1)
    kind: str = Field(default="error", min_length=1)  # e.g. error, timeout, oom
    error: str


class SkippedScenario(_Model):
    """A clean scenario the suite did not run on a model (its tuned params say skipped)."""

    model: str = Field(min_length=1)
    scenario: str = Field(min_length=1)
    reason: str


class VerdictInputs(_Model):
    format: Literal["editproof.verdict-inputs"] = "editproof.verdict-inputs"
    schema_version: Literal[1] = 1
    suite: str = Field(min_length=1)
    models: list[str] = Field(min_length=1)
    catalogue: Catalogue
    # Planned runs per scenario id; a scenario not named runs its catalogue default.
    runs: dict[str, Annotated[int, Field(ge=1)]] = Field(default_factory=dict)
    reports: list[ReportRef] = Field(default_factory=list)
    failures: list[TaskFailure] = Field(default_factory=list)
    skipped: list[SkippedScenario] = Field(default_factory=list)
    relaxations: list[str] = Field(default_factory=list)

    def planned_runs(self, scenario: Scenario) -> int:
        return self.runs.get(scenario.id, scenario.default_runs)


# --- records ------------------------------------------------------------------------------


class DetectorResult(_Model):
    group: Literal["any_of", "all_of"]
    kind: Literal["validation_flag", "guard_status", "guard_measure", "probe"]
    test: str  # e.g. "validation.primary_metric_acceptable == false"
    observed: Observed
    hit: bool


class Record(_Model):
    """One report judged against its scenario."""

    model: str
    scenario: str
    category: Category
    strictness: Strictness
    intent: Intent
    primary_guard: PrimaryGuard
    primary_guard_required: bool
    failure_class: str
    run: int
    path: str
    status: Status
    passed: bool
    reasons: list[str]
    guard_flags: dict[str, bool]
    detectors: list[DetectorResult]
    detectors_hit: bool
    primary_guard_hit: bool
    signaled: bool
    # What this one run had to show (see ``records.requirement_met``); None: nothing per run.
    requirement_met: bool | None
    invariants_status: GuardLevel
    spectral_caps: int | None
    ve_signal: bool
    ratio: float | None
    ci_upper: float | None
    report_digest: str


# --- verdict ------------------------------------------------------------------------------


class FailedRun(_Model):
    """A run behind a failed requirement; ``path`` is None when no report exists."""

    model: str
    scenario: str
    run: int
    path: str | None
    reasons: list[str]


class FailedRequirement(_Model):
    requirement: RequirementName
    message: str
    model: str | None = None
    scenario: str | None = None
    guard: str | None = None
    failures: list[FailedRun] = Field(default_factory=list)


class RequirementOutcome(_Model):
    requirement: RequirementName
    passed: bool
    applicable: bool
    checked: int  # runs, scenarios or guards the requirement looked at
    failed: int  # failed entries (model x scenario, or guard)
    meaning: str


class Criteria(_Model):
    every_run_counts: Literal[True] = True
    informational_stress_min_signal_fraction: float = MIN_INFORMATIONAL_SIGNAL_FRACTION
    requirements: list[RequirementName] = Field(default_factory=lambda: list(REQUIREMENTS))


class Counts(_Model):
    models_total: int
    scenarios_total: int
    runs_planned: int
    records_total: int
    runs_missing: int
    task_failures: int
    skipped_scenarios: int
    clean_total: int
    clean_pass: int
    stress_total: int
    stress_fail: int
    catastrophic_required_total: int
    catastrophic_required_present: int
    catastrophic_required_fail: int
    error_injection_total: int
    error_injection_detected: int
    informational_stress_total: int
    informational_stress_fail: int
    informational_stress_signaled: int
    primary_guard_required_scenarios: int
    primary_guard_required_records: int
    primary_guard_required_hits: int
    primary_guard_required_scenarios_hit: int


class MissingRuns(_Model):
    """Planned runs of one scenario on one model with neither a report nor a task failure."""

    scenario: str
    category: Category
    strictness: Strictness
    counted: bool  # gating or primary-guard-required: fails scenario_coverage
    runs: list[int]


class CatalogueInfo(_Model):
    digest: str
    scenarios: int
    ids: list[str]
    selection: Selection | None


class FinalVerdict(_Model):
    format: Literal["editproof.final-verdict"] = "editproof.final-verdict"
    schema_version: Literal[1] = 1
    verdict: Literal["PASS", "FAIL"]
    suite: str
    models: list[str]
    catalogue: CatalogueInfo
    inputs_digest: str
    criteria: Criteria = Field(default_factory=Criteria)
    requirements: list[RequirementOutcome]
    counts: Counts
    core_guard_order: list[PrimaryGuard] = Field(default_factory=lambda: list(CORE_GUARDS))
    records: list[Record]
    missing: dict[str, list[MissingRuns]]
    skipped: list[SkippedScenario]
    failures: list[TaskFailure]
    relaxations: list[str]
    failed_requirements: list[FailedRequirement]
    category_summary: CategorySummary
    guard_signal_summary: GuardSignalSummary
    guard_intervention_summary: GuardInterventionSummary
    scenario_signal_summary: ScenarioSignalSummary
    detection_matrix: DetectionMatrix
    # Set by the writer only; compile_verdict leaves it None so it stays a pure function.
    generated_at: str | None = None

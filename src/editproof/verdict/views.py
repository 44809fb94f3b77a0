"""Contracts of the verdict's derived views: the four summaries and the detection matrix.

Each is embedded in ``final_verdict.json`` and also written as its own file, so each
carries ``format`` and ``schema_version: 1``.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict

from editproof.report.model import Status
from editproof.verdict.catalogue import Category, GuardLevel, Intent, PrimaryGuard, Strictness

Observed = bool | float | str | None


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CategoryStats(_Model):
    scenarios: int
    reports: int
    passed: int
    failed: int
    primary_metric_fail: int
    invariants_fail: int
    invariants_warn: int
    detector_hits: int
    any_flag: int


class CategorySummary(_Model):
    format: Literal["editproof.category-summary"] = "editproof.category-summary"
    schema_version: Literal[1] = 1
    categories: dict[str, CategoryStats]


class SignalCount(_Model):
    flagged: int
    unique: int  # flagged by this signal alone


class GuardSignalSummary(_Model):
    format: Literal["editproof.guard-signal-summary"] = "editproof.guard-signal-summary"
    schema_version: Literal[1] = 1
    records_total: int
    signals: dict[str, SignalCount]


class GuardInterventionSummary(_Model):
    format: Literal["editproof.guard-intervention-summary"] = "editproof.guard-intervention-summary"
    schema_version: Literal[1] = 1
    records_total: int
    signals: dict[str, SignalCount]  # spectral_caps, ve_signal


class ScenarioSignal(_Model):
    id: str
    category: Category
    strictness: Strictness
    intent: Intent
    primary_guard: PrimaryGuard
    primary_guard_required: bool
    runs_planned: int
    reports: int
    missing: int
    task_failures: int
    skipped: int  # models that skipped it
    passed: int
    failed: int
    detector_hits: int
    signaled: int
    primary_guard_hits: int
    requirement_met: bool | None  # every run met its per-run requirement; None: none


class ScenarioSignalSummary(_Model):
    format: Literal["editproof.scenario-signal-summary"] = "editproof.scenario-signal-summary"
    schema_version: Literal[1] = 1
    scenarios: list[ScenarioSignal]


class GateCell(_Model):
    name: str
    measured: float | None
    threshold: float | tuple[float, float]
    comparison: Literal["<=", ">=", "within"]
    passed: bool
    enforced: bool
    relaxed: bool


class GuardValue(_Model):
    key: str
    measured: float | None
    threshold: float | None
    comparison: Literal["<=", ">="] | None
    within: bool | None  # None when there is no threshold or no measured value


class GuardCell(_Model):
    name: str
    status: GuardLevel
    enforced: bool | None
    values: list[GuardValue]
    violations: int


class MatrixRow(_Model):
    model: str
    scenario: str
    category: Category
    strictness: Strictness
    run: int
    outcome: Literal["report", "missing", "task_failure"]
    path: str | None
    status: Status | None
    ratio: float | None
    ci_upper: float | None
    gates: list[GateCell]
    guards: list[GuardCell]
    probes: dict[str, dict[str, Observed]]
    guard_flags: dict[str, bool]  # the record's core-guard flags; {} without a report
    detectors_hit: bool | None
    requirement_met: bool | None
    note: str = ""


class DetectionMatrix(_Model):
    format: Literal["editproof.detection-matrix"] = "editproof.detection-matrix"
    schema_version: Literal[1] = 1
    suite: str
    models: list[str]
    guards: list[str]
    rows: list[MatrixRow]

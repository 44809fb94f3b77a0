"""Synthetic suite runs for verdict tests: internally consistent reports per outcome.

Three base reports (a healthy edit, a degraded one, an invalid metric) are built once by the
report factory; every outcome copies one of them with other guard results and probes, and
re-derives guard status, validation flags and overall status.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache
from typing import Any

from editproof.report.io import report_json
from editproof.report.model import EvaluationReport, GuardStatus
from editproof.verdict.catalogue import Catalogue, Scenario, packaged_catalogue, select
from editproof.verdict.model import ReportRef, TaskFailure, VerdictInputs
from tests.report.factory import guard_result, make_report, with_guards

Reports = dict[str, tuple[EvaluationReport, bytes]]
Maker = Callable[[str, Scenario, int], EvaluationReport | None]


@cache
def _base(kind: str) -> EvaluationReport:
    if kind == "ok":
        return make_report(n_windows=48, noise=0.01, seed=1)
    if kind == "degraded":
        return make_report(n_windows=48, shift=0.5, noise=0.01, seed=2)
    return make_report(n_windows=48, nan=True, seed=3)


def reports_of(
    base: str = "ok",
    *,
    invariants: GuardStatus = "pass",
    spectral: GuardStatus = "pass",
    caps: int = 0,
    rmt: GuardStatus = "pass",
    proposed: int = 0,
    probes: dict[str, dict[str, Any]] | None = None,
) -> EvaluationReport:
    """A report: ``base`` in ok/degraded/invalid, with the four guards as given."""
    results = [
        guard_result(
            "invariants",
            invariants,
            measured={"non_finite_values": 0.0 if invariants == "pass" else 1.0},
        ),
        guard_result(
            "spectral",
            spectral,
            measured={"caps": float(caps), "max_abs_z": 2.0 + caps, "max_sigma_ratio": 1.1},
            thresholds={"max_caps": 5.0, "max_sigma_ratio": 10.0, "kappa_ffn": 3.849},
        ),
        guard_result(
            "rmt",
            rmt,
            measured={
                "edge_risk_ffn_base": 1.0,
                "edge_risk_ffn_subject": 1.3 if rmt == "fail" else 1.01,
                "max_delta": 0.3 if rmt == "fail" else 0.01,
                "max_module_delta": 0.3 if rmt == "fail" else 0.01,
            },
            thresholds={"epsilon_ffn": 0.10, "module_epsilon": 0.25},
        ),
        guard_result("variance", "pass", measured={"proposed_scales": float(proposed)}),
    ]
    return with_guards(_base(base), results, probes)


def clean_report() -> EvaluationReport:
    return reports_of()


def catastrophic_report() -> EvaluationReport:
    return reports_of("degraded")


def subtle_spectral_report(caps: int = 3) -> EvaluationReport:
    return reports_of(spectral="warn", caps=caps)


def rmt_probe_report(*, caught: bool = True, base: str = "ok") -> EvaluationReport:
    return reports_of(
        base,
        rmt="fail" if caught else "pass",
        probes={"rmt_probe": {"format": "editproof.rmt-probe", "stable": not caught}},
    )


def ve_probe_report(*, caught: bool = True) -> EvaluationReport:
    n = 1 if caught else 0
    return reports_of(
        proposed=n,
        probes={
            "ve_probe": {"format": "editproof.ve-probe", "signal": caught, "proposed_scales": n}
        },
    )


def good_report(s: Scenario) -> EvaluationReport:
    """What a healthy toolchain shows for the scenario."""
    if s.category == "clean":
        return clean_report()
    if s.strictness == "must_fail":
        return catastrophic_report()
    if s.category == "stress":
        return subtle_spectral_report(caps=1)
    if s.primary_guard == "invariants":
        return reports_of(invariants="fail")
    if s.primary_guard == "primary_metric":
        return reports_of("invalid")
    if s.primary_guard == "spectral":
        if s.strictness == "must_detect":
            return reports_of(spectral="fail", caps=9)
        return subtle_spectral_report()
    if s.primary_guard == "rmt":
        return rmt_probe_report()
    return ve_probe_report()


def full_catalogue() -> Catalogue:
    return select(packaged_catalogue(), "full")


def ref_path(model: str, scenario: str, run: int) -> str:
    return f"{model}/reports/{scenario}/run_{run}/evaluation.report.json"


def suite(
    catalogue: Catalogue | None = None,
    *,
    models: tuple[str, ...] = ("m1",),
    runs: dict[str, int] | None = None,
    make: Maker | None = None,
    failures: list[TaskFailure] | None = None,
    **extra: Any,
) -> tuple[VerdictInputs, Reports]:
    """Inputs and loaded reports for every planned run; ``make`` returns a run's report, or
    None for no report (default: ``good_report``)."""
    catalogue = catalogue or full_catalogue()
    runs = runs or {}
    refs, reports = [], {}
    for model in models:
        for s in catalogue.scenarios:
            for n in range(1, runs.get(s.id, s.default_runs) + 1):
                report = make(model, s, n) if make else good_report(s)
                if report is None:
                    continue
                path = ref_path(model, s.id, n)
                refs.append(ReportRef(model=model, scenario=s.id, run=n, path=path))
                reports[path] = (report, report_json(report).encode())
    inputs = VerdictInputs(
        suite="full",
        models=list(models),
        catalogue=catalogue,
        runs=runs,
        reports=refs,
        failures=failures or [],
        **extra,
    )
    return inputs, reports


def override(scenario: str, report: EvaluationReport, run: int | None = None) -> Maker:
    """good_report everywhere except ``scenario`` (only ``run`` of it, when given)."""

    def make(model: str, s: Scenario, n: int) -> EvaluationReport | None:
        if s.id == scenario and (run is None or n == run):
            return report
        return good_report(s)

    return make

"""report verify: a report verifies only when its raw data recompute to its stored numbers.

Each tamper case is an attack on a report someone hands us: edit one number, and verify
must say which.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from editproof.report.io import load_report, report_json
from editproof.report.model import EvaluationReport
from editproof.report.verify import verify_report
from tests.report.factory import make_report


def _tamper(report: EvaluationReport, edit: Callable[[dict[str, Any]], None]) -> EvaluationReport:
    data = json.loads(report_json(report))
    edit(data)
    return EvaluationReport.model_validate(data)


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"shift": 0.05, "noise": 0.02},
        {"shift": 0.3, "noise": 0.05},
        {"nan": True},
        {"tier": "conservative", "relax": False, "noise": 0.01},
    ],
)
def test_honest_reports_verify(kwargs: dict[str, Any]) -> None:
    result = verify_report(make_report(**kwargs))
    assert result.ok, result.problems
    assert result.checks > 50


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def edit(data: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node: Any = data
        for key in parents:
            node = node[int(key)] if isinstance(node, list) else node[key]
        if isinstance(node, list):
            node[int(last)] = value
        else:
            node[last] = value

    return edit


TAMPERS = {
    "ratio": (_set("primary_metric.ratio", 1.01), "primary_metric.ratio"),
    "ci upper": (_set("primary_metric.display_ci", [1.0, 1.05]), "primary_metric.display_ci"),
    "subject nll": (_set("subject.final.mean_nll.3", 9.0), "primary_metric"),
    "baseline nll": (_set("baseline.final.mean_nll.0", 0.5), "baseline.summary.ppl_final"),
    "token count": (_set("subject.final.token_counts.1", 10), "token counts differ"),
    "window id": (_set("subject.final.window_ids.2", "w999999"), "window ids differ"),
    "token hash": (_set("baseline.final.token_hashes.0", "0" * 16), "token hashes differ"),
    "status": (_set("status", "PASS"), "status"),
    "gate flag": (_set("gates.0.passed", True), "gates.ratio.passed"),
    "gate threshold": (_set("gates.0.threshold", 9.0), "gates.ratio.threshold"),
    "policy limit": (_set("policy.tier.ratio_limit", 1.5), "policy.digest"),
    "bootstrap seed": (_set("provenance.seeds.bootstrap", 1), "primary_metric"),
    "relaxed floor": (_set("policy.token_floor_relaxed", True), "gates.token_floor"),
    "window count": (_set("dataset.n_final", 63), "subject.final"),
    "preview summary": (_set("subject.summary.ppl_preview", 1.0), "subject.summary.ppl_preview"),
    "drift": (_set("drift.paired", 1.0), "drift.paired"),
    "validation flag": (
        _set("validation.primary_metric_acceptable", True),
        "validation.primary_metric_acceptable",
    ),
}


@pytest.mark.parametrize("name", sorted(TAMPERS))
def test_tampering_is_detected(name: str) -> None:
    edit, expected = TAMPERS[name]
    # A failing run, so that flipping status or a gate to PASS is a real attack.
    report = make_report(shift=0.3, noise=0.05, relax=False)
    result = verify_report(_tamper(report, edit))
    assert not result.ok
    assert any(expected in p for p in result.problems), result.problems


def test_duplicate_window_across_splits_detected() -> None:
    report = make_report(noise=0.01)

    def edit(data: dict[str, Any]) -> None:
        for arm in ("baseline", "subject"):
            data[arm]["final"]["window_ids"][0] = data[arm]["preview"]["window_ids"][0]

    result = verify_report(_tamper(report, edit))
    assert any("in both preview and final" in p for p in result.problems)


def test_round_trip(tmp_path: Path) -> None:
    report = make_report(noise=0.02)
    path = tmp_path / "evaluation.report.json"
    path.write_text(report_json(report))
    assert load_report(path) == report
    assert load_report(tmp_path) == report  # a directory resolves to its report

"""After the executor: the verdict, determinism repeats, errors, revisions and timings.

Everything here reads the run directory and the task table only; it can be re-run on a
finished (or half-finished) run and gives the same files.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from editproof.fileio import atomic_write_text, canonical_digest
from editproof.suite import layout
from editproof.suite.config import SuiteConfig
from editproof.suite.plan import EVAL, REPEAT, scenario_runs
from editproof.suite.store import Store, Task
from editproof.verdict.catalogue import Catalogue


def _report_output(task: Task) -> str | None:
    return next((p for p in task.outputs if p.endswith("evaluation.report.json")), None)


def verdict_inputs(config: SuiteConfig, catalogue: Catalogue, tasks: list[Task]) -> Any:
    from editproof.verdict.model import ReportRef, SkippedScenario, TaskFailure, VerdictInputs

    reports, failures, skipped = [], [], []
    seen_skips: set[tuple[str, str]] = set()
    for t in tasks:
        if t.type != EVAL or t.scenario is None or t.run is None:
            continue
        path = _report_output(t)
        if t.status == "done" and path is not None:
            reports.append(ReportRef(model=t.model, scenario=t.scenario, run=t.run, path=path))
        elif t.status == "skipped":
            if (t.model, t.scenario) not in seen_skips:
                seen_skips.add((t.model, t.scenario))
                reason = str(t.params.get("skip_reason") or t.error or "skipped")
                skipped.append(SkippedScenario(model=t.model, scenario=t.scenario, reason=reason))
        elif t.status == "failed":
            failures.append(
                TaskFailure(
                    model=t.model,
                    scenario=t.scenario,
                    run=t.run,
                    kind=t.error_kind or "error",
                    error=t.error or "failed",
                )
            )
    return VerdictInputs(
        suite=config.suite,
        models=config.models,
        catalogue=catalogue,
        runs={s.id: scenario_runs(config, s) for s in catalogue.scenarios},
        reports=reports,
        failures=failures,
        skipped=skipped,
        relaxations=config.relaxations,
    )


def read_tasks(run_dir: Path) -> list[Task]:
    """Every task of the run, as the store holds it now."""
    store = Store(run_dir)
    try:
        return store.tasks()
    finally:
        store.close()


def finish_run(
    run_dir: Path, config: SuiteConfig, catalogue: Catalogue, tasks: list[Task]
) -> tuple[str | None, Path | None]:
    """Write errors, revisions digests and repeats; compile the verdict unless the run was
    calibrate-only. Returns (verdict, path of final_verdict.json)."""
    write_errors(run_dir, tasks)
    add_weight_digests(run_dir, config)
    if config.repeats:
        write_repeats(run_dir, config, tasks)
    if config.mode == "calibrate-only":
        return None, None
    from editproof.verdict.compile import compile_verdict
    from editproof.verdict.write import load_reports, write_records, write_verdict

    if config.mode == "errors-only":
        # Only the fault scenarios ran: the verdict judges those, and says so.
        catalogue = catalogue.model_copy(
            update={
                "scenarios": [s for s in catalogue.scenarios if s.category == "error_injection"]
            }
        )
        config = config.model_copy(
            update={"relaxations": [*config.relaxations, "--errors-only: fault scenarios only"]}
        )
    inputs = verdict_inputs(config, catalogue, tasks)
    # The exact inputs, so a proof pack can recompute this verdict from its own files.
    atomic_write_text(run_dir / layout.VERDICT_INPUTS, inputs.model_dump_json(indent=2) + "\n")
    reports = load_reports(run_dir, inputs.reports)
    verdict = compile_verdict(inputs, reports)
    write_verdict(run_dir / layout.REPORTS, verdict)
    write_records(run_dir / layout.REPORTS, verdict, inputs, reports)
    return verdict.verdict, run_dir / layout.REPORTS / "final_verdict.json"


def write_errors(run_dir: Path, tasks: list[Task]) -> None:
    errors = []
    for t in tasks:
        for h in t.history:
            errors.append({"task": t.id, "model": t.model, **h, "final": False})
        if t.status == "failed":
            errors.append(
                {
                    "task": t.id,
                    "model": t.model,
                    "error": t.error,
                    "kind": t.error_kind,
                    "attempts": t.attempts,
                    "final": True,
                }
            )
    atomic_write_text(
        run_dir / layout.ERRORS,
        json.dumps(
            {"format": "editproof.suite-errors", "schema_version": 1, "errors": errors}, indent=2
        )
        + "\n",
    )


def add_weight_digests(run_dir: Path, config: SuiteConfig) -> None:
    path = run_dir / layout.REVISIONS
    if not path.is_file():
        return
    data = json.loads(path.read_text(encoding="utf-8"))
    for model in config.models:
        base = run_dir / layout.baseline(config, model)
        if base.is_file() and model in data.get("models", {}):
            data["models"][model]["weight_sha256"] = json.loads(base.read_text("utf-8"))[
                "weight_sha256"
            ]
    atomic_write_text(path, json.dumps(data, indent=2) + "\n")


def write_repeats(run_dir: Path, config: SuiteConfig, tasks: list[Task]) -> None:
    """``analysis/determinism_repeats.json``: the ratio of every repeat, its spread, and a
    digest per repeat of the numbers alone (per-window NLL, ratio, CI; no timestamps)."""
    from editproof.report.io import load_report

    repeats = sorted((t for t in tasks if t.type == REPEAT), key=lambda t: t.run or 0)
    rows: list[dict[str, Any]] = []
    errors: list[str] = []
    for t in repeats:
        path = _report_output(t)
        if t.status != "done" or path is None:
            errors.append(f"{t.id}: {t.status}{': ' + t.error if t.error else ''}")
            continue
        r = load_report(run_dir / path)
        pm = r.primary_metric
        numbers = {
            "subject_preview": r.subject.preview.mean_nll,
            "subject_final": r.subject.final.mean_nll,
            "baseline_final": r.baseline.final.mean_nll,
            "ratio": pm.ratio,
            "ci": pm.display_ci,
        }
        rows.append({"repeat": t.run, "path": path, "ratio": pm.ratio, "ci": pm.display_ci,
                     "status": r.status, "numbers_digest": canonical_digest(numbers)})  # fmt: skip
    ratios = [row["ratio"] for row in rows if row["ratio"] is not None]
    first = repeats[0] if repeats else None
    summary = {
        "format": "editproof.determinism-repeats",
        "schema_version": 1,
        "suite": config.suite,
        "mode": config.determinism,
        "model_id": first.model if first else None,
        "scenario": first.scenario if first else None,
        "requested": config.repeats,
        "completed": len(rows),
        "repeats": rows,
        "ratio": {
            "min": min(ratios) if ratios else None,
            "max": max(ratios) if ratios else None,
            "delta": (max(ratios) - min(ratios)) if ratios else None,
        },
        "numbers_match": len({row["numbers_digest"] for row in rows}) == 1 if rows else None,
        "errors": errors,
    }
    atomic_write_text(run_dir / layout.REPEATS, json.dumps(summary, indent=2) + "\n")


def write_timings(run_dir: Path, driver: dict[str, float], tasks: list[Task]) -> None:
    """Where the time went: driver phases, seconds per task type, per-worker setup."""
    by_type: dict[str, float] = {}
    for t in tasks:
        if t.seconds is not None:
            by_type[t.type] = by_type.get(t.type, 0.0) + t.seconds
    workers: dict[str, Any] = {}
    for path in sorted((run_dir / layout.LOGS / "workers").glob("*.timings.json")):
        workers[path.name.removesuffix(".timings.json")] = json.loads(path.read_text("utf-8"))
    data = {
        "format": "editproof.suite-timings",
        "schema_version": 1,
        "driver": {k: round(v, 3) for k, v in driver.items()},
        "workers": workers,
        "tasks_by_type": {k: round(v, 3) for k, v in sorted(by_type.items())},
        "tasks": {t.id: round(t.seconds, 3) for t in tasks if t.seconds is not None},
    }
    atomic_write_text(run_dir / layout.TIMINGS, json.dumps(data, indent=2) + "\n")

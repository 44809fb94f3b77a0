"""The task graph of a suite run, per model::

    setup ──┬─ calibrate/run_1..C ── preset ──┬─ eval/<scenario>/run_1..R   (every scenario)
            │                                 └─ repeat/<scenario>/repeat_1..N (first model)

``setup`` loads the model, cuts the windows and measures the baseline once (its per-window
numbers and guard signatures stay in the worker; ``baseline.json`` pins them in the run
dir). Calibration runs re-measure the unedited baseline under other seeds and window
samples; ``preset`` folds them into ``presets/calibrated_preset_<model>.json/.yaml``; every
evaluation is judged under the tier with that preset merged in.

Clean specs are resolved through the tuned params for every model here, before any model
loads: a missing entry is an error, a ``skipped`` entry becomes a task recorded as skipped.
"""

from __future__ import annotations

from dataclasses import dataclass

from editproof.edits import parse_spec, resolve_clean
from editproof.edits.tuned import TunedParams, tuned_entry
from editproof.errors import EditproofError, InvalidInputError
from editproof.evaluation import model_key
from editproof.lm import parse_source
from editproof.suite.config import SuiteConfig
from editproof.suite.store import Task
from editproof.verdict.catalogue import Catalogue, Scenario

SETUP, CALIBRATE, PRESET, EVAL, REPEAT = "setup", "calibrate", "preset", "eval", "repeat"
TASK_TYPES = (SETUP, CALIBRATE, PRESET, EVAL, REPEAT)
CALIBRATION_TYPES = (SETUP, CALIBRATE, PRESET)


@dataclass(frozen=True)
class Skip:
    model: str
    scenario: str
    reason: str


def tuned_key(model_id: str) -> str:
    """The key a tuned-params file uses for this model (as ``evaluate`` resolves it)."""
    return model_key(parse_source(model_id))


def check_specs(catalogue: Catalogue, models: list[str], tuned: TunedParams) -> list[Skip]:
    """Parse every scenario's spec for every model and resolve clean ones; returns the
    (model, scenario) pairs a tuned ``skipped`` entry leaves out."""
    skips: list[Skip] = []
    for scenario in catalogue.scenarios:
        for model in models:
            text = scenario.generation.spec_for(model)
            try:
                spec = parse_spec(text)
            except EditproofError as exc:
                raise InvalidInputError(
                    f"scenario '{scenario.id}': generation.spec '{text}': {exc.message}"
                ) from None
            if not spec.clean:
                continue
            key = tuned_key(model)
            entry = tuned_entry(tuned, key, spec.type)
            if entry is not None and entry.status == "skipped":
                skips.append(Skip(model, scenario.id, f"tuned params: {entry.reason}"))
                continue
            try:
                resolve_clean(spec, key, tuned)
            except EditproofError as exc:
                raise InvalidInputError(f"scenario '{scenario.id}': {exc.message}") from None
    return skips


def scenario_runs(config: SuiteConfig, scenario: Scenario) -> int:
    return config.runs_override or scenario.default_runs


def _wanted(config: SuiteConfig, scenario: Scenario) -> bool:
    if config.mode == "calibrate-only":
        return False
    if config.mode == "errors-only":
        return scenario.category == "error_injection"
    return True


def repeat_scenario(catalogue: Catalogue) -> Scenario | None:
    """The scenario determinism repeats re-run: the first clean one, else the first stress."""
    for category in ("clean", "stress"):
        for s in catalogue.scenarios:
            if s.category == category:
                return s
    return None


def plan_tasks(config: SuiteConfig, catalogue: Catalogue, skips: list[Skip]) -> list[Task]:
    skipped = {(s.model, s.scenario): s.reason for s in skips}
    tasks: list[Task] = []
    for index, model in enumerate(config.models):
        d = config.model_dirs[model]
        setup = f"{SETUP}/{d}"
        tasks.append(Task(id=setup, type=SETUP, model=model))
        cal_ids = []
        for i in range(1, config.calibration_runs + 1):
            tid = f"{CALIBRATE}/{d}/run_{i}"
            cal_ids.append(tid)
            seed = config.seed + i if config.seed + i != config.seed else config.seed + 1000 + i
            tasks.append(
                Task(
                    id=tid, type=CALIBRATE, model=model, run=i, deps=[setup], params={"seed": seed}
                )
            )
        preset = f"{PRESET}/{d}"
        tasks.append(Task(id=preset, type=PRESET, model=model, deps=[setup, *cal_ids]))
        for scenario in catalogue.scenarios:
            if not _wanted(config, scenario):
                continue
            spec = scenario.generation.spec_for(model)
            reason = skipped.get((model, scenario.id))
            for run in range(1, scenario_runs(config, scenario) + 1):
                tasks.append(
                    Task(
                        id=f"{EVAL}/{d}/{scenario.id}/run_{run}",
                        type=EVAL,
                        model=model,
                        scenario=scenario.id,
                        run=run,
                        deps=[setup, preset],
                        params={"spec": spec, **({"skip_reason": reason} if reason else {})},
                        status="skipped" if reason else "pending",
                    )
                )
        first = repeat_scenario(catalogue)
        if index == 0 and config.repeats and first is not None and config.mode == "full":
            spec = first.generation.spec_for(model)
            for i in range(1, config.repeats + 1):
                tasks.append(
                    Task(
                        id=f"{REPEAT}/{d}/{first.id}/repeat_{i}",
                        type=REPEAT,
                        model=model,
                        scenario=first.id,
                        run=i,
                        deps=[setup, preset],
                        params={"spec": spec},
                        status="skipped" if (model, first.id) in skipped else "pending",
                    )
                )
    return tasks

"""Where everything lives in a suite run directory (paths relative to the run dir)."""

from __future__ import annotations

from pathlib import Path

from editproof.calibration.preset import safe_model_id
from editproof.suite.config import SuiteConfig
from editproof.suite.store import STATE_DIR, Task

STATE = Path(STATE_DIR)
CONFIG = STATE / "config.json"
SCENARIOS = STATE / "scenarios.json"
TUNED = STATE / "tuned_edit_params.json"
REVISIONS = STATE / "model_revisions.json"
ERRORS = STATE / "errors.json"
ENVIRONMENT = STATE / "environment.json"
TIMINGS = STATE / "timings.json"
VERDICT_INPUTS = STATE / "verdict_inputs.json"
PRESETS = Path("presets")
REPORTS = Path("reports")
ANALYSIS = Path("analysis")
REPEATS = ANALYSIS / "determinism_repeats.json"
LOGS = Path("logs")
SUITE_LOG = LOGS / "suite.log"


def model_dir(config: SuiteConfig, model: str) -> Path:
    return Path(config.model_dirs[model])


def baseline(config: SuiteConfig, model: str) -> Path:
    return model_dir(config, model) / "baseline" / "baseline.json"


def calibration_run(config: SuiteConfig, model: str, run: int) -> Path:
    return model_dir(config, model) / "reports" / "calibration" / f"run_{run}" / "null_run.json"


def preset_json(config: SuiteConfig, model: str) -> Path:
    return PRESETS / f"calibrated_preset_{safe_model_id(model)}.json"


def task_dir(config: SuiteConfig, task: Task) -> Path:
    """``<model>/reports/<scenario>/run_<n>`` or ``determinism/<model>/<scenario>/repeat_<n>``."""
    assert task.scenario is not None and task.run is not None
    d = model_dir(config, task.model)
    if task.type == "repeat":
        return Path("determinism") / d / task.scenario / f"repeat_{task.run}"
    return d / "reports" / task.scenario / f"run_{task.run}"


def report_path(config: SuiteConfig, task: Task) -> Path:
    return task_dir(config, task) / "evaluation.report.json"


def task_log(task_id: str) -> Path:
    return LOGS / "tasks" / (task_id.replace("/", "__") + ".log")

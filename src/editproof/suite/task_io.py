"""What passes between the owner of a run directory and whoever measures a task.

A task is measured from a :class:`TaskSpec` (the task row plus the run-dir files it reads:
the model's preset, its calibration runs) and answers a :class:`TaskResult` (its outputs as
``{relative path: text}``, its log lines, or a :class:`Failure`). Only the owner of the run
directory writes: :func:`write_outputs` (each file atomically, *before* the task is marked
done with the digests it returns), :func:`append_log` and :func:`apply_failure`. The local
worker is that owner for its own tasks; with the Ray executor it is the driver, and the
actors, which may run on hosts without the run directory, only measure.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from editproof.errors import EditproofError, EvaluationError, RestoreError
from editproof.fileio import atomic_write_text
from editproof.measure.batching import CPU_BATCH
from editproof.suite import layout
from editproof.suite.config import SuiteConfig
from editproof.suite.plan import EVAL, PRESET, REPEAT, SETUP
from editproof.suite.store import Store, Task

BACKOFF_BASE_S = 2.0
BACKOFF_MAX_S = 60.0


@dataclass
class TaskSpec:
    task: Task
    preset: tuple[str, str] | None = None  # (path relative to the run dir, text)
    calibration: list[str] = field(default_factory=list)  # null_run.json texts, in run order
    baseline: str | None = None  # baseline.json once written: a new measurer must match it


@dataclass(frozen=True)
class Failure:
    message: str
    kind: str  # permanent, oom, error, transient, poisoned
    retry_after: float | None  # None: the task fails for good
    params: dict[str, Any] | None = None  # new task params (a halved batch)
    poisoned: bool = False  # the measuring process must go (a failed restore)


@dataclass
class TaskResult:
    task_id: str
    outputs: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0
    log: list[str] = field(default_factory=list)
    failure: Failure | None = None


def read_spec(run_dir: Path, config: SuiteConfig, task: Task) -> TaskSpec:
    """The task and the run-dir files its measurement reads."""
    spec = TaskSpec(task)
    if task.type != SETUP:
        base = run_dir / layout.baseline(config, task.model)
        spec.baseline = base.read_text(encoding="utf-8") if base.is_file() else None
    if task.type in (EVAL, REPEAT):
        path = run_dir / layout.preset_json(config, task.model)
        if path.is_file():
            spec.preset = (str(path.relative_to(run_dir)), path.read_text(encoding="utf-8"))
    elif task.type == PRESET:
        for i in range(1, config.calibration_runs + 1):
            path = run_dir / layout.calibration_run(config, task.model, i)
            spec.calibration.append(path.read_text(encoding="utf-8"))
    return spec


def text_sha256(text: str) -> str:
    """The digest :func:`~editproof.fileio.file_sha256` gives the file ``text`` is written to."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def write_outputs(run_dir: Path, outputs: dict[str, str]) -> dict[str, str]:
    """Write each output atomically; returns ``{relative path: sha256}`` for ``Store.finish``."""
    digests = {}
    for rel, text in outputs.items():
        atomic_write_text(run_dir / rel, text)
        digests[rel] = text_sha256(text)
    return digests


def append_log(run_dir: Path, task_id: str, lines: list[str]) -> None:
    if not lines:
        return
    log = run_dir / layout.task_log(task_id)
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("a", encoding="utf-8") as f:
        f.writelines(line if line.endswith("\n") else line + "\n" for line in lines)


def log_line(message: str) -> str:
    return f"{time.strftime('%H:%M:%S')} {message}\n"


def is_oom(exc: BaseException) -> bool:
    name = type(exc).__name__
    return name == "OutOfMemoryError" or "out of memory" in str(exc).lower()


def error_message(exc: BaseException) -> str:
    return str(exc) if isinstance(exc, EditproofError) else f"{type(exc).__name__}: {exc}"


def classify(task: Task, exc: BaseException, config: SuiteConfig) -> Failure:
    """A failed attempt's fate: user errors fail at once; an OOM retries with half the batch;
    anything else backs off up to the attempt limit; a failed restore poisons the process."""
    message = error_message(exc)
    last = task.attempts >= config.max_attempts
    if isinstance(exc, RestoreError):
        return Failure(message, "poisoned", 0.0, poisoned=True)
    if isinstance(exc, EditproofError) and not isinstance(exc, EvaluationError):
        return Failure(message, "permanent", None)
    if is_oom(exc):
        # Under --batch-size auto an OOM outside the measuring loop retries from 8 windows down.
        batch = int(task.params.get("batch_size") or config.batch_size or CPU_BATCH)
        if batch <= 1 or last:
            return Failure(message, "oom", None)
        return Failure(message, "oom", 0.0, params={**task.params, "batch_size": batch // 2})
    if last:
        return Failure(message, "error", None)
    wait = min(BACKOFF_BASE_S * 2 ** (task.attempts - 1), BACKOFF_MAX_S)
    return Failure(message, "transient", wait)


def apply_failure(store: Store, task_id: str, failure: Failure) -> None:
    if failure.params is not None:
        store.set_params(task_id, failure.params)
    store.fail(task_id, failure.message, failure.kind, retry_after=failure.retry_after)

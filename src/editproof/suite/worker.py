"""The local model worker: one process, one model loaded once, all of that model's tasks.

``run_worker`` is the entry point of a worker process (spawned by the local executor). Its
:class:`~editproof.suite.measure.Measurer` builds one :class:`~editproof.evaluation.Evaluator`
(load, windows, baseline measured and guard-signed once); the worker claims its model's
tasks from the store one at a time, writes each output atomically and only then marks the
task done. Errors are classified (:func:`~editproof.suite.task_io.classify`): user errors
fail the task at once; an out-of-memory error retries with half the batch; anything else
retries with backoff up to the attempt limit. A failed restore after an edit poisons the
process: it exits so that a fresh worker reloads the model. The Ray executor runs the same
Measurer in an actor and does the claiming and writing in its driver.
"""

from __future__ import annotations

import json
import os
import time
import traceback
from pathlib import Path
from typing import Any

from editproof import _compile_ahead
from editproof.fileio import atomic_write_text
from editproof.suite import layout
from editproof.suite.config import load_config
from editproof.suite.measure import Measurer
from editproof.suite.plan import EVAL, REPEAT
from editproof.suite.revisions import pinned_source
from editproof.suite.store import Store, Task
from editproof.suite.task_io import (
    append_log,
    apply_failure,
    classify,
    is_oom,
    log_line,
    read_spec,
    write_outputs,
)

__all__ = ["Poisoned", "Worker", "apply_determinism", "is_oom", "model_specs", "run_worker"]

EXIT_POISONED = 3
WAIT_S = 0.5  # a worker with nothing claimable yet polls this often


class Poisoned(Exception):
    """The model in this process can no longer be trusted (restore failed)."""


def apply_determinism(level: str) -> str:
    """Set torch's determinism knobs; returns the level reached."""
    import torch

    if level == "strict":
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
        torch.backends.cudnn.benchmark = False
        torch.use_deterministic_algorithms(True, warn_only=False)
        return "strict"
    torch.use_deterministic_algorithms(False)
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    torch.backends.cudnn.benchmark = True
    return "throughput"


class Worker:
    """The local worker: claims its model's tasks, has a :class:`Measurer` measure each, and
    writes the outputs into the run dir itself before marking the task done."""

    def __init__(self, run_dir: Path, worker_id: str, model: str, device: str) -> None:
        self.run_dir = run_dir
        self.id = worker_id
        self.model = model
        self.device = device
        self.store = Store(run_dir)
        path = run_dir / layout.CONFIG
        self.config = load_config(path.read_text(encoding="utf-8"), str(path))
        self.dir = self.config.model_dirs[model]
        self._task: Task | None = None
        self.measurer = Measurer(
            self.config,
            model,
            pinned_source(run_dir, model),
            device,
            model_specs(self.store.tasks(model)),
            tuned_path=str(run_dir / layout.TUNED),
            say=self._say,
            on_windows=self._windows,
        )
        self.task_seconds = 0.0

    @property
    def timings(self) -> dict[str, float]:
        return self.measurer.timings

    # -- progress -----------------------------------------------------------------------------

    def _say(self, message: str) -> None:
        self.store.heartbeat(self.id, phase=message[:120])
        if self._task is not None:
            append_log(self.run_dir, self._task.id, [log_line(message)])

    def _windows(self, phase: str, done: int, total: int) -> None:
        self.store.heartbeat(self.id, phase=phase, done=done, total=total)

    # -- the loop -------------------------------------------------------------------------

    def run(self) -> int:
        self.store.heartbeat(self.id, pid=os.getpid(), model=self.model, device=self.device)
        try:
            waiting = False
            while True:
                task = self.store.claim(self.model, self.id)
                if task is None:
                    if not self.store.has_pending(self.model):
                        return 0
                    # Pending tasks wait for a task another worker of this model is running,
                    # or for their backoff: keep the model loaded and wait.
                    if not waiting:
                        self.store.heartbeat(self.id, task=None, phase="waiting")
                        waiting = True
                    time.sleep(WAIT_S)
                    continue
                waiting = False
                self._task = task
                self.store.heartbeat(self.id, task=task.id, phase="starting", done=0, total=0)
                try:
                    self._execute(task)
                except Poisoned as exc:
                    self.store.fail(task.id, str(exc), "poisoned", retry_after=0.0)
                    return EXIT_POISONED
                finally:
                    self._task = None
        finally:
            self.store.drop_worker(self.id)
            self.store.close()

    def _execute(self, task: Task) -> None:
        started = time.perf_counter()
        try:
            texts = self.measurer.measure(read_spec(self.run_dir, self.config, task))
            outputs = write_outputs(self.run_dir, texts)
        except Exception as exc:  # Poisoned propagates: the process must go
            self._record_failure(task, exc)
            return
        self.task_seconds += time.perf_counter() - started
        self.store.finish(task.id, outputs, time.perf_counter() - started)
        self._say(f"done in {time.perf_counter() - started:.1f}s")

    def _record_failure(self, task: Task, exc: Exception) -> None:
        failure = classify(task, exc, self.config)
        self._say(f"error: {failure.message}\n{traceback.format_exc()}")
        if failure.poisoned:
            raise Poisoned(failure.message) from exc
        apply_failure(self.store, task.id, failure)


def model_specs(tasks: list[Task]) -> list[str]:
    """Every edit spec a model's evaluations will judge (resolved once, before the baseline)."""
    specs = {
        str(t.params["spec"])
        for t in tasks
        if t.type in (EVAL, REPEAT) and t.status != "skipped" and "spec" in t.params
    }
    return sorted(specs)


def _threads() -> int:
    import torch

    return int(torch.get_num_threads())


def run_worker(
    run_dir: str,
    worker_id: str,
    model: str,
    device: str,
    determinism: str,
    spawned_at: float = 0.0,
) -> None:
    """Process entry point (spawned by the executor). Its output goes to a log file; its
    own timings (process start, imports, tasks) to ``logs/workers/<id>.timings.json``."""
    entered = time.time()
    # Modules compiled ahead in worker processes, when this Python compiles from source
    # (forked now, while this is the process's only thread).
    _compile_ahead.start("suite-worker")
    log = Path(run_dir) / layout.LOGS / "workers" / f"{worker_id}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    from editproof.lm.libraries import (
        forward_needs_transformers,
        import_model_libraries,
        quiet_transformers,
    )

    quiet_transformers()
    imported = import_model_libraries(
        device=device,
        with_transformers=lambda: forward_needs_transformers(
            _evaluation_config(Path(run_dir), model, device)
        ),
    )
    quiet_transformers()
    apply_determinism(determinism)
    ready = time.time()
    worker = Worker(Path(run_dir), worker_id, model, device)
    code = worker.run()
    done = time.time()
    timings: dict[str, object] = {
        "process_start": round(entered - spawned_at, 3) if spawned_at else None,
        "imports": round(ready - entered, 3),
        **{k: round(v, 3) for k, v in imported.timing_keys().items()},
        "cuda_start_overlapped": round(imported.cuda_start, 3),
        "threads": _threads(),
        "tasks": round(worker.task_seconds, 3),
        "between_tasks": round(done - ready - worker.task_seconds, 3),
        "total": round(done - (spawned_at or entered), 3),
        "exit_code": code,
    }
    ahead = _compile_ahead.summary()
    if ahead:
        timings["compile_ahead"] = ahead
    _compile_ahead.finish("suite-worker")
    atomic_write_text(log.with_suffix(".timings.json"), json.dumps(timings, indent=2) + "\n")
    raise SystemExit(code)


def _evaluation_config(run_dir: Path, model: str, device: str) -> Any:
    """The EvaluationConfig this worker's Measurer will build (to choose the imports)."""
    from editproof.suite.config import evaluation_config

    path = run_dir / layout.CONFIG
    config = load_config(path.read_text(encoding="utf-8"), str(path))
    return evaluation_config(config, pinned_source(run_dir, model), tuned_params="", device=device)

"""The model worker: one process, one model loaded once, all of that model's tasks.

``run_worker`` is the entry point of a worker process (spawned by the executor). It builds
one :class:`~editproof.evaluation.Evaluator` (load, windows, baseline measured and guard-
signed once), then claims its model's tasks from the store one at a time, writes each output
atomically and only then marks the task done. Errors are classified: user errors
(``EditproofError`` other than evaluation errors) fail the task at once; an out-of-memory
error retries with half the batch; anything else retries with backoff up to the attempt
limit. A failed restore after an edit poisons the process: it exits so that a fresh worker
reloads the model.
"""

from __future__ import annotations

import json
import os
import time
import traceback
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from editproof.errors import EditproofError, EvaluationError, RestoreError
from editproof.fileio import atomic_write_text, file_sha256
from editproof.suite import layout
from editproof.suite.config import load_config
from editproof.suite.plan import CALIBRATE, EVAL, PRESET, REPEAT, SETUP
from editproof.suite.store import Store, Task

if TYPE_CHECKING:
    from editproof.calibration.preset import Preset
    from editproof.evaluation import Evaluator

EXIT_POISONED = 3
WAIT_S = 0.5
# What a worker's re-measured baseline must share with baseline.json, exactly.
BASELINE_KEYS = (
    "weight_sha256", "plan_digest", "seq_len", "dtype", "preview", "final", "guard_contracts",
)  # fmt: skip
BACKOFF_BASE_S = 2.0
BACKOFF_MAX_S = 60.0


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


def is_oom(exc: BaseException) -> bool:
    name = type(exc).__name__
    return name == "OutOfMemoryError" or "out of memory" in str(exc).lower()


class Worker:
    def __init__(self, run_dir: Path, worker_id: str, model: str, device: str) -> None:
        self.run_dir = run_dir
        self.id = worker_id
        self.model = model
        self.device = device
        self.store = Store(run_dir)
        path = run_dir / layout.CONFIG
        self.config = load_config(path.read_text(encoding="utf-8"), str(path))
        self.dir = self.config.model_dirs[model]
        self.timings: dict[str, float] = {}
        self._task: Task | None = None
        self._ev: Evaluator | None = None
        self._preset_loaded = False
        self.task_seconds = 0.0

    # -- progress -----------------------------------------------------------------------------

    def _say(self, message: str) -> None:
        self.store.heartbeat(self.id, phase=message[:120])
        if self._task is not None:
            log = self.run_dir / layout.task_log(self._task.id)
            log.parent.mkdir(parents=True, exist_ok=True)
            with log.open("a", encoding="utf-8") as f:
                f.write(f"{time.strftime('%H:%M:%S')} {message}\n")

    def _windows(self, phase: str, done: int, total: int) -> None:
        self.store.heartbeat(self.id, phase=phase, done=done, total=total)

    # -- the evaluator --------------------------------------------------------------------

    def evaluator(self) -> Evaluator:
        if self._ev is None:
            from editproof.evaluation import Evaluator
            from editproof.suite.config import evaluation_config
            from editproof.suite.revisions import pinned_source

            cfg = evaluation_config(
                self.config,
                pinned_source(self.run_dir, self.model),
                tuned_params=str(self.run_dir / layout.TUNED),
                device=self.device,
            )
            t0 = time.perf_counter()
            # Every spec this model will be judged with is resolved against the loaded model
            # (clean params, scopes) before the baseline is measured: a misfit fails in
            # seconds, naming the spec.
            self._ev = Evaluator(cfg, self._say, edits=self._specs(), on_windows=self._windows)
            self.timings["evaluator_setup"] = time.perf_counter() - t0
            self._check_baseline(self._ev)
        return self._ev

    def _check_baseline(self, ev: Evaluator) -> None:
        """A worker that did not write ``baseline.json`` (a replica on another GPU, or one
        started after a crash) must have measured exactly that baseline; otherwise its
        reports would compare against other numbers than the suite's."""
        path = self.run_dir / layout.baseline(self.config, self.model)
        if not path.is_file():
            return
        stored = json.loads(path.read_text(encoding="utf-8"))
        mine = baseline_record(ev, self.model)
        differs = [k for k in BASELINE_KEYS if stored.get(k) != mine.get(k)]
        if differs:
            raise EditproofError(
                f"worker {self.id} measured a baseline that differs from "
                f"{path.relative_to(self.run_dir)} in {', '.join(differs)}: the model, text or "
                "numerics are not reproducible here (try --determinism strict)"
            )

    def _specs(self) -> list[str]:
        specs = {
            str(t.params["spec"])
            for t in self.store.tasks(self.model)
            if t.type in (EVAL, REPEAT) and t.status != "skipped" and "spec" in t.params
        }
        return sorted(specs)

    def _load_preset(self) -> None:
        """Judge evaluations under the tier with this model's preset (once per process)."""
        if self._preset_loaded:
            return
        path = self.run_dir / layout.preset_json(self.config, self.model)
        ev = self.evaluator()
        if path.is_file():
            from editproof.calibration import apply_preset, load_preset

            policy = apply_preset(ev.tier, load_preset(path))
            rel = path.relative_to(self.run_dir)
            ev.use_policy(policy, f"preset {rel} (sha256 {file_sha256(path)})")
        self._preset_loaded = True

    # -- the loop -------------------------------------------------------------------------

    def run(self) -> int:
        self.store.heartbeat(self.id, pid=os.getpid(), model=self.model, device=self.device)
        waiting = False
        try:
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
            outputs = self._dispatch(task)
        except Exception as exc:  # Poisoned propagates: the process must go
            self._record_failure(task, exc)
            return
        self.task_seconds += time.perf_counter() - started
        self.store.finish(task.id, outputs, time.perf_counter() - started)
        self._say(f"done in {time.perf_counter() - started:.1f}s")

    def _record_failure(self, task: Task, exc: Exception) -> None:
        message = (
            f"{type(exc).__name__}: {exc}" if not isinstance(exc, EditproofError) else str(exc)
        )
        self._say(f"error: {message}\n{traceback.format_exc()}")
        last = task.attempts >= self.config.max_attempts
        if isinstance(exc, RestoreError):
            raise Poisoned(message) from exc
        if isinstance(exc, EditproofError) and not isinstance(exc, EvaluationError):
            self.store.fail(task.id, message, "permanent")
        elif is_oom(exc):
            batch = int(task.params.get("batch_size", self.config.batch_size))
            if batch <= 1 or last:
                self.store.fail(task.id, message, "oom")
            else:
                self.store.set_params(task.id, {**task.params, "batch_size": max(1, batch // 2)})
                self.store.fail(task.id, message, "oom", retry_after=0.0)
        elif last:
            self.store.fail(task.id, message, "error")
        else:
            wait = min(BACKOFF_BASE_S * 2 ** (task.attempts - 1), BACKOFF_MAX_S)
            self.store.fail(task.id, message, "transient", retry_after=wait)

    def _dispatch(self, task: Task) -> dict[str, str]:
        if task.type == SETUP:
            return self._setup(task)
        ev = self.evaluator()  # every other task needs the baseline (built once)
        if task.type == CALIBRATE:
            return self._calibrate(ev, task)
        if task.type == PRESET:
            return self._preset(ev, task)
        if task.type in (EVAL, REPEAT):
            return self._evaluate(ev, task)
        raise EvaluationError(f"unknown task type '{task.type}'")

    # -- tasks ----------------------------------------------------------------------------

    def _write(self, rel: Path, text: str) -> tuple[str, str]:
        path = self.run_dir / rel
        atomic_write_text(path, text)
        return str(rel), file_sha256(path)

    def _setup(self, task: Task) -> dict[str, str]:
        ev = self.evaluator()
        record = baseline_record(ev, self.model)
        rel = layout.baseline(self.config, self.model)
        return dict([self._write(rel, json.dumps(record, indent=2) + "\n")])

    def _calibrate(self, ev: Evaluator, task: Task) -> dict[str, str]:
        from editproof.calibration.null_sweep import null_sweep

        seed = int(task.params["seed"])
        sweep = null_sweep(ev, [seed], progress=self._say)
        run = sweep.runs[0].model_dump(mode="json")
        rel = layout.calibration_run(self.config, self.model, int(task.run or 0))
        return dict([self._write(rel, json.dumps(run, indent=2) + "\n")])

    def _preset(self, ev: Evaluator, task: Task) -> dict[str, str]:
        from editproof.calibration.null_sweep import SeedRun
        from editproof.calibration.preset import write_preset
        from editproof.suite.presets import suite_preset

        runs = []
        for i in range(1, self.config.calibration_runs + 1):
            path = self.run_dir / layout.calibration_run(self.config, self.model, i)
            runs.append(SeedRun.model_validate_json(path.read_text(encoding="utf-8")))
        if not runs:
            self._preset_loaded = True  # no calibration: the packaged tier judges
            return {}
        preset: Preset = suite_preset(
            model_id=self.model,
            tier=ev.tier,
            runs=runs,
            baseline=self.model,
            weight_sha256=ev.base_digest.sha256,
            seq_len=ev.plan.seq_len,
            n_windows=self.config.n_windows,
            baseline_seed=self.config.seed,
        )
        written = write_preset(preset, self.run_dir / layout.PRESETS)
        self._preset_loaded = False
        return {str(p.relative_to(self.run_dir)): file_sha256(p) for p in written}

    def _evaluate(self, ev: Evaluator, task: Task) -> dict[str, str]:
        from editproof.report.html import render_html
        from editproof.report.io import report_json

        self._load_preset()
        batch = int(task.params.get("batch_size", self.config.batch_size))
        if batch != ev.config.batch_size:
            ev.config = replace(ev.config, batch_size=batch)
            ev.guard_ctx = ev.guard_ctx.model_copy(update={"batch_size": batch})
        report = ev.judge_edit(str(task.params["spec"]))
        folder = layout.task_dir(self.config, task)
        outputs = dict([self._write(folder / "evaluation.report.json", report_json(report))])
        for name, sidecar in report.guards.probes.items():
            outputs.update([self._write(folder / f"{name}.json", json.dumps(sidecar, indent=2))])
        outputs.update([self._write(folder / "evaluation.html", render_html(report))])
        return outputs


def baseline_record(ev: Evaluator, model: str) -> dict[str, Any]:
    """What ``baseline.json`` pins: weights, windows, per-window NLL, guard contracts."""
    arm = ev.baseline
    return {
        "format": "editproof.suite-baseline",
        "schema_version": 1,
        "model": model,
        "weight_sha256": arm.model.weight_sha256,
        "plan_digest": ev.dataset.plan_digest,
        "seq_len": ev.plan.seq_len,
        "device": arm.model.device,
        "dtype": arm.model.dtype,
        "preview": arm.preview.model_dump(mode="json"),
        "final": arm.final.model_dump(mode="json"),
        "guard_contracts": {k: s.contract_digest for k, s in sorted(ev.base_signatures.items())},
        "timings": {k: round(v, 4) for k, v in ev.timings.items()},
    }


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
    log = Path(run_dir) / layout.LOGS / "workers" / f"{worker_id}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    import transformers

    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    apply_determinism(determinism)
    ready = time.time()
    worker = Worker(Path(run_dir), worker_id, model, device)
    code = worker.run()
    done = time.time()
    timings = {
        "process_start": round(entered - spawned_at, 3) if spawned_at else None,
        "imports": round(ready - entered, 3),
        "tasks": round(worker.task_seconds, 3),
        "between_tasks": round(done - ready - worker.task_seconds, 3),
        "total": round(done - (spawned_at or entered), 3),
        "exit_code": code,
    }
    atomic_write_text(log.with_suffix(".timings.json"), json.dumps(timings, indent=2) + "\n")
    raise SystemExit(code)

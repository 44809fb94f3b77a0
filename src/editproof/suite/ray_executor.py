"""The Ray executor: the model worker as a Ray actor; the driver alone writes the run dir.

One actor per model (model affinity), with ``num_gpus`` = the GPUs the model needs
(:mod:`~editproof.suite.placement`; 0 on CPU) and ``num_cpus=1`` beside GPUs; a CPU actor
takes a whole node's CPUs, as the local executor's one CPU slot takes the host (Ray sets an
actor's thread count to its ``num_cpus``). The driver claims a task from the
store, sends its :class:`~editproof.suite.task_io.TaskSpec` to the model's actor, and on
the answer writes the outputs atomically and marks the task done with their digests — the
same files and digests the local executor writes, so a run can be resumed by either.

Faults, as in the local executor: a task past ``--task-timeout`` (``ray.wait`` with a
timeout) kills the actor and is retried; an actor that dies mid-task fails that attempt
(``worker_died``) and is replaced; a failed restore poisons the actor, which is killed and
replaced; an actor that cannot start is retried up to the attempt limit. Ray is imported
only here, and only when ``--executor ray`` is asked for.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from editproof.errors import UsageError
from editproof.fileio import atomic_write_text
from editproof.suite import layout
from editproof.suite.config import SuiteConfig
from editproof.suite.placement import gpu_memory, gpus_needed, weight_bytes
from editproof.suite.ray_actor import ActorInputs, ModelActor
from editproof.suite.revisions import pinned_source
from editproof.suite.store import Store, Task
from editproof.suite.task_io import (
    TaskResult,
    append_log,
    apply_failure,
    classify,
    read_spec,
    write_outputs,
)
from editproof.suite.worker import model_specs

POLL_S = 0.25
RAY_MISSING = "--executor ray needs the ray extra: pip install 'editproof[ray]'"
# Passed on to the actors (a cluster's workers do not inherit the driver's environment).
_ENV = ("PACK_NET", "HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE",
        "CUBLAS_WORKSPACE_CONFIG", "HF_HOME", "HF_HUB_CACHE")  # fmt: skip


def check_ray() -> None:
    """Fail before anything is measured when Ray is not installed."""
    if importlib.util.find_spec("ray") is None:
        raise UsageError(RAY_MISSING)


def actor_gpus(
    device: str, cluster_gpus: int, model_bytes: int | None, gpu_bytes: int | None
) -> int:
    """``num_gpus`` for a model's actor: 0 on CPU (``--device cpu``, or ``auto`` on a cluster
    without GPUs), else the local placement estimate (1 when the sizes are unknown)."""
    if device == "cpu" or (cluster_gpus == 0 and device == "auto"):
        return 0
    if cluster_gpus == 0:
        raise UsageError(f"--device {device}: the Ray cluster has no GPU")
    return gpus_needed(model_bytes, gpu_bytes)


def actor_cpus(gpus: int, node_cpus: list[float]) -> int:
    """``num_cpus`` for a model's actor: 1 beside GPUs; on CPU the largest node's CPUs, so
    that its torch uses every core there (Ray sets OMP_NUM_THREADS to ``num_cpus``; 1 CPU
    would leave the other cores idle while the local executor's worker uses them all)."""
    if gpus or not node_cpus:
        return 1
    return max(1, int(max(node_cpus)))


@dataclass
class _Actor:
    id: str
    model: str
    handle: Any
    created: float
    ready: Any | None  # the ready() reference until the actor has started
    info: dict[str, Any] = field(default_factory=dict)
    task: Task | None = None
    ref: Any | None = None  # the run_task() reference while a task runs
    dispatched: float = 0.0
    task_seconds: float = 0.0


class RayExecutor:
    def __init__(
        self,
        run_dir: Path,
        config: SuiteConfig,
        address: str | None = None,
        tick: Callable[[], None] | None = None,
    ) -> None:
        self.run_dir = run_dir
        self.config = config
        self.address = address
        self.tick = tick or (lambda: None)
        self.store = Store(run_dir)
        self._deaths: dict[str, int] = {}
        self._serial = 0
        self._gpus: dict[str, int] = {}
        self._cpus: dict[str, int] = {}

    def run(self, models: list[str]) -> None:
        import ray

        self._ray = ray
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # a suite runs offline
        local = (
            {} if self.address or os.environ.get("RAY_ADDRESS") else {"include_dashboard": False}
        )
        ray.init(
            address=self.address,
            log_to_driver=False,
            logging_level=logging.WARNING,
            ignore_reinit_error=True,
            **local,
        )
        actors: dict[str, _Actor] = {}
        try:
            for model in models:
                if self.store.has_open(model) and self._placeable(model):
                    actors[model] = self._start(model)
            while actors:
                self._step(actors)
                self.tick()
        finally:
            for act in actors.values():
                self._stop(act, "stopped")
            self.store.close()
            ray.shutdown()

    # -- placement ----------------------------------------------------------------------------

    def _placeable(self, model: str) -> bool:
        have = int(self._ray.cluster_resources().get("GPU", 0))
        mem = gpu_memory([str(i) for i in range(64)]) if have else {}  # the driver's GPUs
        need = actor_gpus(self.config.device, have, weight_bytes(model) if have else None,
                          min(mem.values()) if mem else None)  # fmt: skip
        if need > have:
            self.store.fail_open(
                model,
                f"model needs {need} GPUs for its weights plus headroom, but the Ray cluster "
                f"has {have}",
            )
            return False
        self._gpus[model] = need
        nodes = [n.get("Resources", {}).get("CPU", 0.0) for n in self._ray.nodes() if n["Alive"]]
        self._cpus[model] = actor_cpus(need, nodes)
        return True

    def _start(self, model: str) -> _Actor:
        self._serial += 1
        gpus = self._gpus[model]
        tuned = self.run_dir / layout.TUNED
        inputs = ActorInputs(
            config=self.config,
            model=model,
            source=pinned_source(self.run_dir, model),
            device="cuda" if gpus else "cpu",
            specs=model_specs(self.store.tasks(model)),
            tuned_text=tuned.read_text(encoding="utf-8"),
            tuned_source=str(tuned),
        )
        env = {k: os.environ[k] for k in _ENV if k in os.environ}
        env.update(TOKENIZERS_PARALLELISM="false", TRANSFORMERS_VERBOSITY="error",
                   HF_HUB_DISABLE_PROGRESS_BARS="1")  # fmt: skip
        remote = self._ray.remote(ModelActor).options(
            num_cpus=self._cpus[model], num_gpus=gpus, max_restarts=0, runtime_env={"env_vars": env}
        )
        handle = remote.remote(inputs)
        act = _Actor(f"ray-{self._serial}", model, handle, time.time(), handle.ready.remote())
        self.store.heartbeat(act.id, model=model, device=f"ray:{inputs.device}", phase="starting")
        return act

    # -- the loop -----------------------------------------------------------------------------

    def _step(self, actors: dict[str, _Actor]) -> None:
        for act in list(actors.values()):
            idle = act.ready is None and act.ref is None
            if idle and not self._dispatch(act) and not self.store.has_open(act.model):
                self._stop(act, 0)
                del actors[act.model]
        waiting = {r: a for a in actors.values() for r in (a.ready, a.ref) if r is not None}
        refs = list(waiting)
        if not refs:
            time.sleep(POLL_S)  # every model waits on a backoff or a dependency
            return
        done, _ = self._ray.wait(refs, num_returns=1, timeout=POLL_S)
        for ref in done:
            act = waiting[ref]
            again = self._ready(act) if ref == act.ready else self._answer(act)
            if not again:
                del actors[act.model]
        now = time.time()
        for act in list(actors.values()):
            late = act.ref is not None and now - act.dispatched > self.config.task_timeout_s
            if late and not self._timed_out(act):
                del actors[act.model]
        for model, act in list(actors.items()):
            if act.handle is None:  # replaced below: killed, poisoned or dead
                actors[model] = self._start(model)

    def _dispatch(self, act: _Actor) -> bool:
        task = self.store.claim(act.model, act.id)
        if task is None:
            return False
        act.task, act.dispatched = task, time.time()
        try:
            spec = read_spec(self.run_dir, self.config, task)
        except Exception as exc:  # e.g. a calibration run missing from the run dir
            apply_failure(self.store, task.id, classify(task, exc, self.config))
            act.task = None
            return True
        act.ref = act.handle.run_task.remote(spec)
        self.store.heartbeat(act.id, task=task.id, phase="running on ray", done=0, total=0)
        return True

    def _ready(self, act: _Actor) -> bool:
        """The actor started (True) or died starting (True to retry, False to give up)."""
        try:
            act.info = self._ray.get(act.ready)
        except Exception as exc:
            act.ready = None
            return self._died(act, f"actor died while starting: {_one_line(exc)}", orphan=False)
        act.ready = None
        self.store.heartbeat(act.id, pid=act.info.get("pid"), phase="ready")
        return True

    def _answer(self, act: _Actor) -> bool:
        """Write a finished task's outputs, or settle its failure; False to drop the actor."""
        from ray.exceptions import RayActorError

        assert act.task is not None
        task, ref = act.task, act.ref
        act.ref = None
        try:
            result: TaskResult = self._ray.get(ref)
        except RayActorError as exc:
            return self._died(act, f"worker process died (ray actor: {_one_line(exc)})")
        except Exception as exc:  # e.g. the result could not be sent back
            apply_failure(self.store, task.id, classify(task, exc, self.config))
            act.task = None
            return True
        append_log(self.run_dir, task.id, result.log)
        act.task = None
        if result.failure is not None:
            apply_failure(self.store, task.id, result.failure)
            if result.failure.poisoned:
                return self._died(act, result.failure.message, orphan=False)
            return True
        try:
            digests = write_outputs(self.run_dir, result.outputs)
        except OSError as exc:  # the driver could not write: this attempt failed
            apply_failure(self.store, task.id, classify(task, exc, self.config))
            return True
        seconds = time.time() - act.dispatched
        self.store.finish(task.id, digests, seconds)
        act.task_seconds += seconds
        append_log(self.run_dir, task.id, [f"{time.strftime('%H:%M:%S')} done in {seconds:.1f}s"])
        return True

    def _timed_out(self, act: _Actor) -> bool:
        assert act.task is not None
        task = act.task
        retry = task.attempts < self.config.max_attempts
        self.store.fail(
            task.id,
            f"timed out after {self.config.task_timeout_s:g}s",
            "timeout",
            retry_after=0.0 if retry else None,
        )
        act.task = act.ref = None
        self._stop(act, "killed (timeout)")
        act.handle = None
        return self._runnable(act.model)

    def _died(self, act: _Actor, reason: str, *, orphan: bool = True) -> bool:
        """The actor is gone (or must go). Its running task fails this attempt; a death
        outside a task counts toward the model's limit. True: start a replacement."""
        if orphan and act.task is not None:
            retry = act.task.attempts < self.config.max_attempts
            self.store.fail(act.task.id, reason, "worker_died", retry_after=0.0 if retry else None)
        act.task = act.ref = None
        self._stop(act, "died")
        act.handle = None
        if not self._runnable(act.model):
            return False
        if not orphan:
            self._deaths[act.model] = self._deaths.get(act.model, 0) + 1
            if self._deaths[act.model] >= self.config.max_attempts:
                self.store.fail_open(act.model, f"ray actor died {self._deaths[act.model]} times "
                                f"outside a task ({reason})")  # fmt: skip
                return False
        return True

    def _stop(self, act: _Actor, exit_code: int | str) -> None:
        """Kill the actor and record its timings (same keys as a local worker's)."""
        if act.handle is not None:
            self._ray.kill(act.handle, no_restart=True)
        now = time.time()
        imports = float(act.info.get("imports", 0.0))
        timings = {
            "executor": "ray",
            "host": act.info.get("host"),
            "process_start": None,
            "imports": imports,
            **{k: v for k, v in act.info.items() if k.startswith("imports_")},
            "threads": act.info.get("threads"),
            "tasks": round(act.task_seconds, 3),
            "between_tasks": round(now - act.created - imports - act.task_seconds, 3),
            "total": round(now - act.created, 3),
            "exit_code": exit_code,
        }
        path = self.run_dir / layout.LOGS / "workers" / f"{act.id}.timings.json"
        atomic_write_text(path, json.dumps(timings, indent=2) + "\n")
        self.store.drop_worker(act.id)

    def _runnable(self, model: str) -> bool:
        """Whether a replacement actor would find work: an open task not blocked by a failed
        dependency (which ``Store.claim`` would fail without running it)."""
        status: dict[str, str] = {}
        runnable = False
        for t in self.store.tasks(model):
            blocked = any(status.get(d) in ("failed", "skipped") for d in t.deps)
            status[t.id] = "failed" if blocked and t.status == "pending" else t.status
            runnable = runnable or status[t.id] in ("pending", "running")
        return runnable


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"[:300]

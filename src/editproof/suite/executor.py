"""The local executor: worker processes on device slots, watched by the driver.

One slot per GPU (or per group of GPUs for a model larger than one), or one CPU slot. A slot
runs one worker process at a time; a worker keeps one model loaded for all of that model's
tasks (model affinity). When every model has a worker and a slot is still free, a running
model whose remaining work clearly outweighs the cost of loading another copy gets a replica
worker there that shares its pending tasks. The driver never loads a model: it starts
workers, watches them, kills a worker whose task runs past the timeout, and replaces a worker
that died (its task goes back to pending, counted as an attempt). Nothing here waits
without a bound.

The interface is deliberately small — ``Executor.run(models)`` — so that a Ray executor can
stand beside it.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Protocol

from editproof.errors import UsageError
from editproof.suite.config import SuiteConfig
from editproof.suite.placement import gpu_memory, gpus_needed, weight_bytes
from editproof.suite.store import Store

POLL_S = 0.25
# Replicas: tasks a second worker of a model may share, its start cost beyond the measured
# setup (process start and imports), and how clearly it must pay off.
REPLICA_TYPES = ("calibrate", "eval", "repeat")
REPLICA_START_S = 15.0
REPLICA_MARGIN = 1.5


class Executor(Protocol):
    def run(self, models: list[str]) -> None: ...


@dataclass(frozen=True)
class Slot:
    name: str
    device: str  # what the worker passes to load_model: cpu, cuda
    visible: str | None  # CUDA_VISIBLE_DEVICES for the worker, None to inherit


def device_slots(devices: list[str] | None, device: str) -> list[Slot]:
    """Slots from ``--devices`` (``0,1`` = one GPU each; ``0+1,2+3`` = groups), else every
    visible GPU, else one CPU slot."""
    if device == "cpu":
        return [Slot("cpu", "cpu", None)]
    if devices:
        slots = []
        for group in devices:
            ids = [g.strip() for g in group.split("+") if g.strip()]
            if not ids or not all(i.isdigit() for i in ids):
                raise UsageError(f"--devices: '{group}' is not a GPU index or a group like 0+1")
            slots.append(Slot("gpu" + "+".join(ids), "cuda", ",".join(ids)))
        return slots
    count = _gpu_count()
    if count == 0:
        if device.startswith("cuda"):
            raise UsageError("--device cuda: no CUDA GPU is visible")
        return [Slot("cpu", "cpu", None)]
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    ids = [v.strip() for v in visible.split(",")] if visible else [str(i) for i in range(count)]
    return [Slot(f"gpu{i}", "cuda", i) for i in ids[:count]]


def _gpu_count() -> int:
    """CUDA devices, asked without initialising CUDA in the driver."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None and not visible.strip():
        return 0
    try:
        import torch

        return int(torch.cuda.device_count())
    except Exception:
        return 0


@dataclass
class _Active:
    process: BaseProcess
    model: str
    worker_id: str
    started: float
    slots: list[Slot]


class LocalExecutor:
    def __init__(
        self,
        run_dir: Path,
        config: SuiteConfig,
        slots: list[Slot],
        tick: Callable[[], None] | None = None,
    ) -> None:
        self.run_dir = run_dir
        self.config = config
        self.slots = slots
        self.tick = tick or (lambda: None)
        self.store = Store(run_dir)
        self._ctx = mp.get_context("spawn")
        self._deaths: dict[str, int] = {}
        self._serial = 0
        self._need: dict[str, int] = {}

    def run(self, models: list[str]) -> None:
        queue = [m for m in models if self.store.has_open(m)]
        need = self._need = {m: self._units_needed(m) for m in queue}
        free = list(self.slots)
        active: dict[str, _Active] = {}
        try:
            while queue or active:
                for model in list(queue):
                    if need[model] > len(self.slots):
                        queue.remove(model)
                        self.store.fail_open(model, self._too_big(need[model]))
                    elif need[model] <= len(free):
                        taken, free = free[: need[model]], free[need[model] :]
                        queue.remove(model)
                        act = self._start(taken, model)
                        active[act.worker_id] = act
                    else:
                        break  # keep the order: the next model waits for free devices
                if not queue and free:
                    replica = self._replica(active, len(free))
                    if replica is not None:
                        taken, free = free[: need[replica]], free[need[replica] :]
                        act = self._start(taken, replica)
                        active[act.worker_id] = act
                for key, act in list(active.items()):
                    self._enforce_timeout(act)
                    if act.process.is_alive():
                        continue
                    act.process.join()
                    del active[key]
                    others = any(a.model == act.model for a in active.values())
                    if self._after_exit(act) and not others:
                        again = self._start(act.slots, act.model)
                        active[again.worker_id] = again
                    else:
                        free.extend(act.slots)
                self.tick()
                time.sleep(POLL_S)
        finally:
            for act in active.values():
                if act.process.is_alive():
                    act.process.kill()
                    act.process.join()
            self.store.close()

    def _replica(self, active: dict[str, _Active], free: int) -> str | None:
        """A model worth a second (third...) worker on free devices, else None.

        With nothing left to start, a free slot loads another copy of a running model and
        shares its pending tasks (claims are atomic in the store). Worth it when the work
        left, spread over one more worker, saves more than the copy costs to start: with
        ``w`` workers, P pending tasks of mean duration a and a start cost s (process,
        imports, load, baseline), the finish moves from P*a/w to about (P*a + s)/(w + 1),
        which is earlier when P*a > w*s. The copy re-measures the baseline and must match
        ``baseline.json`` exactly (worker.py), so the numbers do not depend on who ran a task.
        """
        workers: dict[str, int] = {}
        for act in active.values():
            workers[act.model] = workers.get(act.model, 0) + 1
        best: tuple[float, str] | None = None
        for model, w in workers.items():
            if self._need.get(model, 1) > free:
                continue
            tasks = self.store.tasks(model)
            setup = [t.seconds for t in tasks if t.type == "setup" and t.status == "done"]
            took = [t.seconds for t in tasks if t.type in REPLICA_TYPES and t.seconds]
            pending = sum(1 for t in tasks if t.status == "pending" and t.type in REPLICA_TYPES)
            if not setup or not took or not pending:
                continue  # no measured cost yet, or nothing to share
            left = pending * sum(took) / len(took)
            start = (setup[0] or 0.0) + REPLICA_START_S
            if left > REPLICA_MARGIN * w * start and (best is None or left / w > best[0]):
                best = (left / w, model)
        return best[1] if best else None

    def _units_needed(self, model: str) -> int:
        """GPUs a model needs (1 on CPU and for explicit ``--devices`` slots)."""
        if self.config.devices or any(s.visible is None for s in self.slots):
            return 1
        mem = gpu_memory([s.visible for s in self.slots if s.visible is not None])
        return gpus_needed(weight_bytes(model), min(mem.values()) if mem else None)

    def _too_big(self, need: int) -> str:
        return (
            f"model needs {need} GPUs for its weights plus headroom, but only "
            f"{len(self.slots)} are available to this run"
        )

    def _start(self, slots: list[Slot], model: str) -> _Active:
        from editproof.suite.worker import run_worker

        self._serial += 1
        worker_id = f"{'+'.join(s.name for s in slots)}-{self._serial}"
        visible = [s.visible for s in slots if s.visible is not None]
        saved = os.environ.get("CUDA_VISIBLE_DEVICES")
        try:
            if visible:
                os.environ["CUDA_VISIBLE_DEVICES"] = ",".join(visible)
            args = (
                str(self.run_dir),
                worker_id,
                model,
                slots[0].device,
                self.config.determinism,
                time.time(),
            )
            process = self._ctx.Process(
                target=run_worker, args=args, name=f"editproof-worker-{worker_id}", daemon=False
            )
            process.start()
        finally:
            if saved is None:
                os.environ.pop("CUDA_VISIBLE_DEVICES", None)
            else:
                os.environ["CUDA_VISIBLE_DEVICES"] = saved
        return _Active(process, model, worker_id, time.time(), slots)

    def _enforce_timeout(self, act: _Active) -> None:
        now = time.time()
        for task in self.store.running():
            if task.worker != act.worker_id or task.started is None:
                continue
            if now - task.started > self.config.task_timeout_s and act.process.is_alive():
                act.process.kill()
                act.process.join()
                retry = task.attempts < self.config.max_attempts
                self.store.fail(
                    task.id,
                    f"timed out after {self.config.task_timeout_s:g}s",
                    "timeout",
                    retry_after=0.0 if retry else None,
                )

    def _after_exit(self, act: _Active) -> bool:
        """Settle a worker that exited; True when the model needs a new worker."""
        code = act.process.exitcode
        orphans = [t for t in self.store.running() if t.worker == act.worker_id]
        for task in orphans:  # the worker died mid-task
            retry = task.attempts < self.config.max_attempts
            self.store.fail(
                task.id,
                f"worker process died (exit code {code})",
                "worker_died",
                retry_after=0.0 if retry else None,
            )
        self.store.drop_worker(act.worker_id)
        if not self.store.has_open(act.model):
            return False
        if code != 0 and not orphans:
            # Died outside any task (e.g. while loading): count it, give up after the limit.
            self._deaths[act.model] = self._deaths.get(act.model, 0) + 1
            if self._deaths[act.model] >= self.config.max_attempts:
                deaths = self._deaths[act.model]
                reason = f"worker died {deaths} times outside a task (exit code {code})"
                self.store.fail_open(act.model, f"{reason}; see logs/workers/")
                return False
        return True

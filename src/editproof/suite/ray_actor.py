"""The Ray actor: the local worker's :class:`~editproof.suite.measure.Measurer`, fed by the
driver. It never touches the run directory (on a cluster its host may not have it): its
inputs arrive as arguments and every task's outputs, log lines and failure go back to the
driver in a :class:`~editproof.suite.task_io.TaskResult`.

This module does not import Ray; :mod:`editproof.suite.ray_executor` wraps the class with
``ray.remote`` when it starts an actor.
"""

from __future__ import annotations

import os
import time
import traceback
from dataclasses import dataclass
from typing import Any

from editproof.suite.config import SuiteConfig
from editproof.suite.task_io import TaskResult, TaskSpec, classify, log_line


@dataclass(frozen=True)
class ActorInputs:
    config: SuiteConfig
    model: str
    source: str  # pinned source (a hub model at its revision)
    device: str  # cuda when the actor holds GPUs, else cpu
    specs: list[str]
    tuned_text: str
    tuned_source: str  # the run dir's tuned params path, as the local worker names it


class ModelActor:
    def __init__(self, inputs: ActorInputs) -> None:
        entered = time.perf_counter()
        from editproof.lm.libraries import (
            forward_needs_transformers,
            import_model_libraries,
            quiet_transformers,
        )
        from editproof.suite.config import evaluation_config

        quiet_transformers()
        # The same up-front, timed import as a local worker (scikit-learn and SciPy hidden;
        # transformers left out when the native forward will run the model).
        self.imported = import_model_libraries(
            device=inputs.device,
            with_transformers=lambda: forward_needs_transformers(
                evaluation_config(
                    inputs.config, inputs.source, tuned_params="", device=inputs.device
                )
            ),
        )
        from editproof.edits.tuned import parse_tuned
        from editproof.suite.measure import Measurer
        from editproof.suite.worker import apply_determinism

        quiet_transformers()
        apply_determinism(inputs.config.determinism)
        self.inputs = inputs
        self._log: list[str] = []
        self.measurer = Measurer(
            inputs.config,
            inputs.model,
            inputs.source,
            inputs.device,
            inputs.specs,
            tuned=parse_tuned(inputs.tuned_text, inputs.tuned_source),
            say=self._say,
        )
        self.imports = time.perf_counter() - entered

    def _say(self, message: str) -> None:
        self._log.append(log_line(message))

    def ready(self) -> dict[str, Any]:
        """Where the actor runs, how long its imports took and torch's thread count."""
        import socket

        import torch

        return {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "imports": round(self.imports, 3),
            **{k: round(v, 3) for k, v in self.imported.timing_keys().items()},
            "threads": torch.get_num_threads(),
            "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
        }

    def run_task(self, spec: TaskSpec) -> TaskResult:
        self._log = []
        started = time.perf_counter()
        result = TaskResult(spec.task.id, log=self._log)
        try:
            result.outputs = self.measurer.measure(spec)
        except Exception as exc:
            result.failure = classify(spec.task, exc, self.inputs.config)
            self._say(f"error: {result.failure.message}\n{traceback.format_exc()}")
        result.seconds = time.perf_counter() - started
        return result

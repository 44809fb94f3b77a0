"""The measuring half of a model worker: one model loaded once, a task in, texts out.

A :class:`Measurer` builds one :class:`~editproof.evaluation.Evaluator` (load, windows,
baseline measured and guard-signed once) and turns each :class:`~editproof.suite.task_io.
TaskSpec` into ``{path relative to the run dir: text}``. It never reads or writes the run
directory: everything it needs comes in its constructor's arguments and in the spec, so the
same code runs in a local worker process and in a Ray actor on another host.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from editproof.errors import EditproofError, EvaluationError
from editproof.suite import layout
from editproof.suite.config import SuiteConfig
from editproof.suite.plan import CALIBRATE, EVAL, PRESET, REPEAT, SETUP
from editproof.suite.task_io import TaskSpec, text_sha256

if TYPE_CHECKING:
    from editproof.edits.tuned import TunedParams
    from editproof.evaluation import Evaluator
    from editproof.suite.store import Task

Say = Callable[[str], None]
OnWindows = Callable[[str, int, int], None]


class Measurer:
    """``tuned_path`` names the run's tuned params file where it can be read; otherwise
    ``tuned`` carries them, already parsed, under that same source name (the report
    records it)."""

    def __init__(
        self,
        config: SuiteConfig,
        model: str,
        source: str,
        device: str,
        specs: list[str],
        *,
        tuned_path: str | None = None,
        tuned: TunedParams | None = None,
        say: Say | None = None,
        on_windows: OnWindows | None = None,
    ) -> None:
        self.config = config
        self.model = model
        self.source = source
        self.device = device
        self.specs = specs
        self.tuned_path = tuned_path
        self.tuned = tuned
        self.say: Say = say or (lambda _m: None)
        self.on_windows = on_windows
        self.timings: dict[str, float] = {}
        self._ev: Evaluator | None = None
        self._preset: str | None = None  # digest of the preset now judging, if any
        self._baseline_checked = False
        self._base_batch: int | None = None

    def evaluator(self) -> Evaluator:
        if self._ev is None:
            from editproof.evaluation import Evaluator
            from editproof.suite.config import evaluation_config

            cfg = evaluation_config(
                self.config, self.source, tuned_params=self.tuned_path or "", device=self.device
            )
            if self.tuned_path is None:
                cfg = replace(cfg, tuned_params=None)
            t0 = time.perf_counter()
            # Every spec this model will be judged with is resolved against the loaded model
            # (clean params, scopes) before the baseline is measured: a misfit fails in
            # seconds, naming the spec.
            self._ev = Evaluator(
                cfg, self.say, edits=self.specs, on_windows=self.on_windows, tuned=self.tuned
            )
            self.timings["evaluator_setup"] = time.perf_counter() - t0
            self._base_batch = self._ev.config.batch_size  # resolved when auto
        return self._ev

    def _batch_size(self, ev: Evaluator) -> int:
        """The batch a task without its own (an OOM retry's) measures with."""
        return int(self._base_batch or ev.config.batch_size or 1)

    def measure(self, spec: TaskSpec) -> dict[str, str]:
        task = spec.task
        if task.type == SETUP:
            ev = self.evaluator()
            record = baseline_record(ev, self.model)
            return {str(layout.baseline(self.config, self.model)): _json(record)}
        ev = self.evaluator()  # every other task needs the baseline (built once)
        if spec.baseline is not None and not self._baseline_checked:
            check_baseline(spec.baseline, baseline_record(ev, self.model), self.model)
            self._baseline_checked = True
        if task.type == CALIBRATE:
            return self._calibrate(ev, task)
        if task.type == PRESET:
            return self._preset_task(ev, spec)
        if task.type in (EVAL, REPEAT):
            return self._evaluate(ev, spec)
        raise EvaluationError(f"unknown task type '{task.type}'")

    def _calibrate(self, ev: Evaluator, task: Task) -> dict[str, str]:
        from editproof.calibration.null_sweep import null_sweep

        sweep = null_sweep(ev, [int(task.params["seed"])], progress=self.say)
        rel = layout.calibration_run(self.config, self.model, int(task.run or 0))
        return {str(rel): _json(sweep.runs[0].model_dump(mode="json"))}

    def _preset_task(self, ev: Evaluator, spec: TaskSpec) -> dict[str, str]:
        from editproof.calibration.null_sweep import SeedRun
        from editproof.calibration.preset import preset_files
        from editproof.suite.presets import suite_preset

        runs = [SeedRun.model_validate_json(text) for text in spec.calibration]
        if not runs:
            return {}  # no calibration: the packaged tier judges
        preset = suite_preset(
            model_id=self.model,
            tier=ev.tier,
            runs=runs,
            baseline=self.model,
            weight_sha256=ev.base_digest.sha256,
            seq_len=ev.plan.seq_len,
            n_windows=self.config.n_windows,
            baseline_seed=self.config.seed,
        )
        return {str(layout.PRESETS / name): text for name, text in preset_files(preset).items()}

    def _use_preset(self, ev: Evaluator, preset: tuple[str, str] | None) -> None:
        """Judge evaluations under the tier with this model's preset, when it has one."""
        if preset is None:
            return
        rel, text = preset
        digest = text_sha256(text)
        if digest == self._preset:
            return
        from editproof.calibration import apply_preset
        from editproof.calibration.preset import Preset

        policy = apply_preset(ev.tier, Preset.model_validate(json.loads(text)))
        ev.use_policy(policy, f"preset {rel} (sha256 {digest})")
        self._preset = digest

    def _evaluate(self, ev: Evaluator, spec: TaskSpec) -> dict[str, str]:
        from editproof.report.html import render_html
        from editproof.report.io import report_json

        task = spec.task
        self._use_preset(ev, spec.preset)
        batch = int(task.params.get("batch_size") or self._batch_size(ev))
        if batch != ev.config.batch_size:
            ev.config = replace(ev.config, batch_size=batch)
            ev.guard_ctx = ev.guard_ctx.model_copy(update={"batch_size": batch})
        report = ev.judge_edit(str(task.params["spec"]))
        folder = layout.task_dir(self.config, task)
        outputs = {str(folder / "evaluation.report.json"): report_json(report)}
        for name, sidecar in report.guards.probes.items():
            outputs[str(folder / f"{name}.json")] = json.dumps(sidecar, indent=2)
        outputs[str(folder / "evaluation.html")] = render_html(report)
        return outputs


# What a measurer's own baseline must share with the run's baseline.json, exactly.
BASELINE_KEYS = (
    "weight_sha256", "plan_digest", "seq_len", "dtype", "preview", "final", "guard_contracts",
)  # fmt: skip


def check_baseline(stored_text: str, mine: dict[str, Any], model: str) -> None:
    """A measurer that did not write ``baseline.json`` (a replica on another GPU, one started
    after a crash, a Ray actor) must have measured exactly that baseline; otherwise its
    reports would compare against other numbers than the rest of the suite's."""
    stored = json.loads(stored_text)
    differs = [k for k in BASELINE_KEYS if stored.get(k) != mine.get(k)]
    if differs:
        raise EditproofError(
            f"the baseline of {model} measured here differs from the run's baseline.json in "
            f"{', '.join(differs)}: the model, text or numerics are not reproducible on this "
            "device (try --determinism strict)"
        )


def _json(data: Any) -> str:
    return json.dumps(data, indent=2) + "\n"


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

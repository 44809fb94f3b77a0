"""``run_suite``: check everything cheap, write the run's state, plan, execute, judge.

Order matters: every check that needs no model — suite, models, catalogue, scenario ids,
specs and tuned params for every model, sources, revisions, the output directory, a resume's
parameters — runs before the first worker starts, so bad input fails in about a second and
nothing already in a run directory is lost.
"""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from collections.abc import Callable, MutableMapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from editproof import __version__
from editproof.edits.tuned import TunedParams
from editproof.errors import NotFoundError, OutputError, UsageError
from editproof.fileio import atomic_write_text, canonical_digest
from editproof.lm.forward import check_forward_name
from editproof.suite import layout
from editproof.suite.config import (
    CALIBRATION_RUNS,
    DEMO_CALIBRATION_RUNS,
    DEMO_RUNS,
    DEMO_SEQ_LEN,
    DEMO_WINDOWS,
    FULL_SEQ_LEN,
    FULL_WINDOWS,
    Determinism,
    Mode,
    SuiteConfig,
    demo_relaxations,
    differences,
    load_config,
)
from editproof.suite.executor import Executor, LocalExecutor, device_slots
from editproof.suite.plan import check_specs, plan_tasks
from editproof.suite.revisions import resolve_revisions
from editproof.suite.store import Store
from editproof.suite.suites import get_suite, model_dirs, resolve_models
from editproof.verdict.catalogue import Catalogue, load_catalogue, parse_catalogue, select

DEFAULT_ROOT = Path("proof_pack_runs")


@dataclass
class SuiteOptions:
    suite: str = "demo"
    models: str | None = None
    scenario_ids: str | None = None
    net: bool = False
    out: Path | None = None
    tier: str = "balanced"
    determinism: Determinism = "throughput"
    repeats: int = 0
    resume: bool = False
    mode: Mode = "full"
    tuned_params: str | None = None
    catalogue: str | None = None
    provider: str = "auto"
    data_path: str | None = None
    data_field: str = "text"
    dataset: str | None = None
    dataset_config: str | None = None
    split: str = "validation"
    revisions: str | None = None
    devices: list[str] | None = None
    device: str = "auto"
    forward: str = "auto"  # auto, native or transformers (lm/forward.py)
    seq_len: int | None = None
    windows: int | None = None
    runs: int | None = None
    calibration_runs: int | None = None
    batch_size: int | None = None  # None: auto, chosen by each worker from its model
    task_timeout_s: float = 6 * 3600
    executor: str = "local"  # local or ray; not part of the run's parameters (resume may switch)
    ray_address: str | None = None
    env: dict[str, str] = field(default_factory=lambda: dict(os.environ))


@dataclass
class SuiteOutcome:
    run_dir: Path
    config: SuiteConfig
    counts: dict[str, int]
    verdict: str | None  # None when no verdict was compiled (calibrate-only)
    verdict_path: Path | None
    seconds: float


Tick = Callable[[Path], None]


def default_out(suite: str, now: datetime | None = None) -> Path:
    stamp = (now or datetime.now(UTC)).strftime("%Y%m%d_%H%M%S")
    return DEFAULT_ROOT / f"{suite}_{stamp}"


def prepare(opts: SuiteOptions) -> tuple[SuiteConfig, Catalogue, TunedParams, Path, list[Any]]:
    """Every check that needs no model; returns the config, effective catalogue, tuned
    params, run dir and the skips. Writes nothing."""
    from editproof.evaluation import tuned_params_for

    suite = get_suite(opts.suite)
    if opts.repeats < 0:
        raise UsageError(f"--repeats must be >= 0, got {opts.repeats}")
    for name, value in (("--seq-len", opts.seq_len), ("--windows", opts.windows)):
        if value is not None and value < (2 if name == "--seq-len" else 1):
            raise UsageError(f"{name} must be at least {2 if name == '--seq-len' else 1}")
    for name, value in (("--runs", opts.runs), ("--calibration-runs", opts.calibration_runs)):
        if value is not None and value < (1 if name == "--runs" else 0):
            raise UsageError(f"{name} is out of range: {value}")
    if opts.batch_size is not None and opts.batch_size < 1:
        raise UsageError(f"--batch-size must be at least 1, got {opts.batch_size}")
    check_forward_name(opts.forward)
    _check_executor(opts)
    models = resolve_models(suite, opts.models, opts.env)
    run_dir = opts.out if opts.out is not None else default_out(suite.name)
    resuming = opts.resume or opts.mode == "run-only"
    if resuming:
        _check_resumable(run_dir)

    ids = None
    if opts.scenario_ids is not None:
        ids = [i.strip() for i in opts.scenario_ids.split(",") if i.strip()]
        if not ids:
            raise UsageError("--scenario-ids names no scenario")
    if resuming and opts.catalogue is None:
        # The effective catalogue of the run is the only source planning may read.
        state = run_dir / layout.SCENARIOS
        catalogue = parse_catalogue(state.read_text(encoding="utf-8"), str(state))
        source = catalogue.selection.source if catalogue.selection else "packaged"
        effective = catalogue
        if ids is not None or suite.name != (
            catalogue.selection.suite if catalogue.selection else suite.name
        ):
            effective = select(catalogue, suite.name, ids, source=source)
    else:
        full = load_catalogue(opts.catalogue)
        effective = select(full, suite.name, ids, source=opts.catalogue or "packaged")
    tuned = tuned_params_for(opts.tuned_params or opts.env.get("PACK_TUNED_EDIT_PARAMS_FILE"))

    _check_sources(models, opts.net)
    dirs = model_dirs(models)
    skips = check_specs(effective, models, tuned)

    demo = suite.demo
    seq_len = opts.seq_len or (DEMO_SEQ_LEN if demo else FULL_SEQ_LEN)
    windows = opts.windows or (DEMO_WINDOWS if demo else FULL_WINDOWS)
    runs = opts.runs or (DEMO_RUNS if demo else None)
    calibration = (
        opts.calibration_runs
        if opts.calibration_runs is not None
        else (DEMO_CALIBRATION_RUNS if demo else CALIBRATION_RUNS)
    )
    relaxations = demo_relaxations(seq_len, windows, runs or 1, calibration) if demo else []
    if not demo and runs is not None:
        relaxations.append(f"--runs {runs}: every scenario runs {runs} time(s)")
    tuned_text = tuned.model_dump_json(indent=2)
    config = SuiteConfig(
        suite=suite.name,
        models=models,
        model_dirs=dirs,
        scenario_ids=ids,
        tier=opts.tier,
        net=opts.net,
        determinism=opts.determinism,
        provider=opts.provider,
        data_path=opts.data_path,
        data_field=opts.data_field,
        dataset=opts.dataset,
        dataset_config=opts.dataset_config,
        split=opts.split,
        repeats=opts.repeats,
        mode=opts.mode,
        seq_len=seq_len,
        n_windows=windows,
        batch_size=opts.batch_size,
        calibration_runs=calibration,
        runs_override=runs,
        relax_token_floor=demo,
        device=opts.device,
        forward=opts.forward,
        devices=opts.devices,
        task_timeout_s=opts.task_timeout_s,
        catalogue_digest=effective.digest(),
        tuned_digest=canonical_digest(json.loads(tuned_text)),
        relaxations=relaxations,
    )
    from editproof.policy import load_tier

    load_tier(config.tier)  # an unknown tier fails here
    _check_corpus(config)
    if opts.executor == "local":
        device_slots(config.devices, config.device)  # bad --devices fails here
    if resuming:
        path = run_dir / layout.CONFIG
        old = load_config(path.read_text("utf-8"), str(path))
        diff = differences(old, config)
        if diff:
            raise UsageError(f"--resume of {run_dir} with different parameters: {'; '.join(diff)}")
    else:
        _check_fresh(run_dir)
    return config, effective, tuned, run_dir, skips


def _check_executor(opts: SuiteOptions) -> None:
    if opts.executor not in ("local", "ray"):
        raise UsageError(f"--executor must be local or ray, got '{opts.executor}'")
    if opts.executor != "ray":
        if opts.ray_address is not None:
            raise UsageError("--ray-address needs --executor ray")
        return
    if opts.devices:
        raise UsageError("--devices is for the local executor; Ray places its actors itself")
    from editproof.suite.ray_executor import check_ray

    check_ray()


def _check_resumable(run_dir: Path) -> None:
    if not (run_dir / layout.CONFIG).is_file() or not (run_dir / layout.SCENARIOS).is_file():
        raise UsageError(
            f"cannot resume {run_dir}: not a suite run directory (no {layout.CONFIG}); "
            "start a new run without --resume"
        )


def _check_fresh(run_dir: Path) -> None:
    if run_dir.exists() and (not run_dir.is_dir() or any(run_dir.iterdir())):
        raise UsageError(
            f"output directory {run_dir} already exists and is not empty; "
            "use --resume to continue that run, or another --out"
        )
    parent = run_dir.parent if not run_dir.exists() else run_dir
    while not parent.exists():
        parent = parent.parent
    if not os.access(parent, os.W_OK):
        raise OutputError(f"cannot write the run directory {run_dir} (no write permission)")


def _check_corpus(config: SuiteConfig) -> None:
    """The text every worker will read: a missing file or unknown provider fails now."""
    from editproof.evalconfig import text_provider
    from editproof.evaluation import load_text
    from editproof.suite.config import evaluation_config

    checked: set[str] = set()  # ``auto`` picks the text per model (pydoc for the demo)
    for model in config.models:
        one = evaluation_config(config, model, tuned_params="", device="cpu")
        provider = text_provider(one)
        if provider not in checked:
            checked.add(provider)
            load_text(one)


def _check_sources(models: list[str], net: bool) -> None:
    """Every model's files, checked without loading; every missing model named at once."""
    from editproof.lm import preflight_source

    missing: list[str] = []
    for model in models:
        try:
            preflight_source(model, net=net)
        except NotFoundError as exc:
            missing.append(exc.message)
    if len(missing) == 1:
        raise NotFoundError(missing[0])
    if missing:
        raise NotFoundError(f"{len(missing)} models are missing: " + "; ".join(missing))


def write_state(
    run_dir: Path,
    config: SuiteConfig,
    effective: Catalogue,
    tuned: TunedParams,
    revisions: dict[str, Any],
) -> None:
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot create the run directory {run_dir}: {exc}") from None
    atomic_write_text(run_dir / layout.CONFIG, config.to_json())
    if not (run_dir / layout.SCENARIOS).is_file() or effective.selection is not None:
        atomic_write_text(run_dir / layout.SCENARIOS, effective.to_json())
    atomic_write_text(run_dir / layout.TUNED, tuned.model_dump_json(indent=2) + "\n")
    atomic_write_text(run_dir / layout.REVISIONS, json.dumps(revisions, indent=2) + "\n")
    atomic_write_text(run_dir / layout.ENVIRONMENT, json.dumps(_environment(), indent=2) + "\n")


def _environment() -> dict[str, Any]:
    return {
        "editproof": __version__,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
    }


def network_env(net: bool, env: MutableMapping[str, str]) -> None:
    """``PACK_NET`` exported; the ``HF_*_OFFLINE`` variables follow it."""
    env["PACK_NET"] = "1" if net else "0"
    for key in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
        env[key] = "0" if net else "1"


def run_suite(
    opts: SuiteOptions, tick: Tick | None = None, say: Callable[[str], None] | None = None
) -> SuiteOutcome:
    started = time.perf_counter()
    say = say or (lambda _m: None)
    config, effective, tuned, run_dir, skips = prepare(opts)
    pins = opts.revisions or opts.env.get("PACK_MODEL_REVISIONS_FILE")
    revisions = resolve_revisions(
        config.models, net=config.net, run_dir=run_dir, revisions_file=pins
    )
    network_env(config.net, os.environ)
    if config.determinism == "strict":
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    write_state(run_dir, config, effective, tuned, revisions)
    store = Store(run_dir)
    try:
        added = store.add_tasks(plan_tasks(config, effective, skips))
        if opts.resume or opts.mode == "run-only":
            reset = store.reset_for_resume()
            changed = store.verify_outputs()
            say(
                f"resume: {added} new task(s), {len(reset)} reset, "
                f"{len(changed)} with changed outputs"
            )
        planned = sum(store.counts().values())
    finally:
        store.close()
    say(f"run dir {run_dir}: {planned} tasks")

    on_tick = (lambda: tick(run_dir)) if tick else None
    executor: Executor
    if opts.executor == "ray":
        from editproof.suite.ray_executor import RayExecutor

        executor = RayExecutor(run_dir, config, opts.ray_address, tick=on_tick)
    else:
        executor = LocalExecutor(run_dir, config, device_slots(config.devices, config.device),
                                 tick=on_tick)  # fmt: skip
    timings = {"prepare": time.perf_counter() - started}
    t0 = time.perf_counter()
    executor.run(config.models)
    timings["execute"] = time.perf_counter() - t0

    from editproof.suite.results import finish_run, read_tasks, write_timings

    tasks = read_tasks(run_dir)
    t0 = time.perf_counter()
    verdict, verdict_path = finish_run(run_dir, config, effective, tasks)
    timings["verdict"] = time.perf_counter() - t0
    counts: dict[str, int] = {}
    for task in tasks:
        counts[task.status] = counts.get(task.status, 0) + 1
    timings["total"] = time.perf_counter() - started
    write_timings(run_dir, timings, tasks)
    return SuiteOutcome(run_dir, config, counts, verdict, verdict_path, timings["total"])

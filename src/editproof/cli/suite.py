"""``editproof suite`` and ``editproof list``: every scenario on every model, one verdict."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer

from editproof.cli import _options as _o
from editproof.errors import EXIT_GATES_FAILED, UsageError

if TYPE_CHECKING:
    from editproof.suite.runner import SuiteOptions, SuiteOutcome

list_app = typer.Typer(help="List suites or scenarios.", no_args_is_help=True)


def suite(
    suite_name: str = typer.Option(
        "demo", "--suite", help="demo, subset, showcase, workshop, full."
    ),
    models: str | None = typer.Option(
        None, "--models", help="Comma-separated model ids overriding the suite (also MODEL_1..8)."
    ),
    scenario_ids: str | None = typer.Option(
        None, "--scenario-ids", help="Comma-separated scenario ids: run exactly these."
    ),
    net: int = _o.NET,
    out: Path | None = typer.Option(
        None, "--out", help="Run directory [./proof_pack_runs/<suite>_<UTC time>]."
    ),
    tier: str = _o.TIER,
    determinism: str = typer.Option("throughput", "--determinism", help="throughput or strict."),
    repeats: int = typer.Option(0, "--repeats", help="Re-run one clean scenario N times."),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in --out."),
    calibrate_only: bool = typer.Option(False, "--calibrate-only", help="Stop after presets."),
    run_only: bool = typer.Option(False, "--run-only", help="Resume after calibration."),
    errors_only: bool = typer.Option(False, "--errors-only", help="Only fault scenarios."),
    tuned_params: str | None = _o.TUNED_PARAMS,
    catalogue: str | None = typer.Option(
        None, "--catalogue", help="A scenarios.json to use instead of the packaged one."
    ),
    revisions: str | None = typer.Option(
        None,
        "--revisions",
        help="model_revisions.json pinning hub models [$PACK_MODEL_REVISIONS_FILE].",
    ),
    devices: str | None = typer.Option(
        None, "--devices", help="GPU slots: 0,1 (one each) or 0+1,2+3 (groups) [all visible]."
    ),
    device: str = _o.DEVICE,
    forward: str = _o.FORWARD,
    executor: str = typer.Option(
        "local",
        "--executor",
        help="local (worker processes on this host's devices) or ray (Ray actors; needs "
        "editproof[ray]). A run may be resumed with the other one.",
    ),
    ray_address: str | None = typer.Option(
        None, "--ray-address", help="Ray cluster to join [$RAY_ADDRESS, else a local one]."
    ),
    provider: str = _o.PROVIDER,
    data: str | None = _o.DATA,
    field: str = _o.FIELD,
    dataset: str | None = _o.DATASET,
    dataset_config: str | None = _o.DATASET_CONFIG,
    split: str = _o.SPLIT,
    seq_len: int | None = typer.Option(
        None, "--seq-len", help="Tokens per window [512; demo 128]."
    ),
    windows: int | None = typer.Option(None, "--windows", help="Windows per set [64; demo 16]."),
    runs: int | None = typer.Option(None, "--runs", help="Runs per scenario [catalogue; demo 1]."),
    calibration_runs: int | None = typer.Option(
        None, "--calibration-runs", help="Calibration runs per model [5; demo 2]."
    ),
    batch_size: str = _o.BATCH_SIZE,
    task_timeout: float = typer.Option(21600, "--task-timeout", help="Seconds per task."),
    quiet: bool = _o.QUIET,
) -> None:
    """Run every scenario on every model of a suite and compile the final verdict."""
    params = dict(locals())
    quiet = params.pop("quiet")
    outcome = run_and_print(suite_options(**params), quiet=quiet)
    if outcome.verdict is not None and outcome.verdict != "PASS":
        raise typer.Exit(EXIT_GATES_FAILED)


def suite_options(
    *,
    suite_name: str,
    models: str | None,
    scenario_ids: str | None,
    net: int,
    out: Path | None,
    tier: str,
    determinism: str,
    repeats: int,
    resume: bool,
    calibrate_only: bool,
    run_only: bool,
    errors_only: bool,
    tuned_params: str | None,
    catalogue: str | None,
    revisions: str | None,
    devices: str | None,
    device: str,
    forward: str,
    executor: str,
    ray_address: str | None,
    provider: str,
    data: str | None,
    field: str,
    dataset: str | None,
    dataset_config: str | None,
    split: str,
    seq_len: int | None,
    windows: int | None,
    runs: int | None,
    calibration_runs: int | None,
    batch_size: str,
    task_timeout: float,
) -> SuiteOptions:
    """``SuiteOptions`` from the options of ``suite`` (shared by ``editproof run``)."""
    from editproof.suite.runner import SuiteOptions

    modes = [m for m, on in (("calibrate-only", calibrate_only), ("run-only", run_only),
                             ("errors-only", errors_only)) if on]  # fmt: skip
    if len(modes) > 1:
        raise UsageError(f"give at most one of --{', --'.join(modes)}")
    if determinism not in ("throughput", "strict"):
        raise UsageError(f"--determinism must be strict or throughput, got '{determinism}'")
    return SuiteOptions(
        suite=suite_name,
        models=models,
        scenario_ids=scenario_ids,
        net=bool(net),
        out=out,
        tier=tier,
        determinism=determinism,  # type: ignore[arg-type]
        repeats=repeats,
        resume=resume,
        mode=modes[0] if modes else "full",  # type: ignore[arg-type]
        tuned_params=tuned_params,
        catalogue=catalogue,
        revisions=revisions,
        provider=provider,
        data_path=data,
        data_field=field,
        dataset=dataset,
        dataset_config=dataset_config,
        split=split,
        devices=[d for d in devices.split(",") if d.strip()] if devices else None,
        device=device,
        forward=forward,
        seq_len=seq_len,
        windows=windows,
        runs=runs,
        calibration_runs=calibration_runs,
        batch_size=_o.parse_batch_size(batch_size),
        task_timeout_s=task_timeout,
        executor=executor,
        ray_address=ray_address,
    )


def run_and_print(opts: SuiteOptions, *, quiet: bool) -> SuiteOutcome:
    """Run the suite with its progress view and print the verdict lines."""
    from editproof.cli._suite_view import SuiteView
    from editproof.suite.runner import run_suite

    with SuiteView(quiet=quiet) as view:
        outcome = run_suite(opts, tick=view.tick, say=view.say)
    counts = ", ".join(f"{n} {s}" for s, n in sorted(outcome.counts.items()))
    if outcome.verdict is None:
        typer.echo(f"calibration done ({counts}); run dir: {outcome.run_dir}")
        return outcome
    typer.echo(f"FINAL VERDICT: {outcome.verdict} ({counts}; {outcome.seconds:.0f}s)")
    if not quiet:
        typer.echo(f"verdict: {outcome.verdict_path}")
        typer.echo(f"run dir: {outcome.run_dir}")
    return outcome


@list_app.command("suites")
def list_suites() -> None:
    """The suites and their models."""
    from editproof.suite.suites import ALIASES, SUITES

    for s in SUITES.values():
        alias = [a for a, t in ALIASES.items() if t == s.name]
        extra = f" (alias: {', '.join(alias)})" if alias else ""
        typer.echo(f"{s.name:<9} {s.description}{extra}")
        for m in s.models:
            typer.echo(f"          {m}")


@list_app.command("scenarios")
def list_scenarios(
    suite_name: str | None = typer.Option(None, "--suite", help="Only this suite's scenarios."),
    catalogue: str | None = typer.Option(None, "--catalogue", help="A scenarios.json file."),
) -> None:
    """The scenario catalogue: id, category, strictness, primary guard, spec."""
    from editproof.suite.suites import get_suite
    from editproof.verdict.catalogue import load_catalogue

    cat = load_catalogue(catalogue)
    wanted = get_suite(suite_name).name if suite_name else None
    for s in cat.scenarios:
        if wanted and not s.in_suite(wanted):
            continue
        suites = ",".join(s.suites) if s.suites is not None else "all"
        typer.echo(
            f"{s.id:<28} {s.category:<15} {s.strictness:<13} {s.primary_guard:<14} "
            f"{s.generation.spec}  [{suites}]"
        )

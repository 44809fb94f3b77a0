"""``editproof evaluate``: one baseline vs one subject, written as a report + HTML page."""

from __future__ import annotations

import json
import threading
from datetime import datetime
from pathlib import Path

import typer

from editproof import _compile_ahead, _preload
from editproof.cli import _options as _o
from editproof.cli._progress import ProgressView
from editproof.errors import EXIT_GATES_FAILED
from editproof.fileio import atomic_write_text
from editproof.lm.libraries import forward_needs_transformers, import_model_libraries
from editproof.report.explain import explain_lines
from editproof.report.io import (
    HTML_NAME,
    REPORT_NAME,
    prepare_output_dir,
    report_json,
)

PROBE_FILES = ("rmt_probe", "ve_probe")
# Report timing keys that ran beside the others (the digest threads): reported under
# "overlapped", never added to the critical path.
OVERLAPPED = {"digest_baseline", "digest_subject", "digest_backups", "guards_warm"}


def _prepare_page() -> None:
    """Compile the HTML page's template (a thread; any error is left to the write)."""
    try:
        from editproof.report.html import prepare

        prepare()
    except Exception:  # render_html reports it in its own words
        pass


def evaluate(
    baseline: str = _o.BASELINE,
    subject: str | None = typer.Option(
        None, "--subject", help="A checkpoint to judge against the baseline (same forms)."
    ),
    edit: str | None = typer.Option(
        None, "--edit", help="Judge the baseline with this edit or fault applied in memory."
    ),
    tuned_params: str | None = _o.TUNED_PARAMS,
    tier: str = _o.TIER,
    preset: str | None = _o.PRESET,
    tier_patch: str | None = _o.TIER_PATCH,
    provider: str = _o.PROVIDER,
    data: str | None = _o.DATA,
    field: str = _o.FIELD,
    dataset: str | None = _o.DATASET,
    dataset_config: str | None = _o.DATASET_CONFIG,
    split: str = _o.SPLIT,
    seq_len: int | None = _o.SEQ_LEN,
    windows: str = _o.WINDOWS,
    batch_size: str = _o.BATCH_SIZE,
    device: str = _o.DEVICE,
    dtype: str = _o.DTYPE,
    forward: str = _o.FORWARD,
    out: Path | None = typer.Option(
        None, "--out", help="Output directory [editproof_runs/evaluate-<time>]."
    ),
    net: int = _o.NET,
    seed: int = _o.SEED,
    relax_token_floor: bool | None = _o.RELAX,
    edit_label: str | None = typer.Option(
        None, "--edit-label", help="Provenance label [noop if same source, else custom]."
    ),
    force: bool = typer.Option(False, "--force", help="Overwrite a report already in --out."),
    html: bool = typer.Option(True, "--html/--no-html", help="Also write evaluation.html."),
    guards: bool = typer.Option(
        True,
        "--guards/--no-guards",
        help="Run the guard chain (invariants, spectral, rmt, variance).",
    ),
    quiet: bool = _o.QUIET,
) -> None:
    """Evaluate SUBJECT against BASELINE on identical token windows."""
    from editproof.cli._timings import ProcessClock

    clock = ProcessClock()
    from editproof.evalconfig import prefetch_text
    from editproof.evaluation import check_config
    from editproof.evaluation import evaluate as run_evaluation

    config = _o.evaluation_config(
        baseline=baseline,
        subject=subject,
        edit=edit,
        tuned_params=tuned_params,
        tier=tier,
        preset=preset,
        tier_patch=tier_patch,
        provider=provider,
        data=data,
        field=field,
        dataset=dataset,
        dataset_config=dataset_config,
        split=split,
        seq_len=seq_len,
        windows=windows,
        batch_size=batch_size,
        device=device,
        dtype=dtype,
        forward=forward,
        net=net,
        seed=seed,
        relax_token_floor=relax_token_floor,
        edit_label=edit_label,
        guards=guards,
    )
    check_config(config)  # typos fail here, before any directory is created
    target = out or Path("editproof_runs") / f"evaluate-{datetime.now():%Y%m%d-%H%M%S}"
    created = not target.exists()
    prepare_output_dir(target, force=force)
    clock.lap("checks")
    try:
        prefetch_text(config)  # the text is read beside the imports
        # What loading needs is imported up front, so each library's seconds get a name.
        imported = import_model_libraries(
            device=device, with_transformers=lambda: forward_needs_transformers(config)
        )
        _o.quiet_libraries()
        clock.replace_lap("imports", imported.timing_keys())
        if html:  # the page's template compiles while the GPU measures
            threading.Thread(target=_prepare_page, name="editproof-page", daemon=True).start()
        with ProgressView(quiet=quiet) as view:  # stderr: bars on a terminal, else lines
            report = run_evaluation(config, progress=view.say, on_windows=view.windows)
    except BaseException:
        # Leave no empty directory behind for a run that produced nothing.
        if created and target.is_dir() and not any(target.iterdir()):
            target.rmdir()
        raise
    clock.lap("evaluation")
    inner = {k: v for k, v in report.provenance.timings.items() if k != "total"}
    clock.expand("evaluation", inner, OVERLAPPED)
    atomic_write_text(target / REPORT_NAME, report_json(report))
    for name in PROBE_FILES:  # a sidecar from an earlier run must not outlive it (--force)
        if name not in report.guards.probes:
            (target / f"{name}.json").unlink(missing_ok=True)
    for name, sidecar in report.guards.probes.items():
        atomic_write_text(target / f"{name}.json", json.dumps(sidecar, indent=2) + "\n")
    if html:
        from editproof.report.html import render_html

        atomic_write_text(target / HTML_NAME, render_html(report))
    clock.lap("write")
    lines = explain_lines(report)
    typer.echo(lines[0] if quiet else "\n".join(lines))
    clock.lap("print")
    overlapped = {k: v for k, v in inner.items() if k in OVERLAPPED}
    if imported.cuda_start:
        overlapped["cuda_start"] = imported.cuda_start
    if "context" in _preload.state:  # the driver's start, beside the imports (cli/_entry.py)
        overlapped["cuda_context"] = float(_preload.state["context"])
    ahead = _compile_ahead.summary()
    if "span" in ahead:  # the workers compiling modules beside the imports (cli/_entry.py)
        overlapped["compile_ahead"] = ahead.pop("span")
    clock.write(target, overlapped, {"compile_ahead": ahead} if ahead else None)
    if not quiet:
        typer.echo(f"report: {target / REPORT_NAME}")
        typer.echo(clock.summary())
    if report.status != "PASS":
        raise typer.Exit(EXIT_GATES_FAILED)

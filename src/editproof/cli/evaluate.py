"""``editproof evaluate``: one baseline vs one subject, written as a report + HTML page."""

from __future__ import annotations

import os
import sys
from datetime import datetime
from pathlib import Path

import typer

from editproof.errors import EXIT_GATES_FAILED, UsageError
from editproof.report.explain import explain_lines
from editproof.report.io import (
    HTML_NAME,
    REPORT_NAME,
    atomic_write_text,
    prepare_output_dir,
    report_json,
)


def parse_windows(text: str) -> tuple[int, int]:
    """``64`` -> 64 preview + 64 final; ``32:96`` -> 32 preview + 96 final."""
    parts = text.split(":")
    try:
        counts = [int(p) for p in parts]
    except ValueError:
        raise UsageError(f"--windows '{text}': use N or PREVIEW:FINAL, e.g. 64 or 32:96") from None
    if len(counts) == 1:
        counts = counts * 2
    if len(counts) != 2 or min(counts) < 1:
        raise UsageError(f"--windows '{text}': use N or PREVIEW:FINAL with positive counts")
    return counts[0], counts[1]


def _quiet_libraries() -> None:
    # Library progress bars and advisories would bury the one-line messages we print.
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import transformers

    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()


def evaluate(
    baseline: str = typer.Option(
        ..., "--baseline", help="'demo', a local model dir, a .gguf file or org/name@rev."
    ),
    subject: str | None = typer.Option(
        None, "--subject", help="A checkpoint to judge against the baseline (same forms)."
    ),
    edit: str | None = typer.Option(
        None, "--edit", help="Judge the baseline with this edit or fault applied in memory."
    ),
    tuned_params: str | None = typer.Option(
        None,
        "--tuned-params",
        help="tuned_edit_params.json for 'clean' specs "
        "[$PACK_TUNED_EDIT_PARAMS_FILE, else shipped defaults].",
    ),
    tier: str = typer.Option("balanced", "--tier", help="balanced, conservative or aggressive."),
    provider: str = typer.Option(
        "pydoc", "--provider", help="Text: pydoc (offline default), text, jsonl or hf."
    ),
    data: str | None = typer.Option(
        None, "--data", help="File or folder for the text/jsonl providers."
    ),
    field: str = typer.Option(
        "text", "--field", help="JSON field (jsonl) or column (hf) holding the text."
    ),
    dataset: str | None = typer.Option(
        None, "--dataset", help="Hugging Face dataset name (hf provider)."
    ),
    dataset_config: str | None = typer.Option(
        None, "--dataset-config", help="Dataset configuration (hf)."
    ),
    split: str = typer.Option("validation", "--split", help="Dataset split (hf)."),
    seq_len: int | None = typer.Option(
        None, "--seq-len", help="Tokens per window [512; 256 for demo]."
    ),
    windows: str = typer.Option("64", "--windows", help="Windows per set: N, or PREVIEW:FINAL."),
    batch_size: int = typer.Option(8, "--batch-size", help="Windows per forward pass."),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda or cuda:N."),
    dtype: str = typer.Option(
        "auto", "--dtype", help="auto (bf16 on CUDA, fp32 on CPU), fp32, bf16, fp16."
    ),
    out: Path | None = typer.Option(
        None, "--out", help="Output directory [editproof_runs/evaluate-<time>]."
    ),
    net: int = typer.Option(
        0, "--net", min=0, max=1, help="1 allows downloads; 0 uses local caches only."
    ),
    seed: int = typer.Option(
        42, "--seed", help="Seed of the window split (the bootstrap uses seed+503)."
    ),
    relax_token_floor: bool | None = typer.Option(
        None,
        "--relax-token-floor/--strict-token-floor",
        help="Relax the tier's token floor (recorded). Default: relaxed only for the demo model.",
    ),
    edit_label: str | None = typer.Option(
        None, "--edit-label", help="Provenance label [noop if same source, else custom]."
    ),
    force: bool = typer.Option(False, "--force", help="Overwrite a report already in --out."),
    html: bool = typer.Option(True, "--html/--no-html", help="Also write evaluation.html."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Print only the verdict line."),
) -> None:
    """Evaluate SUBJECT against BASELINE on identical token windows."""
    from editproof.evaluation import EvaluationConfig, check_config
    from editproof.evaluation import evaluate as run_evaluation

    n_preview, n_final = parse_windows(windows)
    config = EvaluationConfig(
        baseline=baseline,
        subject=subject,
        edit=edit,
        tuned_params=tuned_params,
        tier=tier,
        provider=provider,
        data_path=data,
        data_field=field,
        dataset=dataset,
        dataset_config=dataset_config,
        split=split,
        seq_len=seq_len,
        n_preview=n_preview,
        n_final=n_final,
        batch_size=batch_size,
        device=device,
        dtype=dtype,
        net=bool(net),
        seed=seed,
        relax_token_floor=relax_token_floor,
        edit_label=edit_label,
        command=["editproof", *sys.argv[1:]],
    )
    check_config(config)  # typos fail here, before any directory is created
    target = out or Path("editproof_runs") / f"evaluate-{datetime.now():%Y%m%d-%H%M%S}"
    prepare_output_dir(target, force=force)
    _quiet_libraries()
    say = (lambda _m: None) if quiet else (lambda m: typer.echo(f"· {m}", err=True))
    report = run_evaluation(config, progress=say)
    atomic_write_text(target / REPORT_NAME, report_json(report))
    if html:
        from editproof.report.html import render_html

        atomic_write_text(target / HTML_NAME, render_html(report))
    lines = explain_lines(report)
    typer.echo(lines[0] if quiet else "\n".join(lines))
    if not quiet:
        typer.echo(f"report: {target / REPORT_NAME}")
    if report.status != "PASS":
        raise typer.Exit(EXIT_GATES_FAILED)

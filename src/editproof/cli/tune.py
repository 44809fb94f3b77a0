"""``editproof tune``: find the most aggressive passing params and record them."""

from __future__ import annotations

from pathlib import Path

import typer

from editproof.cli import _options as _o


def tune(
    baseline: str = _o.BASELINE,
    edit_types: list[str] = typer.Option(
        ...,
        "--edit-type",
        help="quant_rtn, fp8_quant, magnitude_prune or lowrank_svd "
        "(repeat the option for several).",
    ),
    out: Path = typer.Option(
        Path("tuned_edit_params.json"), "--out", help="Tuned params file to create or update."
    ),
    model_id: str | None = typer.Option(
        None, "--model-id", help="Key under 'models' [hub id, 'demo', or the directory name]."
    ),
    scope: str | None = typer.Option(
        None, "--scope", help="Scope to tune [ffn; ffn@layer=last for lowrank_svd]."
    ),
    group_size: int = typer.Option(32, "--group-size", help="Group size for quant_rtn."),
    margin: float = typer.Option(
        0.0, "--margin", help="CI upper bound must stay this far below the tier's limit."
    ),
    seeds: int = typer.Option(
        1, "--seeds", help="Window samples a candidate must pass on (seed, seed+1, ...)."
    ),
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
    net: int = _o.NET,
    seed: int = _o.SEED,
    relax_token_floor: bool | None = _o.RELAX,
    quiet: bool = _o.QUIET,
) -> None:
    """Bisect each edit type's parameters against the tier gates on BASELINE."""
    from editproof.edits import TunedParams, load_tuned, parse_scope, save_tuned
    from editproof.errors import UsageError
    from editproof.evaluation import Evaluator, check_config, model_key
    from editproof.lm import parse_source
    from editproof.tuning import candidates, default_scope, merge, spec_text, tune_edit_type

    for edit_type in edit_types:
        candidates(edit_type)  # unknown types fail before anything loads
    if scope is not None:
        parse_scope(scope)
    existing = load_tuned(out) if out.exists() else TunedParams()
    config = _o.evaluation_config(
        baseline=baseline,
        edit="noop",
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
    )
    check_config(config)
    key = model_id or model_key(parse_source(baseline))
    _o.quiet_libraries()
    say = _o.progress(quiet)
    # The mildest candidate of each type is resolved against the loaded model before the
    # baseline is measured, so a --scope that matches nothing fails in seconds.
    first = [
        spec_text(t, candidates(t, group_size=group_size)[0], scope or default_scope(t))
        for t in edit_types
    ]
    if seeds < 1:
        raise UsageError(f"--seeds must be at least 1, got {seeds}")
    evaluator = Evaluator(config, say, edits=first)
    # Other window samples of the same weights: the baseline is re-measured on each once.
    others = [evaluator.reseeded(seed + k) for k in range(1, seeds)]
    results = []
    for edit_type in edit_types:
        result = tune_edit_type(
            evaluator,
            edit_type,
            scope=scope,
            group_size=group_size,
            progress=say,
            margin=margin,
            others=others,
        )
        results.append(result)
        entry = result.entry
        chosen = ", ".join(f"{k}={v}" for k, v in entry.params.items()) or "-"
        typer.echo(f"{edit_type}: {entry.status} ({chosen}) — {entry.reason}")
        # Save after every type, so an interrupted tune keeps what it already found.
        save_tuned(out, merge(existing, key, results))
    typer.echo(f"wrote {out} (models.{key})")

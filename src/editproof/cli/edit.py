"""``editproof edit``: write an edited checkpoint (safetensors + edit_metadata.json)."""

from __future__ import annotations

from pathlib import Path

import typer

from editproof.cli import _options as _o


def edit(
    baseline: str = _o.BASELINE,
    spec: str = typer.Option(..., "--edit", help="Edit or fault spec, e.g. quant_rtn:4:32:ffn."),
    save: Path = typer.Option(..., "--save", help="New directory for the edited checkpoint."),
    tuned_params: str | None = _o.TUNED_PARAMS,
    device: str = _o.DEVICE,
    dtype: str = _o.DTYPE,
    net: int = _o.NET,
) -> None:
    """Apply an edit to BASELINE and save the result; evaluate it later with --subject DIR."""
    from editproof.checkpoints import save_edited
    from editproof.edits import parse_spec
    from editproof.lm import parse_source

    parse_source(baseline)  # typos fail before the model loads
    parse_spec(spec)
    _o.quiet_libraries()
    saved = save_edited(
        baseline,
        spec,
        save,
        tuned_params=tuned_params,
        device=device,
        dtype=dtype,
        net=bool(net),
    )
    error = "n/a" if saved.rel_error is None else f"{saved.rel_error:.4g}"
    typer.echo(
        f"saved {saved.spec} to {saved.path} (relative weight error {error}, "
        f"weights sha256 {saved.weight_sha256[:16]})"
    )

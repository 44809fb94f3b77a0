"""``editproof calibrate``: null sweep (tier patch) and per-model preset derivation."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from editproof.cli import _options as _o
from editproof.errors import OutputError, UsageError

if TYPE_CHECKING:
    from editproof.evaluation import Evaluator

app = typer.Typer(
    help="Calibrate guard thresholds on a model: null sweep, per-model presets, probe strengths.",
    no_args_is_help=True,
)

OUT = typer.Option(..., "--out", help="Output directory (created if missing).")
SEED_START = typer.Option(
    42, "--seed-start", help="First measurement seed (the baseline's --seed is skipped)."
)


@app.command("null-sweep")
def null_sweep_cmd(
    baseline: str = _o.BASELINE,
    seeds: int = typer.Option(10, "--seeds", help="Number of measurement seeds to sweep."),
    seed_start: int = SEED_START,
    margin: float = typer.Option(0.05, "--margin", help="Safety margin on kappa and epsilon."),
    target_warning_rate: float = typer.Option(
        0.01, "--target-warning-rate", help="Highest acceptable null any-warning rate."
    ),
    tier: str = _o.TIER,
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
    out: Path = OUT,
    quiet: bool = _o.QUIET,
) -> None:
    """Re-measure BASELINE under other seeds; recommend kappa, epsilon and alpha."""
    from editproof.calibration import null_sweep, sweep_seeds, write_null_sweep

    seed_list = sweep_seeds(seed_start, seeds, exclude=seed)
    _check_rates(margin, target_warning_rate)
    evaluator = _evaluator(out, quiet, **_eval_args(locals()))
    result = null_sweep(
        evaluator,
        seed_list,
        margin=margin,
        target_warning_rate=target_warning_rate,
        progress=_o.progress(quiet),
    )
    rec = result.recommendations
    _table(rec.kappa, rec.epsilon, rec.max_log_ratio)
    typer.echo(
        f"alpha    {rec.alpha:g} ({rec.alpha_method}, {rec.alpha_halvings} halving(s); "
        f"null warning rate {rec.any_warning_rate:.3g} -> {rec.warning_rate_after:.3g})"
    )
    if rec.note:
        typer.echo(f"note     {rec.note}")
    _wrote(write_null_sweep(result, out))


@app.command("preset")
def preset_cmd(
    baseline: str = _o.BASELINE,
    runs: int = typer.Option(5, "--runs", help="Null-sweep measurement seeds."),
    seed_start: int = SEED_START,
    clean_specs: str | None = typer.Option(
        None,
        "--clean-specs",
        help="Comma-separated clean edits [quant_rtn, fp8_quant, magnitude_prune and "
        "lowrank_svd, each as TYPE:clean:ffn].",
    ),
    tuned_params: str | None = _o.TUNED_PARAMS,
    model_id: str | None = typer.Option(
        None, "--model-id", help="Preset key and file name [hub id, 'demo', or the dir name]."
    ),
    margin: float = typer.Option(0.10, "--margin", help="Safety margin on every override."),
    tier: str = _o.TIER,
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
    out: Path = OUT,
    quiet: bool = _o.QUIET,
) -> None:
    """Derive calibrated_preset_<model>.json/.yaml from a null sweep plus clean edits."""
    from editproof.calibration import (
        DEFAULT_CLEAN_SPECS,
        derive_preset,
        safe_model_id,
        sweep_seeds,
        write_preset,
    )
    from editproof.edits import parse_spec
    from editproof.evaluation import model_key
    from editproof.lm import parse_source

    seed_list = sweep_seeds(seed_start, runs, exclude=seed, option="--runs")
    _check_rates(margin, 0.0)
    specs = (
        [s.strip() for s in clean_specs.split(",") if s.strip()]
        if clean_specs is not None
        else list(DEFAULT_CLEAN_SPECS)
    )
    if not specs:
        raise UsageError("--clean-specs is empty: give at least one spec, e.g. quant_rtn:clean:ffn")
    for spec in specs:
        parse_spec(spec)
    key = model_id if model_id is not None else model_key(parse_source(baseline))
    safe_model_id(key)  # an unusable id fails before the model loads
    evaluator = _evaluator(out, quiet, tuned_params=tuned_params, **_eval_args(locals()))
    preset = derive_preset(
        evaluator,
        seeds=seed_list,
        clean_specs=specs,
        model_id=key,
        margin=margin,
        progress=_o.progress(quiet),
    )
    guards = preset.overrides.guards
    _table(guards.spectral.kappa, guards.rmt.epsilon, guards.spectral.max_log_ratio)
    band = preset.overrides.drift_band
    typer.echo(f"drift    {f'[{band[0]:g}, {band[1]:g}]' if band else 'tier band kept'}")
    typer.echo(f"min_eff  {guards.variance.min_effect:g}")
    for skip in preset.evidence.skipped:
        typer.echo(f"skipped  {skip.spec}: {skip.reason}")
    _wrote(write_preset(preset, out))


@app.command("probes")
def probes_cmd(
    baseline: str = _o.BASELINE,
    probes: list[str] | None = typer.Option(
        None,
        "--probe",
        help="rmt_norm_noise, spectral_moderate_scale or ve_mlp_scale_skew (repeat the "
        "option for several) [all three].",
    ),
    out: Path = typer.Option(
        Path("tuned_edit_params.json"),
        "--out",
        help="Tuned params file to create or update (its 'probes' section).",
    ),
    model_id: str | None = typer.Option(
        None, "--model-id", help="Key under 'probes' [hub id, 'demo', or the directory name]."
    ),
    tier: str = _o.TIER,
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
    """Find, per probe, a strength that stays subtle while its own guard signals."""
    from editproof.calibration.probes import PROBES, calibrate_probe, merge_probes
    from editproof.edits import TunedParams, load_tuned, save_tuned
    from editproof.evaluation import Evaluator, check_config, model_key
    from editproof.lm import parse_source

    chosen = list(probes or PROBES)
    unknown = [p for p in chosen if p not in PROBES]
    if unknown:
        raise UsageError(f"unknown probe '{unknown[0]}': choose from {', '.join(PROBES)}")
    if not out.parent.is_dir():
        raise OutputError(f"cannot write {out}: no such directory")
    existing = load_tuned(out) if out.exists() else TunedParams()
    config = _o.evaluation_config(
        edit="noop", tuned_params=None, preset=None, tier_patch=None, **_eval_args(locals())
    )
    check_config(config)
    key = model_id or model_key(parse_source(baseline))
    _o.quiet_libraries()
    say = _o.progress(quiet)
    evaluator = Evaluator(config, say)
    results = []
    for probe in chosen:
        result = calibrate_probe(evaluator, probe, model_id=key, tuned=existing, progress=say)
        results.append(result)
        entry = result.entry
        params = ", ".join(f"{k}={v}" for k, v in entry.params.items()) or "-"
        typer.echo(f"{probe}: {entry.status} ({params}) — {entry.reason}")
        # Save after every probe, so an interrupted run keeps what it already found.
        save_tuned(out, merge_probes(existing, key, results))
    typer.echo(f"wrote {out} (probes.{key})")


# --- helpers --------------------------------------------------------------------------------

_EVAL_KEYS = (
    "baseline",
    "tier",
    "provider",
    "data",
    "field",
    "dataset",
    "dataset_config",
    "split",
    "seq_len",
    "windows",
    "batch_size",
    "device",
    "dtype",
    "forward",
    "net",
    "seed",
    "relax_token_floor",
)


def _eval_args(scope: dict[str, Any]) -> dict[str, Any]:
    """The evaluation options out of a command's locals (both commands share them)."""
    return {k: scope[k] for k in _EVAL_KEYS}


def _evaluator(out: Path, quiet: bool, *, tuned_params: str | None = None, **kw: Any) -> Evaluator:
    """Check everything cheap, make ``out``, then load and measure the baseline once."""
    from editproof.evaluation import Evaluator, check_config

    # Calibration measures against the packaged tier itself: no preset or patch on top.
    config = _o.evaluation_config(
        edit="noop", tuned_params=tuned_params, preset=None, tier_patch=None, **kw
    )
    check_config(config)
    _prepare(out)
    _o.quiet_libraries()
    return Evaluator(config, _o.progress(quiet))


def _check_rates(margin: float, target: float) -> None:
    if not margin >= 0:
        raise UsageError(f"--margin must be a non-negative number, got {margin}")
    if not 0 <= target < 1:
        raise UsageError(f"--target-warning-rate must be in [0, 1), got {target}")


def _prepare(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise OutputError(f"output path '{out}' exists and is not a directory")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot create output directory '{out}': {exc.strerror}") from None


def _table(kappa: dict[Any, float], epsilon: dict[Any, float], log_ratio: dict[Any, float]) -> None:
    families = sorted({str(f) for f in (*kappa, *epsilon, *log_ratio)})
    typer.echo(f"{'family':<8} {'kappa':>7} {'epsilon':>8} {'max|log r|':>10}")

    def show(values: dict[Any, float], fam: str, fmt: str) -> str:
        return format(values[fam], fmt) if fam in values else "-"

    for fam in families:
        typer.echo(
            f"{fam:<8} {show(kappa, fam, '.3f'):>7} {show(epsilon, fam, '.4f'):>8} "
            f"{show(log_ratio, fam, '.4f'):>10}"
        )


def _wrote(paths: list[Path]) -> None:
    for path in paths:
        typer.echo(f"wrote    {path}")

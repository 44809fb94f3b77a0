"""Options shared by several commands, declared once so their help text cannot drift."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from editproof.errors import UsageError
from editproof.fileio import file_sha256

if TYPE_CHECKING:
    from editproof.evaluation import EvaluationConfig
    from editproof.policy import TierPolicy

BASELINE = typer.Option(
    ..., "--baseline", help="'demo', a local model dir, a .gguf file or org/name@rev."
)
TUNED_PARAMS = typer.Option(
    None,
    "--tuned-params",
    help="tuned_edit_params.json for 'clean' specs "
    "[$PACK_TUNED_EDIT_PARAMS_FILE, else shipped defaults].",
)
TIER = typer.Option("balanced", "--tier", help="balanced, conservative or aggressive.")
PROVIDER = typer.Option(
    "auto",
    "--provider",
    help="Text: pydoc, stdlib (pydoc + stdlib docstrings, 2.7x), text, jsonl or hf. "
    "auto: text/jsonl with --data, hf with --dataset, else pydoc for the demo model and "
    "stdlib for others (all offline).",
)
DATA = typer.Option(None, "--data", help="File or folder for the text/jsonl providers.")
FIELD = typer.Option("text", "--field", help="JSON field (jsonl) or column (hf) holding the text.")
DATASET = typer.Option(None, "--dataset", help="Hugging Face dataset name (hf provider).")
DATASET_CONFIG = typer.Option(None, "--dataset-config", help="Dataset configuration (hf).")
SPLIT = typer.Option("validation", "--split", help="Dataset split (hf).")
SEQ_LEN = typer.Option(None, "--seq-len", help="Tokens per window [512; 256 for demo].")
WINDOWS = typer.Option("64", "--windows", help="Windows per set: N, or PREVIEW:FINAL.")
BATCH_SIZE = typer.Option(
    "auto",
    "--batch-size",
    help="Windows per forward pass, or auto: 8 on a CPU; on a GPU up to 32 (16,384 tokens), "
    "as the device's memory allows.",
)
DEVICE = typer.Option("auto", "--device", help="auto, cpu, cuda or cuda:N.")
FORWARD = typer.Option(
    "auto",
    "--forward",
    help="auto (native on one GPU when every model can take it, else transformers), "
    "native or transformers.",
)
DTYPE = typer.Option("auto", "--dtype", help="auto (bf16 on CUDA, fp32 on CPU), fp32, bf16, fp16.")
NET = typer.Option(0, "--net", min=0, max=1, help="1 allows downloads; 0 uses local caches only.")
SEED = typer.Option(42, "--seed", help="Seed of the window split (the bootstrap uses seed+503).")
RELAX = typer.Option(
    None,
    "--relax-token-floor/--strict-token-floor",
    help="Relax the tier's token floor (recorded). Default: relaxed only for the demo model.",
)
QUIET = typer.Option(False, "--quiet", "-q", help="Print only the verdict line(s).")
PRESET = typer.Option(
    None, "--preset", help="calibrated_preset_<model>.json/.yaml to merge into the tier."
)
TIER_PATCH = typer.Option(
    None, "--tier-patch", help="tiers_patch_null.json from `calibrate null-sweep` to merge first."
)


def resolve_policy(
    tier: str, preset: str | None, patch: str | None = None
) -> tuple[TierPolicy | None, str | None]:
    """The tier with a null-sweep patch and/or a preset merged in, as a new policy (the
    packaged tiers are never modified), and a line saying where it came from."""
    if preset is None and patch is None:
        return None, None
    if preset is not None and patch is not None:
        # A preset already folds in its own null sweep; stacking both would double-count.
        raise UsageError("give --preset or --tier-patch, not both")
    from editproof.calibration import apply_preset, apply_tier_patch, load_preset
    from editproof.policy import load_tier

    policy = load_tier(tier)
    sources = []
    if patch is not None:
        policy = apply_tier_patch(policy, patch)
        sources.append(f"tier patch {patch} (sha256 {_file_sha256(patch)})")
    if preset is not None:
        policy = apply_preset(policy, load_preset(preset))
        sources.append(f"preset {preset} (sha256 {_file_sha256(preset)})")
    return policy, "; ".join(sources)


def evaluation_config(
    *,
    windows: str,
    data: str | None,
    field: str,
    net: int,
    tier: str,
    preset: str | None,
    tier_patch: str | None,
    **rest: Any,
) -> EvaluationConfig:
    """An EvaluationConfig from the shared CLI options (names as the CLI spells them)."""
    from editproof.evaluation import EvaluationConfig

    n_preview, n_final = parse_windows(windows)
    if "batch_size" in rest:
        rest["batch_size"] = parse_batch_size(rest["batch_size"])
    policy, policy_source = resolve_policy(tier, preset, tier_patch)
    return EvaluationConfig(
        tier=tier,
        policy=policy,
        policy_source=policy_source,
        data_path=data,
        data_field=field,
        n_preview=n_preview,
        n_final=n_final,
        net=bool(net),
        command=["editproof", *sys.argv[1:]],
        **rest,
    )


def _file_sha256(path: str) -> str:
    return file_sha256(Path(path))


def parse_batch_size(value: str | int | None) -> int | None:
    """``auto`` (or None) -> None, chosen once the model is loaded; else a positive count."""
    if value is None or value == "auto":
        return None
    try:
        size = int(value)
    except ValueError:
        raise UsageError(f"--batch-size '{value}': use a positive number or auto") from None
    if size < 1:
        raise UsageError(f"--batch-size must be at least 1, got {size}")
    return size


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


def quiet_libraries() -> None:
    """Silence library progress bars and advisories that would bury our one-line messages."""
    from editproof.lm.libraries import quiet_transformers

    quiet_transformers()


def progress(quiet: bool) -> Callable[[str], None]:
    """Progress lines go to stderr, so stdout stays the verdict alone."""

    def say(message: str) -> None:
        if not quiet:
            typer.echo(f"· {message}", err=True)

    return say

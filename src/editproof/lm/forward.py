"""Which forward runs a model: editproof's native Llama-family forward, or transformers'.

``auto`` takes the native forward when every model of the run can take it and the run is on
one GPU: importing transformers' modeling stack costs 5 to 10 s per process on the GPU hosts
measured (docs/performance.md), more than the whole measurement of a 64+64-window run. On the
CPU ``auto`` keeps transformers (the import is a small share of a CPU run there). ``native``
asks for it and fails with the reason when a model cannot take it; ``transformers`` never
uses it. Both arms of an evaluation always run the same forward.

A model takes the native forward when it is a ``random:`` shape, a local directory or the
demo, its ``config.json`` is one the native forward covers (:mod:`editproof.lm.native.config`),
and a checkpoint's safetensors hold exactly the model's tensors. Everything else (GGUF files,
hub ids, ``pytorch_model.bin``, a model spread over several GPUs) runs through transformers.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from editproof.errors import UsageError
from editproof.lm.sources import ModelSource

FORWARDS = ("auto", "native", "transformers")


@dataclass(frozen=True)
class NativePlan:
    """What the native build needs: the config, and the safetensors files (none: random)."""

    folder: Path
    config: dict[str, Any]
    files: tuple[Path, ...]


def check_forward_name(forward: str) -> str:
    if forward not in FORWARDS:
        raise UsageError(f"unknown --forward '{forward}': use {', '.join(FORWARDS)}")
    return forward


def source_folder(source: ModelSource) -> Path | None:
    """The directory holding the model's config and tokenizer files, when it has one."""
    if source.kind == "demo":
        from editproof.lm.demo import demo_dir

        return demo_dir()
    if source.kind in ("local", "random"):
        return source.path
    return None


def native_plan(source: ModelSource) -> NativePlan | str:
    """The native build of ``source``, or the reason it cannot have one. Reads the config and
    the safetensors headers only (sound headers are checked by the preflight)."""
    import json

    from editproof.lm.native.config import unsupported_reason

    if source.kind not in ("demo", "local", "random"):
        return f"a {source.kind} source"
    folder = source_folder(source)
    if folder is None or not (folder / "config.json").is_file():
        return "no config.json"
    try:
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        return f"config.json unreadable ({exc})"
    if not isinstance(config, dict):
        return "config.json is not an object"
    reason = unsupported_reason(config)
    if reason:
        return reason
    if source.kind == "random":
        return NativePlan(folder, config, ())
    return _checkpoint_plan(folder, config)


def _checkpoint_plan(folder: Path, config: dict[str, Any]) -> NativePlan | str:
    """The plan when the safetensors (headers read once) hold exactly the model's tensors."""
    from editproof.errors import EditproofError
    from editproof.lm.native.build import key_mismatch
    from editproof.lm.native.config import NativeConfig
    from editproof.lm.preflight import model_dir_tensors

    try:
        tensors = model_dir_tensors(folder)
    except EditproofError as exc:
        return str(exc)
    if not tensors or any(f.suffix != ".safetensors" for f in tensors):
        return "weights are not safetensors"
    why = key_mismatch(NativeConfig(config), set().union(*tensors.values()))
    return why if why else NativePlan(folder, config, tuple(tensors))


def spread_over_gpus(device: str) -> bool:
    """True when ``device`` (as asked, before resolution) shares a model over several GPUs."""
    import torch

    return device == "cuda" and torch.cuda.device_count() > 1


def choose_forward(
    requested: str, sources: list[ModelSource], device: str, resolved: str
) -> tuple[str, dict[str, NativePlan]]:
    """``("native", plans by source identity)`` or ``("transformers", {})`` for a run of
    ``sources`` on ``device`` (``resolved``: what it resolved to). UsageError when
    ``native`` was asked for and one source cannot take it."""
    check_forward_name(requested)
    if requested == "transformers":
        return "transformers", {}
    if requested == "auto" and not resolved.startswith("cuda"):
        return "transformers", {}
    if spread_over_gpus(device):
        if requested == "native":
            raise UsageError("--forward native runs on one device; this model spreads over GPUs")
        return "transformers", {}
    plans: dict[str, NativePlan] = {}
    for source in sources:
        plan = native_plan(source)
        if isinstance(plan, str):
            if requested == "native":
                raise UsageError(f"--forward native cannot run '{source.label}': {plan}")
            return "transformers", {}
        plans[repr(source.identity)] = plan
    return "native", plans


def forward_for(
    requested: str, baseline: str, subject: str | None, device: str
) -> tuple[str, dict[str, NativePlan]]:
    """:func:`choose_forward` for an evaluation of ``baseline`` (and a ``subject``
    checkpoint, if any) on ``device`` as the user spelled them."""
    from editproof.lm.loading import resolve_device
    from editproof.lm.sources import parse_source

    sources = [parse_source(baseline)]
    if subject is not None:
        sources.append(parse_source(subject))
    return choose_forward(requested, sources, device, resolve_device(device))

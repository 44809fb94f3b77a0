"""Named suites (the seed's model lists plus ``demo``) and model-list overrides."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from dataclasses import dataclass

from editproof.calibration.preset import safe_model_id
from editproof.errors import UsageError

MAX_MODELS = 8


@dataclass(frozen=True)
class Suite:
    name: str
    models: tuple[str, ...]
    description: str
    demo: bool = False  # the embedded model on CPU, with recorded relaxations


MISTRAL_7B = "mistralai/Mistral-7B-v0.1"
QWEN_14B = "Qwen/Qwen2.5-14B"
QWEN_32B = "Qwen/Qwen2.5-32B"
MIXTRAL = "mistralai/Mixtral-8x7B-v0.1"
YI_34B = "01-ai/Yi-34B"
QWEN_72B = "Qwen/Qwen1.5-72B"

SUITES: dict[str, Suite] = {
    s.name: s
    for s in (
        Suite("demo", ("demo",), "embedded SmolLM2-135M on CPU, offline, minutes", demo=True),
        Suite("subset", (MISTRAL_7B,), "one 7B model; single-GPU friendly"),
        Suite("showcase", (MISTRAL_7B, QWEN_14B, QWEN_32B), "7B-32B; multi-GPU recommended"),
        Suite("workshop", (MISTRAL_7B, MIXTRAL, YI_34B), "architecture diversity (dense, MoE)"),
        Suite(
            "full",
            (MISTRAL_7B, QWEN_14B, QWEN_32B, YI_34B, MIXTRAL, QWEN_72B),
            "7B-72B; multi-GPU",
        ),
    )
}
ALIASES = {"workshop3": "workshop"}


def get_suite(name: str) -> Suite:
    key = ALIASES.get(name, name)
    if key not in SUITES:
        raise UsageError(
            f"unknown suite '{name}'; available: {', '.join(SUITES)} (workshop3 = workshop)"
        )
    return SUITES[key]


def resolve_models(
    suite: Suite, models_csv: str | None, env: Mapping[str, str] | None = None
) -> list[str]:
    """``--models`` wins, then ``MODEL_1..MODEL_8`` (when any is set), else the suite's list."""
    env = os.environ if env is None else env
    if models_csv is not None:
        models = [m.strip() for m in models_csv.split(",") if m.strip()]
        origin = "--models"
    elif any(f"MODEL_{i}" in env for i in range(1, MAX_MODELS + 1)):
        # A slot set to the empty string disables that slot (the seed's convention).
        models = [env[k].strip() for i in range(1, MAX_MODELS + 1) if env.get(k := f"MODEL_{i}")]
        models = [m for m in models if m]
        origin = "MODEL_1..MODEL_8"
    else:
        return list(suite.models)
    if not models:
        raise UsageError(f"{origin} names no model")
    if len(models) > MAX_MODELS:
        raise UsageError(f"{origin}: a suite supports up to {MAX_MODELS} models, got {len(models)}")
    dupes = sorted({m for m in models if models.count(m) > 1})
    if dupes:
        raise UsageError(f"{origin} names {', '.join(dupes)} more than once")
    return models


def model_dir_name(model_id: str) -> str:
    """Run-dir folder of a model: ``org__name`` for a hub id (``@rev`` -> ``__rev``), the
    folder or file name of a local model, ``demo``; lower case, ``[a-z0-9_.-]`` only."""
    from editproof.lm import parse_source

    src = parse_source(model_id)
    if src.path is not None:
        name = src.path.stem if src.kind == "gguf" else src.path.name
        if src.kind == "random":
            name = f"{name}_random{src.seed}"
    else:
        name = model_id.strip().replace("@", "/")
    return safe_model_id(name.replace(" ", "_"))


def model_dirs(models: list[str]) -> dict[str, str]:
    """Folder per model; two models with the same name get a digest of their id appended."""
    names = {m: model_dir_name(m) for m in models}
    taken = [n for n in names.values()]
    for m, n in names.items():
        if taken.count(n) > 1:
            names[m] = f"{n}-{hashlib.sha256(m.encode()).hexdigest()[:8]}"
    return names

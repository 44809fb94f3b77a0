"""Random-init models built on the devices: a real architecture's shape with no weight file.

``random:<dir>[@seed]`` names a directory holding a model's ``config.json`` and tokenizer
files but no weights. The model is created on the meta device (no memory), its modules are
materialised on the devices they are placed on, and the architecture's own initialiser fills
them from ``torch.manual_seed(seed)``. Nothing touches the disk or host memory, so a 72B shape
can be measured on GPUs whose host could neither hold nor quickly write its 145 GB.

The weights are reproducible for the same seed, placement, library versions and GPU type;
the run records the sha256 digest measured after the build, which is the model's identity.
Weight values do not change how fast a forward pass runs, which is what these models are
for: measuring the tool at the scale of real checkpoints.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from editproof.errors import EvaluationError, InvalidInputError

if TYPE_CHECKING:
    import torch

# Share of each GPU's free memory the weights may take when they span several GPUs.
GPU_FILL = 0.90


def estimate_parameters(config: dict[str, Any]) -> int | None:
    """Parameters of a decoder-only transformer from its config, or None when the config
    does not carry the usual fields (the estimate only sizes GPU placement)."""
    text = config.get("text_config")
    cfg = text if isinstance(text, dict) else config
    try:
        hidden = int(cfg["hidden_size"])
        layers = int(cfg["num_hidden_layers"])
        ffn = int(cfg["intermediate_size"])
        vocab = int(cfg["vocab_size"])
        heads = int(cfg["num_attention_heads"])
    except (KeyError, TypeError, ValueError):
        return None
    kv_heads = int(cfg.get("num_key_value_heads") or heads)
    head_dim = int(cfg.get("head_dim") or hidden // heads)
    attention = 2 * hidden * heads * head_dim + 2 * hidden * kv_heads * head_dim
    if cfg.get("attention_bias") or cfg.get("model_type", "").startswith("qwen2"):
        attention += heads * head_dim + 2 * kv_heads * head_dim
    mlp = 3 * hidden * ffn
    embeddings = vocab * hidden * (1 if cfg.get("tie_word_embeddings") else 2)
    return embeddings + layers * (attention + mlp + 2 * hidden) + hidden


def read_config(folder: Path) -> dict[str, Any]:
    try:
        data = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise InvalidInputError(f"cannot read {folder / 'config.json'}: {exc}") from None
    if not isinstance(data, dict):
        raise InvalidInputError(f"{folder / 'config.json'} is not a JSON object")
    return data


def build_random(folder: Path, seed: int, device: str, dtype: torch.dtype) -> Any:
    """The model of ``folder/config.json``, initialised from ``seed`` on ``device``.

    ``device`` is ``cpu``, ``cuda:N``, or ``cuda`` with several GPUs visible: then the layers
    are shared evenly over the GPUs in order (``device_map="balanced"``, at most ``GPU_FILL``
    of each one's free memory), and hooks move activations between them.
    """
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.from_pretrained(str(folder), local_files_only=True)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config, dtype=dtype)
    placement = _placement(model, device, dtype)
    for name, where in placement.items():
        part = model.get_submodule(name) if name else model
        part.to_empty(device=where, recurse=True)
    torch.manual_seed(seed)
    model.initialize_weights()
    model.tie_weights()
    _rebuild_rotary(model)
    left = [n for n, t in [*model.named_parameters(), *model.named_buffers()] if t.is_meta]
    if left:
        raise EvaluationError(f"random init left {len(left)} tensors unbuilt, e.g. '{left[0]}'")
    if len(set(placement.values())) > 1:
        from accelerate import dispatch_model

        skip = getattr(model, "_skip_keys_device_placement", None)
        dispatch_model(model, device_map=placement, skip_keys=skip)
    model.eval()
    model.requires_grad_(False)
    return model


def _placement(model: Any, device: str, dtype: torch.dtype) -> dict[str, str]:
    """Module name -> device; one entry ``"" -> device`` when the model sits on one device."""
    import torch

    if device != "cuda" or torch.cuda.device_count() < 2:
        return {"": "cuda:0" if device == "cuda" else device}
    from accelerate import infer_auto_device_map
    from accelerate.utils import get_balanced_memory

    budget: dict[int | str, int | str] = {}
    for index in range(torch.cuda.device_count()):
        free, _ = torch.cuda.mem_get_info(index)
        budget[index] = int(free * GPU_FILL)
    budget["cpu"] = 0
    keep = list(getattr(model, "_no_split_modules", None) or [])
    # Even shares: every GPU keeps the same headroom for activations and undo copies.
    budget = dict(get_balanced_memory(model, budget, keep, dtype))
    budget["cpu"] = 0
    plan = infer_auto_device_map(
        model, max_memory=budget, no_split_module_classes=keep, dtype=dtype
    )
    off = sorted({str(v) for v in plan.values() if not isinstance(v, int)})
    if off:
        raise EvaluationError(
            f"the model does not fit on the {torch.cuda.device_count()} visible GPUs "
            f"(placement wanted {', '.join(off)})"
        )
    return {name: f"cuda:{index}" for name, index in plan.items()}


def _rebuild_rotary(model: Any) -> None:
    """Rotary embeddings keep computed, non-persistent buffers that the meta build leaves
    empty and some library versions' initialisers do not refill: rebuild each such module on
    the host from its config and copy the buffers over."""
    import torch

    for _, module in model.named_modules():
        if "RotaryEmbedding" not in type(module).__name__ or not hasattr(module, "inv_freq"):
            continue
        try:
            fresh = type(module)(module.config)
        except Exception as exc:
            raise EvaluationError(f"cannot rebuild {type(module).__name__}: {exc}") from None
        with torch.no_grad():
            for name, buf in fresh.named_buffers(recurse=False):
                mine = getattr(module, name, None)
                if isinstance(mine, torch.Tensor) and mine.shape == buf.shape:
                    mine.copy_(buf.to(mine.dtype))

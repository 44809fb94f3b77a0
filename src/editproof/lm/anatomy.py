"""Model anatomy: decoder layers, module families, weight tying and sizes.

Family names drive edit scopes and guard statistics, so they are decided in one place from
parameter names that Llama, Mistral, Qwen2, Mixtral and GPT-2 checkpoints actually use.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Literal

Family = Literal["attn", "ffn", "embed", "other"]
FAMILIES: tuple[Family, ...] = ("attn", "ffn", "embed", "other")

# Candidate attribute paths of the decoder-layer list, most common first.
_LAYER_PATHS = ("model.layers", "transformer.h", "model.decoder.layers", "gpt_neox.layers")

_NORM = re.compile(r"(norm|(^|\.)ln_(\d+|f)(\.|$))")
_EMBED = re.compile(r"(embed_tokens|(^|\.)wte\.|(^|\.)wpe\.|lm_head|embed_out|word_embeddings)")
_ATTN = re.compile(
    r"(self_attn|(^|\.)attn\.|attention|[qkvo]_proj|c_attn|query_key_value|(^|\.)wqkv\.)"
)
_FFN = re.compile(
    r"((^|\.)mlp\.|block_sparse_moe|feed_forward|(^|\.)ffn\.|c_fc|gate_proj|up_proj|down_proj"
    r"|experts|dense_h_to_4h|dense_4h_to_h)"
)
# Config keys holding the number of positions a model was built for (Llama, GPT-2 naming).
_POSITION_KEYS = ("max_position_embeddings", "n_positions")
_LAYER_INDEX = re.compile(r"\.(?:layers|h)\.(\d+)\.")


def family_of(name: str) -> Family:
    """Family of a parameter name. Norms are ``other`` wherever they sit."""
    if _NORM.search(name):
        return "other"
    if _EMBED.search(name):
        return "embed"
    if _ATTN.search(name):
        return "attn"
    if _FFN.search(name):
        return "ffn"
    return "other"


def layer_index(name: str) -> int | None:
    """Decoder layer a parameter belongs to, or None for embeddings, final norm, head."""
    match = _LAYER_INDEX.search(name)
    return int(match.group(1)) if match else None


@dataclass(frozen=True)
class Anatomy:
    model_type: str
    architecture: str
    layers_path: str | None
    n_layers: int
    n_params: int
    vocab_size: int | None
    hidden_size: int | None
    families: dict[str, tuple[str, ...]] = field(default_factory=dict)
    tied: tuple[tuple[str, ...], ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "model_type": self.model_type,
            "architecture": self.architecture,
            "layers_path": self.layers_path,
            "n_layers": self.n_layers,
            "n_params": self.n_params,
            "vocab_size": self.vocab_size,
            "hidden_size": self.hidden_size,
            "family_sizes": {k: len(v) for k, v in self.families.items()},
            "tied": [list(group) for group in self.tied],
        }


def describe(model: Any) -> Anatomy:
    """Read the anatomy of a transformers causal LM (any ``nn.Module`` works)."""
    layers_path, n_layers = _find_layers(model)
    families: dict[str, list[str]] = {f: [] for f in FAMILIES}
    for name, _ in model.named_parameters():
        families[family_of(name)].append(name)
    config = getattr(model, "config", None)
    return Anatomy(
        model_type=str(getattr(config, "model_type", "unknown")),
        architecture=type(model).__name__,
        layers_path=layers_path,
        n_layers=n_layers,
        n_params=sum(p.numel() for p in model.parameters()),
        vocab_size=_config_int(config, "vocab_size"),
        hidden_size=_config_int(config, "hidden_size", "n_embd"),
        families={k: tuple(v) for k, v in families.items()},
        tied=tied_groups(model),
    )


def max_positions(model: Any) -> tuple[int, str] | None:
    """The longest sequence the model's config allows, and the key that says so."""
    config = getattr(model, "config", None)
    for key in _POSITION_KEYS:
        value = getattr(config, key, None)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value, key
    return None


def tied_groups(model: Any) -> tuple[tuple[str, ...], ...]:
    """Groups of parameter names that share one tensor (e.g. embeddings and lm_head)."""
    by_id: dict[int, list[str]] = {}
    for name, param in model.named_parameters(remove_duplicate=False):
        by_id.setdefault(id(param), []).append(name)
    return tuple(sorted(tuple(sorted(names)) for names in by_id.values() if len(names) > 1))


def decoder_layers(model: Any) -> Any | None:
    """The ``nn.ModuleList`` of decoder layers, or None when the model has no known one."""
    path, _ = _find_layers(model)
    return _get_path(model, path) if path else None


def _find_layers(model: Any) -> tuple[str | None, int]:
    for path in _LAYER_PATHS:
        layers = _get_path(model, path)
        if layers is not None and hasattr(layers, "__len__"):
            return path, len(layers)
    return None, 0


def _get_path(obj: Any, path: str) -> Any | None:
    for part in path.split("."):
        obj = getattr(obj, part, None)
        if obj is None:
            return None
    return obj


def _config_int(config: Any, *names: str) -> int | None:
    for name in names:
        value = getattr(config, name, None)
        if isinstance(value, int):
            return value
    return None

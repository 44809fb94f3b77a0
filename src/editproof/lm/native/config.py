"""What the native forward supports, read from a checkpoint's ``config.json`` alone.

The native forward covers the Llama family as transformers builds it for ``llama``,
``mistral`` and ``qwen2``: RMSNorm, rotary positions (default, linear and llama3 scaling),
grouped-query attention through SDPA, a SiLU-gated MLP, optional tied embeddings. Anything
else (other rotary types, partial rotary, sliding windows in some layers only, tensor-parallel
slicing, quantised checkpoints, fields it would have to guess) is refused with the reason, and
the model goes through transformers instead. Fields are never defaulted on the native side:
a field transformers would fill from its own class defaults is a reason to use transformers.
"""

from __future__ import annotations

from typing import Any

# model_type -> the causal-LM class transformers' auto mapping builds for it.
ARCHITECTURES = {
    "llama": "LlamaForCausalLM",
    "mistral": "MistralForCausalLM",
    "qwen2": "Qwen2ForCausalLM",
}
_REQUIRED = (
    "hidden_size",
    "intermediate_size",
    "num_hidden_layers",
    "num_attention_heads",
    "vocab_size",
    "rms_norm_eps",
    "max_position_embeddings",
)
_ROPE_TYPES = ("default", "linear", "llama3")


class NativeConfig:
    """The config as plain attributes (what ``model.config`` holds for the native forward).

    Every key of ``config.json`` is an attribute, so the fault injectors can read and set
    them as they do on a transformers config; the derived values the forward needs are
    computed once here."""

    def __init__(self, data: dict[str, Any]) -> None:
        for key, value in data.items():
            setattr(self, key, value)
        self.model_type = str(data["model_type"])
        self.hidden_size = int(data["hidden_size"])
        self.intermediate_size = int(data["intermediate_size"])
        self.num_hidden_layers = int(data["num_hidden_layers"])
        self.num_attention_heads = int(data["num_attention_heads"])
        self.vocab_size = int(data["vocab_size"])
        self.rms_norm_eps = float(data["rms_norm_eps"])
        self.max_position_embeddings = int(data["max_position_embeddings"])
        self.num_key_value_heads = int(
            data.get("num_key_value_heads") or data["num_attention_heads"]
        )
        self.head_dim = int(
            data.get("head_dim") or int(data["hidden_size"]) // int(data["num_attention_heads"])
        )
        self.tie_word_embeddings = bool(data.get("tie_word_embeddings", False))
        self.pad_token_id = data.get("pad_token_id")
        self.initializer_range = float(data.get("initializer_range") or 0.02)

    def get_text_config(self, *_: Any, **__: Any) -> NativeConfig:
        return self

    def to_dict(self) -> dict[str, Any]:
        return dict(vars(self))

    @property
    def architecture(self) -> str:
        return ARCHITECTURES[self.model_type]

    @property
    def qkv_bias(self) -> bool:
        return self.model_type == "qwen2" or bool(getattr(self, "attention_bias", False))

    @property
    def o_bias(self) -> bool:
        return self.model_type != "qwen2" and bool(getattr(self, "attention_bias", False))

    @property
    def ffn_bias(self) -> bool:
        return bool(vars(self).get("mlp_bias", False))

    @property
    def attention_window(self) -> int | None:
        """The attention window every layer uses, or None for full causal attention."""
        if self.model_type == "mistral":
            value = vars(self).get("sliding_window")
            return int(value) if value else None
        return None  # qwen2 with use_sliding_window is refused by unsupported_reason

    def rope(self) -> tuple[float, str, dict[str, Any]]:
        """(theta, rope_type, parameters) from ``rope_parameters`` or the older
        ``rope_theta`` + ``rope_scaling`` pair."""
        params, theta, kind = _rope_fields(vars(self))
        return float(theta or 0.0), str(kind), dict(params)


def unsupported_reason(data: dict[str, Any]) -> str | None:
    """Why the native forward cannot run the model of ``config.json`` ``data``, or None."""
    model_type = data.get("model_type")
    if model_type not in ARCHITECTURES:
        return f"model_type '{model_type}' is not one of {', '.join(ARCHITECTURES)}"
    missing = [key for key in _REQUIRED if not _number(data.get(key))]
    if missing:
        return f"config.json lacks {', '.join(missing)}"
    sizes = [*(k for k in _REQUIRED if k != "rms_norm_eps"), "num_key_value_heads", "head_dim"]
    bad = [k for k in sizes if data.get(k) is not None and not _count(data.get(k))]
    if bad:
        return f"config.json's {bad[0]} is not a positive integer"
    if not float(data["rms_norm_eps"]) > 0:
        return "config.json's rms_norm_eps is not positive"
    if model_type == "mistral" and "num_key_value_heads" not in data:
        return "config.json lacks num_key_value_heads (mistral's default is not llama's)"
    if not data.get("head_dim") and int(data["hidden_size"]) % int(data["num_attention_heads"]):
        return "hidden_size is not a multiple of num_attention_heads"
    if data.get("hidden_act", "silu") != "silu":
        return f"hidden_act '{data.get('hidden_act')}'"
    if data.get("quantization_config"):
        return "a quantised checkpoint"
    if int(data.get("pretraining_tp") or 1) != 1:
        return "pretraining_tp > 1"
    if model_type == "qwen2" and (
        data.get("use_sliding_window")
        or any(t != "full_attention" for t in data.get("layer_types") or [])
    ):
        return "qwen2 sliding-window layers"
    if model_type == "mistral" and any(
        t != "full_attention" for t in data.get("layer_types") or []
    ):
        return "per-layer attention types"
    heads, kv = int(data["num_attention_heads"]), data.get("num_key_value_heads")
    if kv and heads % int(kv):
        return "attention heads not a multiple of key/value heads"
    for key in ("attn_logit_softcapping", "final_logit_softcapping", "logit_scale"):
        if data.get(key) not in (None, 1, 1.0):
            return f"{key} is set"
    params, theta, kind = _rope_fields(data)
    if not isinstance(params, dict):
        return "rope parameters are not an object"
    if not _number(theta) or not theta > 0:
        return "no rope_theta"
    if float(params.get("partial_rotary_factor") or data.get("partial_rotary_factor") or 1.0) != 1:
        return "partial rotary embeddings"
    if kind not in _ROPE_TYPES:
        return f"rope_type '{kind}'"
    if kind == "linear" and not isinstance(params.get("factor"), int | float):
        return "linear rope scaling without a factor"
    if kind == "llama3" and not all(
        isinstance(params.get(k), int | float)
        for k in (
            "factor",
            "low_freq_factor",
            "high_freq_factor",
            "original_max_position_embeddings",
        )
    ):
        return "llama3 rope scaling without all its fields"
    return None


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _count(value: Any) -> bool:
    """A positive integer (a JSON 4096.0 counts: json writes some sizes that way)."""
    return _number(value) and float(value).is_integer() and value > 0


def _rope_fields(data: dict[str, Any]) -> tuple[Any, Any, Any]:
    """(parameters, theta, rope_type) from ``rope_parameters`` or the older ``rope_theta`` +
    ``rope_scaling`` pair, unchecked (parameters may not even be an object)."""
    params = data.get("rope_parameters") or data.get("rope_scaling") or {}
    if not isinstance(params, dict):
        return params, None, None
    theta = params.get("rope_theta", data.get("rope_theta"))
    return params, theta, params.get("rope_type", params.get("type", "default"))

"""Building a native model: random-init on the device, or a safetensors checkpoint read
straight to the device.

Random init draws exactly what transformers' initialiser draws for these architectures:
modules are visited children first, in registration order (transformers' ``smart_apply``),
each ``nn.Linear`` weight from N(0, initializer_range) with a zero bias, each embedding the
same with its padding row zeroed, norms set to one; the untied ``lm_head`` is drawn after the
decoder, and a tied one still consumes its draw before it is tied. So a ``random:`` model has
the same weights, and the same digest, whichever forward runs it (tested against transformers).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from editproof.errors import EvaluationError, InvalidInputError
from editproof.lm.native.config import NativeConfig
from editproof.lm.native.modules import (
    NativeCausalLM,
    NativeRMSNorm,
    NativeRotaryEmbedding,
    causal_lm_class,
)
from editproof.lm.native.read import read_tensors, torch_dtype
from editproof.lm.preflight import read_header

# Non-persistent buffers older checkpoints carry and transformers skips when loading.
_IGNORED_SUFFIXES = (".rotary_emb.inv_freq",)


def _on_meta(config: NativeConfig, dtype: torch.dtype) -> NativeCausalLM:
    # Parameters made on "meta" directly: the torch.device("meta") mode would import
    # torch's Python reference ops on first use (3.5 s measured on the H200 host).
    return causal_lm_class(config)(config, device="meta", dtype=dtype)


def _rotary_buffers(model: NativeCausalLM, device: Any) -> None:
    """The rotary buffers (float32, computed on the host when the module was made, as
    transformers keeps them) moved to ``device``."""
    for module in model.modules():
        if isinstance(module, NativeRotaryEmbedding):
            module.to(device)


def _finish(model: NativeCausalLM) -> NativeCausalLM:
    left = [n for n, t in [*model.named_parameters(), *model.named_buffers()] if t.is_meta]
    if left:
        raise EvaluationError(f"native build left {len(left)} tensors unbuilt, e.g. '{left[0]}'")
    model.eval()
    model.requires_grad_(False)
    return model


@torch.no_grad()
def build_random_native(
    data: dict[str, Any], seed: int, device: str, dtype: torch.dtype
) -> NativeCausalLM:
    """The model of ``config.json`` ``data``, its weights drawn from ``seed`` on ``device``."""
    config = NativeConfig(data)
    # Made on the device directly (each module's default draw is overwritten below): moving
    # a "meta" model with to_empty() runs torch's Python reference of empty_like, whose
    # first call imports SymPy (2.2 s measured on the H200 host).
    model = causal_lm_class(config)(config, device=device, dtype=dtype)
    _rotary_buffers(model, device)
    torch.manual_seed(seed)
    std = config.initializer_range
    for module in _children_first(model):
        if isinstance(module, nn.Linear):
            module.weight.normal_(0.0, std)
            if module.bias is not None:
                module.bias.zero_()
        elif isinstance(module, nn.Embedding):
            module.weight.normal_(0.0, std)
            if module.padding_idx is not None:
                module.weight[module.padding_idx].zero_()
        elif isinstance(module, NativeRMSNorm):
            module.weight.fill_(1.0)
    model.tie_weights()
    return _finish(model)


def _children_first(module: nn.Module) -> list[nn.Module]:
    out: list[nn.Module] = []
    for child in module.children():
        out.extend(_children_first(child))
    out.append(module)
    return out


def checkpoint_keys(config: NativeConfig) -> set[str]:
    """The tensor names a checkpoint of this config holds: ``lm_head.weight`` when untied
    (a tied checkpoint must not hold it: which of the two copies counts would be a guess).
    Written out from the config, with no model built (a test holds them to the model's)."""
    names = {"model.embed_tokens.weight", "model.norm.weight"}
    if not config.tie_word_embeddings:
        names.add("lm_head.weight")
    for index in range(config.num_hidden_layers):
        names |= {f"model.layers.{index}.{name}" for name in _layer_keys(config)}
    return names


def _layer_keys(config: NativeConfig) -> list[str]:
    biased = [
        ("self_attn.q_proj", config.qkv_bias),
        ("self_attn.k_proj", config.qkv_bias),
        ("self_attn.v_proj", config.qkv_bias),
        ("self_attn.o_proj", config.o_bias),
        ("mlp.gate_proj", config.ffn_bias),
        ("mlp.up_proj", config.ffn_bias),
        ("mlp.down_proj", config.ffn_bias),
    ]
    keys = [f"{name}.weight" for name, _ in biased]
    keys += [f"{name}.bias" for name, bias in biased if bias]
    return [*keys, "input_layernorm.weight", "post_attention_layernorm.weight"]


def key_mismatch(config: NativeConfig, held: set[str]) -> str | None:
    """Why a checkpoint holding tensors ``held`` is not exactly this config's model, or None.
    Counted first, so a config claiming absurdly many layers is answered at once."""
    own = {k for k in held if not k.endswith(_IGNORED_SUFFIXES)}
    count = 2 + (not config.tie_word_embeddings)
    count += config.num_hidden_layers * len(_layer_keys(config))
    if count > len(own) + 1000:  # cannot match: a hostile layer count is not enumerated
        return f"the config describes {count} tensors, the checkpoint holds {len(own)}"
    required = checkpoint_keys(config)
    extra, missing = own - required, required - own
    if missing:
        return f"the checkpoint lacks {len(missing)} tensors, e.g. '{sorted(missing)[0]}'"
    if extra:
        example = sorted(extra)[0]
        return f"the checkpoint holds {len(extra)} tensors the model has not, e.g. '{example}'"
    return None


@torch.no_grad()
def load_native(
    data: dict[str, Any], files: Sequence[Path], device: str, dtype: torch.dtype
) -> NativeCausalLM:
    """The model of ``config.json`` ``data`` with its tensors read from the safetensors
    ``files`` to ``device`` by several threads (:mod:`.read`), cast to ``dtype`` when they
    are floats."""
    config = NativeConfig(data)
    model = _on_meta(config, dtype)
    # Read again here, not taken from the forward's plan: the offsets the threads read at
    # must be those of the file as it is now.
    headers = [read_header(file) for file in files]
    where = files[0].parent
    wanted = {
        name: entry
        for header in headers
        for name, entry in header.tensors.items()
        if not name.endswith(_IGNORED_SUFFIXES)
    }
    # Names, dtypes and shapes are checked from the headers, before a byte is read.
    why = key_mismatch(config, set(wanted))
    if why:
        raise InvalidInputError(f"{where}: {why}")
    expected = model.state_dict()
    for key, entry in wanted.items():
        held = torch_dtype(entry.dtype)
        if held is not None and not held.is_floating_point:
            raise InvalidInputError(
                f"{where}: tensor '{key}' is {str(held).removeprefix('torch.')}"
                ", not a floating-point weight"
            )
        if entry.shape != tuple(expected[key].shape):
            raise InvalidInputError(
                f"{where}: tensor '{key}' has shape {list(entry.shape)}, the config "
                f"asks for {list(expected[key].shape)}"
            )
    state = read_tensors(headers, device, skip=lambda name: name.endswith(_IGNORED_SUFFIXES))
    for key, tensor in state.items():
        if tensor.dtype != dtype:
            state[key] = tensor.to(dtype)
    model.load_state_dict(state, strict=False, assign=True)
    _rotary_buffers(model, device)
    model.tie_weights()
    return _finish(model)

"""The native Llama-family causal LM: plain torch modules with transformers' names.

Module and parameter names, registration order, dtypes and every operation of the forward
follow transformers' ``LlamaForCausalLM`` / ``MistralForCausalLM`` / ``Qwen2ForCausalLM``
with SDPA attention, so a checkpoint's tensors load by name, edit scopes and guard hooks find
the same modules, and the numbers agree with transformers (tested on CPU in fp32 and on the
GPU in bf16). What it adds is what it leaves out: the import of transformers' modeling stack
(several seconds per process), caches, generation and training.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, TypeVar

import torch
from torch import nn
from torch.nn import functional as F

from editproof.lm.native.config import NativeConfig

M = TypeVar("M", bound=nn.Module)


@dataclass
class BaseOutput:
    """The decoder's last hidden states; ``out[0]`` is them, as in transformers."""

    last_hidden_state: torch.Tensor

    def __getitem__(self, index: int) -> torch.Tensor:
        return (self.last_hidden_state,)[index]


@dataclass
class CausalOutput:
    logits: torch.Tensor

    def __getitem__(self, index: int) -> torch.Tensor:
        return (self.logits,)[index]


class NativeRMSNorm(nn.Module):
    def __init__(self, hidden_size: int, eps: float, **factory: Any) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(hidden_size, **factory))
        self.variance_epsilon = eps

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        input_dtype = hidden_states.dtype
        hidden_states = hidden_states.to(torch.float32)
        variance = hidden_states.pow(2).mean(-1, keepdim=True)
        hidden_states = hidden_states * torch.rsqrt(variance + self.variance_epsilon)
        out: torch.Tensor = self.weight * hidden_states.to(input_dtype)
        return out


def inverse_frequencies(config: NativeConfig, device: Any = None) -> torch.Tensor:
    """Rotary inverse frequencies for the config's rope type (default, linear, llama3)."""
    import math

    theta, kind, params = config.rope()
    dim = config.head_dim
    steps = torch.arange(0, dim, 2, dtype=torch.int64).to(device=device, dtype=torch.float)
    inv_freq = 1.0 / (theta ** (steps / dim))
    if kind == "linear":
        inv_freq /= params["factor"]
    elif kind == "llama3":
        factor = params["factor"]
        low, high = params["low_freq_factor"], params["high_freq_factor"]
        old_context = params["original_max_position_embeddings"]
        low_wavelen, high_wavelen = old_context / low, old_context / high
        wavelen = 2 * math.pi / inv_freq
        scaled = torch.where(wavelen > low_wavelen, inv_freq / factor, inv_freq)
        smooth = (old_context / wavelen - low) / (high - low)
        smoothed = (1 - smooth) * scaled / factor + smooth * scaled
        medium = ~(wavelen < high_wavelen) * ~(wavelen > low_wavelen)
        inv_freq = torch.where(medium, smoothed, scaled)
    return inv_freq


class NativeRotaryEmbedding(nn.Module):
    def __init__(self, config: NativeConfig) -> None:
        super().__init__()
        self.attention_scaling = 1.0  # every supported rope type leaves cos/sin unscaled
        inv_freq = inverse_frequencies(config)
        self.register_buffer("inv_freq", inv_freq, persistent=False)
        self.register_buffer("original_inv_freq", inv_freq.clone(), persistent=False)

    def forward(
        self, x: torch.Tensor, position_ids: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        inv_freq = self.inv_freq
        assert isinstance(inv_freq, torch.Tensor)
        inv = inv_freq.to(device=x.device, dtype=torch.float)
        freqs = position_ids[..., None].float() * inv
        emb = torch.cat((freqs, freqs), dim=-1)
        cos = emb.cos() * self.attention_scaling
        sin = emb.sin() * self.attention_scaling
        return cos.to(dtype=x.dtype), sin.to(dtype=x.dtype)


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    x1 = x[..., : x.shape[-1] // 2]
    x2 = x[..., x.shape[-1] // 2 :]
    return torch.cat((-x2, x1), dim=-1)


def _repeat_kv(states: torch.Tensor, n_rep: int) -> torch.Tensor:
    if n_rep == 1:
        return states
    batch, heads, length, dim = states.shape
    states = states[:, :, None, :, :].expand(batch, heads, n_rep, length, dim)
    return states.reshape(batch, heads * n_rep, length, dim)


class NativeAttention(nn.Module):
    def __init__(self, config: NativeConfig, layer_idx: int, **factory: Any) -> None:
        super().__init__()
        self.layer_idx = layer_idx
        self.head_dim = config.head_dim
        self.num_key_value_groups = config.num_attention_heads // config.num_key_value_heads
        self.scaling = self.head_dim**-0.5
        self.is_causal = True
        heads, kv, hidden = (
            config.num_attention_heads,
            config.num_key_value_heads,
            config.hidden_size,
        )
        bias = config.qkv_bias
        self.q_proj = nn.Linear(hidden, heads * self.head_dim, bias=bias, **factory)
        self.k_proj = nn.Linear(hidden, kv * self.head_dim, bias=bias, **factory)
        self.v_proj = nn.Linear(hidden, kv * self.head_dim, bias=bias, **factory)
        self.o_proj = nn.Linear(heads * self.head_dim, hidden, bias=config.o_bias, **factory)

    def forward(
        self,
        hidden_states: torch.Tensor,
        position_embeddings: tuple[torch.Tensor, torch.Tensor],
        attention_mask: torch.Tensor | None,
    ) -> tuple[torch.Tensor, None]:
        input_shape = hidden_states.shape[:-1]
        hidden_shape = (*input_shape, -1, self.head_dim)
        query = self.q_proj(hidden_states).view(hidden_shape).transpose(1, 2)
        key = self.k_proj(hidden_states).view(hidden_shape).transpose(1, 2)
        value = self.v_proj(hidden_states).view(hidden_shape).transpose(1, 2)
        cos, sin = position_embeddings
        cos, sin = cos.unsqueeze(1), sin.unsqueeze(1)
        query = (query * cos) + (_rotate_half(query) * sin)
        key = (key * cos) + (_rotate_half(key) * sin)
        extra: dict[str, Any] = {}
        if self.num_key_value_groups > 1:
            # transformers' SDPA path: grouped heads in the kernel when no mask is needed,
            # else the key/value heads repeated.
            if attention_mask is None and key.shape[-1] == value.shape[-1] <= 256:
                extra["enable_gqa"] = True
            else:
                key = _repeat_kv(key, self.num_key_value_groups)
                value = _repeat_kv(value, self.num_key_value_groups)
        q_length = query.shape[2]
        out = F.scaled_dot_product_attention(
            query,
            key,
            value,
            attn_mask=attention_mask,
            dropout_p=0.0,
            scale=self.scaling,
            is_causal=q_length > 1 and attention_mask is None,
            **extra,
        )
        out = out.reshape(out.shape[0], -1, q_length, value.shape[-1])
        out = out.transpose(1, 2).contiguous()
        out = out.reshape(*input_shape, -1).contiguous()
        return self.o_proj(out), None


class SiLUActivation(nn.Module):
    """SiLU as a child module, as transformers' MLP holds its activation (``act_fn``)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.silu(x)


class NativeMLP(nn.Module):
    def __init__(self, config: NativeConfig, **factory: Any) -> None:
        super().__init__()
        hidden, inner, bias = config.hidden_size, config.intermediate_size, config.ffn_bias
        self.gate_proj = nn.Linear(hidden, inner, bias=bias, **factory)
        self.up_proj = nn.Linear(hidden, inner, bias=bias, **factory)
        self.down_proj = nn.Linear(inner, hidden, bias=bias, **factory)
        self.act_fn = SiLUActivation()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.down_proj(self.act_fn(self.gate_proj(x)) * self.up_proj(x))
        return out


class NativeDecoderLayer(nn.Module):
    def __init__(self, config: NativeConfig, layer_idx: int, **factory: Any) -> None:
        super().__init__()
        eps = config.rms_norm_eps
        norm = named(config, NativeRMSNorm)
        self.self_attn = named(config, NativeAttention)(config, layer_idx, **factory)
        self.mlp = named(config, NativeMLP)(config, **factory)
        self.input_layernorm = norm(config.hidden_size, eps, **factory)
        self.post_attention_layernorm = norm(config.hidden_size, eps, **factory)

    def forward(
        self,
        hidden_states: torch.Tensor,
        attention_mask: torch.Tensor | None,
        position_embeddings: tuple[torch.Tensor, torch.Tensor],
    ) -> torch.Tensor:
        residual = hidden_states
        hidden_states = self.input_layernorm(hidden_states)
        hidden_states, _ = self.self_attn(hidden_states, position_embeddings, attention_mask)
        hidden_states = residual + hidden_states
        residual = hidden_states
        hidden_states = self.post_attention_layernorm(hidden_states)
        hidden_states = self.mlp(hidden_states)
        return residual + hidden_states


def attention_mask_for(
    padding: torch.Tensor | None, length: int, window: int | None, device: Any
) -> torch.Tensor | None:
    """None when plain causal attention is exact (no padding, no window shorter than the
    batch), else a boolean mask [B or 1, 1, T, T]: key ``j`` visible from query ``i`` when
    ``j <= i``, within the sliding window, and a real token."""
    needs_window = window is not None and length > window
    if padding is None and not needs_window:
        return None
    q = torch.arange(length, device=device)[:, None]
    k = torch.arange(length, device=device)[None, :]
    allowed = k <= q
    if needs_window:
        assert window is not None
        allowed = allowed & (q - k < window)
    mask = allowed[None, None, :, :]
    if padding is not None:
        mask = mask & padding.to(device=device, dtype=torch.bool)[:, None, None, :]
    return mask


class NativeModel(nn.Module):
    def __init__(self, config: NativeConfig, **factory: Any) -> None:
        super().__init__()
        self.config = config
        self.padding_idx = config.pad_token_id
        self.vocab_size = config.vocab_size
        # The weight is passed in: nn.Embedding's own N(0, 1) draw on "meta" would import
        # torch's reference ops and SymPy (over a second); the initialiser draws it anyway.
        layer = named(config, NativeDecoderLayer)
        self.embed_tokens = nn.Embedding(
            config.vocab_size,
            config.hidden_size,
            self.padding_idx,
            _weight=torch.empty(config.vocab_size, config.hidden_size, **factory),
        )
        self.layers = nn.ModuleList(
            [layer(config, i, **factory) for i in range(config.num_hidden_layers)]
        )
        self.norm = named(config, NativeRMSNorm)(config.hidden_size, config.rms_norm_eps, **factory)
        # float32 buffers, on the host until the build moves them
        self.rotary_emb = named(config, NativeRotaryEmbedding)(config)

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        use_cache: bool | None = None,
        **kwargs: Any,
    ) -> BaseOutput:
        if use_cache or kwargs.get("past_key_values") is not None:
            raise ValueError("the native forward keeps no key/value cache")
        hidden = self.embed_tokens(input_ids)
        length = hidden.shape[1]
        positions = torch.arange(length, device=hidden.device).unsqueeze(0)
        padding = attention_mask
        if padding is not None and bool(padding.all()):
            padding = None  # transformers drops an all-ones mask the same way
        mask = attention_mask_for(padding, length, self.config.attention_window, hidden.device)
        rotary = self.rotary_emb(hidden, positions)
        for layer in self.layers[: self.config.num_hidden_layers]:
            hidden = layer(hidden, mask, rotary)
        return BaseOutput(last_hidden_state=self.norm(hidden))


class NativeCausalLM(nn.Module):
    """``model`` (the decoder) and ``lm_head``, with the parts of transformers'
    ``PreTrainedModel`` surface that editproof uses: config, embeddings getters and setters,
    ``base_model``, ``tie_weights``, ``resize_token_embeddings``, ``device`` and ``dtype``."""

    base_model_prefix = "model"
    forward_name = "native"

    def __init__(self, config: NativeConfig, **factory: Any) -> None:
        """``factory``: ``device`` and ``dtype`` of the parameters (``device="meta"``
        builds without memory; the rotary buffers are always float32 on the host)."""
        super().__init__()
        self.config = config
        self.model = named(config, NativeModel)(config, **factory)
        self.vocab_size = config.vocab_size
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False, **factory)

    @property
    def base_model(self) -> NativeModel:
        return self.model

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.parameters()).dtype

    def get_input_embeddings(self) -> nn.Embedding:
        return self.model.embed_tokens

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        self.model.embed_tokens = value

    def get_output_embeddings(self) -> nn.Linear:
        return self.lm_head

    def set_output_embeddings(self, value: nn.Linear) -> None:
        self.lm_head = value

    def tie_weights(self) -> None:
        if self.config.tie_word_embeddings:
            self.lm_head.weight = self.model.embed_tokens.weight

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        use_cache: bool | None = None,
        **kwargs: Any,
    ) -> CausalOutput:
        hidden = self.model(input_ids, attention_mask=attention_mask, use_cache=use_cache, **kwargs)
        return CausalOutput(logits=self.lm_head(hidden.last_hidden_state))

    @torch.no_grad()
    def resize_token_embeddings(
        self, new_num_tokens: int, mean_resizing: bool = False
    ) -> nn.Embedding:
        """New embedding (and untied head) rows drawn like the initialiser draws them; the
        old rows are kept. Updates the config's and the model's vocabulary size."""
        old = self.model.embed_tokens
        std = self.config.initializer_range
        keep = min(new_num_tokens, old.weight.shape[0])
        weight = old.weight
        emb = nn.Embedding(
            new_num_tokens,
            weight.shape[1],
            old.padding_idx,
            device=weight.device,
            dtype=weight.dtype,
        )
        emb.weight.normal_(0.0, std)
        emb.weight[:keep] = weight[:keep]
        emb.requires_grad_(weight.requires_grad)
        self.model.embed_tokens = emb
        if self.config.tie_word_embeddings:
            self.lm_head.weight = emb.weight
        else:
            head = self.lm_head
            new_head = nn.Linear(
                head.in_features,
                new_num_tokens,
                bias=False,
                device=head.weight.device,
                dtype=head.weight.dtype,
            )
            new_head.weight.normal_(0.0, std)
            new_head.weight[:keep] = head.weight[:keep]
            new_head.requires_grad_(head.weight.requires_grad)
            self.lm_head = new_head
        self.config.vocab_size = new_num_tokens
        self.vocab_size = new_num_tokens
        return emb


_CLASSES: dict[tuple[str, type[nn.Module]], type[nn.Module]] = {}


def named(config: NativeConfig, base: type[M]) -> type[M]:
    """``base`` under the name transformers gives that module of this architecture
    (``NativeRMSNorm`` -> ``MistralRMSNorm``, ``NativeCausalLM`` -> ``MistralForCausalLM``):
    reports name the same architecture, and the invariants guard's structure hash (module
    paths and class names) is the same, whichever forward ran."""
    key = (config.architecture, base)
    if key not in _CLASSES:
        prefix = config.architecture.removesuffix("ForCausalLM")
        suffix = "ForCausalLM" if base is NativeCausalLM else base.__name__.removeprefix("Native")
        _CLASSES[key] = type(prefix + suffix, (base,), {"__module__": __name__})
    found: type[M] = _CLASSES[key]  # type: ignore[assignment]
    return found


def causal_lm_class(config: NativeConfig) -> type[NativeCausalLM]:
    """The causal LM class of ``config``'s architecture (see :func:`named`)."""
    return named(config, NativeCausalLM)

"""What the native forward refuses, and why (the model then runs through transformers)."""

from __future__ import annotations

from typing import Any

import pytest

from editproof.lm.native.config import NativeConfig, unsupported_reason

BASE: dict[str, Any] = {
    "model_type": "llama",
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "vocab_size": 100,
    "rms_norm_eps": 1e-6,
    "max_position_embeddings": 512,
    "rope_parameters": {"rope_type": "default", "rope_theta": 10000.0},
}


def test_a_plain_llama_is_supported() -> None:
    assert unsupported_reason(BASE) is None
    assert unsupported_reason({**BASE, "model_type": "mistral"}) is None
    assert unsupported_reason({**BASE, "model_type": "qwen2"}) is None
    old = {k: v for k, v in BASE.items() if k != "rope_parameters"} | {"rope_theta": 1e4}
    assert unsupported_reason(old) is None


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"model_type": "gpt2"}, "model_type 'gpt2'"),
        ({"model_type": "mixtral"}, "model_type 'mixtral'"),
        ({"hidden_size": None}, "lacks hidden_size"),
        ({"hidden_act": "gelu"}, "hidden_act"),
        ({"quantization_config": {"quant_method": "gptq"}}, "quantised"),
        ({"pretraining_tp": 2}, "pretraining_tp"),
        ({"rope_parameters": {"rope_type": "yarn", "rope_theta": 1e4}}, "rope_type 'yarn'"),
        ({"rope_parameters": {"rope_type": "linear", "rope_theta": 1e4}}, "without a factor"),
        ({"rope_parameters": {"rope_type": "llama3", "rope_theta": 1e4, "factor": 8}}, "llama3"),
        ({"rope_parameters": {"rope_type": "default"}}, "no rope_theta"),
        ({"partial_rotary_factor": 0.5}, "partial rotary"),
        ({"num_key_value_heads": 3}, "multiple of key/value heads"),
        ({"final_logit_softcapping": 30.0}, "final_logit_softcapping"),
        ({"model_type": "qwen2", "use_sliding_window": True}, "sliding-window"),
        (
            {"model_type": "qwen2", "layer_types": ["full_attention", "sliding_attention"]},
            "sliding-window",
        ),
    ],
)
def test_refusals_name_the_reason(change: dict[str, Any], reason: str) -> None:
    found = unsupported_reason({**BASE, **change})
    assert found is not None and reason in found


def test_mistral_needs_its_kv_heads_written_out() -> None:
    data = {k: v for k, v in BASE.items() if k != "num_key_value_heads"}
    assert unsupported_reason(data) is None  # llama: kv heads default to heads
    assert "num_key_value_heads" in (unsupported_reason({**data, "model_type": "mistral"}) or "")


def test_config_attributes_and_derived_values() -> None:
    config = NativeConfig({**BASE, "model_type": "qwen2", "sliding_window": 8})
    assert config.head_dim == 8 and config.num_key_value_heads == 2
    assert config.qkv_bias and not config.o_bias and not config.ffn_bias
    assert config.attention_window is None  # qwen2 without use_sliding_window: full
    assert config.get_text_config() is config and config.architecture == "Qwen2ForCausalLM"
    mistral = NativeConfig({**BASE, "model_type": "mistral", "sliding_window": 8})
    assert mistral.attention_window == 8
    assert (
        NativeConfig({**BASE, "model_type": "mistral", "sliding_window": None}).attention_window
        is None
    )
    assert vars(config)["sliding_window"] == 8  # every key stays an attribute


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"num_attention_heads": 0}, "num_attention_heads is not a positive integer"),
        ({"num_hidden_layers": -2}, "num_hidden_layers is not a positive integer"),
        ({"hidden_size": 32.5}, "hidden_size is not a positive integer"),
        ({"vocab_size": True}, "lacks vocab_size"),
        ({"num_key_value_heads": 0}, "num_key_value_heads is not a positive integer"),
        ({"head_dim": -8}, "head_dim is not a positive integer"),
        ({"rms_norm_eps": 0.0}, "rms_norm_eps is not positive"),
        ({"hidden_size": 30}, "not a multiple of num_attention_heads"),
    ],
)
def test_sizes_that_would_break_the_build_are_refused(change: dict[str, Any], reason: str) -> None:
    """Refused with a reason (the model then goes to transformers, which reports the bad
    file in one line): never a ZeroDivisionError or a model built from nonsense."""
    found = unsupported_reason({**BASE, **change})
    assert found is not None and reason in found


def test_checkpoint_keys_are_the_models_own() -> None:
    """The key names written out from the config are exactly the built model's tensors."""
    torch = pytest.importorskip("torch")
    from editproof.lm.native.build import _on_meta, checkpoint_keys

    for change in ({}, {"model_type": "qwen2"}, {"attention_bias": True, "mlp_bias": True},
                   {"tie_word_embeddings": True}):  # fmt: skip
        config = NativeConfig({**BASE, **change})
        names = set(_on_meta(config, torch.float32).state_dict())
        if config.tie_word_embeddings:
            names.discard("lm_head.weight")
        assert checkpoint_keys(config) == names, change


def test_an_absurd_layer_count_is_answered_at_once() -> None:
    import time

    from editproof.lm.native.build import key_mismatch

    config = NativeConfig({**BASE, "num_hidden_layers": 10**12})
    started = time.perf_counter()
    reason = key_mismatch(config, {"model.embed_tokens.weight"})
    assert reason is not None and "describes" in reason
    assert time.perf_counter() - started < 1.0

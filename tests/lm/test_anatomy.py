from __future__ import annotations

import pytest

from editproof.lm.anatomy import describe, family_of, layer_index

pytest.importorskip("torch")
from tests.models import tiny_model


@pytest.mark.parametrize(
    ("name", "family"),
    [
        ("model.layers.0.self_attn.q_proj.weight", "attn"),
        ("model.layers.3.mlp.down_proj.weight", "ffn"),
        ("model.layers.0.mlp.experts.gate_up_proj", "ffn"),
        ("model.layers.0.mlp.gate.weight", "ffn"),
        ("model.layers.0.input_layernorm.weight", "other"),
        ("model.embed_tokens.weight", "embed"),
        ("lm_head.weight", "embed"),
        ("transformer.h.0.attn.c_attn.weight", "attn"),
        ("transformer.h.0.mlp.c_proj.weight", "ffn"),
        ("transformer.h.0.ln_1.weight", "other"),
        ("transformer.ln_f.bias", "other"),
        ("transformer.wte.weight", "embed"),
        ("transformer.wpe.weight", "embed"),
        ("model.norm.weight", "other"),
    ],
)
def test_family_of(name: str, family: str) -> None:
    assert family_of(name) == family


def test_layer_index() -> None:
    assert layer_index("model.layers.12.mlp.up_proj.weight") == 12
    assert layer_index("transformer.h.3.attn.c_attn.weight") == 3
    assert layer_index("lm_head.weight") is None


@pytest.mark.parametrize("arch", ["llama", "mistral", "qwen2", "mixtral", "gpt2"])
def test_describe(arch: str) -> None:
    model = tiny_model(arch)
    a = describe(model)
    assert a.n_layers == 2
    assert a.n_params == sum(p.numel() for p in model.parameters())
    assert a.families["attn"] and a.families["ffn"] and a.families["embed"]
    assert a.vocab_size == 320
    tied = bool(a.tied)
    assert tied == (arch in ("llama", "gpt2"))
    assert a.to_dict()["family_sizes"]["attn"] == len(a.families["attn"])

"""Scopes: grammar and resolution per architecture (also home of the tiny-model factory)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import torch

from editproof.edits import Scope, parse_scope, resolve_scope
from editproof.edits.scope import layer_count, select_targets
from editproof.errors import UsageError

ARCHS = ("llama", "gpt2", "qwen2", "mixtral")


@pytest.fixture(autouse=True, scope="module")
def _one_thread() -> Iterator[None]:
    # Tiny matrices gain nothing from intra-op threads, and on a busy 2-core box OpenMP
    # hand-offs make each small matmul ~16 ms; one thread keeps the suite fast.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def tiny_model(arch: str, *, layers: int = 2, seed: int = 0) -> Any:
    """A random-init causal LM: hidden 32, vocab 128, ``layers`` decoder layers."""
    import transformers as tf

    torch.manual_seed(seed)
    common: dict[str, Any] = {
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": layers,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "vocab_size": 128,
    }
    if arch == "llama":
        model = tf.LlamaForCausalLM(tf.LlamaConfig(**common))
    elif arch == "qwen2":
        model = tf.Qwen2ForCausalLM(tf.Qwen2Config(**common))
    elif arch == "mixtral":
        config = tf.MixtralConfig(**common, num_local_experts=4, num_experts_per_tok=2)
        model = tf.MixtralForCausalLM(config)
    elif arch == "gpt2":
        config = tf.GPT2Config(
            n_embd=32, n_layer=layers, n_head=4, vocab_size=128, n_positions=64,
            bos_token_id=None, eos_token_id=None,
        )  # fmt: skip
        model = tf.GPT2LMHeadModel(config)
    else:
        raise ValueError(arch)
    return model.eval()


def names(targets: list[Any]) -> list[str]:
    return [t.name for t in targets]


# --- grammar -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("ffn", Scope("ffn")),
        ("attn", Scope("attn")),
        ("all", Scope("all")),
        ("ffn@layer=31", Scope("ffn", layer=31)),
        ("attn@layer=0", Scope("attn", layer=0)),
        ("all@layers=4", Scope("all", first_layers=4)),
        ("ffn@layer=last", Scope("ffn", layer="last")),
    ],
)
def test_parse_scope(text: str, expected: Scope) -> None:
    scope = parse_scope(text)
    assert scope == expected
    assert scope.text == text


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("fnn", "did you mean 'ffn'"),
        ("mlp", "family must be one of"),
        ("ffn@layer=-1", "layer must be an integer >= 0"),
        ("ffn@layer=x", "got 'x'"),
        ("ffn@layers=0", "layers must be an integer >= 1"),
        ("ffn@lyer=3", "did you mean 'layer'"),
        ("ffn@layer=1@layer=2", "expected <family>"),
    ],
)
def test_bad_scopes(text: str, needle: str) -> None:
    with pytest.raises(UsageError, match=needle) as info:
        parse_scope(text)
    assert "\n" not in str(info.value)


def test_with_layer_count_makes_last_concrete() -> None:
    assert parse_scope("ffn@layer=last").with_layer_count(32) == Scope("ffn", layer=31)
    assert parse_scope("ffn@layers=3").with_layer_count(32) == Scope("ffn", first_layers=3)


# --- resolution --------------------------------------------------------------------------


LLAMA_FFN = ["gate_proj", "up_proj", "down_proj"]
LLAMA_ATTN = ["q_proj", "k_proj", "v_proj", "o_proj"]


@pytest.mark.parametrize("arch", ["llama", "qwen2"])
def test_llama_like_families(arch: str) -> None:
    model = tiny_model(arch)
    ffn = names(resolve_scope(model, parse_scope("ffn")))
    attn = names(resolve_scope(model, parse_scope("attn")))
    assert ffn == [f"model.layers.{i}.mlp.{p}.weight" for i in range(2) for p in LLAMA_FFN]
    assert attn == [f"model.layers.{i}.self_attn.{p}.weight" for i in range(2) for p in LLAMA_ATTN]
    every = names(resolve_scope(model, parse_scope("all")))
    assert sorted(every) == sorted(ffn + attn)  # never embeddings, lm_head, norms or biases
    assert all(not t.transposed for t in resolve_scope(model, parse_scope("all")))


def test_layer_selectors() -> None:
    model = tiny_model("llama", layers=3)
    assert {t.layer for t in resolve_scope(model, parse_scope("ffn@layer=1"))} == {1}
    assert {t.layer for t in resolve_scope(model, parse_scope("attn@layers=2"))} == {0, 1}
    assert {t.layer for t in resolve_scope(model, parse_scope("all@layer=last"))} == {2}
    assert {t.layer for t in resolve_scope(model, parse_scope("ffn@layers=9"))} == {0, 1, 2}


def test_gpt2_conv1d_is_transposed() -> None:
    model = tiny_model("gpt2")
    ffn = resolve_scope(model, parse_scope("ffn"))
    attn = resolve_scope(model, parse_scope("attn"))
    assert names(ffn) == [
        f"transformer.h.{i}.mlp.{p}.weight" for i in range(2) for p in ("c_fc", "c_proj")
    ]
    assert names(attn) == [
        f"transformer.h.{i}.attn.{p}.weight" for i in range(2) for p in ("c_attn", "c_proj")
    ]
    c_fc = ffn[0]
    assert c_fc.transposed and tuple(c_fc.param.shape) == (32, 128)  # stored [in, out]
    (matrix,) = c_fc.matrices()
    view = matrix.view()
    assert tuple(view.shape) == (128, 32)  # worked on as [out, in]
    view[5, 3] = 7.0
    assert float(c_fc.param.detach()[3, 5]) == 7.0  # the view writes through to storage


def test_mixtral_experts_are_sliced_and_router_excluded() -> None:
    model = tiny_model("mixtral")
    ffn = resolve_scope(model, parse_scope("ffn"))
    assert names(ffn) == [
        f"model.layers.{i}.mlp.experts.{p}" for i in range(2) for p in ("gate_up_proj", "down_proj")
    ]
    assert not any(".mlp.gate." in n for n in names(resolve_scope(model, parse_scope("all"))))
    gate_up, down = ffn[0].matrices(), ffn[1].matrices()
    assert [m.index for m in gate_up] == [0, 1, 2, 3]
    assert tuple(gate_up[0].view().shape) == (128, 32)  # [2I, H]: used as F.linear weight
    assert tuple(down[2].view().shape) == (32, 64)
    assert down[2].label == "model.layers.0.mlp.experts.down_proj[2]"
    down[2].view()[0, 0] = 3.0
    assert float(ffn[1].param.detach()[2, 0, 0]) == 3.0


def test_scope_matching_nothing_names_scope_and_layer_count() -> None:
    model = tiny_model("llama")
    with pytest.raises(
        UsageError, match=r"'ffn@layer=5'.*2 decoder layers \(0-1\) with attn and ffn"
    ):
        resolve_scope(model, parse_scope("ffn@layer=5"))
    assert layer_count(model) == 2


@pytest.mark.parametrize(
    ("arch", "role", "family", "expected"),
    [
        ("gpt2", "o_proj", "attn", "transformer.h.0.attn.c_proj.weight"),
        ("gpt2", "down_proj", "ffn", "transformer.h.0.mlp.c_proj.weight"),
        ("gpt2", "up_proj", "mlp", "transformer.h.0.mlp.c_fc.weight"),
        ("llama", "o_proj", "attn", "model.layers.0.self_attn.o_proj.weight"),
        ("mixtral", "up_proj", "ffn", "model.layers.0.mlp.experts.gate_up_proj"),
    ],
)
def test_probe_roles(arch: str, role: str, family: str, expected: str) -> None:
    targets = select_targets(
        tiny_model(arch), family=family, layers="0-3", role=role, include_qkv=False
    )
    assert targets[0].name == expected


def test_probe_qkv_excluded_unless_asked() -> None:
    model = tiny_model("llama")
    plain = select_targets(model, family="attn", layers="all", role="any", include_qkv=False)
    assert names(plain) == [f"model.layers.{i}.self_attn.o_proj.weight" for i in range(2)]
    every = select_targets(model, family="attn", layers="0", role="any", include_qkv=True)
    assert len(every) == 4

"""Invariants guard: faults on tiny Llama and GPT-2, judged against the model's own baseline."""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import pytest
import torch

from editproof.edits import apply_edit
from editproof.guards.base import MeasureContext, Signature
from editproof.guards.invariants import InvariantsGuard
from editproof.policy.tiers import load_tier
from editproof.report.model import GuardResult
from tests.models import tiny_model

CTX = MeasureContext(device="cpu", windows=[])
POLICY = load_tier("balanced").guards.invariants.model_dump()
STRICT = {**POLICY, "strict": True}
GUARD = InvariantsGuard()


@pytest.fixture(autouse=True, scope="module")
def _one_thread() -> Iterator[None]:
    # Tiny tensors gain nothing from intra-op threads; on a busy 2-core box they only add
    # OpenMP hand-off latency.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def models() -> dict[str, tuple[Any, Signature]]:
    out = {}
    for arch in ("llama", "gpt2"):
        model = tiny_model(arch)
        out[arch] = (model, GUARD.measure(model, CTX, POLICY))
    return out


def judge(model: Any, base: Signature, spec: str, policy: dict[str, Any] = POLICY) -> GuardResult:
    edit = apply_edit(model, spec)
    try:
        subject = GUARD.measure(model, CTX, policy)
    finally:
        edit.restore()
    return GUARD.compare(base, subject, policy)


EXPECTED = [
    ("noop", "pass"),
    ("nan_injection", "fail"),
    ("inf_injection", "fail"),
    ("shape_mismatch", "fail"),
    ("missing_tensors", "warn"),
    ("weight_tying_break", "warn"),
    ("quant_rtn:4:32:ffn", "pass"),
    ("fp8_quant:e5m2:all", "pass"),
    ("magnitude_prune:0.5:all", "pass"),
    ("lowrank_svd:4:all", "pass"),
    ("scale_explosion", "pass"),  # finite and same structure: the spectral guard's business
]


@pytest.mark.parametrize("arch", ["llama", "gpt2"])
@pytest.mark.parametrize(("spec", "status"), EXPECTED)
def test_fault_statuses(models: dict[str, Any], arch: str, spec: str, status: str) -> None:
    model, base = models[arch]
    result = judge(model, base, spec)
    assert result.status == status, result.violations
    assert result.enforced and result.name == "invariants"
    assert (result.violations == []) == (status == "pass")


@pytest.mark.parametrize("arch", ["llama", "gpt2"])
@pytest.mark.parametrize("spec", ["missing_tensors", "weight_tying_break"])
def test_strict_turns_structural_warnings_into_failures(
    models: dict[str, Any], arch: str, spec: str
) -> None:
    model, base = models[arch]
    assert judge(model, base, spec, STRICT).status == "fail"
    assert judge(model, base, "noop", STRICT).status == "pass"


def test_violation_texts_and_counts(models: dict[str, Any]) -> None:
    model, base = models["llama"]
    nan = judge(model, base, "nan_injection")
    assert nan.violations == ["non_finite: model.layers.0.self_attn.q_proj.weight (1 value)"]
    assert nan.measured["non_finite_tensors"] == 1

    shape = judge(model, base, "shape_mismatch")
    assert "vocab: embedding rows 320 -> 328" in shape.violations
    assert "vocab: lm_head rows 320 -> 328" in shape.violations
    assert "vocab: config vocab_size 320 -> 328" in shape.violations
    assert shape.measured["shape_changes"] == 2  # embed_tokens and lm_head (tied) rows

    dropped = judge(model, base, "missing_tensors")
    assert dropped.measured["missing_tensors"] == 9  # 7 matrices + 2 norms of layer 1
    assert dropped.measured["layer_count_delta"] == -1
    assert dropped.measured["structure_changed"] == 1
    assert "layers: 2 -> 1" in dropped.violations

    untied = judge(model, base, "weight_tying_break")
    assert untied.violations[-1] == "tying: lm_head.weight = model.embed_tokens.weight broken"
    assert untied.measured["tying_changes"] == 1


def test_counts_several_values_and_buffers(models: dict[str, Any]) -> None:
    model, base = models["llama"]
    weight = model.model.layers[1].mlp.up_proj.weight
    buffer = model.model.rotary_emb.inv_freq
    saved_w, saved_b = weight.detach().clone(), buffer.clone()
    try:
        with torch.no_grad():
            weight[0, :3] = math.nan
            buffer[0] = math.inf
        result = GUARD.compare(base, GUARD.measure(model, CTX, POLICY), POLICY)
    finally:
        with torch.no_grad():
            weight.copy_(saved_w)
            buffer.copy_(saved_b)
    assert result.status == "fail"
    assert "non_finite: model.layers.1.mlp.up_proj.weight (3 values)" in result.violations
    assert "non_finite: model.rotary_emb.inv_freq (1 value)" in result.violations
    assert result.measured["non_finite_values"] == 4


def test_overflowing_sum_is_not_a_non_finite_value(models: dict[str, Any]) -> None:
    # The fast path sums each tensor; a finite tensor whose sum overflows must still pass.
    model, base = models["llama"]
    weight = model.model.layers[0].mlp.down_proj.weight
    saved = weight.detach().clone()
    try:
        with torch.no_grad():
            weight[0, :2] = 3e38
        result = GUARD.compare(base, GUARD.measure(model, CTX, POLICY), POLICY)
    finally:
        with torch.no_grad():
            weight.copy_(saved)
    assert result.status == "pass" and result.measured["non_finite_tensors"] == 0


def test_signature_round_trips_through_json(models: dict[str, Any]) -> None:
    model, base = models["gpt2"]
    again = Signature.model_validate_json(base.model_dump_json())
    assert GUARD.compare(again, GUARD.measure(model, CTX, POLICY), POLICY).status == "pass"
    data = base.data
    assert data["tying"] == [["lm_head.weight", "transformer.wte.weight"]]
    assert data["layers"] == 2 and len(data["layer_norms"]) == 5
    assert data["vocab"] == {"embedding_rows": 320, "lm_head_rows": 320, "config_vocab_size": 320}
    assert data["tensors"]["transformer.h.0.attn.c_attn.weight"] == {
        "shape": [32, 96],
        "dtype": "float32",
    }


def test_contract_mismatch_fails(models: dict[str, Any]) -> None:
    _, base = models["llama"]
    other = base.model_copy(update={"contract": {**base.contract, "version": 2}})
    result = GUARD.compare(base, other, POLICY)
    assert result.status == "fail"
    assert "measurement contract differs" in result.violations[0]

from __future__ import annotations

import json
import math
from typing import Any

import pytest

torch = pytest.importorskip("torch")

from editproof.edits import apply_edit  # noqa: E402
from editproof.guards._branches import pick_evenly  # noqa: E402
from editproof.guards.base import MeasureContext, Signature  # noqa: E402
from editproof.guards.rmt import RmtGuard  # noqa: E402
from editproof.policy.guards import RmtPolicy  # noqa: E402
from tests.models import VOCAB, tiny_model  # noqa: E402

# The reference construction (a random direction): only the edited ffn family moves.
STRONG = "rmt_norm_noise:blend=1.0,row_frac=0.5,preserve_row_norms=0,align=random"
POLICY = RmtPolicy(
    epsilon={"attn": 0.08, "ffn": 0.1, "embed": 0.12, "other": 0.12},
    module_epsilon=0.25,
    windows=8,
    power_iters=10,
)


def make_ctx(n: int = 12, length: int = 32, seed: int = 0) -> MeasureContext:
    gen = torch.Generator().manual_seed(seed)
    windows = torch.randint(0, VOCAB, (n, length), generator=gen).tolist()
    return MeasureContext(device="cpu", windows=windows, seed=0, batch_size=4)


@pytest.fixture(scope="module", params=["llama", "gpt2"])
def arm(request: pytest.FixtureRequest) -> tuple[Any, MeasureContext, Signature]:
    model = tiny_model(request.param)
    ctx = make_ctx()
    return model, ctx, RmtGuard().measure(model, ctx, POLICY)


def test_noop_passes_with_zero_delta(arm: tuple[Any, MeasureContext, Signature]) -> None:
    model, ctx, base = arm
    subject = RmtGuard().measure(model, ctx, POLICY)
    assert subject.data == base.data  # deterministic, bit for bit
    result = RmtGuard().compare(base, subject, POLICY)
    assert result.status == "pass" and result.enforced and not result.violations
    assert result.measured["max_delta"] == 0.0 and result.measured["stable"] == 1.0
    assert set(result.details["families"]) == {"attn", "ffn", "embed"}
    assert all(f["delta"] == 0.0 for f in result.details["families"].values())
    assert result.thresholds["epsilon_ffn"] == 0.1


def test_norm_noise_probe_raises_ffn_edge_risk(arm: tuple[Any, MeasureContext, Signature]) -> None:
    model, ctx, base = arm
    handle = apply_edit(model, STRONG)
    try:
        subject = RmtGuard().measure(model, ctx, POLICY)
    finally:
        handle.restore()
    loose_policy = POLICY.model_copy(update={"epsilon": {"ffn": 10.0}, "module_epsilon": 100.0})
    loose = RmtGuard().compare(base, subject, loose_policy)
    ffn = loose.details["families"]["ffn"]
    assert ffn["delta"] > 0.05 and loose.status == "pass"
    tight = RmtGuard().compare(base, subject, POLICY.model_copy(update={"epsilon": {"ffn": 0.01}}))
    assert tight.status == "fail" and tight.measured["stable"] == 0.0
    assert any(v.startswith("ffn:") for v in tight.violations)
    top = tight.details["top_modules"][0]
    assert top["family"] == "ffn" and top["delta"] > 0  # the probe edits up_proj of layers 0-3
    # The edit is restored: the baseline's numbers come back exactly.
    assert RmtGuard().measure(model, ctx, POLICY).data == base.data


def test_sample_is_evenly_spaced_and_pinned_in_the_contract() -> None:
    assert pick_evenly(20, 8) == [0, 3, 5, 8, 11, 14, 16, 19]
    assert pick_evenly(3, 8) == [0, 1, 2] and pick_evenly(5, 1) == [0]
    model = tiny_model("llama")
    ctx = make_ctx(n=20)
    sig = RmtGuard().measure(model, ctx, POLICY)
    assert sig.contract["sampling"]["indices"] == [0, 3, 5, 8, 11, 14, 16, 19]
    json.dumps(sig.model_dump(mode="json"), allow_nan=False)
    # Same indices but other tokens: refused, not compared.
    other = RmtGuard().measure(model, make_ctx(n=20, seed=1), POLICY)
    result = RmtGuard().compare(sig, other, POLICY.model_dump())
    assert result.status == "fail" and "contract" in result.violations[0]


def test_ragged_windows_and_batch_size_do_not_matter() -> None:
    model = tiny_model("llama")
    gen = torch.Generator().manual_seed(2)
    windows = [torch.randint(0, VOCAB, (n,), generator=gen).tolist() for n in (20, 32, 9, 32)]
    one = RmtGuard().measure(
        model, MeasureContext(device="cpu", windows=windows, batch_size=1), POLICY
    )
    four = RmtGuard().measure(
        model, MeasureContext(device="cpu", windows=windows, batch_size=4), POLICY
    )
    for name, info in one.data["modules"].items():
        assert math.isclose(
            info["edge_risk"], four.data["modules"][name]["edge_risk"], rel_tol=1e-4
        )


def test_non_finite_subject_fails() -> None:
    base = Signature(
        guard="rmt", contract={"k": 1}, data={"families": {"ffn": 1.2, "attn": 0.0}, "modules": {}}
    )
    subject = Signature(
        guard="rmt", contract={"k": 1}, data={"families": {"ffn": None, "attn": 0.5}, "modules": {}}
    )
    result = RmtGuard().compare(base, subject, POLICY)
    assert result.status == "fail" and result.violations[0].startswith("ffn:")
    assert "edge_risk_ffn_subject" not in result.measured  # strict JSON: no NaN stored
    assert "delta" not in result.details["families"]["attn"]  # base 0: nothing to scale by


def test_module_rule_catches_a_targeted_module() -> None:
    """A big rise in one module fails even when its family maximum barely moves."""
    from editproof.guards.base import Signature

    def sig(risks: dict[str, float]) -> Signature:
        modules = {n: {"edge_risk": r, "family": "ffn", "layer": 0} for n, r in risks.items()}
        return Signature(
            guard="rmt",
            contract={"v": 1},
            data={"families": {"ffn": max(risks.values())}, "modules": modules},
        )

    guard = RmtGuard()
    base = sig({"a": 10.0, "b": 2.0})
    targeted = sig({"a": 10.0, "b": 3.0})  # b +50 %, family max unchanged
    result = guard.compare(base, targeted, POLICY)
    assert result.status == "fail" and result.measured["max_delta"] == 0.0
    assert result.measured["max_module_delta"] == 0.5
    assert any(v.startswith("b: edge risk +50.00%") for v in result.violations)
    mild = guard.compare(base, sig({"a": 10.0, "b": 2.2}), POLICY)  # +10 % < 25 %
    assert mild.status == "pass"


def test_noop_reuses_the_baseline_signature(arm: tuple[Any, MeasureContext, Signature]) -> None:
    model, ctx, base = arm
    noop = ctx.model_copy(update={"touched": frozenset(), "baseline": {"rmt": base}})
    again = RmtGuard().measure(model, noop, POLICY)
    assert again.data == base.data and again.contract == base.contract
    # Another contract (other windows): never copied.
    other = make_ctx(seed=3).model_copy(update={"touched": frozenset(), "baseline": {"rmt": base}})
    assert RmtGuard().measure(model, other, POLICY).contract != base.contract

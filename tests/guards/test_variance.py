from __future__ import annotations

import json
from typing import Any

import pytest

torch = pytest.importorskip("torch")

import editproof.guards.variance as variance_mod  # noqa: E402
from editproof.edits import applied, apply_edit  # noqa: E402
from editproof.guards._branches import pick_evenly  # noqa: E402
from editproof.guards.base import MeasureContext, Signature  # noqa: E402
from editproof.guards.variance import VarianceGuard, ab_decision, propose_scales  # noqa: E402
from editproof.policy.guards import VariancePolicy  # noqa: E402
from editproof.policy.tiers import load_tier  # noqa: E402
from tests.models import VOCAB, tiny_model  # noqa: E402

POLICY = VariancePolicy(
    windows=8,
    min_effect=0.0,
    clamp=(0.85, 1.12),
    deadband=0.02,
    max_adjusted_modules=0,
    replicates=200,
    alpha=0.05,
)


def make_ctx() -> MeasureContext:
    gen = torch.Generator().manual_seed(0)
    windows = torch.randint(0, VOCAB, (12, 32), generator=gen).tolist()
    return MeasureContext(device="cpu", windows=windows, seed=0, batch_size=4)


@pytest.fixture(scope="module", params=["llama", "gpt2"])
def arm(request: pytest.FixtureRequest) -> tuple[Any, MeasureContext, Signature]:
    model = tiny_model(request.param)
    ctx = make_ctx()
    return model, ctx, VarianceGuard().measure(model, ctx, POLICY)


def state(model: Any) -> dict[str, Any]:
    return {k: v.clone() for k, v in model.state_dict().items()}


def assert_same(model: Any, before: dict[str, Any]) -> None:
    after = model.state_dict()
    assert after.keys() == before.keys()
    assert all(torch.equal(after[k], before[k]) for k in before)
    assert not any(m._forward_hooks for m in model.modules())


def test_noop_proposes_nothing(arm: tuple[Any, MeasureContext, Signature]) -> None:
    model, ctx, base = arm
    # Evenly spaced over the 12 windows: the RMT guard's sample, so the two share a pass.
    assert base.contract["calibration"]["indices"] == pick_evenly(12, 8)
    assert len(base.data["branches"]) == 4  # 2 layers x (attn, mlp)
    result = VarianceGuard().compare(base, VarianceGuard().measure(model, ctx, POLICY), POLICY)
    assert result.status == "pass" and not result.enforced
    assert result.measured["proposed_scales"] == 0.0 and result.details["proposals"] == {}
    ab = VarianceGuard().ab_test(model, ctx, {}, POLICY)
    assert ab["reason"] == "no_scales" and not ab["would_enable"]


def test_scale_skew_probe_gets_one_proposal_and_ab(
    arm: tuple[Any, MeasureContext, Signature],
) -> None:
    model, ctx, base = arm
    guard = VarianceGuard()
    handle = apply_edit(model, "ve_mlp_scale_skew")
    try:
        subject = guard.measure(model, ctx, POLICY)
        result = guard.compare(base, subject, POLICY)
        proposals = result.details["proposals"]
        assert list(proposals) == [f"{_layers(model)}.0.mlp"]
        assert proposals[f"{_layers(model)}.0.mlp"] == pytest.approx(1 / 0.9, rel=1e-4)
        before = state(model)
        ab = guard.ab_test(model, ctx, proposals, POLICY)
        assert_same(model, before)
    finally:
        handle.restore()
    assert ab["ok"] and ab["reason"] in (
        "ci_gain_met",
        "ci_contains_zero",
        "gain_below_threshold",
        "regression_detected",
    )
    assert ab["ppl_a"] != ab["ppl_b"]  # the scales did act during B
    assert ab["ci_low"] <= ab["mean_delta"] <= ab["ci_high"] and ab["ci_alpha"] == 0.1
    final = guard.with_ab(result, ab)
    assert final.status == "pass" and not final.enforced
    assert set(final.measured) >= {"proposed_scales", "gain", "ci_low", "ci_high", "would_enable"}
    assert final.measured["gain"] == pytest.approx(-ab["mean_delta"])
    json.dumps(final.model_dump(mode="json"), allow_nan=False)


def _layers(model: Any) -> str:
    return "model.layers" if hasattr(model, "model") else "transformer.h"


def test_clamp_deadband_and_cap() -> None:
    base = {"a": 4.0, "b": 1.0, "c": 1.0, "d": 1.0, "e": None, "f": 1.0, "g": 2.0}
    subj = {"a": 1.0, "b": 4.0, "c": 1.01, "d": 0.9, "e": 1.0, "f": 0.0, "g": float("nan")}
    got = propose_scales(base, subj, POLICY)
    # a: sqrt(4) -> clamp 1.12; b: 0.5 -> 0.85; c: 1.005 inside the deadband; d: 1.054.
    assert got == {"b": 0.85, "a": 1.12, "d": pytest.approx((1 / 0.9) ** 0.5)}
    assert list(got) == ["b", "a", "d"]  # largest |alpha - 1| first
    capped = propose_scales(base, subj, POLICY.model_copy(update={"max_adjusted_modules": 1}))
    assert capped == {"b": 0.85}
    wide = propose_scales(base, subj, POLICY.model_copy(update={"deadband": 0.1}))
    assert set(wide) == {"a", "b"}


def test_ab_decision() -> None:
    assert ab_decision(-0.02, -0.01, 0.015, 0.0) == (True, "ci_gain_met")
    assert ab_decision(-0.02, -0.01, 0.015, 0.05) == (False, "gain_below_threshold")
    assert ab_decision(-0.02, 0.01, 0.005, 0.0) == (False, "ci_contains_zero")
    assert ab_decision(0.01, 0.02, -0.015, 0.0) == (False, "regression_detected")


class Boom(Exception):
    pass


def test_model_unchanged_when_ab_raises(monkeypatch: pytest.MonkeyPatch) -> None:
    model = tiny_model("llama")
    ctx = make_ctx()
    before = state(model)
    real = variance_mod.measure_nll
    calls = {"n": 0}

    def flaky(exc: Exception) -> Any:
        def measure(*args: Any, **kwargs: Any) -> Any:
            calls["n"] += 1
            if calls["n"] % 2 == 0:  # the B arm: scaling hooks are live right now
                assert any(m._forward_hooks for m in model.modules())
                raise exc
            return real(*args, **kwargs)

        return measure

    proposals = {"model.layers.1.mlp": 1.1, "model.layers.0.self_attn": 0.9}
    monkeypatch.setattr(variance_mod, "measure_nll", flaky(RuntimeError("device lost")))
    ab = VarianceGuard().ab_test(model, ctx, proposals, POLICY)
    assert not ab["ok"] and "device lost" in ab["error"]
    assert_same(model, before)
    base = Signature(guard="variance", contract={"calibration": {}}, data={"branches": {}})
    warned = VarianceGuard().with_ab(VarianceGuard().compare(base, base, POLICY), ab)
    assert warned.status == "warn" and "device lost" in warned.violations[0]
    # An unexpected exception propagates, and still leaves no hook behind.
    monkeypatch.setattr(variance_mod, "measure_nll", flaky(Boom("bug")))
    with pytest.raises(Boom):
        VarianceGuard().ab_test(model, ctx, proposals, POLICY)
    assert_same(model, before)
    # Unknown branch names are an A/B failure, not a crash.
    monkeypatch.setattr(variance_mod, "measure_nll", real)
    bad = VarianceGuard().ab_test(model, ctx, {"nope.mlp": 1.1}, POLICY)
    assert not bad["ok"] and "nope.mlp" in bad["error"]
    assert_same(model, before)


def test_contract_mismatch_only_warns(arm: tuple[Any, MeasureContext, Signature]) -> None:
    model, ctx, base = arm
    other = VarianceGuard().measure(model, ctx, POLICY.model_copy(update={"windows": 4}))
    result = VarianceGuard().compare(base, other, POLICY)
    assert result.status == "warn" and not result.enforced and "contract" in result.violations[0]


# --- the typical token's energy, the tier's deadband, reuse -----------------------------------


BALANCED = load_tier("balanced").guards.variance


def test_scaled_down_proj_is_proposed_under_the_balanced_tier() -> None:
    model = tiny_model("llama")
    ctx = make_ctx()
    guard = VarianceGuard()
    base = guard.measure(model, ctx, BALANCED)
    with applied(model, "ve_mlp_scale_skew:factor=0.9"):
        result = guard.compare(base, guard.measure(model, ctx, BALANCED), BALANCED)
    # The branch output is exactly 0.9 x: its typical token's energy drops to 0.81 x.
    assert result.details["proposals"] == {"model.layers.0.mlp": pytest.approx(1 / 0.9, rel=1e-5)}
    assert result.measured["proposed_scales"] == 1.0
    # (fp32 energies: the deviation is 1/0.9 - 1 to within the proposal's own tolerance)
    assert result.measured["max_scale_deviation"] == pytest.approx(1 / 0.9 - 1, rel=1e-5)
    assert BALANCED.deadband < 1 / 0.9 - 1
    # Milder than the deadband: nothing proposed, but the deviation is still reported.
    with applied(model, "ve_mlp_scale_skew:factor=0.97"):
        mild = guard.compare(base, guard.measure(model, ctx, BALANCED), BALANCED)
    assert mild.measured["proposed_scales"] == 0.0
    assert 0 < mild.measured["max_scale_deviation"] < BALANCED.deadband


def test_proposals_use_the_median_not_the_mean() -> None:
    contract: dict[str, Any] = {"calibration": {}}

    def signature(mean_sq: float, median_sq: float) -> Signature:
        branch = {"family": "ffn", "layer": 0, "mean_sq": mean_sq, "median_sq": median_sq}
        return Signature(guard="variance", contract=contract, data={"branches": {"b": branch}})

    # One sink token moved the mean by 40 %; the typical token did not move.
    result = VarianceGuard().compare(signature(10.0, 1.0), signature(14.0, 1.0), POLICY)
    assert result.details["proposals"] == {}
    moved = VarianceGuard().compare(signature(10.0, 1.0), signature(10.0, 0.81), POLICY)
    assert moved.details["proposals"] == {"b": pytest.approx(1 / 0.9)}


def test_measure_records_median_and_mean(arm: tuple[Any, MeasureContext, Signature]) -> None:
    _model, _ctx, base = arm
    for branch in base.data["branches"].values():
        assert branch["median_sq"] > 0 and branch["mean_sq"] > 0
    assert base.contract["version"] == 3


def test_ab_reuses_the_measured_arm_a() -> None:
    from editproof.measure.nll import measure_nll

    model = tiny_model("llama")
    ctx = make_ctx()
    proposals = {"model.layers.0.mlp": 1.1}
    fresh = VarianceGuard().ab_test(model, ctx, proposals, POLICY)
    assert fresh["a_reused"] is False
    nll = measure_nll(model, ctx.windows, batch_size=ctx.batch_size, device="cpu")
    reused = VarianceGuard().ab_test(
        model, ctx.model_copy(update={"subject_nll": nll}), proposals, POLICY
    )
    assert reused["a_reused"] is True
    for key in ("ppl_a", "ppl_b", "mean_delta", "ci_low", "ci_high"):
        assert reused[key] == pytest.approx(fresh[key], rel=1e-6, abs=1e-9), key
    assert reused["would_enable"] == fresh["would_enable"]


def test_noop_reuses_the_baseline_signature(arm: tuple[Any, MeasureContext, Signature]) -> None:
    model, ctx, base = arm
    noop = ctx.model_copy(update={"touched": frozenset(), "baseline": {"variance": base}})
    with applied(model, "nan_injection") as record:
        # A touched parameter: measured again (and different), never copied.
        touched = ctx.model_copy(
            update={"touched": frozenset(record.tensors), "baseline": {"variance": base}}
        )
        assert VarianceGuard().measure(model, touched, POLICY).data != base.data
    assert VarianceGuard().measure(model, noop, POLICY).data == base.data


@pytest.mark.parametrize("chunk", [1, variance_mod._QUANTILE_ELEMENTS])
def test_energy_stats_select_valid_tokens_once_for_all_branches(
    monkeypatch: pytest.MonkeyPatch, chunk: int
) -> None:
    """Stacked over branches (in chunks of any size) the statistics are those of each
    branch's valid tokens on their own, padding (huge values) left out; a branch that saw
    other batches is measured on its own."""
    monkeypatch.setattr(variance_mod, "_QUANTILE_ELEMENTS", chunk)
    gen = torch.Generator().manual_seed(4)
    masks = [torch.ones(3, 10, dtype=torch.bool), torch.ones(2, 7, dtype=torch.bool)]
    masks[0][1, 6:] = False
    per_token: dict[str, list[tuple[Any, Any]]] = {}
    for name in ("a", "b", "c"):
        batches = []
        for mask in masks:
            energy = torch.rand(mask.shape, generator=gen)
            energy[~mask] = 1e6
            batches.append((energy, mask))
        per_token[name] = batches
    per_token["lone"] = per_token["a"][:1]  # one batch only
    got = variance_mod.energy_stats(per_token)
    assert got.keys() == per_token.keys()
    for name, batches in per_token.items():
        tokens = torch.cat([e[m] for e, m in batches]).double()
        mean, median = got[name]
        assert mean == pytest.approx(float(tokens.mean()), rel=1e-12)
        assert median == float(tokens.quantile(0.5))

from __future__ import annotations

from typing import Any

import pytest

torch = pytest.importorskip("torch")

import editproof.guards._activations as activations  # noqa: E402
from editproof.edits import apply_edit  # noqa: E402
from editproof.guards._activations import ActivationTap, run_taps  # noqa: E402
from editproof.guards.base import MeasureContext, Signature  # noqa: E402
from editproof.guards.chain import judge_all, measure_all  # noqa: E402
from editproof.guards.rmt import RmtGuard  # noqa: E402
from editproof.guards.variance import VarianceGuard  # noqa: E402
from editproof.policy.tiers import load_tier  # noqa: E402
from tests.models import VOCAB, tiny_model  # noqa: E402

POLICIES = load_tier("balanced").guards


def make_ctx(n: int = 12, **extra: Any) -> MeasureContext:
    gen = torch.Generator().manual_seed(0)
    windows = torch.randint(0, VOCAB, (n, 32), generator=gen).tolist()
    return MeasureContext(device="cpu", windows=windows, seed=0, batch_size=4, **extra)


@pytest.fixture
def passes(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The number of windows of every activation pass run_taps starts."""
    seen: list[int] = []
    real = activations.run_windows

    def counting(model: Any, windows: Any, **kwargs: Any) -> None:
        seen.append(len(windows))
        real(model, windows, **kwargs)

    monkeypatch.setattr(activations, "run_windows", counting)
    return seen


def policy(name: str, **update: Any) -> dict[str, Any]:
    out: dict[str, Any] = getattr(POLICIES, name).model_dump(mode="json")
    return {**out, **update}


@pytest.mark.parametrize("arch", ["llama", "gpt2"])
def test_shared_pass_gives_the_numbers_of_separate_passes(arch: str, passes: list[int]) -> None:
    model = tiny_model(arch)
    ctx = make_ctx()
    alone = {
        "rmt": RmtGuard().measure(model, ctx, policy("rmt")),
        "variance": VarianceGuard().measure(model, ctx, policy("variance")),
    }
    assert passes == [8, 8]
    shared = measure_all(model, ctx, POLICIES)
    assert passes == [8, 8, 8]  # both guards, one pass
    for name, signature in alone.items():
        assert shared[name].data == signature.data
        assert shared[name].contract_digest == signature.contract_digest
    assert list(shared) == ["invariants", "spectral", "rmt", "variance"]
    assert not any(m._forward_hooks for m in model.modules())


def test_different_samples_get_a_pass_each(passes: list[int]) -> None:
    model = tiny_model("llama")
    ctx = make_ctx()
    taps = [
        RmtGuard().tap(model, ctx, policy("rmt")),
        VarianceGuard().tap(model, ctx, policy("variance", windows=5)),
    ]
    assert all(isinstance(t, ActivationTap) for t in taps)
    got = run_taps(model, ctx, [t for t in taps if isinstance(t, ActivationTap)])
    assert sorted(passes) == [5, 8]
    assert [s.guard for s in got] == ["rmt", "variance"]
    alone = VarianceGuard().measure(model, ctx, policy("variance", windows=5))
    assert got[1].data == alone.data


def test_judging_a_subject_runs_one_activation_pass(passes: list[int]) -> None:
    model = tiny_model("llama")
    ctx = make_ctx()
    baseline = measure_all(model, ctx, POLICIES)
    passes.clear()
    handle = apply_edit(model, "quant_rtn:4:8:all")
    try:
        section = judge_all(model, ctx, POLICIES, baseline)
    finally:
        handle.restore()
    # (The variance A/B test, when it runs, measures NLL with scales on: not an activation
    # pass, and not shareable.)
    assert passes == [8]
    assert all(r.seconds > 0 for r in section.results)


def test_an_unchanged_subject_runs_no_pass(passes: list[int]) -> None:
    model = tiny_model("llama")
    ctx = make_ctx()
    baseline = measure_all(model, ctx, POLICIES)
    passes.clear()
    same = make_ctx(touched=frozenset(), baseline=baseline)
    got = measure_all(model, same, POLICIES)
    assert passes == []
    assert got["rmt"].data == baseline["rmt"].data
    assert got["variance"].data == baseline["variance"].data


def test_hooks_are_removed_when_a_tap_raises() -> None:
    model = tiny_model("llama")
    ctx = make_ctx()
    good = RmtGuard().tap(model, ctx, policy("rmt"))
    assert isinstance(good, ActivationTap)

    def boom(*_: Any) -> None:
        raise RuntimeError("tap failed")

    bad = ActivationTap(
        guard="bad",
        indices=good.indices,
        branches=good.branches[:1],
        on_output=boom,
        finish=lambda: Signature(guard="bad", contract={}),
        started=0.0,
    )
    with pytest.raises(RuntimeError, match="tap failed"):
        run_taps(model, ctx, [good, bad])
    assert not any(m._forward_hooks for m in model.modules())


def test_seconds_are_each_guards_own_plus_its_share() -> None:
    model = tiny_model("llama")
    ctx = make_ctx()
    taps = [
        RmtGuard().tap(model, ctx, policy("rmt")),
        VarianceGuard().tap(model, ctx, policy("variance")),
    ]
    got = run_taps(model, ctx, [t for t in taps if isinstance(t, ActivationTap)])
    for tap, signature in zip(taps, got, strict=True):
        assert isinstance(tap, ActivationTap)
        assert signature.seconds > tap.prepared

"""The RMT guard's estimator: every route gives the same power iterates (to rounding)."""

from __future__ import annotations

import math
from typing import Any

import pytest

torch = pytest.importorskip("torch")

import editproof.guards._edge_risk as er  # noqa: E402
from editproof.guards._edge_risk import (  # noqa: E402
    EdgeRiskSums,
    batched_top_singular,
    top_singular_value,
    window_edge_risk,
)
from editproof.guards.base import MeasureContext  # noqa: E402
from editproof.guards.rmt import RmtGuard  # noqa: E402
from editproof.policy.guards import RmtPolicy  # noqa: E402
from tests.models import VOCAB, tiny_model  # noqa: E402
from tests.spectra import with_spectrum  # noqa: E402

POLICY = RmtPolicy(
    epsilon={"attn": 0.08, "ffn": 0.1, "embed": 0.12, "other": 0.12},
    module_epsilon=0.25,
    windows=8,
    power_iters=10,
)


def activations(seed: int, b: int = 3, t: int = 40, d: int = 96) -> tuple[Any, Any]:
    """Activations with structure (feature scales, a shift, an attention-sink row) and a
    mask with one shorter, right-padded window whose padding holds large values."""
    gen = torch.Generator().manual_seed(seed)
    act = torch.randn(b, t, d, generator=gen) * torch.rand(d, generator=gen) * 4 + 0.5
    act[:, 0] *= 30
    mask = torch.ones(b, t, dtype=torch.bool)
    mask[1, t - 7 :] = False
    act[1, t - 7 :] = 1e3
    return act, mask


def test_power_iteration_matches_matrix_norm() -> None:
    s = torch.linspace(1.0, 0.1, 40)
    s[0] = 7.0
    matrix = with_spectrum(300, 40, s, torch.Generator().manual_seed(3))
    exact = float(torch.linalg.matrix_norm(matrix, ord=2))
    assert math.isclose(top_singular_value(matrix, iters=20, seed=0), exact, rel_tol=1e-3)
    # Never above the true value: power iteration approaches sigma_max from below.
    assert top_singular_value(matrix, iters=1, seed=1) <= exact * (1 + 1e-6)


def test_noise_edge_risk_is_near_one_and_padding_is_ignored() -> None:
    gen = torch.Generator().manual_seed(5)
    act = torch.randn(1, 400, 50, generator=gen) * 3.0 + 2.0  # scale/shift: standardized away
    risk, tokens = window_edge_risk(act, torch.ones(1, 400, dtype=torch.bool), 50, 0)
    assert tokens.tolist() == [400.0] and 0.9 < float(risk[0]) < 1.1
    padded = torch.cat([act, torch.full((1, 37, 50), 1e3)], dim=1)
    mask = torch.cat([torch.ones(1, 400), torch.zeros(1, 37)], dim=1).bool()
    risk_padded, _ = window_edge_risk(padded, mask, 50, 0)
    assert torch.allclose(risk_padded, risk, rtol=1e-5)


def _direct_edge_risk(act: Any, mask: Any, iters: int, seed: int) -> Any:
    """The reference computation: standardize, then power iteration on Z itself."""
    a, m = act.float(), mask.float().unsqueeze(-1)
    d = a.shape[-1]
    tokens = mask.sum(dim=1).float()
    count = tokens * d
    mean = (a * m).sum(dim=(1, 2)) / count
    var = ((a - mean[:, None, None]) ** 2 * m).sum(dim=(1, 2)) / count
    z = (a - mean[:, None, None]) / var.sqrt()[:, None, None] * m
    return batched_top_singular(z, iters, seed) / (tokens.sqrt() + math.sqrt(d))


def test_token_space_iteration_matches_the_direct_one(monkeypatch: pytest.MonkeyPatch) -> None:
    gen = torch.Generator().manual_seed(9)
    act = torch.randn(3, 40, 96, generator=gen) * torch.rand(96, generator=gen) * 4 + 0.5
    act[:, 0] *= 30  # an attention-sink row, as real activations have
    mask = torch.ones(3, 40, dtype=torch.bool)
    mask[1, 33:] = False  # a shorter window, right-padded
    for iters in (1, 10):
        risk, _ = window_edge_risk(act, mask, iters, 4)  # CPU, T small: token space
        assert torch.allclose(risk, _direct_edge_risk(act, mask, iters, 4), rtol=1e-4)
        monkeypatch.setattr(er, "_GRAM_MAX_FACTOR", 0)  # the feature-space path
        direct, _ = window_edge_risk(act, mask, iters, 4)
        monkeypatch.undo()
        assert torch.allclose(risk, direct, rtol=1e-4)


@pytest.fixture
def batched_on_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    """The batched token-space route (CUDA's) taken on the CPU, in fp32."""
    monkeypatch.setattr(er, "BATCHED_DEVICES", frozenset({"cpu"}))


@pytest.mark.parametrize("kind", ["sink", "shifted"])
def test_batched_route_matches_the_direct_one(batched_on_cpu: None, kind: str) -> None:
    act, mask = activations(11)
    if kind == "shifted":  # mean 4x the spread: the folded-in centring carries the result
        act = torch.randn(act.shape, generator=torch.Generator().manual_seed(2)) + 4.0
        act[0, :, :8] += 1.5  # a few correlated features: a direction to find
    for iters in (1, 10):
        sums = EdgeRiskSums(iters, 4)
        sums.add("a", act, mask)
        got, weights = sums.totals()
        direct = _direct_edge_risk(act, mask, iters, 4)
        tokens = mask.sum(dim=1).float()
        assert weights == {"a": float(tokens.sum())}
        assert math.isclose(got["a"], float((direct * tokens).sum()), rel_tol=1e-4)


def test_batched_route_groups_branches_and_flushes_per_batch_and_budget(
    batched_on_cpu: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Several branches (two widths), two batches (two masks): the grouped sums equal the
    per-branch feature-space ones, whatever the budget that splits the groups."""
    batches = [activations(20 + i, d=d) for i in range(2) for d in (96, 160)]
    expected: dict[str, float] = {}
    for i, (act, mask) in enumerate(batches):
        risk, tokens = window_edge_risk(act, mask, 10, 2)
        name = f"b{i % 2}"
        expected[name] = expected.get(name, 0.0) + float((risk * tokens).sum())
    for budget in (1, 1 << 30):
        monkeypatch.setattr(er, "PENDING_BYTES", budget)
        sums = EdgeRiskSums(10, 2)
        first, second = batches[0][1], batches[2][1].clone()  # two batches, two mask objects
        for i, (act, _) in enumerate(batches):
            sums.add(f"b{i % 2}", act, first if i < 2 else second)
        got, _ = sums.totals()
        assert got.keys() == expected.keys()
        for name, value in expected.items():
            assert math.isclose(got[name], value, rel_tol=1e-4), (budget, name)


def test_batched_route_constant_and_zero_windows(batched_on_cpu: None) -> None:
    act = torch.zeros(2, 12, 16)
    act[1] = 3.0  # constant: no spread
    sums = EdgeRiskSums(10, 0)
    sums.add("dead", act, torch.ones(2, 12, dtype=torch.bool))
    got, weights = sums.totals()
    assert got == {"dead": 0.0} and weights == {"dead": 24.0}


def test_batched_route_propagates_non_finite_activations(batched_on_cpu: None) -> None:
    act, mask = activations(3)
    act[0, 5, 7] = math.nan
    sums = EdgeRiskSums(10, 0)
    sums.add("x", act, mask)
    got, _ = sums.totals()
    assert math.isnan(got["x"])


def test_half_precision_activations_on_the_cpu_are_read_in_fp32(batched_on_cpu: None) -> None:
    act, mask = activations(8)
    act = act.to(torch.bfloat16)
    assert not er._mixed_precision("cpu")  # no fp32-output half GEMM on the CPU
    sums = EdgeRiskSums(10, 1)
    sums.add("h", act, mask)
    got, _ = sums.totals()
    risk, tokens = window_edge_risk(act, mask, 10, 1)
    assert math.isclose(got["h"], float((risk * tokens).sum()), rel_tol=1e-3)


@pytest.mark.parametrize("budget", [1, er.PENDING_BYTES])
def test_guard_signature_is_the_same_on_either_route(
    monkeypatch: pytest.MonkeyPatch, budget: int
) -> None:
    """Through the guard's hooks (inference mode): with a budget of one branch output the
    last group holds a single product made under inference_mode, flushed after the pass."""
    model = tiny_model("llama")
    gen = torch.Generator().manual_seed(0)
    windows = torch.randint(0, VOCAB, (10, 30), generator=gen).tolist()
    windows[3] = windows[3][:17]  # one short window: a padded batch
    ctx = MeasureContext(device="cpu", windows=windows, seed=0, batch_size=4)
    direct = RmtGuard().measure(model, ctx, POLICY)
    monkeypatch.setattr(er, "BATCHED_DEVICES", frozenset({"cpu"}))
    monkeypatch.setattr(er, "PENDING_BYTES", budget)
    grouped = RmtGuard().measure(model, ctx, POLICY)
    assert grouped.contract == direct.contract
    assert grouped.data["modules"].keys() == direct.data["modules"].keys()
    for name, info in direct.data["modules"].items():
        assert math.isclose(
            grouped.data["modules"][name]["edge_risk"], info["edge_risk"], rel_tol=1e-4
        )


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_batched_route_matches_fp32_feature_space() -> None:
    act, mask = activations(6, b=4, t=256, d=512)
    dev = act.to("cuda", torch.bfloat16)
    sums = EdgeRiskSums(10, 3)
    sums.add("c", dev, mask.cuda())
    got, _ = sums.totals()
    risk, tokens = window_edge_risk(dev.float().cpu(), mask, 10, 3)
    assert math.isclose(got["c"], float((risk * tokens).sum()), rel_tol=2e-3)

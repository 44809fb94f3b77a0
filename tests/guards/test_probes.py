from __future__ import annotations

import json
from typing import Any

import pytest

torch = pytest.importorskip("torch")

from editproof.edits import apply_edit  # noqa: E402
from editproof.guards.base import MeasureContext, Signature  # noqa: E402
from editproof.guards.probes import rmt_probe, ve_probe  # noqa: E402
from editproof.guards.rmt import RmtGuard  # noqa: E402
from editproof.guards.variance import VarianceGuard  # noqa: E402
from editproof.report.model import GuardResult  # noqa: E402
from tests.guards.test_rmt import POLICY as RMT_POLICY  # noqa: E402
from tests.guards.test_rmt import STRONG  # noqa: E402
from tests.guards.test_variance import POLICY as VE_POLICY  # noqa: E402
from tests.models import VOCAB, tiny_model  # noqa: E402


@pytest.fixture(scope="module")
def setup() -> tuple[Any, MeasureContext]:
    gen = torch.Generator().manual_seed(0)
    windows = torch.randint(0, VOCAB, (8, 32), generator=gen).tolist()
    return tiny_model("llama"), MeasureContext(device="cpu", windows=windows, batch_size=8)


def measured(model: Any, ctx: MeasureContext, guard: Any, policy: Any, spec: str) -> Signature:
    handle = apply_edit(model, spec)
    try:
        sig: Signature = guard.measure(model, ctx, policy)
        return sig
    finally:
        handle.restore()


def test_rmt_probe_sidecar(setup: tuple[Any, MeasureContext]) -> None:
    model, ctx = setup
    guard = RmtGuard()
    base = guard.measure(model, ctx, RMT_POLICY)
    subj = measured(model, ctx, guard, RMT_POLICY, STRONG)
    side = rmt_probe(base, subj, guard.compare(base, subj, RMT_POLICY))
    json.dumps(side, allow_nan=False)
    assert side["format"] == "editproof.rmt-probe" and side["schema_version"] == 1
    assert side["stable"] is False and side["families"]["ffn"]["delta"] > 0.1
    # embeddings + 2 layers x (attn, mlp, and the mlp's up_proj expansion)
    assert len(side["modules"]) == 7
    assert side["modules"][0]["family"] == "ffn" and side["modules"][0]["delta"] > 0.1
    noop = rmt_probe(base, base, guard.compare(base, base, RMT_POLICY))
    assert noop["stable"] is True and all(m["delta"] == 0.0 for m in noop["modules"])


def test_ve_probe_sidecar(setup: tuple[Any, MeasureContext]) -> None:
    model, ctx = setup
    guard = VarianceGuard()
    base = guard.measure(model, ctx, VE_POLICY)
    subj = measured(model, ctx, guard, VE_POLICY, "ve_mlp_scale_skew")
    side = ve_probe(base, subj, guard.compare(base, subj, VE_POLICY))
    json.dumps(side, allow_nan=False)
    assert side["format"] == "editproof.ve-probe" and side["schema_version"] == 1
    assert side["signal"] is True and side["proposed_scales"] == 1
    row = next(b for b in side["branches"] if b["branch"] == "model.layers.0.mlp")
    assert row["ratio"] == pytest.approx(0.81, rel=1e-4) and row["proposed_scale"] is not None
    noop = ve_probe(base, base, guard.compare(base, base, VE_POLICY))
    assert noop["signal"] is False and noop["proposed_scales"] == 0


def test_ve_probe_signals_on_would_enable_alone() -> None:
    sig = Signature(guard="variance", contract={}, data={"branches": {}})
    result = GuardResult(
        name="variance",
        status="pass",
        enforced=False,
        details={"proposals": {}, "ab": {"ok": True, "would_enable": True, "gain": 0.01}},
    )
    side = ve_probe(sig, sig, result)
    assert side["signal"] is True and side["ab"] == {"ok": True, "gain": 0.01}

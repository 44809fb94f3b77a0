"""The guard chain's helpers (the chain itself: tests/test_guards_integration.py)."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")


def test_warm_libraries_does_nothing_off_cuda(monkeypatch: pytest.MonkeyPatch) -> None:
    """On the CPU there is nothing to load ahead: no solver runs."""
    from editproof.guards.chain import warm_libraries

    def solver(*args: object) -> None:
        raise AssertionError("eigvalsh ran on the CPU")

    monkeypatch.setattr(torch.linalg, "eigvalsh", solver)
    warm_libraries("cpu")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_warm_libraries_runs_the_guards_kernels_on_cuda() -> None:
    from editproof.guards.chain import warm_libraries

    for dtype in (None, "bfloat16", "float32", "not-a-dtype"):
        warm_libraries("cuda", dtype)
    values = torch.linalg.eigvalsh(torch.eye(3, device="cuda").unsqueeze(0))
    assert values.shape == (1, 3)


@pytest.mark.skipif(
    not torch.cuda.is_available() or torch.cuda.device_count() < 2, reason="needs two GPUs"
)
def test_guards_on_a_model_spread_over_two_gpus_match_one_gpu() -> None:
    """Layers on two GPUs (accelerate's dispatch, as a model larger than one GPU is placed):
    every guard's numbers are those of the same model on one GPU. The activation guards
    batch their work per device and per batch mask, the spectral guard per device."""
    from accelerate import dispatch_model

    from editproof.guards.base import MeasureContext
    from editproof.guards.chain import measure_all
    from editproof.policy.tiers import load_tier
    from tests.models import VOCAB, tiny_model

    gen = torch.Generator().manual_seed(0)
    windows = torch.randint(0, VOCAB, (12, 48), generator=gen).tolist()
    windows[5] = windows[5][:29]  # a padded batch too
    policies = load_tier("balanced").guards

    def signatures(device_map: dict[str, str]) -> dict[str, object]:
        model = tiny_model("llama").to(torch.bfloat16)
        if len(set(device_map.values())) == 1:
            model = model.to("cuda:0")
        else:
            dispatch_model(model, device_map=device_map)
        ctx = MeasureContext(device="cuda:0", windows=windows, seed=0, batch_size=4)
        return {k: s.data for k, s in measure_all(model, ctx, policies).items()}

    one = signatures({"": "cuda:0"})
    two = signatures(
        {
            "model.embed_tokens": "cuda:0",
            "model.rotary_emb": "cuda:0",
            "model.layers.0": "cuda:0",
            "model.layers.1": "cuda:1",
            "model.norm": "cuda:1",
            "lm_head": "cuda:0",
        }
    )
    assert one.keys() == two.keys()
    for guard, data in one.items():
        assert _close(data, two[guard]), guard


def _close(a: object, b: object) -> bool:
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_close(a[k], b[k]) for k in a if k != "device")
    if isinstance(a, float) and isinstance(b, float):
        return abs(a - b) <= 1e-3 * max(abs(a), abs(b), 1e-12)
    return a == b

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

"""CUDA paths: on-device/pinned backups, GPU math, exact bf16 restore (skipped without CUDA)."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from editproof.edits import applied
from editproof.edits.apply import backup_copy
from editproof.edits.weights import fp8_round_trip, low_rank, prune_mask, quantize_rtn
from editproof.lm.anatomy import tied_groups
from editproof.lm.digest import weight_digest
from tests.edits.test_apply import ALL_SPECS
from tests.edits.test_scope import ARCHS, tiny_model

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


def _state(model: Any) -> tuple[str, Any]:
    return weight_digest(model).sha256, tied_groups(model)


@pytest.mark.parametrize("arch", ARCHS)
def test_bf16_on_gpu_restores_exactly(arch: str) -> None:
    model = tiny_model(arch).to("cuda", torch.bfloat16)
    before = _state(model)
    for spec in ALL_SPECS:
        with applied(model, spec), torch.no_grad():
            assert {p.device.type for p in model.parameters()} == {"cuda"}
            assert {p.dtype for p in model.parameters()} == {torch.bfloat16}
            model(torch.arange(8, device="cuda").reshape(1, 8))
        assert _state(model) == before, spec


def test_backup_goes_to_pinned_host_when_gpu_is_full(monkeypatch: pytest.MonkeyPatch) -> None:
    t = torch.randn(64, 64, device="cuda")
    assert backup_copy(t).device.type == "cuda"
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (1024, 1 << 40))
    copy = backup_copy(t)
    assert copy.device.type == "cpu" and copy.is_pinned()
    assert torch.equal(copy, t.cpu())
    model = tiny_model("mixtral").to("cuda")
    before = _state(model)
    with applied(model, "quant_rtn:3:16:all"):
        assert _state(model) != before
    assert _state(model) == before


def test_gpu_math_matches_cpu() -> None:
    w = torch.randn(96, 40)
    g = w.cuda()
    assert torch.allclose(quantize_rtn(g, 4, 16).cpu(), quantize_rtn(w, 4, 16), atol=1e-6)
    for fmt in ("e4m3fn", "e5m2"):
        assert torch.equal(fp8_round_trip(g, fmt).cpu(), fp8_round_trip(w, fmt))
    assert torch.equal(prune_mask(g, 0.3).cpu(), prune_mask(w, 0.3))
    a = (torch.randn(96, 3) @ torch.randn(3, 40)).cuda()
    assert torch.allclose(low_rank(a, 3), a, atol=1e-3)
    torch.cuda.manual_seed(3)
    first = low_rank(g, 4)
    after = torch.rand(4, device="cuda")
    torch.cuda.manual_seed(3)
    assert torch.equal(low_rank(g, 4), first)
    assert torch.equal(torch.rand(4, device="cuda"), after)  # GPU RNG stream untouched


def test_gpu_digest_on_side_streams_sees_writes_queued_before_it() -> None:
    """The digest copies run on a side stream per thread; an in-place write queued on the
    default stream just before the digest is asked for must be in the bytes it hashes,
    and the digest equals the CPU digest of the same weights."""
    model = tiny_model("llama").to("cuda", torch.bfloat16)
    big = torch.randn(4096, 4096, device="cuda")  # keeps the default stream busy
    with torch.no_grad():
        for _ in range(20):
            big = big @ big.T / 4096
        for p in model.parameters():
            p.mul_(2)  # queued behind the matmuls
    on_gpu = weight_digest(model)
    on_cpu = weight_digest(model.to("cpu"))
    assert on_gpu.sha256 == on_cpu.sha256 and on_gpu.tensors == on_cpu.tensors

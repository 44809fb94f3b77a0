"""Math of the numeric edits on small hand-made tensors, and their layout on real models."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from editproof.edits import apply_edit
from editproof.edits.weights import fp8_round_trip, low_rank, prune_mask, quantize_rtn
from tests.edits.test_scope import tiny_model


@pytest.fixture(autouse=True, scope="module")
def _one_thread() -> Iterator[None]:
    # Tiny matrices gain nothing from intra-op threads, and on a busy 2-core box OpenMP
    # hand-offs make each small matmul ~16 ms; one thread keeps the suite fast.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _group_scales(w: torch.Tensor, bits: int, group: int) -> torch.Tensor:
    """Per-element scale, computed the slow obvious way."""
    qmax = 2 ** (bits - 1) - 1
    scales = torch.empty_like(w)
    cols = w.shape[1]
    group = cols if group <= 0 or group >= cols else group
    for r in range(w.shape[0]):
        for c0 in range(0, cols, group):
            g = w[r, c0 : c0 + group]
            scales[r, c0 : c0 + group] = max(float(g.abs().max()) / qmax, 1e-10)
    return scales


@settings(max_examples=40, deadline=None)
@given(
    bits=st.integers(2, 8),
    group=st.integers(0, 12),
    rows=st.integers(1, 5),
    cols=st.integers(1, 20),
    seed=st.integers(0, 10_000),
)
def test_rtn_error_bounded_by_half_scale(
    bits: int, group: int, rows: int, cols: int, seed: int
) -> None:
    w = torch.randn(rows, cols, generator=torch.Generator().manual_seed(seed))
    q = quantize_rtn(w, bits, group)
    scale = _group_scales(w, bits, group)
    assert q.shape == w.shape
    assert torch.all((q - w).abs() <= scale / 2 + 1e-6)
    levels = q / scale
    assert torch.allclose(levels, levels.round(), atol=1e-4)  # on the grid
    assert levels.min() >= -(2 ** (bits - 1)) - 1e-4 and levels.max() <= 2 ** (bits - 1) - 1 + 1e-4


def test_rtn_whole_row_and_padding() -> None:
    w = torch.randn(3, 10)
    assert torch.equal(quantize_rtn(w, 4, 0), quantize_rtn(w, 4, 10))
    assert torch.equal(quantize_rtn(w, 4, 0), quantize_rtn(w, 4, 64))
    # Last group of a 10-wide row with group 4 holds 2 values; its scale is theirs alone.
    row = torch.tensor([[8.0, 0, 0, 0, 8.0, 0, 0, 0, 0.7, -0.35]])
    q = quantize_rtn(row, 3, 4)  # qmax 3: scale of last group = 0.7/3
    assert torch.allclose(q[0, 8:], torch.tensor([0.7, -0.7 / 3 * 2]), atol=1e-6)
    assert torch.equal(quantize_rtn(torch.zeros(2, 8), 4, 4), torch.zeros(2, 8))  # scale clamp


def test_rtn_two_bit_levels() -> None:
    w = torch.tensor([[-1.0, -0.6, 0.0, 0.4, 1.0]])
    q = quantize_rtn(w, 2, 0)  # qmax 1, qmin -2, scale 1
    assert torch.equal(q, torch.tensor([[-1.0, -1.0, 0.0, 0.0, 1.0]]))


@pytest.mark.parametrize("fmt", ["e4m3fn", "e5m2"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_fp8_round_trip_is_torch_cast(fmt: str, dtype: torch.dtype) -> None:
    w = (torch.randn(16, 16) * 3).to(dtype)
    target = torch.float8_e4m3fn if fmt == "e4m3fn" else torch.float8_e5m2
    out = fp8_round_trip(w, fmt)
    assert out.dtype == dtype
    assert torch.equal(out, w.to(target).to(dtype))
    assert not torch.equal(out, w)


@settings(max_examples=30, deadline=None)
@given(
    sparsity=st.floats(0.01, 0.99),
    shape=st.tuples(st.integers(1, 9), st.integers(1, 9)),
    levels=st.integers(1, 4),
    seed=st.integers(0, 1000),
)
def test_prune_mask_exact_count_with_ties(
    sparsity: float, shape: tuple[int, int], levels: int, seed: int
) -> None:
    # Few distinct magnitudes -> many ties at the threshold.
    gen = torch.Generator().manual_seed(seed)
    w = torch.randint(-levels, levels + 1, shape, generator=gen).float()
    mask = prune_mask(w, sparsity)
    k = int(w.numel() * sparsity)
    assert int(mask.sum()) == k
    if 0 < k < w.numel():
        assert w.abs()[mask].max() <= w.abs()[~mask].min()  # the k smallest


def test_prune_on_model_zeroes_exactly_k_per_tensor() -> None:
    model = tiny_model("llama")
    with apply_edit(model, "magnitude_prune:0.3:ffn") as record:
        for stat in record.per_tensor:
            numel = stat.shape[0] * stat.shape[1]
            assert stat.sparsity == int(numel * 0.3) / numel
            assert stat.n_changed == int(numel * 0.3)
        assert record.sparsity == pytest.approx(0.3, abs=1 / 64)


def test_low_rank_exact_for_rank_r_matrix() -> None:
    gen = torch.Generator().manual_seed(3)
    a = torch.randn(40, 3, generator=gen) @ torch.randn(3, 24, generator=gen)
    approx = low_rank(a, 3)
    assert torch.allclose(approx, a, atol=1e-4)
    assert torch.linalg.matrix_rank(low_rank(a, 2)) == 2
    assert torch.allclose(low_rank(a, 100), a, atol=1e-4)  # rank capped at min dim
    assert torch.equal(low_rank(a, 2), low_rank(a, 2))  # seeded: deterministic


def test_low_rank_leaves_global_rng_alone() -> None:
    w = torch.randn(8, 8)
    torch.manual_seed(11)
    low_rank(w, 2)  # seeds its own projection inside a forked RNG
    after = torch.rand(4)
    torch.manual_seed(11)
    assert torch.equal(torch.rand(4), after)


def test_gpt2_conv1d_quantized_along_input_dim() -> None:
    model = tiny_model("gpt2")
    weight = model.transformer.h[0].mlp.c_fc.weight  # Conv1D, stored [in=32, out=128]
    before = weight.detach().clone()
    with apply_edit(model, "quant_rtn:3:8:ffn@layer=0"):
        expected = quantize_rtn(before.T, 3, 8).T  # groups of 8 inputs per output channel
        assert torch.equal(weight.detach(), expected)
    assert torch.equal(weight.detach(), before)


def test_mixtral_experts_quantized_per_slice() -> None:
    model = tiny_model("mixtral")
    experts = model.model.layers[1].mlp.experts
    before = experts.down_proj.detach().clone()
    with apply_edit(model, "quant_rtn:4:16:ffn@layer=1") as record:
        for e in range(before.shape[0]):
            assert torch.equal(experts.down_proj.detach()[e], quantize_rtn(before[e], 4, 16))
        assert record.bits == {
            "model.layers.1.mlp.experts.gate_up_proj": 4,
            "model.layers.1.mlp.experts.down_proj": 4,
        }
    router = model.model.layers[1].mlp.gate.weight
    with apply_edit(model, "magnitude_prune:0.5:ffn") as record:
        assert not any(".mlp.gate." in n for n in record.tensors)
        assert int((router == 0).sum()) == 0


def test_mixtral_lowrank_per_expert_slice() -> None:
    model = tiny_model("mixtral")
    gate_up = model.model.layers[0].mlp.experts.gate_up_proj
    with apply_edit(model, "lowrank_svd:2:ffn@layer=0") as record:
        for e in range(gate_up.shape[0]):
            assert int(torch.linalg.matrix_rank(gate_up.detach()[e].float(), atol=1e-4)) == 2
        assert record.rank == 2
        assert {s.rank for s in record.per_tensor} == {2}


def test_edits_keep_dtype_and_device() -> None:
    model = tiny_model("llama").to(torch.bfloat16)
    for spec in (
        "quant_rtn:4:32:all",
        "fp8_quant:e5m2:all",
        "lowrank_svd:4:all",
        "magnitude_prune:0.2:all",
    ):
        with apply_edit(model, spec):
            assert {p.dtype for p in model.parameters()} == {torch.bfloat16}
            assert {p.device.type for p in model.parameters()} == {"cpu"}

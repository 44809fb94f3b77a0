"""The RMT guard's estimator: sigma_max of each standardized activation window, by power iteration.

For a window's activations A (T tokens x d features) the guard standardizes with one scalar
mean and std over the window's valid tokens, Z = (A - mean) / std with padded rows zeroed,
and estimates sigma_max(Z) by a fixed number of power iterations from a seeded start vector
(the same on every device). Three routes compute those same iterates:

- **feature space** (:func:`window_edge_risk`, products with Z and Zᵀ): long windows;
- **token space on the CPU** (:func:`_gram_top_singular`): with G = Z Zᵀ the iteration
  runs on T x T matrices, one GEMM instead of ``2 x iters`` matrix-vector products;
- **token space, batched** (:class:`EdgeRiskSums` on CUDA): each branch output costs two
  GEMMs in the forward hook, A Aᵀ and A [v0 | 1] (half-precision inputs, fp32 accumulation
  and output), and centring, scaling and masking are folded into those small products
  afterwards. Z is never formed, and the power iterations of up to ``PENDING_BYTES`` of
  Gram matrices (dozens of branches) run as one batch: on a 7B model that is a few hundred
  kernel launches for a pass instead of ~15,000, with no host sync per branch.

The routes agree to rounding (tested); a baseline and its subject always take the same
route, since the route depends only on the device, the window length and the dtype.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cache
from typing import Any

# CPU: token space when T <= this x (2 iters + 1). The Gram matrix costs T/(2 iters + 1)
# times the power iteration's flops, but as one GEMM it runs far faster than matrix-vector
# products on a CPU (demo machine, 8 windows, d = 576 / 1536: 2.9x / 3.1x faster at T = 128,
# 2.9x / 3.3x at T = 256, 1.3x / 1.3x at T = 512).
_GRAM_MAX_FACTOR = 25
# Devices whose windows of at most BATCHED_MAX_TOKENS tokens take the batched token-space
# route. On a GPU the Gram GEMM (2 T^2 d flops) runs on tensor cores while the feature-space
# products (4 iters T d flops) are bound by memory. Per module output of 8 windows on an H200
# (bf16, bench/process_edges.py edgeroutes): 1.7-6.7x faster up to T = 2048, and at T = 4096
# 0.94x (d = 4096) / 1.6x (d = 14336).
BATCHED_DEVICES = frozenset({"cuda"})
BATCHED_MAX_TOKENS = 2048
# Gram matrices held before their iterations run (fp32, B x T x T per branch output).
PENDING_BYTES = 256 << 20
_TINY = 1e-30


def batched_top_singular(z: Any, iters: int, seed: int) -> Any:
    """Largest singular value of each matrix in ``z`` [B, T, d] by power iteration.

    Only matrix-vector products with Z and Zᵀ are formed (never ZᵀZ). The start vector is
    drawn from a CPU generator seeded by ``seed`` so it is the same on every device and on
    both sides of a comparison; a fixed iteration count (no convergence stop) keeps the
    estimator a deterministic function of the activations.
    """
    import torch

    d = z.shape[-1]
    v0 = start_vector(d, seed).to(z.device)
    v = v0.expand(z.shape[0], d).unsqueeze(-1)
    # On CUDA the matvecs read Z in bf16 (fp32 accumulation): memory-bound, so half the bytes
    # is half the time; the statistic is compared only with itself measured the same way.
    work = z.to(torch.bfloat16) if z.device.type == "cuda" else z
    zt = work.transpose(1, 2)
    for _ in range(iters):
        u = torch.bmm(work, v.to(work.dtype)).float()
        v = torch.bmm(zt, u.to(work.dtype)).float()
        v = v / torch.linalg.vector_norm(v, dim=1, keepdim=True).clamp(min=_TINY)
    return torch.linalg.vector_norm(torch.bmm(work, v.to(work.dtype)).float(), dim=(1, 2))


def start_vector(d: int, seed: int) -> Any:
    """The unit start vector of every power iteration on ``d`` features (CPU, fp32)."""
    import torch

    v0 = torch.randn(d, generator=torch.Generator().manual_seed(seed), dtype=torch.float32)
    return v0 / torch.linalg.vector_norm(v0)


def top_singular_value(matrix: Any, iters: int, seed: int = 0) -> float:
    """sigma_max of one 2-D matrix by the guard's power iteration (for tests and tools)."""
    return float(batched_top_singular(matrix.float().unsqueeze(0), iters, seed)[0])


def window_edge_risk(
    act: Any, mask: Any, iters: int, seed: int, full: bool | None = None
) -> tuple[Any, Any]:
    """Per-window edge risk and token counts of activations ``act`` [B, T, d] under ``mask``.

    Each window is standardized with its own global scalar mean/std over its valid tokens;
    padded rows are zeroed, which leaves the singular values of the valid rows unchanged.
    On the CPU, for windows short enough, the same power iteration runs in token space
    (:func:`_gram_top_singular`): identical iterates, a fraction of the time. ``full``
    (every token valid) is read from ``mask`` when not given: a host sync on a GPU.
    """
    import torch

    a = act.float()
    m = mask.to(a.dtype).unsqueeze(-1)
    d = a.shape[-1]
    tokens = mask.sum(dim=1).to(torch.float32)
    count = (tokens * d).clamp(min=1)
    if full is None:
        full = bool(mask.all())
    mean = (a if full else a * m).sum(dim=(1, 2)) / count
    if a.device.type == "cpu" and a.shape[1] <= _GRAM_MAX_FACTOR * (2 * iters + 1):
        centred = a - mean[:, None, None]
        if not full:
            centred = centred * m
        sigma = _gram_top_singular(centred, count, iters, seed)
        return sigma / (tokens.sqrt() + math.sqrt(d)), tokens
    var = ((a * a) * m).sum(dim=(1, 2)) / count - mean * mean
    inv = _inverse_std(var)
    # A constant window has no spread: its standardized matrix is zero, risk 0.
    z = (a - mean[:, None, None]) * inv[:, None, None] * m
    sigma = batched_top_singular(z, iters, seed)
    return sigma / (tokens.sqrt() + math.sqrt(d)), tokens


def _inverse_std(var: Any) -> Any:
    """1/std, and 0 where there is no spread (a constant window's risk is 0)."""
    import torch

    std = var.clamp(min=0).sqrt()
    return torch.where(std > 0, 1.0 / std.clamp(min=_TINY), torch.zeros_like(std))


def _gram_top_singular(centred: Any, count: Any, iters: int, seed: int) -> Any:
    """:func:`batched_top_singular` of the standardized ``centred`` / std, in token space.

    With G = Z Zᵀ (T x T) and u_i = Z v_(i-1), the iteration v_i = Zᵀ u_i / |Zᵀ u_i| gives
    u_(i+1) = G u_i / sqrt(u_iᵀ G u_i), and sigma_hat = |Z v_iters| = |u_(iters+1)|: the same
    iterates from the same start vector, without a single product with the T x d matrix
    inside the loop. Standardization is folded into G as 1/std².
    """
    import torch

    gram = torch.bmm(centred, centred.transpose(1, 2))
    var = torch.diagonal(gram, dim1=1, dim2=2).sum(dim=-1) / count
    inv = _inverse_std(var)
    v0 = start_vector(centred.shape[-1], seed)
    u = torch.matmul(centred, v0).unsqueeze(-1) * inv[:, None, None]
    gram = gram * (inv * inv)[:, None, None]
    return _token_space_power(gram, u, iters)


def _token_space_power(gram: Any, u: Any, iters: int) -> Any:
    """|u_(iters+1)| of u_(i+1) = G u_i / sqrt(u_iᵀ G u_i), for G [N, T, T] and u [N, T, 1]."""
    import torch

    for _ in range(iters):
        w = torch.bmm(gram, u)
        norm = (u * w).sum(dim=(1, 2), keepdim=True).clamp(min=0).sqrt()
        u = w / norm.clamp(min=_TINY)
    return torch.linalg.vector_norm(u, dim=(1, 2))


@dataclass
class _Pending:
    """One branch output reduced to its token-space products, waiting for its iterations."""

    name: str
    gram: Any  # [B, T, T] fp32: A Aᵀ
    proj: Any  # [B, T, 2] fp32: A v0 and A 1 (row sums)
    consts: Any  # [2] fp32 on the device: d and the sum of v0 as the GEMM read it


class EdgeRiskSums:
    """Token-weighted edge-risk sums per branch over an activation pass.

    ``add`` takes each branch output as the forward produces it; ``totals`` returns, per
    branch name, (sum over windows of risk x tokens, sum of tokens) with one transfer per
    device. Nothing is synchronized with the host before ``totals``.
    """

    def __init__(self, iters: int, seed: int) -> None:
        self.iters = iters
        self.seed = seed
        # (names, weighted risk sums, token sums) per measured group, left on their device.
        self._chunks: list[tuple[list[str], Any, Any]] = []
        self._pending: list[_Pending] = []
        self._pending_mask: Any = None
        self._pending_bytes = 0
        self._full: tuple[Any, bool] | None = None
        self._bases: dict[tuple[Any, Any, int], tuple[Any, Any]] = {}

    def add(self, name: str, act: Any, mask: Any) -> None:
        if batched(act):
            self._add_batched(name, act, mask)
            return
        risk, tokens = window_edge_risk(act, mask, self.iters, self.seed, self._is_full(mask))
        self._chunks.append(([name], (risk * tokens).sum().reshape(1), tokens.sum().reshape(1)))

    def totals(self) -> tuple[dict[str, float], dict[str, float]]:
        import torch

        self._flush()
        sums: dict[str, float] = {}
        weights: dict[str, float] = {}
        by_device: dict[Any, list[tuple[list[str], Any, Any]]] = {}
        for chunk in self._chunks:
            by_device.setdefault(chunk[1].device, []).append(chunk)
        for chunks in by_device.values():
            names = [n for chunk in chunks for n in chunk[0]]
            both = torch.stack(
                [torch.cat([c[1] for c in chunks]), torch.cat([c[2] for c in chunks])]
            ).tolist()
            for name, risk, tokens in zip(names, both[0], both[1], strict=True):
                sums[name] = sums.get(name, 0.0) + risk
                weights[name] = weights.get(name, 0.0) + tokens
        self._chunks = []
        return sums, weights

    def _is_full(self, mask: Any) -> bool:
        """Whether every token of ``mask`` is valid: one host read per batch, not per branch."""
        if self._full is None or self._full[0] is not mask:
            self._full = (mask, bool(mask.all()))
        return self._full[1]

    def _add_batched(self, name: str, act: Any, mask: Any) -> None:
        if self._pending and (
            mask is not self._pending_mask or self._pending_bytes >= PENDING_BYTES
        ):
            self._flush()
        basis, consts = self._basis(act)
        gram, proj = _products(act, basis)
        self._pending.append(_Pending(name, gram, proj, consts))
        self._pending_mask = mask
        self._pending_bytes += gram.numel() * 4

    def _basis(self, act: Any) -> tuple[Any, Any]:
        """[v0 | 1] in the activations' dtype on their device, and (d, sum of that v0)."""
        import torch

        d = int(act.shape[-1])
        key = (act.device, act.dtype, d)
        if key not in self._bases:
            v0 = start_vector(d, self.seed).to(act.dtype)  # rounded as the GEMM reads it
            basis = torch.stack([v0, torch.ones_like(v0)], dim=1)
            consts = torch.tensor([float(d), float(v0.float().sum())], dtype=torch.float32)
            self._bases[key] = (basis.to(act.device), consts.to(act.device))
        return self._bases[key]

    def _flush(self) -> None:
        import torch

        items, mask = self._pending, self._pending_mask
        self._pending, self._pending_mask, self._pending_bytes = [], None, 0
        if not items:
            return
        k, b = len(items), items[0].gram.shape[0]
        gram = torch.cat([it.gram for it in items]) if k > 1 else items[0].gram
        proj = torch.cat([it.proj for it in items]) if k > 1 else items[0].proj
        consts = torch.stack([it.consts for it in items]).repeat_interleave(b, dim=0)
        # The products may be inference tensors (made in a hook under inference_mode) that
        # this flush, run after the pass, updates in place.
        with torch.inference_mode():
            risk, tokens = _batched_edge_risk(gram, proj, consts, mask.repeat(k, 1), self.iters)
            names = [it.name for it in items]
            self._chunks.append(
                (names, (risk * tokens).view(k, b).sum(dim=1), tokens.view(k, b).sum(dim=1))
            )


def batched(act: Any) -> bool:
    """Whether ``act`` [B, T, d] takes the batched token-space route."""
    return act.device.type in BATCHED_DEVICES and int(act.shape[1]) <= BATCHED_MAX_TOKENS


@cache
def _mixed_precision(device_type: str) -> bool:
    """Whether half-precision GEMMs can write fp32 here (``out_dtype``, which recent torch
    offers on CUDA)."""
    import torch

    try:
        x = torch.ones(1, 2, 2, dtype=torch.bfloat16, device=device_type)
        out = torch.bmm(x, x, out_dtype=torch.float32)
    except (TypeError, RuntimeError, NotImplementedError):
        return False
    return bool(out.dtype == torch.float32)


def _products(act: Any, basis: Any) -> tuple[Any, Any]:
    """(A Aᵀ [B, T, T], A [v0 | 1] [B, T, 2]) in fp32, read from ``act`` as it is."""
    import torch

    f32 = torch.float32
    b, t, d = act.shape
    if act.dtype in (torch.bfloat16, torch.float16) and _mixed_precision(act.device.type):
        gram = torch.bmm(act, act.transpose(1, 2), out_dtype=f32)
        proj = torch.mm(act.reshape(b * t, d), basis, out_dtype=f32)
    else:
        a = act.float()
        gram = torch.bmm(a, a.transpose(1, 2))
        proj = torch.mm(a.reshape(b * t, d), basis.float())
    return gram, proj.view(b, t, 2)


def _batched_edge_risk(gram: Any, proj: Any, consts: Any, mask: Any, iters: int) -> tuple[Any, Any]:
    """Edge risk and tokens of N windows from their raw products (see :class:`_Pending`).

    With r = A 1 (row sums), S1 and S2 the masked sums of r and of diag(A Aᵀ), mean = S1/n
    and var = S2/n - mean² (n = tokens x d, as in :func:`window_edge_risk`). The centred,
    masked, scaled Gram is M (A Aᵀ - mean (r 1ᵀ + 1 rᵀ) + mean² d 11ᵀ) M / var and the first
    iterate u_1 = Z v0 = M (A v0 - mean sum(v0)) / std; then :func:`_token_space_power`.
    ``gram`` is modified in place.
    """
    m = mask.to(gram.dtype)
    d, v_sum = consts[:, 0], consts[:, 1]
    tokens = m.sum(dim=1)
    count = (tokens * d).clamp(min=1)
    av, rows = proj[..., 0], proj[..., 1]
    mean = (rows * m).sum(dim=1) / count
    diag = gram.diagonal(dim1=1, dim2=2)
    var = (diag * m).sum(dim=1) / count - mean * mean
    inv = _inverse_std(var)
    shift = mean[:, None, None]
    gram.sub_(shift * rows[:, :, None]).sub_(shift * rows[:, None, :])
    gram.add_((mean * mean * d)[:, None, None])
    scale = m * inv[:, None]
    gram.mul_(scale[:, :, None]).mul_(scale[:, None, :])
    u = ((av - mean[:, None] * v_sum[:, None]) * scale).unsqueeze(-1)
    sigma = _token_space_power(gram, u, iters)
    return sigma / (tokens.sqrt() + d.sqrt()), tokens

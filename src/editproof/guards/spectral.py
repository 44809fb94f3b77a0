"""Spectral guard: per-matrix sigma_max of the subject against the same matrix's baseline value.

Each distinct 2-D weight (and each slice of a fused 3-D expert stack) gets sigma_max by a
fixed-budget power iteration, its Frobenius norm (for the stable rank) and a norm-collapse
statistic (smallest row/column norm over the median). ``compare`` scores every matrix as
``z = (sigma_subj - sigma_base) / sd_family``, where the spread is that of the *baseline's*
matrices of the family: a change is judged against how much sigma varies across comparable
matrices. Budgeted z caps go through family-level multiple testing; sigma ratios, stable
rank and norm collapse are hard per-matrix bounds.
"""

from __future__ import annotations

import hashlib
import math
import statistics
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from editproof.guards.base import MeasureContext, Signature, contract_digest, contract_mismatch
from editproof.lm.anatomy import family_of
from editproof.policy.guards import SpectralPolicy
from editproof.report.model import GuardResult, GuardStatus

if TYPE_CHECKING:
    import torch

# fp32 scratch per power-iteration batch (elements): bounds memory on big expert stacks.
_BATCH_ELEMENTS = 1 << 28
_TINY = 1e-30
# Relative-change scale that stands in for sd when a family's baseline spread is zero.
_REL_SCALE = 0.1
_TOP = 5
_LIST_MAX = 10


@dataclass(frozen=True)
class _Row:
    name: str
    family: str
    z: float
    p: float
    ratio: float  # sigma_subj / sigma_base, both floored
    # subj / base; 1.0 (nothing to judge) where the baseline's statistic is 0.
    stable_rank: float
    norm_collapse: float


# Weight dtypes whose matvecs run natively on CUDA (fp32 accumulation).
_NATIVE = frozenset({"torch.bfloat16", "torch.float16"})


class SpectralGuard:
    name = "spectral"

    def measure(self, model: Any, ctx: MeasureContext, policy: dict[str, Any]) -> Signature:
        start = time.perf_counter()
        iters = SpectralPolicy.model_validate(policy).power_iters
        contract = {
            "estimator": "power_iteration",
            "iters": iters,
            "seed": ctx.seed,
            "dtype": _compute_dtype(model),
            "version": 1,
        }
        reuse = _reusable(ctx, self.name, contract)
        matrices = _measure_all(model, iters, ctx.seed, reuse)
        return Signature(
            guard=self.name,
            contract=contract,
            data={"matrices": matrices},
            seconds=time.perf_counter() - start,
        )

    def compare(
        self, baseline: Signature, subject: Signature, policy: dict[str, Any]
    ) -> GuardResult:
        start = time.perf_counter()
        mismatch = contract_mismatch(self.name, baseline, subject)
        if mismatch is not None:
            return mismatch
        pol = SpectralPolicy.model_validate(policy)
        base: dict[str, dict[str, Any]] = baseline.data["matrices"]
        subj: dict[str, dict[str, Any]] = subject.data["matrices"]

        # Per-family spread of sigma over the baseline's finite matrices.
        by_family: dict[str, list[float]] = {}
        for rec in base.values():
            if _finite(rec):
                by_family.setdefault(rec["family"], []).append(rec["sigma"])
        sd = {f: statistics.pstdev(v) for f, v in by_family.items()}  # ddof 0
        floor = max(1e-12 * max((s for v in by_family.values() for s in v), default=0.0), _TINY)

        rows: list[_Row] = []
        non_finite: list[str] = []
        for name in sorted(base.keys() & subj.keys()):
            b, s = base[name], subj[name]
            if not _finite(b):
                continue  # a broken baseline matrix cannot anchor a comparison
            if not _finite(s):
                non_finite.append(name)
                continue
            rows.append(_row(name, b, s, sd.get(b["family"], 0.0), floor))

        kappa = {f: _kappa(pol, f) for f in {r.family for r in rows}}
        candidates = [r for r in rows if abs(r.z) > kappa[r.family]]
        m = len(kappa)  # families with at least one compared matrix
        selected, fam_p = _select(candidates, m, pol)
        caps = [r for r in candidates if r.family in selected]

        ratios = [max(r.ratio, 1 / r.ratio) for r in rows]
        too_far = [r for r, x in zip(rows, ratios, strict=True) if x > pol.max_sigma_ratio]
        degen_fail, degen_warn = _degeneracy(rows, pol)
        violations: list[str] = []
        if len(caps) > pol.max_caps:
            violations.append(f"caps: {len(caps)} > max_caps {pol.max_caps}")
        violations += _listed(
            f"z_cap: {r.name} z={r.z:+.2f} beyond kappa {kappa[r.family]:g} ({r.family})"
            for r in caps
        )
        violations += _listed(f"non_finite: {n} sigma not finite" for n in non_finite)
        violations += _listed(
            f"sigma_ratio: {r.name} {r.ratio:.4g} outside [1/{pol.max_sigma_ratio:g}, "
            f"{pol.max_sigma_ratio:g}]"
            for r in too_far
        )
        violations += _listed(degen_fail) + _listed(degen_warn)

        status: GuardStatus = "pass"
        if len(caps) > pol.max_caps or non_finite or too_far or degen_fail:
            status = "fail"
        elif caps or degen_warn:
            status = "warn"

        measured = {
            "caps": len(caps),
            "candidates": len(candidates),
            "max_abs_z": max((abs(r.z) for r in rows), default=0.0),
            "max_sigma_ratio": max(ratios, default=1.0),
            "min_stable_rank_ratio": min((r.stable_rank for r in rows), default=1.0),
            "min_norm_collapse_ratio": min((r.norm_collapse for r in rows), default=1.0),
            "matrices": len(rows),
            "missing_matrices": len(base.keys() - subj.keys()),
            "extra_matrices": len(subj.keys() - base.keys()),
            "non_finite_matrices": len(non_finite),
        }
        thresholds = {
            "max_caps": float(pol.max_caps),
            **{f"kappa_{f}": float(v) for f, v in sorted(pol.kappa.items())},
            "max_sigma_ratio": pol.max_sigma_ratio,
            "stable_rank_fail": pol.stable_rank_fail,
            "stable_rank_warn": pol.stable_rank_warn,
            "norm_collapse_fail": pol.norm_collapse_fail,
            "norm_collapse_warn": pol.norm_collapse_warn,
            "alpha": pol.alpha,
        }
        top = sorted(rows, key=lambda r: (-abs(r.z), r.name))[:_TOP]
        families = {
            f: {
                "count": len(by_family.get(f, [])),
                "sd": sd.get(f, 0.0),
                "sd_zero": sd.get(f, 0.0) == 0.0,
                "kappa": k,
                "max_abs_z": max((abs(r.z) for r in rows if r.family == f), default=0.0),
                "caps": sum(r.family == f for r in caps),
                "p_min": fam_p.get(f),
            }
            for f, k in sorted(kappa.items())
        }
        details = {
            "top_z": [
                {"name": r.name, "family": r.family, "z": r.z, "sigma_ratio": r.ratio} for r in top
            ],
            "families": families,
            "selected_families": sorted(selected),
            "multiple_testing": {"method": pol.multiple_testing, "alpha": pol.alpha, "m": m},
            "sd_zero_note": (
                f"families with zero baseline spread use z = relative sigma change / {_REL_SCALE}"
            ),
        }
        return GuardResult(
            name=self.name,
            status=status,
            measured={k: float(v) for k, v in measured.items()},
            thresholds=thresholds,
            violations=violations,
            seconds=subject.seconds + time.perf_counter() - start,
            contract_digest=subject.contract_digest,
            details=details,
        )


# --- compare helpers ------------------------------------------------------------------------


def _finite(rec: dict[str, Any]) -> bool:
    return all(rec.get(k) is not None for k in ("sigma", "stable_rank", "norm_collapse"))


def _row(name: str, b: dict[str, Any], s: dict[str, Any], sd: float, floor: float) -> _Row:
    sb, ss = max(b["sigma"], floor), max(s["sigma"], floor)
    ratio = ss / sb
    # Unfloored difference over the family spread; relative change when there is no spread.
    z = (s["sigma"] - b["sigma"]) / sd if sd > 0 else (ratio - 1) / _REL_SCALE
    return _Row(
        name=name,
        family=b["family"],
        z=z,
        p=math.erfc(abs(z) / math.sqrt(2)),
        ratio=ratio,
        stable_rank=s["stable_rank"] / b["stable_rank"] if b["stable_rank"] > 0 else 1.0,
        norm_collapse=s["norm_collapse"] / b["norm_collapse"] if b["norm_collapse"] > 0 else 1.0,
    )


def _degeneracy(rows: list[_Row], pol: SpectralPolicy) -> tuple[list[str], list[str]]:
    """Stable-rank and norm-collapse ratio violations, split into fail and warn lines."""
    fail: list[str] = []
    warn: list[str] = []
    for key, lo, hi in (
        ("stable_rank", pol.stable_rank_fail, pol.stable_rank_warn),
        ("norm_collapse", pol.norm_collapse_fail, pol.norm_collapse_warn),
    ):
        for r in rows:
            value: float = getattr(r, key)
            if value < lo:
                fail.append(f"{key}: {r.name} ratio {value:.3f} < {lo:g}")
            elif value < hi:
                warn.append(f"{key}: {r.name} ratio {value:.3f} < {hi:g}")
    return fail, warn


def _kappa(pol: SpectralPolicy, family: str) -> float:
    # A family the policy leaves out gets the strictest kappa it names, never a free pass.
    values: dict[str, float] = {str(k): v for k, v in pol.kappa.items()}
    return values.get(family, min(values.values(), default=3.0))


def _select(
    candidates: list[_Row], m: int, pol: SpectralPolicy
) -> tuple[set[str], dict[str, float]]:
    """Families whose smallest candidate p survives BH or Bonferroni over ``m`` families."""
    fam_p: dict[str, float] = {}
    for r in candidates:
        fam_p[r.family] = min(r.p, fam_p.get(r.family, 1.0))
    if m == 0:
        return set(), fam_p
    if pol.multiple_testing == "bonferroni":
        return {f for f, p in fam_p.items() if p <= pol.alpha / m}, fam_p
    ordered = sorted(fam_p.items(), key=lambda kv: (kv[1], kv[0]))
    k = max((i for i, (_, p) in enumerate(ordered, 1) if p <= pol.alpha * i / m), default=0)
    return {f for f, _ in ordered[:k]}, fam_p


def _listed(lines: Any) -> list[str]:
    items = list(lines)
    if len(items) > _LIST_MAX:
        return [*items[:_LIST_MAX], f"... and {len(items) - _LIST_MAX} more"]
    return items


# --- measurement ----------------------------------------------------------------------------


def _seed(seed: int, name: str) -> int:
    # Derived from the name, not the visiting order, so results ignore module order.
    digest = hashlib.sha256(f"{seed}:{name}".encode()).digest()
    return int.from_bytes(digest[:8], "big") & ((1 << 63) - 1)


@dataclass(frozen=True)
class _Stack:
    """One float weight as ``[E, rows, cols]`` (2-D weights get E = 1), labelled per slice."""

    family: str
    labels: list[str]
    tensor: torch.Tensor
    param: str


def _stacks(model: Any) -> list[_Stack]:
    """Distinct 2-D weights and 3-D expert stacks, model order.

    ``named_parameters`` yields a tied tensor once (under its first name), so a tied lm_head
    is not measured twice.
    """
    out = []
    for name, param in model.named_parameters():
        if not param.is_floating_point() or param.device.type == "meta":
            continue
        if param.ndim == 2:
            out.append(_Stack(family_of(name), [name], param.detach().unsqueeze(0), name))
        elif param.ndim == 3:
            labels = [f"{name}[{e}]" for e in range(param.shape[0])]
            out.append(_Stack(family_of(name), labels, param.detach(), name))
    return out


def _compute_dtype(model: Any) -> str:
    """The dtype the matvecs run in (part of the contract): bf16/fp16 on CUDA, else fp32."""

    param = next(model.parameters(), None)
    if param is not None and param.device.type == "cuda" and str(param.dtype) in _NATIVE:
        return str(param.dtype).removeprefix("torch.")
    return "float32"


def _reusable(
    ctx: MeasureContext, name: str, contract: dict[str, Any]
) -> tuple[frozenset[str], dict[str, dict[str, Any]]] | None:
    """(touched params, baseline matrices) when untouched matrices may be copied over.

    Only for the same contract: numbers measured another way must be measured again.
    """
    base = (ctx.baseline or {}).get(name)
    if ctx.touched is None or base is None or contract_digest(contract) != base.contract_digest:
        return None
    return ctx.touched, base.data["matrices"]


def _measure_all(
    model: Any,
    iters: int,
    seed: int,
    reuse: tuple[frozenset[str], dict[str, dict[str, Any]]] | None = None,
) -> dict[str, dict[str, Any]]:
    """sigma_max, Frobenius norm and norm collapse of every matrix, one sync per device.

    Start vectors are drawn on the CPU (so they do not depend on the device) and copied once
    per device: a pageable host-to-device copy per matrix would sync each time. Results stay
    on the device until one ``tolist`` at the end.
    """
    import torch

    stacks = _stacks(model)
    copied: dict[str, dict[str, Any]] = {}
    if reuse is not None:
        # Untouched weights are bit-identical to the baseline's: their numbers carry over.
        touched, base = reuse
        keep = []
        for st in stacks:
            if st.param in touched or not all(lb in base for lb in st.labels):
                keep.append(st)
            else:
                copied.update({lb: base[lb] for lb in st.labels})
        stacks = keep
    # Same-shaped matrices (all q_proj, all gate_proj, expert slices...) run as one batched
    # power iteration: ~30 batches instead of ~300 matrices, so kernel launches stop
    # dominating a memory-bound loop. Chunks bound the stacked copy to _BATCH_ELEMENTS.
    groups: dict[tuple[Any, ...], list[tuple[str, str, torch.Tensor]]] = {}
    for st in stacks:
        t = st.tensor
        key = (t.device, t.dtype, t.shape[1], t.shape[2])
        groups.setdefault(key, []).extend((lb, st.family, t[e]) for e, lb in enumerate(st.labels))
    chunks: list[list[tuple[str, str, torch.Tensor]]] = []
    for (_, _, rows, cols), items in groups.items():
        step = max(1, _BATCH_ELEMENTS // max(1, rows * cols))
        chunks += [items[i : i + step] for i in range(0, len(items), step)]
    vectors = [
        torch.randn(w.shape[1], generator=torch.Generator().manual_seed(_seed(seed, lb)))
        for chunk in chunks
        for lb, _, w in chunk
    ]
    starts = torch.cat(vectors) if vectors else torch.zeros(0)
    on_device: dict[torch.device, torch.Tensor] = {}
    results: dict[torch.device, tuple[list[str], list[torch.Tensor]]] = {}
    family = {lb: fam for chunk in chunks for lb, fam, _ in chunk}
    offset = 0
    with torch.no_grad():
        for chunk in chunks:
            first = chunk[0][2]
            cols = first.shape[1]
            if first.device not in on_device:
                on_device[first.device] = starts.to(first.device)
            v0 = on_device[first.device][offset : offset + len(chunk) * cols]
            offset += len(chunk) * cols
            w = first.unsqueeze(0) if len(chunk) == 1 else torch.stack([m for _, _, m in chunk])
            if str(w.dtype) not in _NATIVE or w.device.type != "cuda":
                w = w.float()  # CPU half-precision matmuls are slow and imprecise
            names, found = results.setdefault(first.device, ([], []))
            names += [lb for lb, _, _ in chunk]
            found.append(_matrix_stats(w, v0.view(len(chunk), cols, 1), iters))

    out: dict[str, dict[str, Any]] = dict(copied)
    for names, found in results.values():
        for name, (sigma, frob, collapse) in zip(names, torch.cat(found).tolist(), strict=True):
            out[name] = _record(family[name], sigma, frob, collapse)
    return out


def _matrix_stats(w: torch.Tensor, v: torch.Tensor, iters: int) -> torch.Tensor:
    """``[E, 3]``: sigma_max (power iteration on W^T W), Frobenius norm, norm collapse."""
    import torch

    # Matvecs run in the weight's own dtype (cuBLAS accumulates in fp32): power iteration is
    # memory-bound, and an fp32 copy of every bf16 weight doubled its cost on a 7B model.
    # Normalisation and the statistics are fp32.
    def unit(x: torch.Tensor) -> torch.Tensor:
        x = x.float()
        out: torch.Tensor = x / torch.linalg.vector_norm(x, dim=1, keepdim=True).clamp_min(_TINY)
        return out

    f32 = torch.float32
    v = unit(v).to(w.dtype)
    wt = w.transpose(1, 2)
    for _ in range(iters):
        u = unit(torch.bmm(w, v)).to(w.dtype)
        v = unit(torch.bmm(wt, u)).to(w.dtype)
    sigma = torch.linalg.vector_norm(torch.bmm(w, v).float(), dim=(1, 2))
    frob = torch.linalg.vector_norm(w, dim=(1, 2), dtype=f32)
    collapse = torch.minimum(
        _collapse(torch.linalg.vector_norm(w, dim=2, dtype=f32)),
        _collapse(torch.linalg.vector_norm(w, dim=1, dtype=f32)),
    )
    return torch.stack([sigma, frob, collapse], dim=1)


def _collapse(norms: torch.Tensor) -> torch.Tensor:
    """min / median of each row of ``norms`` ([E, k]); 0 where the median is 0."""
    import torch

    median = norms.median(dim=1).values
    low = norms.min(dim=1).values
    return torch.where(median > 0, low / median.clamp_min(_TINY), torch.zeros_like(median))


def _record(family: str, sigma: float, frob: float, collapse: float) -> dict[str, Any]:
    """JSON-safe stats: a non-finite matrix gets None throughout (strict JSON has no NaN)."""
    ok = all(math.isfinite(x) for x in (sigma, frob, collapse))
    stable_rank = frob * frob / (sigma * sigma) if ok and sigma > 0 else 0.0
    values = (sigma, frob, stable_rank, collapse)
    keys = ("sigma", "frob", "stable_rank", "norm_collapse")
    return {"family": family} | {k: v if ok else None for k, v in zip(keys, values, strict=True)}

"""Invariants guard: the subject must keep the baseline's structure and stay finite.

Fatal: any NaN/Inf in a parameter or buffer, a vocabulary change (embedding rows, lm_head
rows, config ``vocab_size``) and a shape change of a tensor both sides hold -- each makes the
perplexity comparison meaningless. Softer structural drift (dropped or added tensors, layer
count, norm modules, module tree, parameter count, tying, dtype) warns, or fails under
``strict``: a checkpoint may legitimately reshape itself, but a reviewer must see it.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from editproof.guards.base import MeasureContext, Signature, contract_mismatch
from editproof.lm.anatomy import decoder_layers, tied_groups
from editproof.policy.guards import InvariantsPolicy
from editproof.report.model import GuardResult, GuardStatus

if TYPE_CHECKING:
    import torch

CHECKS = (
    "parameter_count",
    "tensors",
    "non_finite",
    "vocab",
    "tying",
    "layer_norms",
    "layers",
    "structure_hash",
)
# isfinite over at most this many elements at a time bounds the bool scratch on big tensors.
_CHUNK = 1 << 26
_LIST_MAX = 3


class InvariantsGuard:
    name = "invariants"

    def measure(self, model: Any, ctx: MeasureContext, policy: dict[str, Any]) -> Signature:
        start = time.perf_counter()
        InvariantsPolicy.model_validate(policy)
        tensors = {
            name: {"shape": list(t.shape), "dtype": str(t.dtype).removeprefix("torch.")}
            for name, t in model.state_dict().items()
        }
        data = {
            "parameter_count": sum(p.numel() for p in model.parameters()),
            "tensors": tensors,
            "non_finite": _non_finite(model),
            "vocab": _vocab(model),
            "tying": [list(group) for group in tied_groups(model)],
            "layer_norms": sorted(
                name for name, mod in model.named_modules() if "Norm" in type(mod).__name__
            ),
            "layers": _layer_count(model),
            "structure_hash": _structure_hash(model),
        }
        return Signature(
            guard=self.name,
            contract={"checks": list(CHECKS), "version": 1},
            data=data,
            seconds=time.perf_counter() - start,
        )

    def compare(
        self, baseline: Signature, subject: Signature, policy: dict[str, Any]
    ) -> GuardResult:
        start = time.perf_counter()
        mismatch = contract_mismatch(self.name, baseline, subject)
        if mismatch is not None:
            return mismatch
        pol = InvariantsPolicy.model_validate(policy)
        base, subj = baseline.data, subject.data
        fatal: list[str] = []
        soft: list[str] = []

        non_finite: dict[str, int] = subj["non_finite"]
        for name, count in sorted(non_finite.items()):
            fatal.append(f"non_finite: {name} ({count} value{'s' if count != 1 else ''})")

        vocab_changes = 0
        for key, label in _VOCAB_LABELS.items():
            before, after = base["vocab"].get(key), subj["vocab"].get(key)
            if before != after:
                vocab_changes += 1
                fatal.append(f"vocab: {label} {before} -> {after}")

        bt: dict[str, dict[str, Any]] = base["tensors"]
        st: dict[str, dict[str, Any]] = subj["tensors"]
        common = sorted(bt.keys() & st.keys())
        shape_changes = [n for n in common if bt[n]["shape"] != st[n]["shape"]]
        fatal += [f"shape: {n} {bt[n]['shape']} -> {st[n]['shape']}" for n in shape_changes]
        dtype_changes = [n for n in common if bt[n]["dtype"] != st[n]["dtype"]]
        soft += [f"dtype: {n} {bt[n]['dtype']} -> {st[n]['dtype']}" for n in dtype_changes]
        missing = sorted(bt.keys() - st.keys())
        extra = sorted(st.keys() - bt.keys())
        if missing:
            soft.append(f"missing_tensors: {len(missing)} ({_names(missing)})")
        if extra:
            soft.append(f"extra_tensors: {len(extra)} ({_names(extra)})")

        for key in ("layers", "parameter_count"):
            if base[key] != subj[key]:
                soft.append(f"{key}: {base[key]} -> {subj[key]}")
        lost = sorted(set(base["layer_norms"]) - set(subj["layer_norms"]))
        gained = sorted(set(subj["layer_norms"]) - set(base["layer_norms"]))
        if lost:
            soft.append(f"layer_norms: missing {len(lost)} ({_names(lost)})")
        if gained:
            soft.append(f"layer_norms: extra {len(gained)} ({_names(gained)})")
        if base["structure_hash"] != subj["structure_hash"]:
            soft.append(f"structure: hash {base['structure_hash']} -> {subj['structure_hash']}")
        base_ties = {tuple(g) for g in base["tying"]}
        subj_ties = {tuple(g) for g in subj["tying"]}
        soft += [f"tying: {' = '.join(g)} broken" for g in sorted(base_ties - subj_ties)]
        soft += [f"tying: {' = '.join(g)} new" for g in sorted(subj_ties - base_ties)]

        status: GuardStatus = (
            "fail" if fatal or (soft and pol.strict) else ("warn" if soft else "pass")
        )
        measured = {
            "non_finite_tensors": len(non_finite),
            "non_finite_values": sum(non_finite.values()),
            "vocab_changes": vocab_changes,
            "shape_changes": len(shape_changes),
            "dtype_changes": len(dtype_changes),
            "missing_tensors": len(missing),
            "extra_tensors": len(extra),
            "layer_count_delta": subj["layers"] - base["layers"],
            "parameter_count_delta": subj["parameter_count"] - base["parameter_count"],
            "layer_norm_changes": len(lost) + len(gained),
            "tying_changes": len(base_ties ^ subj_ties),
            "structure_changed": int(base["structure_hash"] != subj["structure_hash"]),
        }
        return GuardResult(
            name=self.name,
            status=status,
            measured={k: float(v) for k, v in measured.items()},
            violations=fatal + soft,
            seconds=subject.seconds + time.perf_counter() - start,
            contract_digest=subject.contract_digest,
            details={
                "fatal": len(fatal),
                "warnings": len(soft),
                "strict": pol.strict,
                "baseline": _summary(base),
                "subject": _summary(subj),
            },
        )


_VOCAB_LABELS = {
    "embedding_rows": "embedding rows",
    "lm_head_rows": "lm_head rows",
    "config_vocab_size": "config vocab_size",
}


def _names(names: list[str]) -> str:
    more = f", +{len(names) - _LIST_MAX} more" if len(names) > _LIST_MAX else ""
    return ", ".join(names[:_LIST_MAX]) + more


def _summary(data: dict[str, Any]) -> dict[str, Any]:
    keys = ("parameter_count", "layers", "vocab", "tying", "structure_hash")
    return {k: data[k] for k in keys} | {"tensors": len(data["tensors"])}


def _named_tensors(model: Any) -> Iterator[tuple[str, torch.Tensor]]:
    yield from model.named_parameters()
    yield from model.named_buffers()


def _non_finite(model: Any) -> dict[str, int]:
    """Non-finite value count per float parameter and buffer; only tensors that have any.

    A float32 sum is NaN/Inf whenever any element is, and costs one read with no mask, so
    every tensor gets a sum first and only those whose sum is not finite (or overflowed) get
    the exact elementwise count. Results come back with one transfer per device, not one
    sync per tensor.
    """
    import torch

    tensors = {
        name: t.detach()
        for name, t in _named_tensors(model)
        if t.is_floating_point() and t.device.type != "meta"
    }
    with torch.no_grad():
        sums = _gather({n: t.sum(dtype=torch.float32) for n, t in tensors.items()})
        flagged = {n: _count(tensors[n]) for n, total in sums.items() if not math.isfinite(total)}
        counts = _gather(flagged)
    return {name: int(count) for name, count in counts.items() if count}


def _count(t: torch.Tensor) -> torch.Tensor:
    """Exact non-finite count, chunked to bound the boolean scratch on big tensors."""
    import torch

    flat = t.reshape(-1)
    count = torch.zeros((), dtype=torch.int64, device=t.device)
    for i in range(0, flat.numel(), _CHUNK):
        chunk = flat[i : i + _CHUNK]
        # isfinite has no kernel for some fp8 types; fp8 -> fp32 keeps NaN/Inf.
        chunk = chunk.float() if chunk.element_size() == 1 else chunk
        count += torch.isfinite(chunk).logical_not_().sum()
    return count


def _gather(values: dict[str, torch.Tensor]) -> dict[str, float]:
    """0-d tensors to floats with one ``tolist`` (one sync) per device."""
    import torch

    by_device: dict[torch.device, list[str]] = {}
    for name, value in values.items():
        by_device.setdefault(value.device, []).append(name)
    out: dict[str, float] = {}
    for names in by_device.values():
        numbers = torch.stack([values[n] for n in names]).tolist()
        out.update(zip(names, numbers, strict=True))
    return out


def _vocab(model: Any) -> dict[str, int | None]:
    def rows(module: Any) -> int | None:
        weight = getattr(module, "weight", None)
        return int(weight.shape[0]) if weight is not None and weight.ndim == 2 else None

    config = getattr(model, "config", None)
    if config is not None and hasattr(config, "get_text_config"):
        config = config.get_text_config()
    vocab = getattr(config, "vocab_size", None)
    get_in = getattr(model, "get_input_embeddings", None)
    get_out = getattr(model, "get_output_embeddings", None)
    return {
        "embedding_rows": rows(get_in()) if get_in else None,
        "lm_head_rows": rows(get_out()) if get_out else None,
        "config_vocab_size": vocab if isinstance(vocab, int) else None,
    }


def _layer_count(model: Any) -> int:
    layers = decoder_layers(model)
    return len(layers) if layers is not None else 0


def _structure_hash(model: Any) -> str:
    entries = sorted(f"{name}:{type(mod).__name__}" for name, mod in model.named_modules())
    return hashlib.sha256("\n".join(entries).encode()).hexdigest()[:16]

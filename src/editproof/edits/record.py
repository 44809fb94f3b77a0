"""What an applied edit did, measured: :class:`EditRecord` and its per-tensor stats.

Stats come from comparing each touched tensor with its saved pre-edit copy, so they describe
what actually happened (e.g. the sparsity a prune reached, including weights already zero).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict, JsonValue

if TYPE_CHECKING:
    import torch

ParamValue = int | float | str | bool


class TensorStat(BaseModel):
    """One touched tensor. ``rel_error`` is None when the edit made it non-finite."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    shape: list[int]
    rel_error: float | None
    n_changed: int
    sparsity: float | None = None
    rank: int | None = None


class EditRecord(BaseModel):
    """Provenance and measured effect of one edit, fault or probe."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    type: str
    kind: Literal["noop", "edit", "fault", "probe"]
    label: str
    spec: str
    resolved_from: str | None = None
    params: dict[str, ParamValue]
    scope: str | None
    tensors: list[str]
    per_tensor: list[TensorStat]
    n_elements: int  # elements of the touched tensors
    rel_error: float | None  # ||dW||_F / ||W||_F over all touched tensors
    sparsity: float | None = None  # fraction of zeros after a prune, over touched tensors
    bits: dict[str, int] = {}  # tensor -> bits, for quantizing edits
    rank: int | None = None
    seconds: float
    injected: dict[str, JsonValue] = {}  # faults/probes: what was injected where


@dataclass
class Measure:
    """Accumulates ||dW||^2, ||W||^2, changed and zero counts of one tensor."""

    name: str
    shape: list[int]
    sq_diff: float = 0.0
    sq_norm: float = 0.0
    n_changed: int = 0
    zeros: int = 0
    numel: int = 0

    def add(self, before: torch.Tensor, after: torch.Tensor) -> None:
        """Accumulate one slice; computed in fp32 on ``after``'s device."""
        import torch

        b = before.to(device=after.device, dtype=torch.float32)
        a = after.to(torch.float32)
        self.sq_diff += float(torch.sum((a - b) ** 2))
        self.sq_norm += float(torch.sum(b * b))
        same = (a == b) | (torch.isnan(a) & torch.isnan(b))
        self.n_changed += int(same.numel() - int(same.sum()))
        self.zeros += int((a == 0).sum())
        self.numel += a.numel()

    @property
    def rel_error(self) -> float | None:
        if not math.isfinite(self.sq_diff) or not math.isfinite(self.sq_norm):
            return None
        if self.sq_norm == 0.0:
            return 0.0 if self.sq_diff == 0.0 else None
        return math.sqrt(self.sq_diff / self.sq_norm)

    def stat(self, *, sparsity: bool, rank: int | None) -> TensorStat:
        return TensorStat(
            name=self.name,
            shape=self.shape,
            rel_error=self.rel_error,
            n_changed=self.n_changed,
            sparsity=self.zeros / self.numel if sparsity and self.numel else None,
            rank=rank,
        )


def overall_rel_error(measures: list[Measure]) -> float | None:
    total = Measure("", [])
    total.sq_diff = sum(m.sq_diff for m in measures)
    total.sq_norm = sum(m.sq_norm for m in measures)
    return total.rel_error if measures else None


def overall_sparsity(measures: list[Measure]) -> float | None:
    numel = sum(m.numel for m in measures)
    return sum(m.zeros for m in measures) / numel if numel else None

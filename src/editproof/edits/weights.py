"""The numeric weight edits: RTN quantization, fp8 round trip, magnitude pruning, low-rank SVD.

Matrix functions take and return ``[out, in]`` tensors and are pure; :func:`run_weight_edit`
applies one to every matrix of the resolved targets in place, on the weights' own device and
dtype. Work is done one tensor (one expert slice, or one row block for row-local edits) at a
time so a 7B model never needs more than a few matrices' worth of fp32 scratch memory.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from pydantic import JsonValue

from editproof.errors import InvalidInputError

if TYPE_CHECKING:
    import torch

    from editproof.edits.scope import Matrix, Target

ParamValue = int | float | str | bool

# svd_lowrank draws a random projection; a fixed seed makes the edit reproducible.
LOWRANK_SEED = 0
# Row-local edits (quant, fp8) process blocks of at most this many elements in fp32.
_BLOCK_ELEMENTS = 1 << 24


class Journal(Protocol):
    """Undo log an edit writes to before it changes anything (see :mod:`.apply`)."""

    def save_tensor(self, name: str, tensor: torch.Tensor) -> None: ...

    def on_restore(self, undo: Callable[[], None]) -> None: ...


@dataclass
class Outcome:
    """Edit-specific facts for the record, beyond what the diff against the backup measures."""

    bits: dict[str, int] = field(default_factory=dict)
    rank: int | None = None
    ranks: dict[str, int] = field(default_factory=dict)  # per tensor: effective rank used
    touched: list[str] = field(default_factory=list)  # tensors changed without a saved copy
    injected: dict[str, JsonValue] = field(default_factory=dict)


# --- pure matrix math ----------------------------------------------------------------------


def quantize_rtn(w: torch.Tensor, bits: int, group_size: int) -> torch.Tensor:
    """Symmetric round-to-nearest fake quantization per row group, in fp32.

    Groups run along the input dimension (the last one); ``group_size`` 0 or >= the row
    length means one group per row. The last group is zero-padded, which cannot change its
    max |w| and so its scale.
    """
    import torch

    out, cols = w.shape
    group = cols if group_size <= 0 or group_size >= cols else group_size
    qmax = max(2 ** (bits - 1) - 1, 1)
    qmin = -(2 ** (bits - 1))
    x: torch.Tensor = w.to(torch.float32)
    pad = (-cols) % group
    if pad:
        x = torch.nn.functional.pad(x, (0, pad))
    g = x.reshape(out, -1, group)
    scale = (g.abs().amax(dim=-1, keepdim=True) / qmax).clamp(min=1e-10)
    q: torch.Tensor = torch.round(g / scale).clamp(qmin, qmax) * scale
    return q.reshape(out, -1)[:, :cols]


def fp8_dtype(fmt: str) -> torch.dtype:
    import torch

    return torch.float8_e4m3fn if fmt == "e4m3fn" else torch.float8_e5m2


def fp8_round_trip(w: torch.Tensor, fmt: str) -> torch.Tensor:
    """``w`` cast to fp8 and back to its own dtype (torch's rounding and saturation)."""
    out: torch.Tensor = w.to(fp8_dtype(fmt)).to(w.dtype)
    return out


def prune_mask(w: torch.Tensor, sparsity: float) -> torch.Tensor:
    """Boolean mask of exactly ``int(numel * sparsity)`` entries with the smallest |w|.

    Ties at the threshold are broken by position (first in row-major order) so the count is
    exact even for weights with many equal magnitudes.
    """
    import torch

    flat = w.detach().abs().to(torch.float32).reshape(-1)
    k = int(flat.numel() * sparsity)
    mask = torch.zeros_like(flat, dtype=torch.bool)
    if k == 0:
        return mask.reshape(w.shape)
    if flat.is_cuda:  # CUDA kthvalue is ~300x slower than topk on 7B-sized matrices
        threshold = torch.topk(flat, k, largest=False, sorted=False).values.max()
    else:
        threshold = torch.kthvalue(flat, k).values
    mask = flat < threshold
    need = k - int(mask.sum())
    if need > 0:
        ties = torch.nonzero(flat == threshold).reshape(-1)[:need]
        mask[ties] = True
    return mask.reshape(w.shape)


def low_rank(w: torch.Tensor, rank: int, seed: int = LOWRANK_SEED) -> torch.Tensor:
    """Rank-``q`` approximation ``U diag(S) V^T`` from ``torch.svd_lowrank`` (fp32, niter=2)."""
    import torch

    q = min(rank, *w.shape)
    x = w.to(torch.float32)
    with seeded(seed, x.device):
        u, s, v = torch.svd_lowrank(x, q=q, niter=2)
    return (u * s) @ v.T


@contextmanager
def seeded(seed: int, device: torch.device) -> Iterator[None]:
    """Seed the CPU and ``device`` generators for a block, restoring both afterwards.

    Only that one GPU is touched: ``torch.manual_seed`` would reseed (and not restore) every
    GPU, and forking all of them would create a context on each.
    """
    import torch

    cuda: list[int] = []
    if device.type == "cuda":
        cuda = [device.index if device.index is not None else torch.cuda.current_device()]
    with torch.random.fork_rng(devices=cuda):
        torch.default_generator.manual_seed(seed)
        for index in cuda:
            with torch.cuda.device(index):
                torch.cuda.manual_seed(seed)
        yield


# --- applying to a model ---------------------------------------------------------------------


def map_rows(m: Matrix, fn: Callable[[torch.Tensor], torch.Tensor]) -> None:
    """Replace ``m`` by ``fn`` applied to blocks of whole rows (row-local edits only)."""
    view = m.view()
    rows = max(1, _BLOCK_ELEMENTS // max(1, view.shape[1]))
    for r0 in range(0, view.shape[0], rows):
        block = view[r0 : r0 + rows]
        block.copy_(fn(block).to(block.dtype))


def map_matrix(m: Matrix, fn: Callable[[torch.Tensor], torch.Tensor]) -> None:
    view = m.view()
    view.copy_(fn(view).to(view.dtype))


def run_weight_edit(
    edit_type: str, params: Mapping[str, ParamValue], targets: list[Target], journal: Journal
) -> Outcome:
    """Apply one numeric edit to every matrix of ``targets``, saving each tensor first."""
    import torch

    outcome = Outcome()
    with torch.no_grad():
        for target in targets:
            _check_editable(target)
            journal.save_tensor(target.name, target.param)
            for m in target.matrices():
                _edit_matrix(edit_type, params, m, outcome)
    if edit_type == "lowrank_svd":
        outcome.rank = int(params["rank"])
    return outcome


def _edit_matrix(
    edit_type: str, params: Mapping[str, ParamValue], m: Matrix, outcome: Outcome
) -> None:
    if edit_type == "quant_rtn":
        bits, group = int(params["bits"]), int(params["group_size"])
        map_rows(m, lambda b: quantize_rtn(b, bits, group))
        outcome.bits[m.name] = bits
    elif edit_type == "fp8_quant":
        fmt = str(params["format"])
        map_rows(m, lambda b: fp8_round_trip(b, fmt))
        outcome.bits[m.name] = 8
    elif edit_type == "magnitude_prune":
        view = m.view()
        view.masked_fill_(prune_mask(view, float(params["sparsity"])), 0)
    elif edit_type == "lowrank_svd":
        rank = int(params["rank"])
        map_matrix(m, lambda w: low_rank(w, rank))
        q = min(rank, *m.view().shape)
        outcome.ranks[m.name] = max(q, outcome.ranks.get(m.name, 0))
    else:  # pragma: no cover - parse_spec admits no other edit type
        raise InvalidInputError(f"unknown weight edit '{edit_type}'")


def _check_editable(target: Target) -> None:
    if target.param.device.type == "meta":
        raise InvalidInputError(
            f"tensor {target.name} is not materialised (meta/offloaded); load the model "
            "fully onto a device to edit it"
        )
    if not target.param.dtype.is_floating_point:
        raise InvalidInputError(
            f"tensor {target.name} is {target.param.dtype}; edits need floating-point weights"
        )

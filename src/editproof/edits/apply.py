"""Reversible application of edits, faults and probes to a live model.

Before an edit writes to a tensor it hands it to the :class:`_Journal`, which keeps a copy of
just that tensor (never a whole-model copy) and an undo step; structural faults add their own
undo closures. ``restore()`` replays the undo steps last-first, giving back the exact bytes,
shapes, module objects, tying and config values, so ``weight_digest`` matches the baseline.
A model carries at most one active edit at a time; a second ``apply_edit`` is refused.
"""

from __future__ import annotations

import time
import weakref
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any

from editproof.edits.faults import FAULTS, probe_matrices, rmt_norm_noise
from editproof.edits.record import EditRecord, Measure, overall_rel_error, overall_sparsity
from editproof.edits.scope import resolve_scope
from editproof.edits.spec import EditSpec, parse_spec
from editproof.edits.weights import Outcome, run_weight_edit
from editproof.errors import InvalidInputError, UsageError
from editproof.lm.digest import same_bytes

if TYPE_CHECKING:
    import torch

# Model -> its active edit. Weak keys: the registry never keeps a model alive.
_ACTIVE: weakref.WeakKeyDictionary[Any, AppliedEdit] = weakref.WeakKeyDictionary()
# Measures are accumulated over row blocks of at most this many elements.
_MEASURE_BLOCK = 1 << 24


def backup_copy(tensor: torch.Tensor) -> torch.Tensor:
    """A copy of ``tensor`` to restore from: same device when it fits, else pinned host.

    On CUDA the copy stays on the GPU only when free memory covers it plus 10%, so backing
    up never pushes the edit itself into OOM; otherwise it goes to pinned host memory, which
    keeps the copy back fast.
    """
    import torch

    data = tensor.detach()
    if data.device.type == "cpu":
        return data.clone()
    if data.device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(data.device)
        if free >= 1.1 * data.numel() * data.element_size():
            return data.clone()
        host = torch.empty(data.shape, dtype=data.dtype, device="cpu", pin_memory=True)
        return host.copy_(data)
    return data.to("cpu", copy=True)


class _Journal:
    """Undo log: saved tensor copies and structural undo closures, replayed last-first."""

    def __init__(self) -> None:
        self._undo: list[Callable[[], None]] = []
        self.saved: dict[int, tuple[str, torch.Tensor, torch.Tensor]] = {}

    def save_tensor(self, name: str, tensor: torch.Tensor) -> None:
        if id(tensor) in self.saved:
            return
        copy = backup_copy(tensor)
        self.saved[id(tensor)] = (name, tensor, copy)

        def undo() -> None:
            tensor.data.copy_(copy)

        self._undo.append(undo)

    def on_restore(self, undo: Callable[[], None]) -> None:
        self._undo.append(undo)

    def rollback(self) -> None:
        import torch

        with torch.no_grad():
            while self._undo:
                self._undo.pop()()
        self.saved.clear()


class AppliedEdit:
    """An edit live on a model. ``with`` yields the record and restores on exit."""

    def __init__(self, model: Any, spec: EditSpec, record: EditRecord, journal: _Journal) -> None:
        self.model = model
        self.spec = spec
        self.record = record
        self._journal = journal
        self._active = True
        self.restored: dict[str, bool] = {}

    @property
    def active(self) -> bool:
        return self._active

    def backups(self) -> dict[str, torch.Tensor]:
        """The journal's copies of the tensors the edit wrote, by the name each was saved
        under: the bytes a restore writes back. Empty once restored."""
        return {name: copy for name, _t, copy in self._journal.saved.values()}

    def restore(self) -> None:
        """Undo the edit exactly; calling it again is a no-op.

        Afterwards :attr:`restored` holds, per backed-up name, whether the model's live
        tensor of that name now has the backup's bytes (compared on its device); names whose
        live tensor sits elsewhere, or is gone, are left out. A comparison that fails (a
        device error) leaves it empty instead of raising: it is evidence only, and the
        restore check rehashes whatever it does not settle."""
        if not self._active:
            return
        copies = self.backups()
        self._journal.rollback()
        self._active = False
        if _ACTIVE.get(self.model) is self:
            del _ACTIVE[self.model]
        try:
            self.restored = _compare_live(self.model, copies)
        except Exception:  # never mask the error a restore may be running under
            self.restored = {}

    def __enter__(self) -> EditRecord:
        return self.record

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.restore()


def _compare_live(model: Any, copies: dict[str, torch.Tensor]) -> dict[str, bool]:
    if not copies:
        return {}
    state = model.state_dict()
    out: dict[str, bool] = {}
    for name, copy in copies.items():
        live = state.get(name)
        if live is not None and live.device == copy.device:
            out[name] = same_bytes(live, copy)
    return out


def apply_edit(
    model: Any, spec: EditSpec | str, *, sample: Sequence[Sequence[int]] | None = None
) -> AppliedEdit:
    """Apply ``spec`` in place and return the handle that restores it.

    ``sample`` (a few token windows) is what input-aligned probes measure their direction
    on; nothing else reads it.

    On any failure part-way the tensors already touched are restored before the error
    propagates, so the model is never left half-edited.
    """
    import torch

    if isinstance(spec, str):
        spec = parse_spec(spec)
    if spec.clean:
        raise UsageError(
            f"spec '{spec.text}' has clean params; resolve it with resolve_clean first"
        )
    current = _ACTIVE.get(model)
    if current is not None and current.active:
        raise InvalidInputError(
            f"model already carries edit '{current.spec.text}'; restore it before applying "
            f"'{spec.text}'"
        )
    journal = _Journal()
    start = time.perf_counter()
    try:
        with torch.no_grad():
            outcome = _dispatch(model, spec, journal, sample)
        seconds = time.perf_counter() - start
        record = _record(spec, outcome, journal, seconds)
    except BaseException:
        journal.rollback()
        raise
    applied_edit = AppliedEdit(model, spec, record, journal)
    _ACTIVE[model] = applied_edit
    return applied_edit


def applied(
    model: Any, spec: EditSpec | str, *, sample: Sequence[Sequence[int]] | None = None
) -> AppliedEdit:
    """``with applied(model, spec) as record:`` -- the edit is undone when the block exits."""
    return apply_edit(model, spec, sample=sample)


def active_edit(model: Any) -> AppliedEdit | None:
    """The edit currently live on ``model``, if any."""
    return _ACTIVE.get(model)


def check_edit(model: Any, spec: EditSpec | str) -> EditSpec:
    """Check, without changing ``model``, that ``spec`` selects something in it.

    A weight edit's scope and a probe's family/target/layers must match at least one weight
    (UsageError naming the model's layers and families otherwise); a ``clean`` spec must be
    resolved first. Faults carry no selection and are checked when applied.
    """
    if isinstance(spec, str):
        spec = parse_spec(spec)
    if spec.clean:
        raise UsageError(
            f"spec '{spec.text}' has clean params; resolve it with resolve_clean first"
        )
    if spec.kind == "edit":
        assert spec.scope is not None
        for target in resolve_scope(model, spec.scope):
            target.matrices()  # only 2-D weights and 3-D expert stacks can be edited
    elif spec.kind == "probe":
        probe_matrices(model, spec.type, spec.params)
    return spec


def _dispatch(
    model: Any, spec: EditSpec, journal: _Journal, sample: Sequence[Sequence[int]] | None
) -> Outcome:
    if spec.kind == "noop":
        return Outcome()
    if spec.kind == "edit":
        assert spec.scope is not None  # parse_spec gives every weight edit a scope
        return run_weight_edit(spec.type, spec.params, resolve_scope(model, spec.scope), journal)
    if spec.type == "rmt_norm_noise":
        return rmt_norm_noise(model, spec.params, journal, sample)
    return FAULTS[spec.type](model, spec.params, journal)


def _record(spec: EditSpec, outcome: Outcome, journal: _Journal, seconds: float) -> EditRecord:
    measured = (_measure(name, t, copy) for name, t, copy in journal.saved.values())
    measures = [m for m in measured if m is not None]
    prune = spec.type == "magnitude_prune"
    tensors = [m.name for m in measures]
    tensors += [n for n in outcome.touched if n not in tensors]
    return EditRecord(
        type=spec.type,
        kind=spec.kind,
        label=spec.label,
        spec=spec.text,
        resolved_from=spec.resolved_from,
        params=dict(spec.params),
        scope=spec.scope.text if spec.scope else None,
        tensors=tensors,
        per_tensor=[m.stat(sparsity=prune, rank=outcome.ranks.get(m.name)) for m in measures],
        n_elements=sum(m.numel for m in measures),
        rel_error=overall_rel_error(measures),
        sparsity=overall_sparsity(measures) if prune else None,
        bits=outcome.bits,
        rank=outcome.rank,
        seconds=seconds,
        injected=outcome.injected,
    )


def _measure(name: str, tensor: torch.Tensor, copy: torch.Tensor) -> Measure | None:
    """Diff a touched tensor against its backup, in row blocks to bound fp32 scratch."""
    import torch

    if tensor.shape != copy.shape:
        return None
    measure = Measure(name, list(tensor.shape))
    with torch.no_grad():
        after = tensor.detach().reshape(-1, tensor.shape[-1])
        before = copy.reshape(-1, copy.shape[-1])
        rows = max(1, _MEASURE_BLOCK // max(1, after.shape[1]))
        for r0 in range(0, after.shape[0], rows):
            measure.add(before[r0 : r0 + rows], after[r0 : r0 + rows])
    return measure

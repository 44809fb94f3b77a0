"""One forward pass shared by every activation guard that samples the same windows.

The RMT and variance guards both read residual-branch outputs on a fixed sample of the
evaluation windows. Each describes what it wants as an :class:`ActivationTap` (which
windows, which branches, what to do with each output, how to turn what it gathered into a
signature); :func:`run_taps` groups the taps by window indices and runs ONE hooked forward
per group, handing every branch output to each tap that asked for that branch.

The model, the windows, the batches and the kernels are the same as in one pass per guard,
so every tap sees exactly the tensors it would have seen alone: sharing changes the time,
never a number. A signature's ``seconds`` is its own preparation and finishing plus an
equal share of the pass it shared.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from editproof.guards._branches import Branch, TensorHook, hooked, run_windows
from editproof.guards.base import MeasureContext, Signature


@dataclass
class ActivationTap:
    """One guard's share of an activation pass.

    ``finish`` is called once, after the pass, and returns the guard's signature.
    ``started`` is when the guard began building the tap: the seconds until the tap was
    made (``prepared``) are added to its share.
    """

    guard: str
    indices: tuple[int, ...]
    branches: Sequence[Branch]
    on_output: TensorHook
    finish: Callable[[], Signature]
    started: float
    made: float = field(default_factory=time.perf_counter)

    @property
    def prepared(self) -> float:
        return self.made - self.started


def measured(model: Any, ctx: MeasureContext, got: ActivationTap | Signature) -> Signature:
    """A guard's signature measured on its own: a tap gets a pass of its own, now."""
    return got if isinstance(got, Signature) else run_taps(model, ctx, [got])[0]


def run_taps(model: Any, ctx: MeasureContext, taps: Sequence[ActivationTap]) -> list[Signature]:
    """Signatures of ``taps`` (same order), one forward pass per distinct window sample."""
    groups: dict[tuple[int, ...], list[int]] = {}
    for i, tap in enumerate(taps):
        groups.setdefault(tap.indices, []).append(i)
    shares = [0.0] * len(taps)
    for indices, members in groups.items():
        started = time.perf_counter()
        _one_pass(model, ctx, indices, [taps[i] for i in members])
        share = (time.perf_counter() - started) / len(members)
        for i in members:
            shares[i] = share
    out: list[Signature] = []
    for tap, share in zip(taps, shares, strict=True):
        started = time.perf_counter()
        signature = tap.finish()
        seconds = tap.prepared + share + time.perf_counter() - started
        out.append(signature.model_copy(update={"seconds": seconds}))
    return out


def _one_pass(
    model: Any, ctx: MeasureContext, indices: tuple[int, ...], taps: Sequence[ActivationTap]
) -> None:
    # The union of the taps' branches by module path, in first-seen order; each output goes
    # to every tap that asked for that module, as that tap's own Branch.
    listeners: dict[str, list[tuple[ActivationTap, Branch]]] = {}
    union: list[Branch] = []
    for tap in taps:
        for branch in tap.branches:
            if branch.name not in listeners:
                listeners[branch.name] = []
                union.append(branch)
            listeners[branch.name].append((tap, branch))

    def dispatch(branch: Branch, out: Any, mask: Any) -> None:
        for tap, own in listeners[branch.name]:
            tap.on_output(own, out, mask)

    sample = [list(ctx.windows[i]) for i in indices]
    with hooked(union, dispatch) as set_mask:
        run_windows(model, sample, batch_size=ctx.batch_size, device=ctx.device, set_mask=set_mask)

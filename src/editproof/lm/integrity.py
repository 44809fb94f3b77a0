"""What shows an in-memory edit's weights are what a report says: the edited model's digest,
built from the baseline's, and the check that restoring gave the baseline back exactly."""

from __future__ import annotations

import time
from typing import Any

from editproof.errors import RestoreError
from editproof.lm.digest import (
    WeightDigest,
    aliases,
    digest_from_lines,
    fingerprints,
    weight_digest,
)


def edited_digest(
    model: Any, base: WeightDigest, touched: list[str], *, structural: bool
) -> tuple[WeightDigest, float]:
    """Digest of the edited ``model`` (rehashing only the touched tensors unless the layout
    moved) and the seconds it took."""
    t0 = time.perf_counter()
    state = model.state_dict()
    if structural or set(state) != set(base.tensors):
        return weight_digest(model), time.perf_counter() - t0
    part = weight_digest(model, aliases(model, touched))
    lines = {**base.tensors, **part.tensors}
    digest = WeightDigest(
        sha256=digest_from_lines(lines), tensors=lines, n_tensors=len(lines), n_bytes=base.n_bytes
    )
    return digest, time.perf_counter() - t0


def verify_restore(
    model: Any,
    base: WeightDigest,
    base_fingerprints: dict[str, tuple[str, tuple[int, ...], int, int]],
    touched: list[str],
) -> None:
    """Touched tensors: sha256 equal to the baseline's; every tensor: the same fingerprint.
    Raises :class:`RestoreError` naming the first that differs."""
    after = fingerprints(model)
    differ = set(after) ^ set(base_fingerprints)
    differ |= {k for k in after if base_fingerprints.get(k) != after[k]}
    names = [n for n in aliases(model, touched) if n in base.tensors]
    rehashed = weight_digest(model, names).tensors
    differ |= {n for n in names if rehashed[n] != base.tensors[n]}
    changed = sorted(differ)  # a tensor both checks catch is counted once
    if changed:
        raise RestoreError(
            f"restoring the baseline after the edit left {len(changed)} tensor(s) "
            f"different (first: {changed[0]}); results after this point are unsafe"
        )

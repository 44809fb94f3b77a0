"""What shows an in-memory edit's weights are what a report says: the edited model's digest,
built from the baseline's, and the check that restoring gave the baseline back exactly."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from editproof.errors import RestoreError
from editproof.lm.digest import (
    StorageKey,
    WeightDigest,
    aliases,
    digest_from_lines,
    fingerprints,
    storage_key,
    tensor_lines,
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


def backup_lines(backups: dict[str, Any]) -> tuple[dict[str, str], float]:
    """sha256 lines of an edit's backup copies (:func:`tensor_lines`) and the seconds it
    took: the first half of :class:`RestoreEvidence`, hashed while the edit is live."""
    t0 = time.perf_counter()
    return tensor_lines(backups), time.perf_counter() - t0


@dataclass(frozen=True)
class RestoreEvidence:
    """What an edit gathered so its restore can be checked without rehashing on the
    critical path: the sha256 lines of its backup copies (hashed while the edit was live,
    beside the subject's measurement) and, per backed-up name, whether the live tensor had
    the backup's bytes right after the restore (compared on the device)."""

    backup_lines: dict[str, str]
    restored: dict[str, bool]


def verify_restore(
    model: Any,
    base: WeightDigest,
    base_fingerprints: dict[str, tuple[str, tuple[int, ...], int, int]],
    touched: list[str],
    evidence: RestoreEvidence | None = None,
) -> None:
    """Touched tensors: sha256 equal to the baseline's; every tensor: the same fingerprint.
    Raises :class:`RestoreError` naming the first that differs.

    With ``evidence``, a touched tensor whose backup hashed to the baseline's line and whose
    live bytes equal that backup after the restore has the baseline's sha256 without being
    hashed again: equal bytes, equal digest. Tied names sharing its storage are covered with
    it. Every other touched tensor is rehashed here.
    """
    after = fingerprints(model)
    differ = set(after) ^ set(base_fingerprints)
    differ |= {k for k in after if base_fingerprints.get(k) != after[k]}
    names = [n for n in aliases(model, touched) if n in base.tensors]
    proven = _proven(model, base, names, evidence) if evidence is not None else {}
    differ |= {n for n, ok in proven.items() if not ok}
    rest = [n for n in names if n not in proven]
    rehashed = weight_digest(model, rest).tensors if rest else {}
    differ |= {n for n in rest if rehashed[n] != base.tensors[n]}
    changed = sorted(differ)  # a tensor both checks catch is counted once
    if changed:
        raise RestoreError(
            f"restoring the baseline after the edit left {len(changed)} tensor(s) "
            f"different (first: {changed[0]}); results after this point are unsafe"
        )


def _proven(
    model: Any, base: WeightDigest, names: list[str], evidence: RestoreEvidence
) -> dict[str, bool]:
    """Per touched name the evidence settles: True when it shows the baseline's bytes."""
    state = model.state_dict()
    # Storage (pointer, shape, dtype) of every name the evidence covers -> (ok, its line).
    storage: dict[StorageKey, tuple[bool, str]] = {}
    for name, same in evidence.restored.items():
        line = evidence.backup_lines.get(name)
        if line is None or name not in base.tensors or name not in state:
            continue
        t = state[name]
        ok = same and line == base.tensors[name]
        storage[storage_key(t)] = (ok, line)
    settled: dict[str, bool] = {}
    for name in names:
        t = state.get(name)
        if t is None:
            continue
        found = storage.get(storage_key(t))
        if found is not None:
            # This name's live bytes are the covered tensor's; its baseline line must be
            # that tensor's too (a tie the baseline did not have is a difference).
            ok, line = found
            settled[name] = ok and base.tensors[name] == line
    return settled

"""Weight digests: sha256 per tensor, combined into one model digest; and fingerprints.

Per-tensor digests let an edit prove that restoring the tensors it touched gave back the
exact baseline bytes without rehashing the rest. Tensors are hashed on worker threads
(``hashlib`` releases the GIL on large buffers); GPU tensors stream through a small pinned
buffer per thread, because pageable device-to-host copies halve the rate (a 7B model took
8.4 s with plain ``.cpu()`` copies on an H200).

GPU copies run on a side stream per thread and device, after an event recorded when the
digest was asked for: on the default stream they would queue between the kernels of a
measurement running beside the digest and slow it (0.5 s of a 6 s arm on a 7B model).
They move 8 MiB at a time. With 64 MiB copies from 14 threads, a 7B model's measurement
beside the digest took 0.26 s longer than alone (median of two runs; 1.90 s alone). With
8 MiB copies it took 0.03 s longer, and the digest itself was no slower (1.13 s, against
1.25 s). Copies without hashing cost it 0.02 s, and hashing a host copy without GPU
traffic cost 0.00 s. So the measurement's own small device-to-host reads queued behind
large copies (``bench/digest_overlap.py`` on an H200).

Fingerprints are exact integer sums computed on the tensor's own device in milliseconds.
They are not cryptographic: they catch our own mistakes (an edit that changed a tensor it
did not journal) across the whole model after every restore, where a full sha256 pass would
cost seconds per edit. The sha256 digest remains the identity recorded in reports.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True)
class WeightDigest:
    sha256: str
    tensors: dict[str, str]  # name -> "dtype shape sha256"
    n_tensors: int
    n_bytes: int


# Bytes per device-to-host copy when hashing GPU tensors (see the module docstring).
_CHUNK = 8 * 1024 * 1024
_local = threading.local()
# Elements per fingerprint step.
_FP_CHUNK = 1 << 24


def _raw_bytes(tensor: Any) -> Any:
    import torch

    return tensor.detach().contiguous().reshape(-1).view(torch.uint8)


def tensor_sha256(tensor: Any, ready: dict[Any, Any] | None = None) -> str:
    """sha256 of a tensor's raw bytes in its own dtype (bf16 included), C order.

    ``ready``: CUDA device -> event the copies wait for (see :func:`_ready_events`)."""
    import torch

    if tensor.device.type != "cuda":
        return hashlib.sha256(_raw_bytes(tensor).numpy().data).hexdigest()
    buf: torch.Tensor | None = getattr(_local, "buf", None)
    if buf is None:
        buf = torch.empty(_CHUNK, dtype=torch.uint8, pin_memory=True)
        _local.buf = buf
    stream = _side_stream(tensor.device)
    event = (ready or {}).get(tensor.device)
    if event is not None:
        stream.wait_event(event)
    h = hashlib.sha256()
    with torch.cuda.stream(stream):
        raw = _raw_bytes(tensor)
        for lo in range(0, raw.numel(), _CHUNK):
            part = raw[lo : lo + _CHUNK]
            host = buf[: part.numel()]
            host.copy_(part)  # synchronous on this stream: the buffer is reused right after
            h.update(host.numpy().data)
    return h.hexdigest()


def _side_stream(device: Any) -> Any:
    """This thread's copy stream on ``device`` (made once)."""
    import torch

    streams: dict[Any, Any] | None = getattr(_local, "streams", None)
    if streams is None:
        streams = {}
        _local.streams = streams
    if device not in streams:
        streams[device] = torch.cuda.Stream(device=device)  # type: ignore[no-untyped-call]
    return streams[device]


def _ready_events(tensors: Any) -> dict[Any, Any]:
    """An event on each CUDA device's current stream, recorded now: the side-stream copies
    wait for every write already queued (an edit's), not for what is queued later."""
    import torch

    events: dict[Any, Any] = {}
    for t in tensors:
        if t.device.type == "cuda" and t.device not in events:
            event = torch.cuda.Event()  # type: ignore[no-untyped-call]
            event.record(torch.cuda.current_stream(t.device))
            events[t.device] = event
    return events


def fingerprints(model: Any) -> dict[str, tuple[str, tuple[int, ...], int, int]]:
    """Per-tensor (dtype, shape, sum, position-weighted sum) of the raw bytes as int32/uint8.

    Integer arithmetic wraps identically on every run, so equal tensors always match and a
    changed tensor almost surely does not.
    """
    import torch

    sums: dict[str, Any] = {}
    state = model.state_dict()
    with torch.no_grad():
        for name, t in state.items():
            raw = _raw_bytes(t)
            words = raw.view(torch.int32) if raw.numel() % 4 == 0 else raw
            pair = torch.zeros(2, dtype=torch.int64, device=raw.device)
            # Chunks bound the int64 scratch (a 1 GB embedding would need 6 GB at once).
            for lo in range(0, words.numel(), _FP_CHUNK):
                x = words[lo : lo + _FP_CHUNK].to(torch.int64)
                pos = torch.arange(lo + 1, lo + 1 + x.numel(), device=x.device, dtype=torch.int64)
                pair[0] += x.sum()
                pair[1] += (x * pos).sum()
            sums[name] = pair
        # One read back per device, not two per tensor (each a wait for the device).
        by_device: dict[Any, list[str]] = {}
        for name, pair in sums.items():
            by_device.setdefault(pair.device, []).append(name)
        values: dict[str, list[int]] = {}
        for names in by_device.values():
            values.update(zip(names, torch.stack([sums[n] for n in names]).tolist(), strict=True))
    return {
        name: (str(t.dtype), tuple(t.shape), values[name][0], values[name][1])
        for name, t in state.items()
    }


def hash_threads() -> int:
    """Threads that hash at once: every core but two, at most 16. A digest runs beside a
    measurement, whose one Python thread launches the GPU's kernels; with every core
    hashing it waited for a core, and the H200 ran the baseline arm 0.5 s slower."""
    return max(1, min(16, (os.cpu_count() or 1) - 2))


def weight_digest(model: Any, names: list[str] | None = None) -> WeightDigest:
    """Digest of ``model.state_dict()`` (parameters and persistent buffers).

    Tied tensors appear under each of their names and are hashed once.
    """
    state = model.state_dict()
    keys = sorted(state) if names is None else sorted(names)
    lines, n_bytes = _lines({name: state[name] for name in keys})
    return WeightDigest(
        sha256=digest_from_lines(lines), tensors=lines, n_tensors=len(keys), n_bytes=n_bytes
    )


def tensor_lines(named: Mapping[str, Any]) -> dict[str, str]:
    """``"dtype [shape] sha256"`` per name: the per-tensor lines of :func:`weight_digest`,
    for tensors that need not sit in a model (an edit's backup copies)."""
    return _lines(named)[0]


def _lines(named: Mapping[str, Any]) -> tuple[dict[str, str], int]:
    """Per-name lines and the bytes of distinct storage (tensors sharing storage, shape and
    dtype are hashed and counted once), hashed on :func:`hash_threads` threads."""
    unique: dict[StorageKey, Any] = {}
    key_of: dict[str, StorageKey] = {}
    for name, t in named.items():
        k = storage_key(t)
        key_of[name] = k
        unique.setdefault(k, t)
    ready = _ready_events(unique.values())
    with ThreadPoolExecutor(max_workers=hash_threads()) as pool:
        hashed = dict(
            zip(unique, pool.map(lambda t: tensor_sha256(t, ready), unique.values()), strict=True)
        )
    lines: dict[str, str] = {}
    for name, t in named.items():
        dtype = str(t.dtype).removeprefix("torch.")
        lines[name] = f"{dtype} {list(t.shape)} {hashed[key_of[name]]}"
    n_bytes = sum(t.numel() * t.element_size() for t in unique.values())
    return lines, n_bytes


StorageKey = tuple[int, tuple[int, ...], str]


def storage_key(t: Any) -> StorageKey:
    """(pointer, shape, dtype): equal for tensors that are the same bytes (tied names)."""
    return (t.data_ptr(), tuple(t.shape), str(t.dtype))


def same_bytes(a: Any, b: Any) -> bool:
    """Whether two tensors hold the same raw bytes (dtype and shape included), compared on
    their device. Unlike ``torch.equal`` this treats NaN as equal to the same NaN and
    -0.0 as different from +0.0: it is a byte comparison, as a sha256 would be."""
    import torch

    if a.dtype != b.dtype or tuple(a.shape) != tuple(b.shape) or a.device != b.device:
        return False
    return bool(torch.equal(_raw_bytes(a), _raw_bytes(b)))


def digest_from_lines(lines: dict[str, str]) -> str:
    """The model digest from per-tensor lines: sha256 over ``name\tline\n`` in name order.

    Lets an edit compute the edited model's digest by rehashing only the tensors it touched.
    """
    total = hashlib.sha256()
    for name in sorted(lines):
        total.update(f"{name}\t{lines[name]}\n".encode())
    return total.hexdigest()


def aliases(model: Any, names: list[str]) -> list[str]:
    """``names`` plus every state-dict name sharing storage with one of them (tied weights)."""
    state = model.state_dict()
    ptrs = {state[n].data_ptr() for n in names if n in state}
    return sorted({n for n, t in state.items() if t.data_ptr() in ptrs} | set(names) & set(state))

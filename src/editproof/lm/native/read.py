"""Reading safetensors files into tensors on the device, several threads at once.

safetensors' own reader maps the file and copies one tensor after another to the GPU from
pageable memory: loading a 14.5 GB checkpoint that way took 2.9 s and 3.4 s in two runs on
the H200 host. Here the checked header (:func:`editproof.lm.preflight.read_header`) says
where each tensor lies, every tensor gets its own allocation on the device first, and a
few threads share the data section in contiguous parts. Each reads its part with
``pread`` (no mapping; the GIL is released) in blocks of at most :data:`BLOCK` bytes:

- on a GPU, into two pinned host buffers of its own, in turn: while one block is copied to
  its tensors on the thread's own CUDA stream, the next is read into the other buffer;
- on the CPU, straight into the destination tensors' memory.

Only bytes move: the tensors come out exactly as the file holds them (the caller casts
them), and the device is synchronised before they are returned. A file that ends early or
cannot be read is an :class:`~editproof.errors.InvalidInputError` naming it.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import torch

from editproof.errors import InvalidInputError
from editproof.lm.preflight import SafetensorsHeader

# Largest read (and pinned buffer): small enough that two per thread cost little pinned
# memory, large enough that a read or a copy is never dominated by its fixed cost.
BLOCK = 32 << 20
# Threads that read at once: page-cache copies scale to a few cores, then memory saturates.
MAX_THREADS = 8

_DTYPES: dict[str, torch.dtype] = {
    "BOOL": torch.bool,
    "U8": torch.uint8,
    "I8": torch.int8,
    "I16": torch.int16,
    "I32": torch.int32,
    "I64": torch.int64,
    "F16": torch.float16,
    "BF16": torch.bfloat16,
    "F32": torch.float32,
    "F64": torch.float64,
    "F8_E4M3": torch.float8_e4m3fn,
    "F8_E5M2": torch.float8_e5m2,
}


def torch_dtype(name: str) -> torch.dtype | None:
    """The torch dtype of a safetensors dtype name, None for one this reader does not load."""
    return _DTYPES.get(name)


@dataclass
class _Block:
    """One read: ``length`` bytes at file offset ``offset``, landing in ``parts`` (the
    destination's bytes, each with its start inside the block)."""

    path: str
    offset: int
    length: int = 0
    parts: list[tuple[int, torch.Tensor]] = field(default_factory=list)


def read_tensors(
    headers: Sequence[SafetensorsHeader],
    device: str | torch.device,
    *,
    skip: Callable[[str], bool] = lambda name: False,
    threads: int | None = None,
) -> dict[str, torch.Tensor]:
    """Every tensor of the files ``headers`` describe, except those ``skip`` names, as the
    file holds it, on ``device``."""
    device = torch.device(device)
    out: dict[str, torch.Tensor] = {}
    blocks: list[_Block] = []
    for header in headers:
        current: _Block | None = None
        entries = sorted(header.tensors.items(), key=lambda kv: kv[1].begin)
        for name, entry in entries:
            if skip(name):
                continue
            dtype = torch_dtype(entry.dtype)
            if dtype is None:
                raise InvalidInputError(
                    f"cannot read {header.path}: tensor '{name}' has dtype {entry.dtype}, "
                    "which editproof does not load"
                )
            tensor = torch.empty(entry.shape, dtype=dtype, device=device)
            out[name] = tensor
            if tensor.numel() == 0:
                continue
            data = tensor.view(-1).view(torch.uint8)
            start = header.data_start + entry.begin
            for lo in range(0, data.numel(), BLOCK):
                piece = data[lo : lo + BLOCK]
                offset = start + lo
                # Consecutive small tensors share a block: one read, several copies.
                if (
                    current is None
                    or current.offset + current.length != offset
                    or current.length + piece.numel() > BLOCK
                ):
                    current = _Block(str(header.path), offset)
                    blocks.append(current)
                current.parts.append((current.length, piece))
                current.length += piece.numel()
    if blocks:
        _run(blocks, device, threads or min(MAX_THREADS, os.cpu_count() or 1))
    return out


def _run(blocks: list[_Block], device: torch.device, threads: int) -> None:
    """Read ``blocks`` on ``threads`` threads, each taking a contiguous share of the bytes."""
    total = sum(b.length for b in blocks)
    shares: list[list[_Block]] = [[]]
    done = 0
    for block in blocks:
        if shares[-1] and done >= total * len(shares) / threads:
            shares.append([])
        shares[-1].append(block)
        done += block.length
    cuda = device.type == "cuda"
    reader = _to_gpu if cuda else _to_host
    try:
        with ThreadPoolExecutor(max_workers=len(shares)) as pool:
            jobs = [pool.submit(reader, share, device) for share in shares]
            errors = [job.exception() for job in jobs]
    finally:
        if cuda:
            torch.cuda.synchronize(device)
    for error in errors:
        if error is not None:
            raise error


def _read_into(fds: dict[str, int], block: _Block, buffer: memoryview) -> None:
    """Fill ``buffer`` (``block.length`` bytes) from the block's file."""
    fd = fds.get(block.path)
    try:
        if fd is None:
            fd = fds[block.path] = os.open(block.path, os.O_RDONLY)
        got = 0
        while got < block.length:
            n = _pread_into(fd, buffer[got : block.length], block.offset + got)
            if n <= 0:
                raise InvalidInputError(
                    f"cannot read {block.path}: it ended at byte {block.offset + got}, "
                    "before its tensors did (changed while loading?)"
                )
            got += n
    except OSError as exc:
        raise InvalidInputError(f"cannot read {block.path}: {exc.strerror or exc}") from None


def _pread_into(fd: int, target: memoryview, offset: int) -> int:
    """Read into ``target`` at file ``offset``; bytes read (0 at the end of the file).
    ``os.preadv`` reads in place; where it is missing, ``os.pread`` and one copy."""
    if hasattr(os, "preadv"):
        return os.preadv(fd, [target], offset)
    data = os.pread(fd, len(target), offset)
    target[: len(data)] = data
    return len(data)


def _close(fds: dict[str, int]) -> None:
    for fd in fds.values():
        os.close(fd)


def _to_host(blocks: list[_Block], device: torch.device) -> None:
    """CPU: each part is read straight into its tensor."""
    fds: dict[str, int] = {}
    try:
        for block in blocks:
            for start, part in block.parts:
                one = _Block(block.path, block.offset + start, part.numel())
                _read_into(fds, one, part.numpy().data)
    finally:
        _close(fds)


def _to_gpu(blocks: list[_Block], device: torch.device) -> None:
    """GPU: two pinned buffers in turn; a buffer is read into again only once the copies
    out of it (on this thread's stream) have finished."""
    stream = torch.cuda.Stream(device=device)  # type: ignore[no-untyped-call]
    size = max(b.length for b in blocks)
    buffers = [torch.empty(size, dtype=torch.uint8, pin_memory=True) for _ in range(2)]
    views = [b.numpy().data for b in buffers]
    copied: list[Any] = [None, None]
    fds: dict[str, int] = {}
    try:
        for i, block in enumerate(blocks):
            k = i % 2
            if copied[k] is not None:
                copied[k].synchronize()
            _read_into(fds, block, views[k])
            with torch.cuda.stream(stream):
                for start, part in block.parts:
                    part.copy_(buffers[k][start : start + part.numel()], non_blocking=True)
                copied[k] = torch.cuda.Event()  # type: ignore[no-untyped-call]
                copied[k].record(stream)
        stream.synchronize()
    finally:
        _close(fds)

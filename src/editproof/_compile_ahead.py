"""Compile the modules a command will import in worker processes, when this Python would
compile them from source itself.

With ``PYTHONDONTWRITEBYTECODE`` set, or site-packages the user cannot write, and no
``__pycache__`` beside the sources (an image built with ``pip install --no-compile``, say),
every process compiles each module it imports from source: for torch's import, about two
thirds of its seconds. ``compile`` holds the GIL, so threads cannot share that work, but
processes can.

When such a command starts, :func:`start` forks a few workers before any other thread
exists. They compile the source files that the same command compiled from source the last
time (a list in editproof's cache). Each worker writes its code objects, marshalled, into
a shared anonymous memory region and says on a pipe how far the region is written. The
importing process reads a source file as usual and takes a worker's code object only when
the worker compiled exactly the same bytes (a BLAKE2b digest of the source); otherwise it
compiles the source itself. So a list that is stale, missing or written by someone else
costs at most the workers' time, never a different module.

Nothing is written but that list: the paths this process compiled from source and Python
did not cache as bytecode, in import order, then those an earlier run of the command
compiled besides; written when the command ends (:func:`finish`). Where Python caches
bytecode itself, there is no list.

A file that makes the compiler warn is left to the importing process, which shows the
warning as before. Workers only read regular ``.py`` files of at most
:data:`MAX_SOURCE_BYTES` (a list naming a FIFO or a device is harmless), and they end when
their list does or at their next word after the importing process stops listening.

Off with fewer than two CPUs, when another thread already runs, without ``os.fork``, or with
``EDITPROOF_COMPILE_AHEAD=0``.

Of editproof it imports only :mod:`editproof.fileio` (standard library only), so that it
can run before anything else.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import marshal
import mmap
import os
import stat
import struct
import sys
import threading
import time
import warnings
from importlib.machinery import (
    BYTECODE_SUFFIXES,
    EXTENSION_SUFFIXES,
    SOURCE_SUFFIXES,
    ExtensionFileLoader,
    FileFinder,
    SourceFileLoader,
    SourcelessFileLoader,
)
from pathlib import Path
from typing import Any

from editproof.fileio import atomic_write_text, cache_root

HEADER = "editproof compile-ahead 1"
MAX_FILES = 8000
MAX_SOURCE_BYTES = 4 << 20
MAX_WORKERS = 8
REGION_BYTES = 256 << 20  # address space per worker; only the pages written are memory
_MAP_FLAGS = (
    mmap.MAP_SHARED | getattr(mmap, "MAP_ANONYMOUS", 0x20) | getattr(mmap, "MAP_NORESERVE", 0)
)
_FRAME = struct.Struct("<III")  # path, digest and code lengths
_WORD = struct.Struct("<Qd")  # bytes written, time.perf_counter(): one atomic pipe write
_DIGEST_SIZE = 16


def digest(data: bytes) -> bytes:
    return hashlib.blake2b(data, digest_size=_DIGEST_SIZE).digest()


class Worker:
    """One worker's shared region and the pipe on which it says how far the region is
    written, and when (a syscall on both sides, so the bytes are there once the number is)."""

    def __init__(self, pid: int, fd: int, region: mmap.mmap) -> None:
        self.pid, self.fd, self.region = pid, fd, region
        self.end = 0  # bytes of the region the worker has said are written
        self.said_at = 0.0  # when it said so (time.perf_counter: one clock for all processes)
        self.parsed = 0  # bytes of the region indexed here
        self.open = True


class Store:
    """The workers' code objects (indexed as they are announced) and what this process
    compiled from source, in order."""

    def __init__(self) -> None:
        self.workers: list[Worker] = []
        self.index: dict[str, tuple[Worker, int, int, int]] = {}  # path -> where its frame is
        self.compiled: list[str] = []  # every path compiled from source, here or ahead
        self.taken: list[str] = []  # those whose code came from a worker
        self.listed: list[str] = []
        self.started = time.perf_counter()

    def code_for(self, data: bytes, path: str) -> Any | None:
        """A worker's code object for source ``data`` at ``path``, or None."""
        self.compiled.append(path)
        if path not in self.index:
            self.poll()
        entry = self.index.pop(path, None)
        if entry is None:
            return None
        worker, at, n_digest, n_code = entry
        if worker.region[at : at + n_digest] != digest(data):
            return None
        code = marshal.loads(worker.region[at + n_digest : at + n_digest + n_code])
        self.taken.append(path)
        return code

    def poll(self) -> None:
        """Index what the workers have announced since the last look."""
        for worker in self.workers:
            if not worker.open:
                continue
            try:
                news = os.read(worker.fd, 1 << 16)
            except BlockingIOError:
                continue
            except OSError:
                news = b""
            if not news:
                self._ended(worker)
                continue
            worker.end, worker.said_at = _WORD.unpack_from(news, len(news) - _WORD.size)
            self._parse(worker)

    def span(self) -> float | None:
        """Seconds from the start to the last worker's end; None while one still runs."""
        self.poll()
        self.poll()  # a worker's last word, then its end
        if not self.workers or any(w.open for w in self.workers):
            return None
        return max(w.said_at for w in self.workers) - self.started

    def _parse(self, worker: Worker) -> None:
        region, pos = worker.region, worker.parsed
        while worker.end - pos >= _FRAME.size:
            n_path, n_digest, n_code = _FRAME.unpack_from(region, pos)
            at = pos + _FRAME.size
            path = region[at : at + n_path].decode("utf-8", "surrogateescape")
            self.index[path] = (worker, at + n_path, n_digest, n_code)
            pos = at + n_path + n_digest + n_code
        worker.parsed = pos

    def _ended(self, worker: Worker) -> None:
        worker.open = False
        os.close(worker.fd)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(worker.pid, os.WNOHANG)

    def close(self) -> None:
        """Stop: close the pipes (a worker still writing ends on its next word) and free
        the regions."""
        for worker in self.workers:
            if worker.open:
                self._ended(worker)
        self.index.clear()
        for worker in self.workers:
            worker.region.close()


_store: Store | None = None


class AheadLoader(SourceFileLoader):
    """The standard source loader, which takes a worker's code object when there is one for
    the very bytes it read."""

    def source_to_code(  # type: ignore[override]
        self, data: bytes, path: str, *, _optimize: int = -1
    ) -> Any:
        store = _store
        if store is not None and _optimize == -1 and isinstance(data, bytes):
            try:
                code = store.code_for(data, path)
            except Exception:  # a worker's words or frames that do not read: compile here
                code = None
            if code is not None:
                return code
        return super().source_to_code(data, path, _optimize=_optimize)


def enabled() -> bool:
    """Whether this process would compile ahead (see the module's text)."""
    return (
        os.environ.get("EDITPROOF_COMPILE_AHEAD", "1") != "0"
        and hasattr(os, "fork")
        and _cpus() >= 2
        and threading.active_count() == 1
    )


def start(command: str) -> bool:
    """Install the loader and fork the workers for ``command``'s list; whether it is on."""
    global _store
    if _store is not None or not enabled():
        return False
    store = Store()
    store.listed = read_list(list_path(command))
    if store.listed:
        # No memory for a region, no process left: go on with the workers made.
        with contextlib.suppress(OSError):
            _fork_workers(store, min(MAX_WORKERS, _cpus() - 1))
    _install_hook()
    _store = store
    return True


def finish(command: str) -> None:
    """Stop taking code from the workers, and update the list: what this process compiled
    from source and Python did not cache as bytecode, in order, then what the list held
    besides (another run of the command may import it: a different forward or data
    provider). When there is no such module (bytecode is cached here), the list is
    removed, or never written."""
    global _store
    store, _store = _store, None
    if store is None:
        return
    store.close()
    compiled = [p for p in dict.fromkeys(store.compiled) if not _bytecode_written(p)]
    merged = list(dict.fromkeys([*compiled, *store.listed]))[:MAX_FILES] if compiled else []
    if merged != store.listed:
        write_list(list_path(command), merged)


def summary() -> dict[str, float]:
    """For ``timings.json``: workers, modules taken from them, modules compiled here, and
    the workers' span in seconds (absent before they all ended)."""
    store = _store
    if store is None:
        return {}
    out: dict[str, float] = {
        "workers": len(store.workers),
        "from_workers": len(store.taken),
        "compiled_here": len(store.compiled) - len(store.taken),
    }
    span = store.span()
    if span is not None:
        out["span"] = round(span, 4)
    return out


def list_path(command: str) -> str:
    """Where ``command``'s list lives: one per interpreter and command, under editproof's
    cache (:func:`editproof.fileio.cache_root`)."""
    key = "\0".join([sys.executable, sys.version, str(sys.flags.optimize)])
    name = f"{command}-{hashlib.sha256(key.encode()).hexdigest()[:16]}.txt"
    return str(cache_root() / "compile-ahead" / name)


def read_list(path: str) -> list[str]:
    """The absolute ``.py`` paths of a list file; empty when it is missing or not one."""
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read(4 << 20).splitlines()
    except (OSError, UnicodeDecodeError):
        return []
    if not lines or lines[0] != HEADER:
        return []
    paths = [p for p in lines[1:] if os.path.isabs(p) and p.endswith(".py")]
    return list(dict.fromkeys(paths))[:MAX_FILES]


def write_list(path: str, paths: list[str]) -> None:
    """Write the list atomically (an empty one: remove it); a cache that cannot be written
    is skipped."""
    text = "\n".join([HEADER, *(p for p in paths if "\n" not in p)]) + "\n"
    with contextlib.suppress(OSError):
        if paths:
            atomic_write_text(Path(path), text)
        else:
            os.unlink(path)


def _bytecode_written(path: str) -> bool:
    """Whether Python cached bytecode for ``path`` (then the next run will not compile it)."""
    if sys.dont_write_bytecode:
        return False
    try:
        return os.path.exists(importlib.util.cache_from_source(path))
    except (NotImplementedError, ValueError):
        return False


def _cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _install_hook() -> None:
    """Put a file finder with :class:`AheadLoader` before the standard one and forget the
    finders already made, so that every directory gets the new one."""
    details = [
        (ExtensionFileLoader, EXTENSION_SUFFIXES),
        (AheadLoader, SOURCE_SUFFIXES),
        (SourcelessFileLoader, BYTECODE_SUFFIXES),
    ]
    hook = FileFinder.path_hook(*details)
    standard = [i for i, h in enumerate(sys.path_hooks) if "FileFinder" in repr(h)]
    sys.path_hooks.insert(standard[0] if standard else len(sys.path_hooks), hook)
    sys.path_importer_cache.clear()


def _fork_workers(store: Store, count: int) -> None:
    for index in range(count):
        share = store.listed[index::count]
        if not share:
            break
        region = mmap.mmap(-1, REGION_BYTES, flags=_MAP_FLAGS)
        r = w = -1
        try:
            r, w = os.pipe()
            pid = os.fork()
        except OSError:  # leave nothing of this worker behind
            for fd in (r, w):
                if fd >= 0:
                    os.close(fd)
            region.close()
            raise
        if pid == 0:  # the worker: never returns
            status = 0
            try:
                _keep_only(w)
                _work(share, region, w)
            except BaseException:
                status = 1
            finally:
                os._exit(status)
        os.close(w)
        os.set_blocking(r, False)
        store.workers.append(Worker(pid, r, region))


def _keep_only(fd: int) -> None:
    """In a worker: standard streams on ``/dev/null`` and every other descriptor but ``fd``
    closed, so that no pipe of the importing process (its caller's stdout, a parent's
    sentinel) stays open because a worker still runs."""
    null = os.open(os.devnull, os.O_RDWR)
    for std in (0, 1, 2):
        os.dup2(null, std)
    try:
        fds = [int(name) for name in os.listdir("/proc/self/fd")]
    except OSError:
        fds = list(range(3, 4096))
    for other in fds:
        if other > 2 and other != fd:
            with contextlib.suppress(OSError):
                os.close(other)


def _work(paths: list[str], region: mmap.mmap, fd: int) -> None:
    """Compile each path into the region as (path, digest, code) and announce the end of
    what is written; skip what cannot be read, does not compile, makes the compiler warn,
    or does not fit."""
    warnings.simplefilter("error")
    os.set_blocking(fd, False)  # a full pipe skips a word: the next one says more
    end = 0
    for path in paths:
        try:
            # Non-blocking: opening a FIFO must not wait for a writer.
            with open(os.open(path, os.O_RDONLY | os.O_NONBLOCK), "rb") as f:
                info = os.fstat(f.fileno())
                if not stat.S_ISREG(info.st_mode) or info.st_size > MAX_SOURCE_BYTES:
                    continue
                data = f.read(MAX_SOURCE_BYTES + 1)
            if len(data) > MAX_SOURCE_BYTES:
                continue
            code = compile(data, path, "exec", dont_inherit=True)
        except (OSError, SyntaxError, ValueError, Warning):
            continue
        blob = marshal.dumps(code)
        name = path.encode("utf-8", "surrogateescape")
        size = _FRAME.size + len(name) + _DIGEST_SIZE + len(blob)
        if end + size > len(region):
            break
        _FRAME.pack_into(region, end, len(name), _DIGEST_SIZE, len(blob))
        at = end + _FRAME.size
        region[at : at + len(name)] = name
        at += len(name)
        region[at : at + _DIGEST_SIZE] = digest(data)
        region[at + _DIGEST_SIZE : end + size] = blob
        end += size
        with contextlib.suppress(BlockingIOError):
            os.write(fd, _WORD.pack(end, time.perf_counter()))
    os.set_blocking(fd, True)
    os.write(fd, _WORD.pack(end, time.perf_counter()))
    os.close(fd)

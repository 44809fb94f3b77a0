"""Start the CUDA driver on a thread from a command's first line, while the command's own
Python imports run.

On a GPU machine, the first CUDA call of a process initialises the driver and creates the
device's primary context: about 0.3 s on an H200, which otherwise lands after torch's
import, on the critical path. :func:`start` does it on a daemon thread through ``ctypes``
(``cuInit`` and ``cuDevicePrimaryCtxRetain`` in ``libcuda``), which releases the GIL
around every foreign call, so it overlaps the CLI's and torch's imports. torch's runtime
then finds the driver initialised and uses that same primary context.

Nothing is done without a driver, with every GPU hidden (``CUDA_VISIBLE_DEVICES=""``), for
a device that is not CUDA, or with ``EDITPROOF_PRELOAD=0``; any failing call stops the
thread silently and leaves the start to torch, which reports errors in its own words.

This module imports nothing from editproof, so that it can run before anything else.
"""

from __future__ import annotations

import ctypes
import os
import threading
import time

# Commands that run a model in their own process (and nothing else: see cli/_entry.py).
COMMANDS = frozenset({"evaluate", "tune", "edit"})

# What the thread did: "context" (seconds), "error" (why it stopped early).
state: dict[str, float | str] = {}
_thread: threading.Thread | None = None


def device_index(device: str) -> int | None:
    """The CUDA device a ``--device`` value puts the model on (``auto``/``cuda`` -> 0,
    ``cuda:N`` -> N); None for the CPU, another backend, or a value that does not parse."""
    if device in ("auto", "cuda"):
        return 0
    if device.startswith("cuda:"):
        index = device.split(":", 1)[1]
        return int(index) if index.isdigit() else None
    return None


def option_value(args: list[str], name: str, default: str) -> str:
    """The value of ``--name X`` or ``--name=X`` in ``args`` (the last one wins)."""
    value = default
    for i, arg in enumerate(args):
        if arg == name and i + 1 < len(args):
            value = args[i + 1]
        elif arg.startswith(name + "="):
            value = arg.split("=", 1)[1]
    return value


def runs_model(args: list[str]) -> bool:
    """Whether ``args`` run a command of :data:`COMMANDS` (not its help)."""
    return bool(args) and args[0] in COMMANDS and not any(a in ("--help", "-h") for a in args)


def for_command(args: list[str]) -> bool:
    """Start the thread when ``args`` run a command of :data:`COMMANDS` on a CUDA device;
    whether it was started."""
    if not runs_model(args):
        return False
    index = device_index(option_value(args, "--device", "auto"))
    return index is not None and start(index)


def start(index: int = 0) -> bool:
    """Start the thread for CUDA device ``index`` (once per process); whether it started."""
    global _thread
    if _thread is not None or os.environ.get("EDITPROOF_PRELOAD", "1") == "0":
        return False
    if os.environ.get("CUDA_VISIBLE_DEVICES", None) == "":
        return False
    _thread = threading.Thread(target=_run, args=(index,), name="editproof-cuda", daemon=True)
    _thread.start()
    return True


def wait(timeout: float | None = None) -> None:
    """Wait for the thread (tests: a command never needs to, the driver serialises its own
    start)."""
    if _thread is not None:
        _thread.join(timeout)


def _run(index: int) -> None:
    t0 = time.perf_counter()
    try:
        failed = _retain_primary_context(index)
    except (OSError, AttributeError) as exc:  # no driver library, or not this driver
        failed = str(exc)
    if failed:
        state["error"] = failed
    state["context"] = time.perf_counter() - t0


def _retain_primary_context(index: int) -> str | None:
    """``cuInit`` and ``cuDevicePrimaryCtxRetain`` for device ``index`` (the context torch's
    runtime then uses, kept for the life of the process); the first failing call's name,
    or None."""
    cuda = ctypes.CDLL("libcuda.so.1")
    if cuda.cuInit(0) != 0:
        return "cuInit"
    count = ctypes.c_int(0)
    if cuda.cuDeviceGetCount(ctypes.byref(count)) != 0 or index >= count.value:
        return "cuDeviceGetCount"
    dev = ctypes.c_int(0)
    if cuda.cuDeviceGet(ctypes.byref(dev), index) != 0:
        return "cuDeviceGet"
    ctx = ctypes.c_void_p()
    if cuda.cuDevicePrimaryCtxRetain(ctypes.byref(ctx), dev) != 0:
        return "cuDevicePrimaryCtxRetain"
    return None

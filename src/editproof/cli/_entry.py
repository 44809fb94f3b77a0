"""The ``editproof`` console script and ``python -m editproof``: what runs around a command.

Before it, for a command that runs a model in this process (see
:data:`editproof._preload.COMMANDS`): on a Python that neither finds nor writes bytecode,
worker processes compile the modules the command will import (``_compile_ahead``; forked
first, while this is the only thread); on a CUDA device, the CUDA driver starts on a thread
beside the imports (``_preload``).

After it: those same commands leave nothing that needs an orderly shutdown. They start no
child process and no Ray cluster, their thread pools are joined, and every file they write
is written atomically and closed before they return. So once such a command has returned
and stdout and stderr are flushed, the process ends at once (``os._exit``) instead of
tearing down the interpreter and the CUDA context object by object: that teardown took
0.35 s more for a 13.5 GiB model on an H200 (``bench/process_edges.py exit``). Other
commands, and tests calling :func:`editproof.cli.app.main`, exit normally.
``EDITPROOF_FAST_EXIT=0`` turns the fast exit off.
"""

from __future__ import annotations

import contextlib
import os
import sys

from editproof import _compile_ahead, _preload


def console() -> None:
    args = sys.argv[1:]
    command = args[0] if _preload.runs_model(args) else None
    if command is not None:
        _compile_ahead.start(command)
    _preload.for_command(args)
    from editproof.cli.app import exit_code

    code = exit_code(args)
    if command is not None:
        _compile_ahead.finish(command)
    if fast_exit(args):
        for stream in (sys.stdout, sys.stderr):
            # A closed or broken pipe: there is nothing left to lose.
            with contextlib.suppress(OSError, ValueError):
                stream.flush()
        os._exit(code)
    sys.exit(code)


def fast_exit(args: list[str]) -> bool:
    """Whether the process may end without the interpreter's teardown after ``args``."""
    return (
        bool(args)
        and args[0] in _preload.COMMANDS
        and os.environ.get("EDITPROOF_FAST_EXIT", "1") != "0"
    )

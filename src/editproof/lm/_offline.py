"""The offline gate: nothing reaches a model hub unless the user allowed the network."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

_KEYS = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE")


@contextlib.contextmanager
def network(allowed: bool) -> Iterator[None]:
    """Set the hub libraries' offline switches for the duration of a call.

    Callers also pass ``local_files_only`` where an API takes it, because some libraries read
    these variables once at import time.
    """
    saved = {k: os.environ.get(k) for k in _KEYS}
    if not allowed:
        os.environ.update({k: "1" for k in _KEYS})
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v

"""Where a command's process time went, from the process's start to its last write.

The report's own timings cover the evaluation (load, windows, measures, digests, guards,
edit and restore). A command also spends time before it can evaluate — starting the
interpreter, importing editproof, torch and transformers — and after — writing the report
and its page. :class:`ProcessClock` names those seconds too, so that the keys of
``timings.json`` add up to the process's wall time and what is left is shown as
``unattributed``.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from editproof.fileio import atomic_write_text

FORMAT = "editproof.process-timings"
TIMINGS_NAME = "timings.json"


def process_age() -> float | None:
    """Seconds since this process started (Linux: ``/proc/self/stat``), else None."""
    try:
        fields = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()
        started = int(fields[19]) / os.sysconf("SC_CLK_TCK")  # field 22: start, since boot
        return max(0.0, time.clock_gettime(time.CLOCK_BOOTTIME) - started)
    except (OSError, ValueError, IndexError, AttributeError):
        return None


def host_memory() -> dict[str, int]:
    """This process's host memory in bytes (Linux ``/proc/self/status``): the peak resident
    set, and now what is resident as private memory (``anon``: copies of weights would be
    here) and as mapped files (``file``: pages of a memory-mapped checkpoint). Empty
    elsewhere."""
    names = {"VmHWM": "peak_rss", "RssAnon": "rss_anon", "RssFile": "rss_file"}
    out: dict[str, int] = {}
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in names and value.strip().endswith("kB"):
                out[names[key]] = int(value.split()[0]) * 1024
    except (OSError, ValueError):
        return {}
    return out


class ProcessClock:
    """Created when a command starts its work; ``lap(key)`` names the seconds since the last
    lap. ``startup`` is what ran before the clock was made (interpreter, imports of the CLI)."""

    def __init__(self) -> None:
        age = process_age()
        self._origin = time.perf_counter() - (age or 0.0)
        self._last = time.perf_counter()
        self.keys: dict[str, float] = {"startup": self._last - self._origin}
        self.measured_start = age is not None

    def lap(self, key: str) -> float:
        now = time.perf_counter()
        self.keys[key] = self.keys.get(key, 0.0) + now - self._last
        self._last = now
        return self.keys[key]

    def replace_lap(self, key: str, parts: dict[str, float]) -> None:
        """A lap whose parts were timed inside it: the parts get their names and what they
        leave over is ``<key>_other`` (e.g. silencing the libraries after importing them)."""
        self.lap(key)
        self.expand(key, parts, set())

    def expand(self, key: str, parts: dict[str, float], overlapped: set[str]) -> None:
        """Replace lap ``key`` by its named ``parts`` and what they leave over; parts in
        ``overlapped`` ran beside the others (a thread) and are not added."""
        whole = self.keys.pop(key, 0.0)
        named = {k: float(v) for k, v in parts.items() if k not in overlapped}
        for k, v in named.items():
            self.keys[k] = self.keys.get(k, 0.0) + v
        self.keys[f"{key}_other"] = whole - sum(named.values())

    def summary(self) -> str:
        total = self.total()
        top = sorted(self.keys.items(), key=lambda kv: -kv[1])[:6]
        named = ", ".join(f"{k} {v:.1f}s" for k, v in top)
        return f"time: {total:.1f}s ({named}; unattributed {total - sum(self.keys.values()):.1f}s)"

    def total(self) -> float:
        return time.perf_counter() - self._origin

    def write(
        self,
        folder: Path,
        overlapped: dict[str, float] | None = None,
        extra: dict[str, object] | None = None,
    ) -> Path:
        total = self.total()
        keys = {k: round(v, 4) for k, v in self.keys.items()}
        data = {
            "format": FORMAT,
            "schema_version": 1,
            "total": round(total, 4),
            "process_start_measured": self.measured_start,
            "keys": keys,
            "unattributed": round(total - sum(self.keys.values()), 4),
            # Work done beside the keys above (a digest thread), not part of their sum.
            "overlapped": {k: round(v, 4) for k, v in (overlapped or {}).items()},
            "host_memory": host_memory(),
            **(extra or {}),
        }
        path = folder / TIMINGS_NAME
        atomic_write_text(path, json.dumps(data, indent=2) + "\n")
        return path

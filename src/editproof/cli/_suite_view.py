"""What a person watches while a suite runs: a live table on a terminal, plain lines else.

Both read the run's task table and worker heartbeats (``state/state.sqlite``); the driver
calls ``tick`` a few times a second.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text


class SuiteView:
    def __init__(self, *, quiet: bool, live: bool | None = None) -> None:
        self.quiet = quiet
        self.live_mode = sys.stderr.isatty() if live is None else live
        self.console = Console(stderr=True)
        self._live: Live | None = None
        self._started = time.time()
        self._reported: set[str] = set()
        self._last_draw = 0.0

    def say(self, message: str) -> None:
        if not self.quiet:
            self.console.print(f"· {message}", highlight=False, markup=False)

    def __enter__(self) -> SuiteView:
        if self.live_mode and not self.quiet:
            self._live = Live(console=self.console, refresh_per_second=4, transient=False)
            self._live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._live is not None:
            self._live.__exit__(None, None, None)
            self._live = None

    def tick(self, run_dir: Path) -> None:
        if self.quiet:
            return
        now = time.time()
        if now - self._last_draw < 0.5:
            return
        self._last_draw = now
        from editproof.suite.store import Store

        store = Store(run_dir)
        try:
            tasks = store.tasks()
            workers = store.workers()
        finally:
            store.close()
        if self._live is not None:
            self._live.update(self._render(tasks, workers))
        else:
            self._lines(tasks)

    def _lines(self, tasks: list[Any]) -> None:
        total = len(tasks)
        for t in tasks:
            if t.status in ("done", "failed", "skipped") and t.id not in self._reported:
                self._reported.add(t.id)
                settled = len(self._reported)
                took = f" in {t.seconds:.1f}s" if t.seconds is not None else ""
                why = f": {t.error}" if t.status == "failed" and t.error else ""
                print(f"[{settled}/{total}] {t.status} {t.id}{took}{why}", file=sys.stderr)

    def _render(self, tasks: list[Any], workers: list[dict[str, Any]]) -> Group:
        done = sum(t.status in ("done", "failed", "skipped") for t in tasks)
        failed = sum(t.status == "failed" for t in tasks)
        elapsed = time.time() - self._started
        eta = ""
        if 0 < done < len(tasks):
            eta = f", ETA {elapsed / done * (len(tasks) - done):.0f}s"
        head = Text(
            f"tasks {done}/{len(tasks)} ({failed} failed), {elapsed:.0f}s elapsed{eta}",
            style="bold",
        )
        table = Table(box=None, pad_edge=False)
        for col in ("worker", "model", "task", "phase", "windows"):
            table.add_column(col)
        for w in workers:
            windows = f"{w['done']}/{w['total']}" if w.get("total") else ""
            table.add_row(
                str(w["id"]),
                str(w.get("model") or ""),
                str(w.get("task") or ""),
                str(w.get("phase") or "")[:60],
                windows,
            )
        return Group(head, table)

"""Progress on stderr: text lines, and the windows of each measuring phase.

:class:`ProgressView` takes the two callbacks the library reports through, ``say(message)``
and ``windows(phase, done, total)`` (:class:`editproof.evaluation.Evaluator`'s ``progress``
and ``on_windows``). On a terminal each phase gets a bar with windows done, windows/s,
elapsed time and ETA; elsewhere (a log, a pipe, CI) a phase prints one line when it starts
and one when it ends, never one per batch; with ``quiet`` nothing is printed at all. Stdout
is never touched: it carries the verdict alone.
"""

from __future__ import annotations

import sys
import time
from types import TracebackType
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    from rich.progress import Progress, Task
    from rich.text import Text


class ProgressView:
    """Renders ``say`` lines and per-phase window progress; use as a context manager."""

    def __init__(
        self, *, quiet: bool = False, stream: TextIO | None = None, live: bool | None = None
    ) -> None:
        self.quiet = quiet
        self._stream = stream
        self._live = live
        self._bar: Progress | None = None  # the running bar of the current phase (terminal)
        self._phase: str | None = None  # the phase in progress, None between phases
        self._started = 0.0

    @property
    def stream(self) -> TextIO:
        return self._stream if self._stream is not None else sys.stderr

    @property
    def live(self) -> bool:
        """True when bars are drawn: the stream is a terminal (or ``live`` said so)."""
        if self._live is not None:
            return self._live
        isatty = getattr(self.stream, "isatty", None)
        return bool(isatty and isatty())

    def say(self, message: str) -> None:
        """One ``· message`` line (printed above a running bar)."""
        if self.quiet:
            return
        if self._bar is not None:
            self._bar.console.print(f"· {message}", markup=False, highlight=False)
        else:
            print(f"· {message}", file=self.stream, flush=True)

    def windows(self, phase: str, done: int, total: int) -> None:
        """``done`` of ``total`` windows of ``phase`` measured; ``done == total`` ends it."""
        if self.quiet:
            return
        if self._phase != phase:
            self._finish()
            self._start(phase, total)
        if self._bar is not None:
            self._bar.update(self._bar.task_ids[0], completed=done, total=total)
        if done >= total:
            seconds = time.perf_counter() - self._started
            self._finish()
            if not self.live:
                rate = f", {total / seconds:.1f} windows/s" if seconds > 0 else ""
                self.say(f"{phase}: {total} windows in {seconds:.1f} s{rate}")

    def close(self) -> None:
        """Stop a running bar (also on errors, so the error line prints cleanly)."""
        self._finish()

    def __enter__(self) -> ProgressView:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _start(self, phase: str, total: int) -> None:
        self._phase = phase
        self._started = time.perf_counter()
        if not self.live:
            self.say(f"{phase}: measuring {total} windows")
            return
        self._bar = _make_bar(self.stream)
        self._bar.add_task(phase, total=total)
        self._bar.start()

    def _finish(self) -> None:
        if self._bar is not None:
            self._bar.stop()  # the finished bar stays on screen as the phase's record
        self._bar = None
        self._phase = None


def _make_bar(stream: TextIO) -> Progress:
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        ProgressColumn,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )
    from rich.text import Text

    class Rate(ProgressColumn):
        """Windows per second, measured over the phase so far."""

        def render(self, task: Task) -> Text:
            speed = task.finished_speed or task.speed
            return Text(f"{speed:.1f} windows/s" if speed else "- windows/s")

    columns: list[Any] = [
        TextColumn("· {task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("windows"),
        Rate(),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
    ]
    console = Console(file=stream, force_terminal=True, highlight=False)
    return Progress(*columns, console=console, transient=False, redirect_stdout=False)

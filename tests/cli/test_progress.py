"""The stderr progress view shared by the CLI (and the suite's live view)."""

from __future__ import annotations

import io

from editproof.cli._progress import ProgressView


def _feed(view: ProgressView) -> None:
    view.say("loading baseline m")
    for done in (0, 4, 8, 10):
        view.windows("baseline", done, 10)
    view.say("guards: measuring the baseline")
    for done in (0, 5, 10):
        view.windows("subject", done, 10)


def test_plain_lines_off_a_terminal() -> None:
    stream = io.StringIO()
    with ProgressView(stream=stream) as view:
        assert not view.live  # StringIO is not a terminal
        _feed(view)
    lines = stream.getvalue().splitlines()
    assert lines[0] == "· loading baseline m"
    assert lines[1] == "· baseline: measuring 10 windows"
    assert lines[2].startswith("· baseline: 10 windows in ") and lines[2].endswith("windows/s")
    assert lines[3] == "· guards: measuring the baseline"
    assert lines[4] == "· subject: measuring 10 windows"
    assert lines[5].startswith("· subject: 10 windows in ")
    assert len(lines) == 6


def test_a_phase_without_a_zero_call_still_gets_both_lines() -> None:
    stream = io.StringIO()
    view = ProgressView(stream=stream)
    view.windows("subject", 10, 10)
    view.windows("subject", 4, 8)  # the same phase again, for another subject
    view.windows("subject", 8, 8)
    lines = stream.getvalue().splitlines()
    assert [line.split(" in ")[0] for line in lines] == [
        "· subject: measuring 10 windows",
        "· subject: 10 windows",
        "· subject: measuring 8 windows",
        "· subject: 8 windows",
    ]


def test_quiet_prints_nothing() -> None:
    stream = io.StringIO()
    with ProgressView(quiet=True, stream=stream, live=True) as view:
        _feed(view)
    assert stream.getvalue() == ""


def test_bars_on_a_terminal() -> None:
    stream = io.StringIO()
    with ProgressView(stream=stream, live=True) as view:
        _feed(view)
        view.windows("baseline", 0, 10)  # left running: closing stops it cleanly
    text = stream.getvalue()
    assert "· loading baseline m" in text and "· guards: measuring the baseline" in text
    assert "10/10" in text and "windows/s" in text and "ETA" in text
    assert "measuring 10 windows" not in text  # no plain lines when bars are drawn

"""The console script around a command: the CUDA start before it, the fast exit after it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from editproof.cli import _entry

SMALL = ("--seq-len", "32", "--windows", "4", "--device", "cpu", "--relax-token-floor")


class Ended(Exception):
    def __init__(self, how: str, code: int) -> None:
        super().__init__(how, code)
        self.how, self.code = how, code


@pytest.fixture
def ended(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """os._exit and sys.exit raise instead of ending pytest; flushes are recorded."""
    flushed: list[str] = []

    def fast(code: int) -> None:
        raise Ended("fast", code)

    def normal(code: int) -> None:
        raise Ended("normal", code)

    monkeypatch.setattr(_entry.os, "_exit", fast)
    monkeypatch.setattr(_entry.sys, "exit", normal)
    monkeypatch.setattr("editproof.cli.app.exit_code", lambda args: 3)
    monkeypatch.setattr(_entry._preload, "for_command", lambda args: False)
    monkeypatch.setattr(_entry._compile_ahead, "start", lambda command: flushed.append("start"))
    monkeypatch.setattr(_entry._compile_ahead, "finish", lambda command: flushed.append("finish"))
    for name in ("stdout", "stderr"):
        stream = getattr(sys, name)
        monkeypatch.setattr(stream, "flush", lambda name=name: flushed.append(name))
    monkeypatch.delenv("EDITPROOF_FAST_EXIT", raising=False)
    return flushed


@pytest.mark.parametrize(
    ("args", "how"),
    [
        (["evaluate", "--baseline", "demo"], "fast"),
        (["tune"], "fast"),
        (["edit"], "fast"),
        (["suite", "demo"], "normal"),  # child processes, Ray: an orderly shutdown
        (["run"], "normal"),
        (["verify", "x"], "normal"),
        ([], "normal"),
    ],
)
def test_console_ends_at_once_only_after_commands_that_leave_nothing_running(
    monkeypatch: pytest.MonkeyPatch, ended: list[str], args: list[str], how: str
) -> None:
    monkeypatch.setattr(sys, "argv", ["editproof", *args])
    with pytest.raises(Ended) as got:
        _entry.console()
    assert (got.value.how, got.value.code) == (how, 3)
    if how == "fast":  # compiled ahead around the command; then nothing printed is lost
        # (other flushes may come before: pytest's capture on some versions)
        assert ended.count("start") == ended.count("finish") == 1
        assert ended.index("start") < ended.index("finish")
        assert {"stdout", "stderr"} <= set(ended[ended.index("finish") :])
    else:
        assert "start" not in ended


def test_fast_exit_can_be_turned_off(monkeypatch: pytest.MonkeyPatch, ended: list[str]) -> None:
    monkeypatch.setenv("EDITPROOF_FAST_EXIT", "0")
    monkeypatch.setattr(sys, "argv", ["editproof", "evaluate"])
    with pytest.raises(Ended) as got:
        _entry.console()
    assert got.value.how == "normal"


def _console(
    *args: str, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "editproof", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=600,
        env={**os.environ, **(env or {})},
    )


def test_an_evaluation_through_the_console_keeps_every_line_and_file(
    tiny_dir: Path, tmp_path: Path
) -> None:
    """Piped stdout (block-buffered) is flushed before the process ends at once; the
    report, page and timings are complete."""
    out = tmp_path / "run"
    proc = _console(
        "evaluate", "--baseline", str(tiny_dir), "--edit", "noop", "--out", str(out), *SMALL,
        cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("PASS")
    assert lines[-2] == f"report: {out / 'evaluation.report.json'}"
    assert lines[-1].startswith("time: ")
    report = json.loads((out / "evaluation.report.json").read_text())
    assert report["status"] == "PASS"
    assert (out / "evaluation.html").read_text().rstrip().endswith("</html>")
    timings = json.loads((out / "timings.json").read_text())
    assert timings["unattributed"] >= 0 and "text" in timings["keys"]


def test_errors_through_the_console_keep_their_exit_codes(tiny_dir: Path, tmp_path: Path) -> None:
    usage = _console("evaluate", "--baseline", str(tiny_dir), "--windows", "x", cwd=tmp_path)
    assert usage.returncode == 2 and usage.stderr.startswith("error: ")
    missing = _console(
        "evaluate", "--baseline", str(tmp_path / "nope"), "--edit", "noop", *SMALL, cwd=tmp_path
    )
    assert missing.returncode == 3, missing.stderr  # docs/cli.md: input not found
    assert missing.stderr.count("error: ") == 1
    assert "Traceback" not in missing.stderr


def test_modules_compiled_ahead_give_the_same_evaluation(tiny_dir: Path, tmp_path: Path) -> None:
    """On a Python that finds no bytecode and writes none, the second evaluation takes its
    modules from the workers (_compile_ahead) and reports the same numbers."""
    if len(os.sched_getaffinity(0)) < 2:
        pytest.skip("compiling ahead needs two CPUs")
    env = {
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONPYCACHEPREFIX": str(tmp_path / "no-bytecode"),
        "EDITPROOF_CACHE": str(tmp_path / "cache"),
    }
    reports, ahead = [], []
    for run in ("first", "second"):
        out = tmp_path / run
        proc = _console(
            "evaluate", "--baseline", str(tiny_dir), "--edit", "quant_rtn:8:32:all",
            "--out", str(out), "--quiet", *SMALL, cwd=tmp_path, env=env,
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        report = json.loads((out / "evaluation.report.json").read_text())
        for result in report["guards"]["results"]:
            result.pop("seconds")  # the only field that is a clock reading
        reports.append({k: report[k] for k in ("primary_metric", "guards", "gates", "status")})
        ahead.append(json.loads((out / "timings.json").read_text())["compile_ahead"])
    assert ahead[0]["workers"] == 0 and ahead[0]["compiled_here"] > 500
    assert ahead[1]["workers"] >= 1 and ahead[1]["from_workers"] > 0
    assert reports[0] == reports[1]

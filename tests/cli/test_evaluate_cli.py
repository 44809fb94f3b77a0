from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.cli._cli import Result

pytest.importorskip("torch")

SMALL = ("--seq-len", "32", "--windows", "10", "--device", "cpu", "--relax-token-floor")


def _one_line_error(r: Result, code: int, text: str) -> None:
    assert r.code == code, (r.code, r.out, r.err)
    lines = [line for line in r.err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and text in lines[0], r.err
    assert "Traceback" not in r.err + r.out


def test_version(cli: Callable[..., Result]) -> None:
    r = cli("--version")
    assert r.code == 0 and r.out.startswith("editproof ")


def test_evaluate_writes_report_and_html(
    cli: Callable[..., Result], tiny_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "run"
    r = cli(
        "evaluate",
        "--baseline",
        str(tiny_dir),
        "--subject",
        str(tiny_dir),
        "--out",
        str(out),
        *SMALL,
    )
    assert r.code == 0, r.err
    assert r.out.startswith("PASS")
    report = json.loads((out / "evaluation.report.json").read_text())
    assert report["format"] == "editproof.evaluation-report" and report["schema_version"] == 1
    assert report["primary_metric"]["ratio"] == 1.0
    assert (out / "evaluation.html").read_text().lstrip().lower().startswith("<!doctype html>")
    assert (
        report["provenance"]["command"][:2] == ["editproof", "evaluate"]
        or report["provenance"]["command"]
    )


def test_existing_report_is_not_overwritten(
    cli: Callable[..., Result], tiny_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "run"
    out.mkdir()
    (out / "evaluation.report.json").write_text("precious")
    r = cli(
        "evaluate",
        "--baseline",
        str(tiny_dir),
        "--subject",
        str(tiny_dir),
        "--out",
        str(out),
        *SMALL,
    )
    _one_line_error(r, 5, "already exists")
    assert (out / "evaluation.report.json").read_text() == "precious"


def test_failing_gates_exit_1(
    cli: Callable[..., Result], tiny_dir: Path, tiny_dir_other: Path, tmp_path: Path
) -> None:
    r = cli(
        "evaluate",
        "--baseline",
        str(tiny_dir),
        "--subject",
        str(tiny_dir_other),
        "--out",
        str(tmp_path / "o"),
        "--strict-token-floor",
        "--seq-len",
        "32",
        "--windows",
        "10",
        "--device",
        "cpu",
    )
    assert r.code == 1 and r.out.startswith("FAIL")
    assert (tmp_path / "o" / "evaluation.report.json").is_file()


@pytest.mark.parametrize(
    ("extra", "code", "text"),
    [
        (("--tier", "lenient"), 2, "unknown tier"),
        (("--provider", "web"), 2, "provider"),
        (("--windows", "ten"), 2, "--windows"),
        (("--net", "5"), 2, "--net"),
        (("--bogus-flag",), 2, "bogus"),
        (("--windows", "5000"), 4, "windows"),
        (("--provider", "text", "--data", "/no/such/file.txt"), 3, "/no/such/file.txt"),
    ],
)
def test_bad_input_is_one_line(
    cli: Callable[..., Result],
    tiny_dir: Path,
    tmp_path: Path,
    extra: tuple[str, ...],
    code: int,
    text: str,
) -> None:
    args = [
        "evaluate",
        "--baseline",
        str(tiny_dir),
        "--subject",
        str(tiny_dir),
        "--out",
        str(tmp_path / "o"),
        "--seq-len",
        "32",
        "--device",
        "cpu",
    ]
    _one_line_error(cli(*args, *extra), code, text)


def test_missing_and_invalid_models(
    cli: Callable[..., Result], tiny_dir: Path, tmp_path: Path
) -> None:
    base = ["evaluate", "--out", str(tmp_path / "o"), *SMALL]
    _one_line_error(
        cli(*base, "--baseline", str(tiny_dir), "--subject", "./nowhere"), 3, "does not exist"
    )
    _one_line_error(
        cli(*base, "--baseline", str(tmp_path), "--subject", str(tiny_dir)), 4, "config.json"
    )


def test_unwritable_output(cli: Callable[..., Result], tiny_dir: Path, tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    r = cli(
        "evaluate",
        "--baseline",
        str(tiny_dir),
        "--subject",
        str(tiny_dir),
        "--out",
        str(blocker),
        *SMALL,
    )
    _one_line_error(r, 5, "not a directory")


def test_failed_run_leaves_no_empty_output_dir(
    cli: Callable[..., Result], tiny_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "never"
    r = cli(
        "evaluate",
        "--baseline",
        str(tiny_dir),
        "--subject",
        str(tiny_dir),
        "--out",
        str(out),
        "--seq-len",
        "32",
        "--windows",
        "5000",
        "--device",
        "cpu",
    )
    assert r.code == 4 and not out.exists()


def test_same_model_spelled_differently_is_noop(
    cli: Callable[..., Result], tiny_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tiny_dir.parent)
    out = tmp_path / "o"
    r = cli(
        "evaluate",
        "--baseline",
        tiny_dir.name,
        "--subject",
        f"./{tiny_dir.name}",
        "--out",
        str(out),
        *SMALL,
    )
    assert r.code == 0, r.err
    report = json.loads((out / "evaluation.report.json").read_text())
    assert report["edit"]["label"] == "noop" and report["primary_metric"]["ratio"] == 1.0

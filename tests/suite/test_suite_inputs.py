"""Bad input to ``editproof suite`` fails in about a second, with one line and its exit code,
before any model loads, and leaves what is in the run directory alone."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.cli._cli import Result

Cli = Callable[..., Result]


def _one_line(res: Result, code: int, text: str) -> None:
    assert res.code == code, res.err
    lines = res.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), res.err
    assert text in lines[0], lines[0]


@pytest.fixture(autouse=True)
def _no_workers(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any of these inputs must fail before a worker starts."""

    def boom(*_a: object, **_k: object) -> None:
        raise AssertionError("a worker was started for bad input")

    monkeypatch.setattr("editproof.suite.executor.LocalExecutor.run", boom)


def test_unknown_suite_model_scenario(cli: Cli, tmp_path: Path) -> None:
    _one_line(cli("suite", "--suite", "nope", "--out", str(tmp_path / "r")), 2, "unknown suite")
    _one_line(
        cli("suite", "--models", "./no/such/dir", "--out", str(tmp_path / "r")), 3, "does not exist"
    )
    _one_line(
        cli("suite", "--scenario-ids", "quant_4bit_clean,bogus", "--out", str(tmp_path / "r")),
        2,
        "unknown scenario id(s): bogus",
    )
    _one_line(
        cli(
            "suite",
            "--suite",
            "subset",
            "--scenario-ids",
            "nan_injection,ve_mlp_scale_skew_up",
            "--out",
            str(tmp_path / "r"),
        ),
        2,
        "not part of suite 'subset'",
    )
    assert not (tmp_path / "r").exists()


def test_malformed_catalogue_and_tuned_params(cli: Cli, tmp_path: Path) -> None:
    from editproof.verdict.catalogue import packaged_catalogue

    data = json.loads(packaged_catalogue().to_json())
    data["scenarios"][2]["strictness"] = "sometimes"
    bad = tmp_path / "scenarios.json"
    bad.write_text(json.dumps(data))
    _one_line(
        cli("suite", "--catalogue", str(bad), "--out", str(tmp_path / "r")),
        4,
        "scenario 'prune_12pct_clean' (#3): strictness",
    )
    tuned = tmp_path / "tuned.json"
    tuned.write_text('{"format": "editproof.tuned-edit-params", "schema_version": 1, "models": 3}')
    _one_line(cli("suite", "--tuned-params", str(tuned), "--out", str(tmp_path / "r")), 4, "tuned")
    tuned.write_text('{"format": "editproof.tuned-edit-params", "schema_version": 1}')
    _one_line(
        cli(
            "suite",
            "--suite",
            "subset",
            "--models",
            "demo",
            "--tuned-params",
            str(tuned),
            "--out",
            str(tmp_path / "r"),
        ),
        4,
        "no tuned params",
    )


def test_hub_model_offline_without_pins(cli: Cli, tmp_path: Path) -> None:
    res = cli("suite", "--suite", "subset", "--out", str(tmp_path / "r"))
    assert res.code in (3, 4), res.err
    assert "mistralai/Mistral-7B-v0.1" in res.err and "--net 1" in res.err


def test_existing_run_dir_is_never_touched(cli: Cli, tmp_path: Path) -> None:
    run = tmp_path / "r"
    run.mkdir()
    keep = run / "precious.txt"
    keep.write_text("mine")
    _one_line(cli("suite", "--out", str(run)), 2, "already exists and is not empty")
    _one_line(cli("suite", "--out", str(run), "--resume"), 2, "cannot resume")
    assert keep.read_text() == "mine" and sorted(p.name for p in run.iterdir()) == ["precious.txt"]


def test_unwritable_out_dir(cli: Cli, tmp_path: Path) -> None:
    import os

    if os.geteuid() == 0:
        target = Path("/proc/editproof-run")  # not creatable even for root
    else:
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        target = locked / "r"
    res = cli("suite", "--out", str(target))
    assert res.code == 5, res.err


def test_values_out_of_range(cli: Cli, tmp_path: Path) -> None:
    out = str(tmp_path / "r")
    _one_line(cli("suite", "--seq-len", "0", "--out", out), 2, "--seq-len")
    _one_line(cli("suite", "--windows", "0", "--out", out), 2, "--windows")
    _one_line(cli("suite", "--repeats", "-1", "--out", out), 2, "--repeats")
    _one_line(cli("suite", "--determinism", "fast", "--out", out), 2, "--determinism")
    _one_line(cli("suite", "--forward", "fast", "--out", out), 2, "unknown --forward 'fast'")
    _one_line(cli("suite", "--tier", "lenient", "--out", out), 2, "lenient")
    _one_line(cli("suite", "--calibrate-only", "--errors-only", "--out", out), 2, "at most one")
    _one_line(cli("suite", "--devices", "a,b", "--device", "cuda", "--out", out), 2, "--devices")


def test_missing_text_file(cli: Cli, tmp_path: Path) -> None:
    res = cli("suite", "--provider", "text", "--data", str(tmp_path / "none.txt"),
              "--out", str(tmp_path / "r"))  # fmt: skip
    assert res.code == 3 and "none.txt" in res.err, res.err
    assert not (tmp_path / "r").exists()


def test_every_missing_model_is_named(cli: Cli, tmp_path: Path) -> None:
    res = cli("suite", "--models", "nobody/one,nobody/two", "--out", str(tmp_path / "r"))
    _one_line(res, 3, "2 models are missing")
    assert "nobody/one" in res.err and "nobody/two" in res.err and "--net 1" in res.err

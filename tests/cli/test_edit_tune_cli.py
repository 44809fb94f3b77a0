from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.cli._cli import Result

pytest.importorskip("torch")

SMALL = ("--seq-len", "32", "--windows", "8", "--device", "cpu", "--relax-token-floor")


def _eval(cli: Callable[..., Result], base: Path, out: Path, *extra: str) -> tuple[Result, dict]:
    r = cli("evaluate", "--baseline", str(base), "--out", str(out), "-q", *SMALL, *extra)
    path = out / "evaluation.report.json"
    return r, json.loads(path.read_text()) if path.exists() else {}


def test_edit_save_then_byoe_matches_in_memory(
    cli: Callable[..., Result], tiny_dir: Path, tmp_path: Path
) -> None:
    saved = tmp_path / "q4"
    r = cli(
        "edit",
        "--baseline",
        str(tiny_dir),
        "--edit",
        "quant_rtn:4:32:ffn",
        "--save",
        str(saved),
        "--device",
        "cpu",
    )
    assert r.code == 0, r.err
    assert {"model.safetensors", "config.json", "edit_metadata.json"} <= {
        p.name for p in saved.iterdir()
    }
    meta = json.loads((saved / "edit_metadata.json").read_text())
    assert (
        meta["format"] == "editproof.edit-metadata" and meta["edit"]["spec"] == "quant_rtn:4:32:ffn"
    )

    r1, byoe = _eval(cli, tiny_dir, tmp_path / "byoe", "--subject", str(saved))
    r2, mem = _eval(cli, tiny_dir, tmp_path / "mem", "--edit", "quant_rtn:4:32:ffn")
    assert r1.code == r2.code
    assert byoe["edit"]["label"] == "custom" and byoe["edit"]["spec"] == "quant_rtn:4:32:ffn"
    assert byoe["edit"]["claimed_digest_match"] is True
    assert mem["edit"]["label"] == "quant_rtn" and mem["edit"]["restore_verified"] is True
    # Same weights, same windows: the saved checkpoint and the in-memory edit agree exactly.
    assert byoe["subject"]["model"]["weight_sha256"] == mem["subject"]["model"]["weight_sha256"]
    assert byoe["primary_metric"]["ratio"] == mem["primary_metric"]["ratio"]


def test_edit_refuses_to_overwrite(
    cli: Callable[..., Result], tiny_dir: Path, tmp_path: Path
) -> None:
    target = tmp_path / "taken"
    target.mkdir()
    (target / "keep.txt").write_text("mine")
    r = cli("edit", "--baseline", str(tiny_dir), "--edit", "noop", "--save", str(target))
    assert r.code == 5 and "not empty" in r.err
    assert (target / "keep.txt").read_text() == "mine"


@pytest.mark.parametrize(
    ("args", "code", "text"),
    [
        (("--edit", "quant_rtn:9:32:ffn"), 2, "bits"),
        (("--edit", "quant_rnt:4:32:ffn"), 2, "quant_rtn"),
        (("--edit", "noop", "--subject", "demo"), 2, "exactly one"),
        ((), 2, "exactly one"),
        (("--edit", "quant_rtn:clean:ffn", "--tuned-params", "/no/such.json"), 3, "not found"),
    ],
)
def test_bad_edit_usage(
    cli: Callable[..., Result],
    tiny_dir: Path,
    tmp_path: Path,
    args: tuple[str, ...],
    code: int,
    text: str,
) -> None:
    r, _ = _eval(cli, tiny_dir, tmp_path / "o", *args)
    assert r.code == code, r.err
    assert text in r.err and "Traceback" not in r.err
    assert not (tmp_path / "o").exists()  # nothing created for a usage error


def test_nan_fault_fails_and_restores(
    cli: Callable[..., Result], tiny_dir: Path, tmp_path: Path
) -> None:
    r, report = _eval(cli, tiny_dir, tmp_path / "nan", "--edit", "nan_injection")
    assert r.code == 1
    assert report["primary_metric"]["invalid"] is True
    assert report["edit"]["label"] == "nan_injection" and report["edit"]["restore_verified"]


def test_clean_spec_resolves_from_tuned_file(
    cli: Callable[..., Result], tiny_dir: Path, tmp_path: Path
) -> None:
    tuned = tmp_path / "tuned.json"
    tuned.write_text(
        json.dumps(
            {
                "format": "editproof.tuned-edit-params",
                "schema_version": 1,
                "models": {
                    tiny_dir.name: {
                        "magnitude_prune": {
                            "status": "selected",
                            "params": {"sparsity": 0.3, "scope": "ffn"},
                            "reason": "test",
                        }
                    }
                },
            }
        )
    )
    r, report = _eval(
        cli,
        tiny_dir,
        tmp_path / "c",
        "--edit",
        "magnitude_prune:clean:ffn",
        "--tuned-params",
        str(tuned),
    )
    assert r.code in (0, 1), r.err
    assert report["edit"]["spec"] == "magnitude_prune:0.3:ffn"
    assert report["edit"]["record"]["resolved_from"] == "magnitude_prune:clean:ffn"
    assert report["edit"]["tuned_source"] == str(tuned)
    r, _ = _eval(
        cli, tiny_dir, tmp_path / "d", "--edit", "quant_rtn:clean:ffn", "--tuned-params", str(tuned)
    )
    assert r.code == 4 and "no tuned params for edit 'quant_rtn'" in r.err


def test_tune_writes_tuned_params(
    cli: Callable[..., Result], tiny_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "tuned.json"
    r = cli(
        "tune",
        "--baseline",
        str(tiny_dir),
        "--edit-type",
        "fp8_quant",
        "--out",
        str(out),
        "-q",
        *SMALL,
    )
    assert r.code == 0, r.err
    data = json.loads(out.read_text())
    entry = data["models"][tiny_dir.name]["fp8_quant"]
    assert entry["status"] in ("selected", "skipped") and entry["evidence"]["trials"]
    r = cli("tune", "--baseline", str(tiny_dir), "--edit-type", "prune", "--out", str(out))
    assert r.code == 2 and "cannot tune 'prune'" in r.err


def test_tune_scope_matching_nothing_fails_before_measuring(
    cli: Callable[..., Result], tiny_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def boom(*_: object, **__: object) -> None:
        raise AssertionError("measure_nll was called")

    monkeypatch.setattr("editproof.evaluation.measure_nll", boom)
    out = tmp_path / "tuned.json"
    r = cli(
        "tune",
        "--baseline",
        str(tiny_dir),
        "--edit-type",
        "quant_rtn",
        "--scope",
        "attn@layer=5",
        "--out",
        str(out),
        "-q",
        *SMALL,
    )
    assert r.code == 2 and r.err.startswith("error: edit 'quant_rtn:8:32:attn@layer=5': scope"), (
        r.err
    )
    assert "2 decoder layers (0-1)" in r.err and not out.exists()

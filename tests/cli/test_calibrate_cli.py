"""``editproof calibrate null-sweep`` and ``calibrate preset`` on a tiny model."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.cli._cli import Result

pytest.importorskip("torch")

SMALL = ("--seq-len", "32", "--windows", "4", "--device", "cpu", "--relax-token-floor", "-q")


@pytest.fixture
def cli_cal(cli: Callable[..., Result]) -> Callable[..., Result]:
    return cli


def _one_line_error(r: Result, code: int, text: str) -> None:
    assert r.code == code, (r.code, r.out, r.err)
    lines = [line for line in r.err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and text in lines[0], r.err
    assert "Traceback" not in r.err + r.out


def test_null_sweep_writes_report_runs_and_patch(
    cli_cal: Callable[..., Result], tiny_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "null"
    r = cli_cal(
        "calibrate",
        "null-sweep",
        "--baseline",
        str(tiny_dir),
        "--seeds",
        "2",
        "--out",
        str(out),
        *SMALL,
    )
    assert r.code == 0, r.err
    assert "kappa" in r.out and "alpha" in r.out and "tiers_patch_null.json" in r.out
    report = json.loads((out / "null_sweep_report.json").read_text())
    assert report["seeds"] == [43, 44]  # --seed-start 42 is the baseline's seed: skipped
    assert (out / "null_sweep_runs.csv").read_text().startswith("seed,")
    patch = json.loads((out / "tiers_patch_null.json").read_text())
    assert patch["format"] == "editproof.tier-patch" and patch["tier"] == "balanced"


def test_preset_writes_json_and_yaml(
    cli_cal: Callable[..., Result], tiny_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "preset"
    r = cli_cal(
        "calibrate",
        "preset",
        "--baseline",
        str(tiny_dir),
        "--runs",
        "1",
        "--clean-specs",
        "fp8_quant:clean:ffn",
        "--model-id",
        "Org/Tiny",
        "--out",
        str(out),
        *SMALL,
    )
    assert r.code == 0, r.err
    assert "drift" in r.out and "calibrated_preset_org__tiny.yaml" in r.out
    data = json.loads((out / "calibrated_preset_org__tiny.json").read_text())
    assert data["model_id"] == "Org/Tiny" and data["tier"] == "balanced"
    assert [c["spec"] for c in data["evidence"]["clean_runs"]] == ["fp8_quant:clean:ffn"]
    assert (out / "calibrated_preset_org__tiny.yaml").is_file()

    # The preset is applied by `evaluate --preset` (YAML here): a new policy, recorded.
    report_dir = tmp_path / "with-preset"
    preset = out / "calibrated_preset_org__tiny.yaml"
    r = cli_cal(
        "evaluate",
        "--baseline",
        str(tiny_dir),
        "--edit",
        "noop",
        "--preset",
        str(preset),
        "--out",
        str(report_dir),
        *SMALL,
    )
    assert r.code == 0, r.err
    report = json.loads((report_dir / "evaluation.report.json").read_text())
    assert report["policy"]["tier"]["name"] == "balanced+preset:Org/Tiny"
    assert report["policy"]["source"].startswith(f"preset {preset}")
    assert report["policy"]["tier"]["drift_band"] == data["overrides"]["drift_band"]
    from editproof.policy import load_tier

    assert report["policy"]["digest"] != load_tier("balanced").digest()
    v = cli_cal("report", "verify", str(report_dir))
    assert v.code == 0, v.out


@pytest.mark.parametrize(
    ("args", "code", "text"),
    [
        (("null-sweep", "--seeds", "0"), 2, "--seeds must be at least 1"),
        (("null-sweep", "--windows", "x"), 2, "--windows"),
        (("null-sweep", "--tier", "nope"), 2, "unknown tier"),
        (("null-sweep", "--margin", "-1"), 2, "--margin"),
        (("null-sweep", "--target-warning-rate", "1"), 2, "--target-warning-rate"),
        (("preset", "--runs", "0"), 2, "--runs must be at least 1"),
        (("preset", "--clean-specs", "quant_rnt:clean:ffn"), 2, "quant_rtn"),
        (("preset", "--clean-specs", " , "), 2, "--clean-specs is empty"),
        (("preset", "--tuned-params", "/no/such.json"), 3, "not found"),
        (("preset", "--model-id", "@@"), 2, "model id"),
    ],
)
def test_bad_arguments(
    cli_cal: Callable[..., Result],
    tiny_dir: Path,
    tmp_path: Path,
    args: tuple[str, ...],
    code: int,
    text: str,
) -> None:
    out = tmp_path / "o"
    r = cli_cal("calibrate", *args, "--baseline", str(tiny_dir), "--out", str(out))
    _one_line_error(r, code, text)
    assert not out.exists()  # nothing created before the arguments are checked


def test_bad_baseline_and_output(
    cli_cal: Callable[..., Result], tiny_dir: Path, tmp_path: Path
) -> None:
    r = cli_cal(
        "calibrate",
        "null-sweep",
        "--baseline",
        str(tmp_path / "nope"),
        "--out",
        str(tmp_path / "x"),
    )
    _one_line_error(r, 3, "does not exist")
    taken = tmp_path / "file"
    taken.write_text("")
    r = cli_cal("calibrate", "null-sweep", "--baseline", str(tiny_dir), "--out", str(taken))
    _one_line_error(r, 5, "not a directory")


def test_tier_patch_applies_and_excludes_preset(
    cli_cal: Callable[..., Result], tiny_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "null"
    r = cli_cal(
        "calibrate",
        "null-sweep",
        "--baseline",
        str(tiny_dir),
        "--seeds",
        "2",
        "--out",
        str(out),
        *SMALL,
    )
    assert r.code == 0, r.err
    patch = out / "tiers_patch_null.json"
    report_dir = tmp_path / "patched"
    r = cli_cal(
        "evaluate",
        "--baseline",
        str(tiny_dir),
        "--edit",
        "noop",
        "--tier-patch",
        str(patch),
        "--out",
        str(report_dir),
        *SMALL,
    )
    assert r.code == 0, r.err
    report = json.loads((report_dir / "evaluation.report.json").read_text())
    assert report["policy"]["tier"]["name"] == "balanced+patch"
    assert report["policy"]["source"].startswith(f"tier patch {patch}")
    r = cli_cal(
        "evaluate",
        "--baseline",
        str(tiny_dir),
        "--edit",
        "noop",
        "--tier-patch",
        str(patch),
        "--preset",
        str(patch),
        "--out",
        str(tmp_path / "both"),
        *SMALL,
    )
    _one_line_error(r, 2, "not both")


def test_probes_writes_entries_and_keeps_the_rest(
    cli_cal: Callable[..., Result], tiny_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "tuned.json"
    quant = {"status": "selected", "params": {"bits": 8, "group_size": 32}, "reason": "kept"}
    out.write_text(json.dumps({"models": {"other": {"quant_rtn": quant}}}))
    r = cli_cal(
        "calibrate",
        "probes",
        "--baseline",
        str(tiny_dir),
        "--probe",
        "spectral_moderate_scale",
        "--model-id",
        "tiny",
        "--out",
        str(out),
        *SMALL,
    )
    assert r.code == 0, r.err
    assert r.out.startswith("spectral_moderate_scale: ") and "wrote" in r.out
    data = json.loads(out.read_text())
    assert data["models"]["other"]["quant_rtn"]["reason"] == "kept"  # untouched
    entry = data["probes"]["tiny"]["spectral_moderate_scale"]
    assert entry["status"] in ("selected", "skipped") and entry["evidence"]["trials"]
    assert entry["evidence"]["seq_len"] == 32 and entry["evidence"]["windows"] == 8


def test_probes_rejects_unknown_probe_before_loading(
    cli_cal: Callable[..., Result], tmp_path: Path
) -> None:
    r = cli_cal(
        "calibrate",
        "probes",
        "--baseline",
        "demo",
        "--probe",
        "nan_injection",
        "--out",
        str(tmp_path / "t.json"),
    )
    _one_line_error(r, 2, "unknown probe 'nan_injection'")

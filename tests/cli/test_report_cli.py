from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from editproof.report.io import report_json
from tests.cli._cli import Result
from tests.report.factory import make_report


def _write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_verify_ok_mismatch_malformed(cli: Callable[..., Result], tmp_path: Path) -> None:
    good = _write(tmp_path, "good.json", report_json(make_report(noise=0.02)))
    data = json.loads(good.read_text())
    data["primary_metric"]["ratio"] = 0.5
    bad = _write(tmp_path, "bad.json", json.dumps(data))
    broken = _write(tmp_path, "broken.json", "{")

    r = cli("report", "verify", str(good))
    assert r.code == 0 and r.out.startswith("OK")
    r = cli("report", "verify", str(good), str(bad))
    assert r.code == 1 and "MISMATCH" in r.out and "primary_metric.ratio" in r.out
    r = cli("report", "verify", str(good), str(bad), str(broken))
    assert r.code == 2 and "MALFORMED" in r.out
    r = cli("report", "verify", str(tmp_path / "absent.json"))
    assert r.code == 2


def test_explain_and_html(cli: Callable[..., Result], tmp_path: Path) -> None:
    path = _write(tmp_path, "r.json", report_json(make_report(shift=0.3, noise=0.05)))
    r = cli("report", "explain", str(path))
    assert r.code == 0 and "ratio_ci_upper" in r.out and r.out.startswith("FAIL")
    out = tmp_path / "page.html"
    r = cli("report", "html", str(path), "--out", str(out))
    assert r.code == 0 and "<svg" in out.read_text()


def test_explain_malformed_is_one_line(cli: Callable[..., Result], tmp_path: Path) -> None:
    r = cli("report", "explain", str(_write(tmp_path, "x.json", "nope")))
    assert r.code == 2 and r.err.count("\n") == 1 and r.err.startswith("error:")


def test_schema_command(cli: Callable[..., Result], tmp_path: Path) -> None:
    r = cli("report", "schema", "--out", str(tmp_path))
    assert r.code == 0
    names = [
        "evaluation_report.schema.json",
        "scenario_catalogue.schema.json",
        "verdict_inputs.schema.json",
        "final_verdict.schema.json",
        "detection_matrix.schema.json",
        "records.schema.json",
        "proof_pack_manifest.schema.json",
        "proof_pack_attestation_statement.schema.json",
        "proof_pack_diff.schema.json",
    ]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(names)
    assert r.out.split() == [str(tmp_path / n) for n in names]

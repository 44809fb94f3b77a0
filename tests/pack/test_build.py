"""Building packs: stock tools accept them, the build is atomic (even under SIGKILL), nothing
is overwritten, keys are handled safely, bad input fails before the suite starts."""

from __future__ import annotations

import json
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.pack.conftest import editproof, env


def test_stock_tools_verify_the_pack(pass_run: Path, keypair: tuple[Path, Path]) -> None:
    pack = pass_run / "proof_pack"
    assert (
        subprocess.run(["sha256sum", "--quiet", "-c", "checksums.sha256"], cwd=pack).returncode == 0
    )
    ossl = subprocess.run(["openssl", "pkeyutl", "-verify", "-rawin", "-pubin", "-inkey",
                           str(keypair[1]), "-in", "manifest.json", "-sigfile",
                           "manifest.json.sig"], cwd=pack, capture_output=True, text=True)  # fmt: skip
    assert ossl.returncode == 0 and "Signature Verified Successfully" in ossl.stdout
    gpg = subprocess.run(["gpg", "--verify", "manifest.json.asc", "manifest.json"], cwd=pack,
                         capture_output=True, text=True)  # fmt: skip
    assert gpg.returncode == 0, gpg.stderr
    m = json.loads((pack / "manifest.json").read_text())
    assert m["signatures"]["ed25519"] and m["signatures"]["gpg"]
    assert m["models"][0]["weight_sha256"] and len(m["models"][0]["weight_sha256"]) == 64
    readme = (pack / "README.md").read_text()
    assert "openssl pkeyutl -verify -rawin" in readme and "gpg --verify" in readme
    assert "FINAL VERDICT: PASS" in readme
    assert re.search(r'id="verdict-badge"[^>]*>PASS<', (pack / "index.html").read_text())
    for rel in ("results/final_verdict.json", "results/detection_matrix.json",
                "metadata/verdict_inputs.json", "metadata/tool.json",
                "certs/llama/nan_injection/run_1/verify.json",
                "certs/llama/nan_injection/run_1/evaluation.html"):  # fmt: skip
        assert (pack / rel).is_file(), rel
    assert not list(pass_run.glob(".proof_pack.staging-*"))


def test_existing_pack_dir_is_never_overwritten(fail_run: Path, tmp_path: Path) -> None:
    res = editproof("pack", str(fail_run), "--no-sign")  # fail_run/proof_pack exists
    assert res.returncode == 5 and res.stderr.startswith("error: pack dir")
    empty = tmp_path / "empty"
    empty.mkdir()
    res = editproof("pack", str(fail_run), "--pack-dir", str(empty), "--no-sign")
    assert res.returncode == 0, res.stderr
    assert "UNSIGNED" in res.stderr and "signatures: NONE" in res.stdout


def test_unfinished_run_is_refused(fail_run: Path, tmp_path: Path) -> None:
    run = Path(
        shutil.copytree(fail_run, tmp_path / "run", ignore=shutil.ignore_patterns("proof_pack"))
    )
    (run / "reports/final_verdict.json").unlink()
    res = editproof("pack", str(run), "--no-sign")
    assert res.returncode == 4 and "not a finished run" in res.stderr
    assert not (run / "proof_pack").exists()


_KILLER = """
import sys, time
from pathlib import Path
from editproof.pack import build
def stall(*a, **k):
    Path(sys.argv[3]).write_text("in signing")
    time.sleep(60)
build.keys.sign = stall
key = build.keys.load_private(Path(sys.argv[4]))
build.build_pack(Path(sys.argv[1]), Path(sys.argv[2]), build.Signer(key=key))
"""


def test_sigkill_during_build_leaves_no_pack(fail_run: Path, tmp_path: Path,
                                             keypair: tuple[Path, Path]) -> None:  # fmt: skip
    target, marker = tmp_path / "out" / "proof_pack", tmp_path / "marker"
    proc = subprocess.Popen([sys.executable, "-c", _KILLER, str(fail_run), str(target),
                             str(marker), str(keypair[0])], env=env())  # fmt: skip
    deadline = time.time() + 60
    while not marker.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    assert marker.exists(), "the build never reached signing"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not target.exists()
    left = list(target.parent.glob(".proof_pack.staging-*"))
    assert len(left) == 1  # obviously temporary, and ...
    res = editproof("pack", str(fail_run), "--pack-dir", str(target), "--sign-key", str(keypair[0]))
    assert res.returncode == 0, res.stderr
    assert not left[0].exists()  # ... cleaned by the next build
    assert editproof("verify", "--strict", "--key", str(keypair[1]), str(target)).returncode == 0


def test_bad_sign_key_fails_before_the_suite(tmp_path: Path) -> None:
    out = tmp_path / "run"
    t0 = time.perf_counter()
    res = editproof("run", "--sign-key", str(tmp_path / "missing.pem"), "--out", str(out))
    took = time.perf_counter() - t0
    assert res.returncode == 3 and res.stderr.startswith("error: signing key")
    assert "Traceback" not in res.stderr and not out.exists()
    assert took < 5  # interpreter start included; no model is touched
    loose = tmp_path / "loose.pem"
    shutil.copy(Path(__file__), loose)
    loose.chmod(0o644)
    res = editproof("run", "--sign-key", str(loose), "--out", str(out))
    assert res.returncode == 4 and "readable by group or others" in res.stderr
    res = editproof("run", "--no-sign", "--gpg-key", "nobody@nowhere.invalid", "--out", str(out),
                    GNUPGHOME=str(tmp_path))  # fmt: skip
    assert res.returncode == 3 and "GPG secret key" in res.stderr and not out.exists()


def test_keygen(cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    res = cli("keygen", str(tmp_path / "k"))
    assert res.code == 0 and "fingerprint: sha256:" in res.out
    priv = tmp_path / "k" / "editproof_ed25519.pem"
    assert (priv.stat().st_mode & 0o777) == 0o600
    assert cli("keygen", str(tmp_path / "k")).code == 5  # never overwrites
    from editproof.pack import keys

    monkeypatch.setenv("EDITPROOF_HOME", str(tmp_path / "home"))
    path, created = keys.default_key()
    assert created and path == tmp_path / "home" / "keys" / "editproof_ed25519.pem"
    assert keys.default_key() == (path, False)


def test_inspect_does_not_claim_validity(cli, pack: Path) -> None:  # type: ignore[no-untyped-def]
    res = cli("inspect", str(pack))
    assert res.code == 0 and res.out.startswith("NOT VERIFIED") and "verdict:    PASS" in res.out


def test_index_escapes_strings_from_the_run(pack: Path) -> None:
    from editproof.pack.index import render_index

    path = pack / "results/final_verdict.json"
    v = json.loads(path.read_text())
    v["models"] = ["<script>alert(1)</script>"]
    path.write_text(json.dumps(v))
    html = render_index(pack)
    assert "<script>" not in html and "&lt;script&gt;" in html


def test_manifest_schema_in_sync() -> None:
    from editproof.pack.schema import SCHEMAS
    from editproof.report.schema import schema_text

    contracts = Path(__file__).resolve().parents[2] / "contracts"
    for name, model in SCHEMAS.items():
        assert (contracts / name).read_text() == schema_text(model), "run `make schemas`"


def test_honest_manifest_validates_against_the_schema(pass_run: Path) -> None:
    jsonschema = pytest.importorskip("jsonschema")
    contracts = Path(__file__).resolve().parents[2] / "contracts"
    schema = json.loads((contracts / "proof_pack_manifest.schema.json").read_text())
    jsonschema.validate(json.loads((pass_run / "proof_pack/manifest.json").read_text()), schema)

"""Two tiny suite runs per session, each packed once: a PASS pack signed with Ed25519 and GPG
(`editproof run`) and a FAIL pack signed with Ed25519 (`editproof suite` + `editproof pack`).
Every test works on its own copy."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

PASS_SCENARIOS = "nan_injection,shape_mismatch"
FAIL_SCENARIOS = "quant_4bit_clean"
SRC = Path(__file__).resolve().parents[2] / "src"


def env(**extra: str) -> dict[str, str]:
    e = {k: v for k, v in os.environ.items() if not k.startswith(("PACK_", "MODEL_"))}
    e["PYTHONPATH"] = str(SRC) + os.pathsep + e.get("PYTHONPATH", "")
    e.update(extra)
    return e


def editproof(*args: str, **extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "editproof", *args], env=env(**extra),
                          capture_output=True, text=True, timeout=600)  # fmt: skip


def suite_args(model: Path, out: Path, scenarios: str) -> list[str]:
    return ["--suite", "subset", "--models", str(model), "--out", str(out), "--device", "cpu",
            "--seq-len", "16", "--windows", "6", "--runs", "1", "--calibration-runs", "1",
            "--scenario-ids", scenarios, "--quiet"]  # fmt: skip


@pytest.fixture(scope="session")
def gnupg(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A throwaway GNUPGHOME with one ed25519 signing key; returns its fingerprint."""
    if shutil.which("gpg") is None:
        pytest.skip("gpg is not installed")
    home = tmp_path_factory.mktemp("gnupg")
    home.chmod(0o700)
    old = os.environ.get("GNUPGHOME")
    os.environ["GNUPGHOME"] = str(home)
    subprocess.run(["gpg", "--batch", "--passphrase", "", "--quick-gen-key",
                    "editproof test <test@example.invalid>", "ed25519", "sign", "never"],
                   check=True, capture_output=True, timeout=60)  # fmt: skip
    out = subprocess.run(["gpg", "--batch", "--with-colons", "--list-secret-keys"],
                         check=True, capture_output=True, text=True).stdout  # fmt: skip
    fpr = next(ln.split(":")[9] for ln in out.splitlines() if ln.startswith("fpr:"))
    yield fpr
    if old is None:
        os.environ.pop("GNUPGHOME", None)
    else:
        os.environ["GNUPGHOME"] = old


@pytest.fixture(scope="session")
def keypair(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    from editproof.pack import keys

    priv, pub, _ = keys.generate(tmp_path_factory.mktemp("keys"))
    return priv, pub


@pytest.fixture(scope="session")
def other_keypair(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    from editproof.pack import keys

    priv, pub, _ = keys.generate(tmp_path_factory.mktemp("other-keys"))
    return priv, pub


@pytest.fixture(scope="session")
def pass_run(
    tmp_path_factory: pytest.TempPathFactory, tiny_dir: Path, keypair: tuple[Path, Path],
    gnupg: str,
) -> Path:  # fmt: skip
    """`editproof run` on the tiny model: a PASS verdict, Ed25519 + GPG signed pack."""
    out = tmp_path_factory.mktemp("pass") / "run"
    home = tmp_path_factory.mktemp("home")
    res = editproof("run", *suite_args(tiny_dir, out, PASS_SCENARIOS), "--sign-key",
                    str(keypair[0]), "--gpg-key", gnupg, EDITPROOF_HOME=str(home),
                    GNUPGHOME=os.environ["GNUPGHOME"])  # fmt: skip
    assert res.returncode == 0, res.stderr
    assert (
        "FINAL VERDICT: PASS" in res.stdout
        and "verify with: editproof verify --strict" in res.stdout
    )
    assert (out / "proof_pack" / "manifest.json.asc").is_file()
    return out


@pytest.fixture(scope="session")
def fail_run(
    tmp_path_factory: pytest.TempPathFactory, tiny_dir: Path, keypair: tuple[Path, Path]
) -> Path:
    """`editproof suite` then `editproof pack`: a FAIL verdict, packed anyway (Ed25519 only)."""
    out = tmp_path_factory.mktemp("fail") / "run"
    res = editproof("suite", *suite_args(tiny_dir, out, FAIL_SCENARIOS))
    assert res.returncode == 1, res.stderr
    res = editproof("pack", str(out), "--sign-key", str(keypair[0]), PACK_GPG_SIGN="0")
    assert res.returncode == 0, res.stderr
    assert "FINAL VERDICT: FAIL" in res.stdout
    assert "GPG signature: none (PACK_GPG_SIGN=0)" in res.stderr
    return out


@pytest.fixture
def pack(pass_run: Path, tmp_path: Path) -> Path:
    """A private copy of the signed PASS pack."""
    return Path(shutil.copytree(pass_run / "proof_pack", tmp_path / "pack", symlinks=True))


@pytest.fixture
def fail_pack(fail_run: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(fail_run / "proof_pack", tmp_path / "fail_pack", symlinks=True))

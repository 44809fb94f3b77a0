"""scripts/proof_packs/run_pack.sh and verify_pack.sh: the seed's flags and variables."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.pack.conftest import env

SCRIPTS = Path(__file__).resolve().parents[2] / "scripts" / "proof_packs"


def _run(script: str, *args: str, **extra: str) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items() if not k.startswith(("PACK_", "MODEL_"))}
    full.update({"EDITPROOF": "echo editproof", **extra})
    return subprocess.run(["bash", str(SCRIPTS / script), *args], capture_output=True, text=True,
                          env=full)  # fmt: skip


def test_run_pack_forwards_the_seed_flags() -> None:
    res = _run("run_pack.sh", "--suite", "subset", "--net", "1", "--resume", "--out", "/tmp/r")
    assert res.returncode == 0, res.stderr
    assert res.stdout.split() == [
        "editproof", "run", "--suite", "subset", "--net", "1", "--determinism", "throughput",
        "--repeats", "0", "--out", "/tmp/r", "--resume",
    ]  # fmt: skip
    env_res = _run("run_pack.sh", PACK_NET="1", PACK_SIGNING_KEY="/k.pem", PACK_DIR="/p")
    assert "--net 1" in env_res.stdout and "--sign-key /k.pem" in env_res.stdout
    assert "--pack-dir /p" in env_res.stdout


def test_verify_pack_forwards_the_seed_flags() -> None:
    res = _run("verify_pack.sh", "--pack", "/x/proof_pack", "--strict", "--key", "k.pem")
    assert res.stdout.split() == [
        "editproof",
        "verify",
        "--strict",
        "--key",
        "k.pem",
        "/x/proof_pack",
    ]
    res = _run("verify_pack.sh", "--pack", "/p", PACK_REQUIRE_PASS="1")
    assert res.stdout.split() == ["editproof", "verify", "--require-pass", "/p"]


def test_bad_arguments_exit_2() -> None:
    for script, args in (("run_pack.sh", ["--net", "7"]), ("run_pack.sh", ["--bogus"]),
                         ("verify_pack.sh", []), ("verify_pack.sh", ["--pack"])):  # fmt: skip
        res = _run(script, *args)
        assert res.returncode == 2 and res.stderr.startswith("error: "), (script, args)


def test_seed_quick_start_verify_verbatim(pass_run: Path, keypair: tuple[Path, Path]) -> None:
    cmd = f"{sys.executable} -m editproof"
    base = {**env(), "EDITPROOF": cmd}
    pack = str(pass_run / "proof_pack")
    res = subprocess.run([str(SCRIPTS / "verify_pack.sh"), "--pack", pack], env=base,
                         capture_output=True, text=True)  # fmt: skip
    assert res.returncode == 0, res.stderr
    strict = subprocess.run([str(SCRIPTS / "verify_pack.sh"), "--pack", pack],
                            env={**base, "PACK_STRICT_MODE": "1"}, capture_output=True, text=True)  # fmt: skip
    assert strict.returncode == 5  # strict wants a trusted key ...
    strict = subprocess.run([str(SCRIPTS / "verify_pack.sh"), "--pack", pack],
                            env={**base, "PACK_STRICT_MODE": "1", "PACK_VERIFY_KEY": str(keypair[1])},
                            capture_output=True, text=True)  # fmt: skip
    assert strict.returncode == 0, strict.stderr  # ... given out of band

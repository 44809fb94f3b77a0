"""scripts/proof_packs/run_suite.sh: the seed's flags and PACK_* variables, translated."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "proof_packs" / "run_suite.sh"


def _run(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items() if not k.startswith(("PACK_", "MODEL_"))}
    full.update({"EDITPROOF": "echo editproof", **env})
    return subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True, env=full)


def test_flags_and_environment_are_forwarded() -> None:
    res = _run("--models", "a/b,c/d", "--out", "/tmp/x", "--resume", "--repeats", "2")
    assert res.returncode == 0
    assert "WITHOUT creating a proof pack" in res.stderr
    assert res.stdout.split() == [
        "editproof", "suite", "--suite", "subset", "--net", "0", "--determinism", "throughput",
        "--repeats", "2", "--out", "/tmp/x", "--models", "a/b,c/d", "--resume",
    ]  # fmt: skip
    env = _run(PACK_SUITE="showcase", PACK_NET="1", PACK_SCENARIO_IDS="nan_injection")
    assert "--suite showcase --net 1" in env.stdout and "--scenario-ids nan_injection" in env.stdout


def test_bad_arguments_exit_2() -> None:
    assert _run("--help").returncode == 0
    for args in (["--net", "9"], ["--repeats", "nope"], ["--bogus"], ["--suite"], ["--", "x"]):
        res = _run(*args)
        assert res.returncode == 2, args
        assert res.stderr.startswith("error: "), res.stderr

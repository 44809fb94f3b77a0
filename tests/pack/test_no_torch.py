"""Verifying needs no torch: a fresh venv (no system site-packages) holding only the core
dependencies, copied from this environment, verifies a real pack and its archive and diffs
them."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import venv
from importlib import metadata
from pathlib import Path

CORE = ["numpy", "pydantic", "typer", "rich", "cryptography", "jinja2"]


def _closure(names: list[str]) -> set[str]:
    from packaging.requirements import Requirement

    seen: set[str] = set()
    todo = list(names)
    while todo:
        name = re.sub(r"[-_.]+", "-", todo.pop()).lower()
        if name in seen:
            continue
        seen.add(name)
        for text in metadata.requires(name) or []:
            req = Requirement(text)
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                todo.append(req.name)
    return seen


def _copy_dist(name: str, site: Path) -> None:
    dist = metadata.distribution(name)
    for rel in dist.files or []:
        src = Path(str(dist.locate_file(rel)))
        if not src.is_file() or ".." in rel.parts:
            continue
        dest = site / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, dest)


def test_verify_in_a_venv_without_torch(pass_run: Path, keypair: tuple[Path, Path],
                                        tmp_path: Path) -> None:  # fmt: skip
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=False, system_site_packages=False)
    py = env_dir / "bin" / "python"
    site = Path(subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               capture_output=True, text=True, check=True).stdout.strip())  # fmt: skip
    deps = _closure(CORE)
    assert "torch" not in deps
    for name in deps:
        _copy_dist(name, site)
    shutil.copytree(Path(__file__).resolve().parents[2] / "src" / "editproof", site / "editproof")
    clean = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    no_torch = subprocess.run([str(py), "-c", "import torch"], capture_output=True, env=clean)
    assert no_torch.returncode != 0
    res = subprocess.run([str(py), "-m", "editproof", "verify", "--strict", "--key",
                          str(keypair[1]), str(pass_run / "proof_pack"), "--require-pass"],
                         capture_output=True, text=True, env=clean)  # fmt: skip
    assert res.returncode == 0, res.stdout + res.stderr
    assert "proof-grade" in res.stdout
    from editproof.pack.archive import write_tar

    tar = tmp_path / "pack.proofpack.tar"
    write_tar(pass_run / "proof_pack", tar)
    for args in (["verify", "--strict", "--key", str(keypair[1]), str(tar)],
                 ["diff", str(pass_run / "proof_pack"), str(tar)]):  # fmt: skip
        res = subprocess.run([str(py), "-m", "editproof", *args], capture_output=True, text=True,
                             env=clean)  # fmt: skip
        assert res.returncode == 0, res.stdout + res.stderr
    assert sys.prefix != str(env_dir)

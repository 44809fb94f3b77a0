"""Single-file packs: ``<name>.proofpack.tar`` is byte-for-byte deterministic, ``verify`` reads it
in place (never extracting), and every archive trick exits with its documented code.

Codes as for a directory: 3 not a readable archive or a listed member missing · 4 unsafe or
duplicate member names · 5 signature · 6 content, links, devices, FIFOs (both policies in an
archive), extra members (strict).
"""

from __future__ import annotations

import io
import os
import shutil
import tarfile
from collections.abc import Callable
from pathlib import Path

import pytest

from editproof.pack.archive import write_tar
from tests.cli._cli import Result
from tests.pack.conftest import editproof

REPORT = "certs/llama/nan_injection/run_1/evaluation.report.json"
Cli = Callable[..., Result]
Member = tuple[tarfile.TarInfo, bytes]


@pytest.fixture
def tar(pack: Path, tmp_path: Path) -> Path:
    out = tmp_path / "pack.proofpack.tar"
    write_tar(pack, out)
    return out


def members(path: Path) -> list[Member]:
    with tarfile.open(path, "r:") as tf:
        out = []
        for m in tf:
            f = tf.extractfile(m) if m.isreg() else None
            out.append((m, f.read() if f else b""))
        return out


def rewrite(path: Path, ms: list[Member]) -> None:
    path.unlink()
    with tarfile.open(path, "w", format=tarfile.GNU_FORMAT) as tf:
        for info, data in ms:
            tf.addfile(info, io.BytesIO(data) if info.isreg() else None)


def info(
    name: str, kind: bytes = tarfile.REGTYPE, size: int = 0, target: str = ""
) -> tarfile.TarInfo:
    m = tarfile.TarInfo(name)
    m.type, m.size, m.linkname = kind, size, target
    return m


def verify(cli: Cli, path: Path, pub: Path | None = None) -> int:
    extra = ["--strict", "--key", str(pub)] if pub else []
    return cli("verify", *extra, str(path)).code


# --- determinism and honest archives ---------------------------------------------------------


def test_same_pack_gives_byte_identical_archives(pack: Path, tmp_path: Path) -> None:
    write_tar(pack, tmp_path / "a.tar")
    moved = Path(shutil.copytree(pack, tmp_path / "elsewhere" / "copy"))
    for p in moved.rglob("*"):
        os.utime(p, (1_700_000_000, 1_700_000_000))
        if p.is_file():
            p.chmod(0o600)
    write_tar(moved, tmp_path / "b.tar")
    assert (tmp_path / "a.tar").read_bytes() == (tmp_path / "b.tar").read_bytes()
    ms = members(tmp_path / "a.tar")
    names = [m.name for m, _ in ms]
    assert names == sorted(names) and "manifest.json" in names and REPORT in names
    for m, _ in ms:
        assert (m.type, m.mtime, m.uid, m.gid, m.uname, m.gname, m.mode) == (
            tarfile.REGTYPE, 0, 0, 0, "", "", 0o644,
        ), m.name  # fmt: skip
        assert not m.pax_headers
    assert b"PaxHeader" not in (tmp_path / "a.tar").read_bytes()


def test_archive_verifies_like_the_directory(
    cli: Cli, tar: Path, keypair: tuple[Path, Path]
) -> None:
    assert verify(cli, tar) == 0
    res = cli("verify", "--strict", "--key", str(keypair[1]), "--json", str(tar))
    assert res.code == 0 and '"kind": "archive"' in res.out
    res = cli("inspect", str(tar))
    assert res.code == 0 and "verdict:    PASS" in res.out


def test_pack_archive_option(fail_run: Path, keypair: tuple[Path, Path], tmp_path: Path) -> None:
    target = tmp_path / "out" / "fail_pack"
    args = ["pack", str(fail_run), "--pack-dir", str(target), "--sign-key", str(keypair[0]),
            "--archive"]  # fmt: skip
    res = editproof(*args, PACK_GPG_SIGN="0")
    assert res.returncode == 0, res.stderr
    archive = tmp_path / "out" / "fail_pack.proofpack.tar"
    assert archive.is_file() and target.is_dir() and f"archive: {archive}" in res.stdout
    assert not list(archive.parent.glob(".*staging*"))
    res = editproof("verify", "--strict", "--key", str(keypair[1]), str(archive))
    assert res.returncode == 0, res.stdout + res.stderr
    shutil.rmtree(target)  # the dir is gone; the archive is still there: never overwritten
    res = editproof(*args, PACK_GPG_SIGN="0")
    assert res.returncode == 5 and "never overwritten" in res.stderr


# --- attacks ---------------------------------------------------------------------------------


def test_member_content_tampered(cli: Cli, tar: Path, keypair: tuple[Path, Path]) -> None:
    ms = members(tar)
    ms = [(m, d.replace(b'"ratio"', b'"ratio" ', 1) if m.name == REPORT else d) for m, d in ms]
    for m, d in ms:
        m.size = len(d)
    rewrite(tar, ms)
    assert verify(cli, tar) == 6
    assert verify(cli, tar, keypair[1]) == 6


def test_member_missing(cli: Cli, tar: Path) -> None:
    rewrite(tar, [(m, d) for m, d in members(tar) if m.name != REPORT])
    assert verify(cli, tar) == 3


@pytest.mark.parametrize("name", ["/etc/passwd", "../evil", "certs/../../evil", "a\\b", "./x"])
def test_unsafe_member_name(cli: Cli, tar: Path, keypair: tuple[Path, Path], name: str) -> None:
    rewrite(tar, [*members(tar), (info(name, size=3), b"pwn")])
    assert verify(cli, tar) == 4
    assert verify(cli, tar, keypair[1]) == 4


def test_duplicate_member(cli: Cli, tar: Path, keypair: tuple[Path, Path]) -> None:
    ms = members(tar)
    report = next(d for m, d in ms if m.name == REPORT)
    forged = report.replace(b'"ratio"', b'"ratio" ', 1)
    rewrite(tar, [*ms, (info(REPORT, size=len(forged)), forged)])  # `tar -x` keeps the last
    assert verify(cli, tar) == 4
    assert verify(cli, tar, keypair[1]) == 4


def test_case_colliding_member(cli: Cli, tar: Path) -> None:
    rewrite(tar, [*members(tar), (info("README.MD", size=1), b"x")])
    assert verify(cli, tar) == 4


@pytest.mark.parametrize(
    "member",
    [
        info("results/id_rsa", tarfile.SYMTYPE, target="/home/u/.ssh/id_rsa"),
        info("results/hard", tarfile.LNKTYPE, target="README.md"),
        info("results/zero", tarfile.CHRTYPE),
        info("results/fifo", tarfile.FIFOTYPE),
    ],
    ids=["symlink", "hardlink", "device", "fifo"],
)
def test_extra_link_or_special_member(cli: Cli, tar: Path, keypair: tuple[Path, Path],
                                      member: tarfile.TarInfo) -> None:  # fmt: skip
    rewrite(tar, [*members(tar), (member, b"")])
    assert verify(cli, tar) == 6  # an archive never has a reason to carry one: both policies
    assert verify(cli, tar, keypair[1]) == 6


def test_listed_file_replaced_by_symlink(cli: Cli, tar: Path) -> None:
    ms = [(m, d) for m, d in members(tar) if m.name != REPORT]
    rewrite(tar, [*ms, (info(REPORT, tarfile.SYMTYPE, target="/etc/passwd"), b"")])
    assert verify(cli, tar) == 6


def test_extra_regular_member(cli: Cli, tar: Path, keypair: tuple[Path, Path]) -> None:
    rewrite(tar, [*members(tar), (info("certs/x/evaluation.report.json", size=2), b"{}")])
    res = cli("verify", str(tar))
    assert res.code == 0 and "WARN  integrity: extra files" in res.out
    assert verify(cli, tar, keypair[1]) == 6


def test_not_an_archive(cli: Cli, tar: Path, tmp_path: Path) -> None:
    data = tar.read_bytes()
    tar.write_bytes(data[: len(data) // 2])
    assert verify(cli, tar) == 3  # truncated
    junk = tmp_path / "junk.proofpack.tar"
    junk.write_bytes(b"not a tar at all" * 64)
    assert verify(cli, junk) == 3
    assert verify(cli, tmp_path / "absent.proofpack.tar") == 3
    gz = tmp_path / "gz.proofpack.tar"
    with tarfile.open(gz, "w:gz") as tf:
        tf.add(tmp_path / "junk.proofpack.tar", arcname="manifest.json")
    assert verify(cli, gz) == 3  # compressed archives are not read (no decompression bombs)


def test_member_over_the_size_cap(cli: Cli, tar: Path, pack: Path,
                                  monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    from editproof.pack import source

    control = max((pack / n).stat().st_size for n in ("manifest.json", "checksums.sha256"))
    monkeypatch.setattr(source, "MAX_FILE_BYTES", control + 1)
    res = cli("verify", str(tar))
    assert res.code == 6 and "larger than" in res.err  # a bigger member is never read whole

"""``<name>.proofpack.tar``: a built pack directory as one deterministic file.

Deterministic: members are the pack's regular files only (no directory, link or pax
member), sorted by path, each with mtime 0, uid/gid 0, empty uname/gname and mode 0644, in
GNU format (long names as GNU long-name records, never pax headers with times). The same
pack directory therefore always gives byte-identical archives, wherever it was copied to.

The archive is written next to the pack directory, which stays (``index.html`` is browsed
there): through a temporary file that is verified from the archive itself, then hard-linked
into place so an existing file is never replaced.
"""

from __future__ import annotations

import os
import stat
import tarfile
import tempfile
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from editproof.errors import InvalidInputError, OutputError
from editproof.pack.source import ARCHIVE_SUFFIX

FILE_MODE = 0o644
MTIME = 0


def archive_path(pack_dir: Path) -> Path:
    """``<parent>/<pack dir name>.proofpack.tar``."""
    return pack_dir.parent / f"{pack_dir.name}{ARCHIVE_SUFFIX}"


def check_archive_target(pack_dir: Path) -> None:
    """Fail before any work when the archive would overwrite something."""
    target = archive_path(pack_dir)
    if target.exists() or target.is_symlink():
        raise OutputError(f"{target} already exists; an archive is never overwritten")


def _files(pack_dir: Path) -> list[tuple[str, Path]]:
    out = []
    for dirpath, dirnames, filenames in os.walk(pack_dir, followlinks=False):
        base = Path(dirpath)
        for name in [*dirnames, *filenames]:
            path = base / name
            mode = path.lstat().st_mode
            if stat.S_ISDIR(mode):
                continue
            if not stat.S_ISREG(mode):
                raise InvalidInputError(f"{path} is not a regular file; refusing to archive it")
            out.append((path.relative_to(pack_dir).as_posix(), path))
    return sorted(out)


def write_tar(pack_dir: Path, out: Path) -> None:
    """Write the deterministic tar of ``pack_dir`` to ``out`` (which must not exist)."""
    with (
        out.open("xb") as raw,
        tarfile.open(fileobj=raw, mode="w", format=tarfile.GNU_FORMAT) as tf,
    ):
        for rel, path in _files(pack_dir):
            info = tarfile.TarInfo(rel)
            info.size = path.stat().st_size
            info.mtime = MTIME
            info.mode = FILE_MODE
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            info.type = tarfile.REGTYPE
            with path.open("rb") as f:
                tf.addfile(info, f)


def write_archive(pack_dir: Path, key: Ed25519PublicKey | None) -> Path:
    """Archive a built pack next to it, check the archive with the verifier (default policy,
    the signer's key), and move it into place without ever overwriting."""
    from editproof.pack.policy import VerifyPolicy
    from editproof.pack.verify import verify_pack

    target = archive_path(pack_dir)
    check_archive_target(pack_dir)
    fd, tmp_name = tempfile.mkstemp(
        prefix=f".{target.name}.staging-{os.getpid()}-", dir=target.parent
    )
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        tmp.unlink()
        write_tar(pack_dir, tmp)
        with tmp.open("rb") as f:
            os.fsync(f.fileno())
        check = verify_pack(tmp, VerifyPolicy.default(key=key))
        if check.exit_code != 0:
            bad = next(c for c in check.checks if c.outcome == "fail")
            raise InvalidInputError(f"the archive does not verify: {bad.name}: {bad.detail}")
        tmp.chmod(FILE_MODE)
        try:
            os.link(tmp, target)
        except FileExistsError:
            raise OutputError(f"{target} appeared while archiving; not overwritten") from None
        except OSError as exc:
            raise OutputError(f"cannot write {target}: {exc.strerror}") from None
    finally:
        tmp.unlink(missing_ok=True)
    return target

"""Reading an untrusted directory: no symlink is followed at any path component, only
regular files are opened (never a FIFO or device), the bytes hashed are the bytes parsed,
and sizes are capped."""

from __future__ import annotations

import errno
import hashlib
import os
import stat
from dataclasses import dataclass
from pathlib import Path

MAX_FILE_BYTES = 1 << 31  # 2 GiB per file
MAX_KEEP_BYTES = 1 << 28  # files kept in memory for parsing: 256 MiB each
MAX_ENTRIES = 100_000
_BLOCK = 1 << 20


class UnsafeFileError(ValueError):
    pass


@dataclass
class ReadFile:
    size: int
    sha256: str
    nlink: int
    data: bytes | None  # kept when asked (JSON and text the verifier parses)


def read(root: Path, rel: str, *, keep: bool) -> ReadFile:
    """Open ``root/rel`` component by component with O_NOFOLLOW; hash it (and keep its bytes
    when ``keep``). FileNotFoundError when absent; UnsafeFileError for links and specials."""
    parts = rel.split("/")
    dir_fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for part in parts[:-1]:
            try:
                nxt = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=dir_fd)
            except OSError as exc:
                if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                    raise UnsafeFileError(f"{rel}: a path component is a symlink") from None
                raise
            os.close(dir_fd)
            dir_fd = nxt
        try:
            fd = os.open(parts[-1], os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=dir_fd)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise UnsafeFileError(f"{rel}: is a symlink") from None
            raise
    finally:
        os.close(dir_fd)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise UnsafeFileError(f"{rel}: not a regular file")
        if st.st_size > MAX_FILE_BYTES:
            raise UnsafeFileError(f"{rel}: larger than {MAX_FILE_BYTES} bytes")
        h = hashlib.sha256()
        chunks: list[bytes] = []
        keep = keep and st.st_size <= MAX_KEEP_BYTES
        size = 0
        while block := os.read(fd, _BLOCK):
            size += len(block)
            if size > MAX_FILE_BYTES:
                raise UnsafeFileError(f"{rel}: grew past {MAX_FILE_BYTES} bytes while read")
            h.update(block)
            if keep:
                chunks.append(block)
        return ReadFile(size, h.hexdigest(), st.st_nlink, b"".join(chunks) if keep else None)
    finally:
        os.close(fd)


def entries(root: Path) -> dict[str, str]:
    """Every non-directory entry under ``root`` (not following links): rel path -> kind
    (``file``, ``symlink``, ``special``). Symlinked directories are reported, not entered."""
    out: dict[str, str] = {}
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        base = Path(dirpath)
        for name in [*dirnames, *filenames]:
            p = base / name
            st = p.lstat()
            rel = p.relative_to(root).as_posix()
            if stat.S_ISDIR(st.st_mode):
                continue
            kind = (
                "file"
                if stat.S_ISREG(st.st_mode)
                else ("symlink" if stat.S_ISLNK(st.st_mode) else "special")
            )
            out[rel] = kind
            if len(out) > MAX_ENTRIES:
                raise UnsafeFileError(f"more than {MAX_ENTRIES} entries in the pack")
    return out

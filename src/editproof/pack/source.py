"""Where the verifier's bytes come from: a pack directory or a ``.proofpack.tar`` archive.

Both sources answer the same four questions (does a path exist, read and hash a file,
which entries are there and of what kind, and what is wrong with the container itself), so
every check of ``verify.py`` runs unchanged on both. The archive is never extracted: its
members are read through :mod:`tarfile` into memory, with the same size caps as files.

Archive rules (docs/packs.md): plain uncompressed tar only; a member name that is absolute,
has ``..``/``.``/empty parts, a backslash or control character, is not NFC, or repeats (or
collides under casefold) another member's name makes the archive unusable (exit 4, like an
unsafe path in the manifest); links, devices, FIFOs and any other non-regular member are
integrity failures (exit 6) under both policies, since ``tar -x`` would materialise them.
"""

from __future__ import annotations

import hashlib
import os
import stat
import tarfile
from pathlib import Path
from typing import IO, Protocol

from editproof.pack import safefs
from editproof.pack.layout import collision_key, path_problem
from editproof.pack.safefs import MAX_ENTRIES, MAX_FILE_BYTES, MAX_KEEP_BYTES, ReadFile

ARCHIVE_SUFFIX = ".proofpack.tar"
MAX_ARCHIVE_BYTES = 1 << 34  # 16 GiB: the sum of member sizes an archive may declare
_BLOCK = 1 << 20
# Names that are only control names at the top of a pack, kept apart from path_problem's
# "a control file cannot be listed" rule: the archive holds them as ordinary members.
_OK_CONTROL = "a control file cannot be listed"


class PackSource(Protocol):
    """What the verifier reads a pack through."""

    @property
    def label(self) -> str: ...

    def container_problem(self) -> tuple[int, str] | None:
        """(exit code, why) when the container itself is unusable; None when fine."""

    def exists(self, rel: str) -> bool: ...

    def read(self, rel: str, *, keep: bool) -> ReadFile:
        """FileNotFoundError when absent; UnsafeFileError for links, specials, oversize."""

    def entries(self) -> dict[str, str]:
        """Every non-directory entry: rel path -> ``file``, ``symlink``, ``hardlink``,
        ``special``."""

    @property
    def strict_kinds(self) -> bool:
        """Whether a non-regular entry fails under every policy (archives)."""


class DirSource:
    def __init__(self, root: Path) -> None:
        self.root = root

    @property
    def label(self) -> str:
        return str(self.root)

    @property
    def strict_kinds(self) -> bool:
        return False

    def container_problem(self) -> tuple[int, str] | None:
        if not self.root.is_dir():
            return 3, f"{self.root} is not a directory"
        return None

    def exists(self, rel: str) -> bool:
        try:
            (self.root / rel).lstat()
        except OSError:
            return False
        return True

    def read(self, rel: str, *, keep: bool) -> ReadFile:
        return safefs.read(self.root, rel, keep=keep)

    def entries(self) -> dict[str, str]:
        return safefs.entries(self.root)


def _kind(m: tarfile.TarInfo) -> str:
    if m.isreg() and not m.issparse():
        return "file"
    if m.issym():
        return "symlink"
    if m.islnk():
        return "hardlink"
    return "dir" if m.isdir() else "special"


def member_name_problem(name: str) -> str | None:
    """Why a tar member name is unsafe, or None (pack-path rules; control names allowed)."""
    problem = path_problem(name.removesuffix("/"))
    return None if problem == _OK_CONTROL else problem


class TarSource:
    """A ``.proofpack.tar`` read in place. The member index is built once on open; a member
    is read (and hashed) only when asked for, through ``tarfile.extractfile``."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._members: dict[str, tarfile.TarInfo] = {}
        self._problem: tuple[int, str] | None = None
        self._tar: tarfile.TarFile | None = None
        self._open()

    @property
    def label(self) -> str:
        return str(self.path)

    @property
    def strict_kinds(self) -> bool:
        return True

    def _open(self) -> None:
        try:
            if not stat.S_ISREG(os.stat(self.path).st_mode):  # never block on a FIFO
                self._problem = (3, f"{self.path} is not a regular file or directory")
                return
            # "r:" = no decompression (no bomb); members are indexed, never extracted.
            self._tar = tarfile.open(self.path, mode="r:")  # noqa: SIM115 - closed in close()
            members = []
            for m in self._tar:
                members.append(m)
                if len(members) > MAX_ENTRIES:
                    self._problem = (6, f"more than {MAX_ENTRIES} members in the archive")
                    return
        except (tarfile.TarError, OSError, EOFError) as exc:
            self._problem = (3, f"{self.path} is not a readable tar archive ({exc})")
            return
        seen: dict[str, str] = {}
        total = 0
        for m in members:
            problem = member_name_problem(m.name)
            if problem:
                self._problem = (4, f"archive member {m.name!r}: {problem}")
                return
            name = m.name.removesuffix("/")
            key = collision_key(name)
            if key in seen:
                self._problem = (
                    4,
                    f"archive member {name!r} appears twice"
                    + ("" if seen[key] == name else f" (collides with {seen[key]!r})"),
                )
                return
            seen[key] = name
            total += max(m.size, 0)
            if total > MAX_ARCHIVE_BYTES:
                self._problem = (6, f"archive members exceed {MAX_ARCHIVE_BYTES} bytes")
                return
            self._members[name] = m

    def close(self) -> None:
        if self._tar is not None:
            self._tar.close()
            self._tar = None

    def container_problem(self) -> tuple[int, str] | None:
        return self._problem

    def exists(self, rel: str) -> bool:
        m = self._members.get(rel)
        return m is not None and not m.isdir()

    def read(self, rel: str, *, keep: bool) -> ReadFile:
        m = self._members.get(rel)
        if m is None or m.isdir():
            raise FileNotFoundError(rel)
        kind = _kind(m)
        if kind != "file":
            raise safefs.UnsafeFileError(f"{rel}: not a regular file ({kind} in the archive)")
        if m.size > MAX_FILE_BYTES:
            raise safefs.UnsafeFileError(f"{rel}: larger than {MAX_FILE_BYTES} bytes")
        assert self._tar is not None
        try:
            f: IO[bytes] | None = self._tar.extractfile(m)
            if f is None:
                raise safefs.UnsafeFileError(f"{rel}: not a regular file")
            h = hashlib.sha256()
            chunks: list[bytes] = []
            keep = keep and m.size <= MAX_KEEP_BYTES
            size = 0
            while block := f.read(_BLOCK):
                size += len(block)
                h.update(block)
                if keep:
                    chunks.append(block)
        except (tarfile.TarError, OSError, EOFError) as exc:
            raise safefs.UnsafeFileError(f"{rel}: unreadable archive member ({exc})") from None
        return ReadFile(size, h.hexdigest(), 1, b"".join(chunks) if keep else None)

    def entries(self) -> dict[str, str]:
        return {n: _kind(m) for n, m in self._members.items() if not m.isdir()}


def open_source(path: Path) -> DirSource | TarSource:
    """A directory (or a missing path not named like an archive) reads as a directory;
    anything else as an archive. Like a pack directory, the path itself may be a symlink."""
    if path.is_dir() or (not path.exists() and not path.name.endswith(ARCHIVE_SUFFIX)):
        return DirSource(path)
    return TarSource(path)


def peek(path: Path, rel: str) -> bytes:
    """One file of a pack (directory or archive), NOT verified: for ``inspect`` and for
    choosing which ``--key`` a pack claims. NotFoundError / InvalidInputError otherwise."""
    from editproof.errors import InvalidInputError, NotFoundError

    src = open_source(path)
    try:
        problem = src.container_problem()
        if problem is not None:
            raise (NotFoundError if problem[0] == 3 else InvalidInputError)(problem[1])
        try:
            data = src.read(rel, keep=True).data
        except FileNotFoundError:
            raise NotFoundError(f"{path}: {rel} does not exist") from None
        except (safefs.UnsafeFileError, OSError) as exc:
            raise InvalidInputError(f"{path}: {rel} is unreadable ({exc})") from None
        if data is None:
            raise InvalidInputError(f"{path}: {rel} is too large")
        return data
    finally:
        if isinstance(src, TarSource):
            src.close()

"""Detached, armored GPG signatures through the ``gpg`` binary (never a silent skip)."""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from editproof.errors import InvalidInputError, NotFoundError, OutputError

TIMEOUT_S = 30


def _gpg() -> str:
    path = shutil.which("gpg")
    if path is None:
        raise NotFoundError("gpg is not installed, but a GPG key was asked for")
    return path


def key_fingerprint(key_id: str) -> str:
    """Fingerprint of the secret key ``key_id``; fails fast when gpg or the key is missing."""
    try:
        out = subprocess.run(
            [_gpg(), "--batch", "--with-colons", "--list-secret-keys", "--", key_id],
            capture_output=True,
            text=True,
            timeout=TIMEOUT_S,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise InvalidInputError(f"gpg did not answer within {TIMEOUT_S}s") from None
    fprs = [ln.split(":")[9] for ln in out.stdout.splitlines() if ln.startswith("fpr:")]
    if out.returncode != 0 or not fprs:
        raise NotFoundError(f"GPG secret key '{key_id}' not found in the keyring")
    return fprs[0].upper()


def sign(manifest: Path, key_id: str) -> Path:
    out = manifest.with_name(manifest.name + ".asc")
    cmd = [
        _gpg(),
        "--batch",
        "--yes",
        "--local-user",
        key_id,
        "--detach-sign",
        "--armor",
        "--output",
        str(out),
        str(manifest),
    ]
    try:
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=TIMEOUT_S, check=False)
    except subprocess.TimeoutExpired:
        raise OutputError(f"gpg signing did not finish within {TIMEOUT_S}s") from None
    if res.returncode != 0 or not out.is_file():
        last = (res.stderr.strip().splitlines() or ["no output"])[-1]
        raise OutputError(f"gpg signing failed: {last}")
    return out


@dataclass
class GpgCheck:
    ok: bool
    fingerprints: list[str]  # signing key and primary key fingerprints (VALIDSIG)
    detail: str
    no_public_key: bool = False  # the signer's key is not in the keyring: cannot check


def available() -> bool:
    return shutil.which("gpg") is not None


def verify(signature: Path, manifest: Path) -> GpgCheck:
    """``gpg --verify`` with the user's keyring; parses VALIDSIG from the status output."""
    cmd = [_gpg(), "--batch", "--status-fd", "1", "--verify", str(signature), str(manifest)]
    try:
        res = subprocess.run(
            cmd,
            capture_output=True,
            text=True,
            timeout=TIMEOUT_S,
            check=False,
            env={**os.environ, "LC_ALL": "C"},
        )
    except subprocess.TimeoutExpired:
        return GpgCheck(False, [], f"gpg did not answer within {TIMEOUT_S}s")
    fprs: list[str] = []
    if any(ln.startswith("[GNUPG:] NO_PUBKEY") for ln in res.stdout.splitlines()):
        return GpgCheck(False, [], "the GPG signer's public key is not in your keyring", True)
    for line in res.stdout.splitlines():
        parts = line.split()
        if len(parts) >= 3 and parts[:2] == ["[GNUPG:]", "VALIDSIG"]:
            fprs = [parts[2].upper(), parts[-1].upper()]
    if res.returncode != 0 or not fprs:
        last = (res.stderr.strip().splitlines() or ["no output"])[-1]
        return GpgCheck(False, fprs, f"gpg --verify failed: {last}")
    return GpgCheck(True, fprs, f"good signature by {fprs[0]}")


def configured_key(explicit: str | None, env: dict[str, str], home: Path) -> tuple[str | None, str]:
    """The GPG key to sign with and a line saying why: ``--gpg-key``, else ``PACK_GPG_KEY``,
    else ``gpg_key`` in ``<home>/config.json``; ``PACK_GPG_SIGN=0`` turns it off."""
    import json

    if env.get("PACK_GPG_SIGN") == "0":
        return None, "GPG signature: none (PACK_GPG_SIGN=0)"
    if explicit:
        return explicit, f"GPG signature: key {explicit} (--gpg-key)"
    if env.get("PACK_GPG_KEY"):
        return env["PACK_GPG_KEY"], f"GPG signature: key {env['PACK_GPG_KEY']} (PACK_GPG_KEY)"
    config = home / "config.json"
    if config.is_file():
        try:
            key = json.loads(config.read_text("utf-8")).get("gpg_key")
        except (OSError, ValueError, AttributeError):
            raise InvalidInputError(f"{config}: not a JSON object") from None
        if isinstance(key, str) and key:
            return key, f"GPG signature: key {key} ({config})"
    return None, "GPG signature: none (no --gpg-key, PACK_GPG_KEY or gpg_key in config.json)"


def verify_bytes(signature: bytes, data: bytes) -> GpgCheck:
    """``verify`` on bytes already read (from a directory or an archive): gpg reads them from
    two files in a private temporary directory, removed afterwards."""
    import tempfile

    with tempfile.TemporaryDirectory(prefix="editproof-gpg-") as tmp:
        sig, manifest = Path(tmp) / "manifest.json.asc", Path(tmp) / "manifest.json"
        sig.write_bytes(signature)
        manifest.write_bytes(data)
        return verify(sig, manifest)

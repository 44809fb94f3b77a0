"""Ed25519 keys through ``cryptography``: generate, load (refusing loose permissions), sign
and verify the exact manifest bytes.

Fingerprint = ``sha256:`` + hex sha256 of the 32 raw public-key bytes. The signature file
holds the raw 64 signature bytes, which ``openssl pkeyutl -verify -rawin`` reads as is.
"""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from editproof.errors import InvalidInputError, NotFoundError, OutputError, UsageError

PRIVATE_NAME = "editproof_ed25519.pem"
PUBLIC_NAME = "editproof_ed25519.pub.pem"


def fingerprint(public: Ed25519PublicKey) -> str:
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return "sha256:" + hashlib.sha256(raw).hexdigest()


def public_pem(public: Ed25519PublicKey) -> bytes:
    return public.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def config_home(env: dict[str, str] | None = None) -> Path:
    """``$EDITPROOF_HOME`` or ``~/.config/editproof``."""
    env = dict(os.environ) if env is None else env
    home = env.get("EDITPROOF_HOME")
    return Path(home) if home else Path.home() / ".config" / "editproof"


def default_key_dir(env: dict[str, str] | None = None) -> Path:
    """``$EDITPROOF_HOME/keys`` or ``~/.config/editproof/keys``."""
    return config_home(env) / "keys"


def generate(directory: Path) -> tuple[Path, Path, str]:
    """Write a new key pair into ``directory``: the private key PKCS8 PEM, mode 0600, and the
    public key PEM. Never overwrites. Returns (private path, public path, fingerprint)."""
    priv_path, pub_path = directory / PRIVATE_NAME, directory / PUBLIC_NAME
    for p in (priv_path, pub_path):
        if p.exists():
            raise OutputError(f"'{p}' already exists; refusing to overwrite a key")
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    try:
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(priv_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(pem)
            f.flush()
            os.fsync(f.fileno())
        fd = os.open(pub_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        with os.fdopen(fd, "wb") as f:
            f.write(public_pem(key.public_key()))
    except FileExistsError:
        raise OutputError(f"a key already exists in '{directory}'; refusing to overwrite") from None
    except OSError as exc:
        raise OutputError(f"cannot write keys to '{directory}': {exc.strerror}") from None
    return priv_path, pub_path, fingerprint(key.public_key())


def load_private(path: Path) -> Ed25519PrivateKey:
    """A private key that only its owner can read; anything else is refused."""
    try:
        st = path.stat()
    except FileNotFoundError:
        raise NotFoundError(f"signing key '{path}' does not exist") from None
    if not stat.S_ISREG(st.st_mode):
        raise InvalidInputError(f"signing key '{path}' is not a regular file")
    if st.st_mode & 0o077:
        raise InvalidInputError(
            f"signing key '{path}' is readable by group or others "
            f"(mode {stat.S_IMODE(st.st_mode):04o}); run: chmod 600 {path}"
        )
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (ValueError, TypeError) as exc:
        raise InvalidInputError(
            f"signing key '{path}': not an unencrypted PEM key ({exc})"
        ) from None
    if not isinstance(key, Ed25519PrivateKey):
        raise InvalidInputError(f"signing key '{path}' is not an Ed25519 key")
    return key


def parse_public(data: bytes, source: str) -> Ed25519PublicKey:
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, TypeError):
        raise UsageError(f"{source}: not a PEM public key") from None
    if not isinstance(key, Ed25519PublicKey):
        raise UsageError(f"{source}: not an Ed25519 public key")
    return key


def load_public(path: Path) -> Ed25519PublicKey:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise UsageError(f"public key '{path}': {exc.strerror}") from None
    return parse_public(data, f"public key '{path}'")


def default_key(env: dict[str, str] | None = None) -> tuple[Path, bool]:
    """The default signing key, created on first use. Returns (private path, created)."""
    directory = default_key_dir(env)
    path = directory / PRIVATE_NAME
    if path.exists():
        return path, False
    generate(directory)
    return path, True


def sign(key: Ed25519PrivateKey, data: bytes) -> bytes:
    return key.sign(data)


def verify(public: Ed25519PublicKey, signature: bytes, data: bytes) -> bool:
    try:
        public.verify(signature, data)
    except InvalidSignature:
        return False
    return True

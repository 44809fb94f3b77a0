"""Verification policies as values (sigstore-python style): one verifier, two policies.

``default`` (evidence-grade): every listed file must be intact and every report must
recompute; an unsigned pack, a signature checked only against the pack's own key, extra
files and hard links are warnings. ``strict``: a valid signature by a key given out of band
is required, and extra files, symlinks, hard links and special files are errors.
Proof-grade = signed + strict + PASS (``require_pass``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey


@dataclass(frozen=True)
class VerifyPolicy:
    name: Literal["default", "strict"]
    require_trusted_signature: bool
    reject_extra_files: bool
    reject_hard_links: bool
    require_pass: bool = False
    # Out-of-band trust: an Ed25519 public key, its fingerprint, or a GPG key fingerprint.
    key: Ed25519PublicKey | None = None
    fingerprint: str | None = None
    gpg_fingerprint: str | None = None

    @classmethod
    def default(
        cls,
        *,
        key: Ed25519PublicKey | None = None,
        fingerprint: str | None = None,
        gpg_fingerprint: str | None = None,
        require_pass: bool = False,
    ) -> VerifyPolicy:
        return cls("default", False, False, False, require_pass, key, fingerprint, gpg_fingerprint)

    @classmethod
    def strict(
        cls,
        *,
        key: Ed25519PublicKey | None = None,
        fingerprint: str | None = None,
        gpg_fingerprint: str | None = None,
        require_pass: bool = False,
    ) -> VerifyPolicy:
        return cls("strict", True, True, True, require_pass, key, fingerprint, gpg_fingerprint)

    @property
    def has_trust_anchor(self) -> bool:
        return any(x is not None for x in (self.key, self.fingerprint, self.gpg_fingerprint))

"""What ``verify_pack`` returns: its phases (each with its exit code), every check, and what
was verified (manifest, its digest, the bytes of every parsed file) for callers such as
``diff``."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from editproof.pack.manifest import Manifest

Outcome = Literal["ok", "warn", "fail", "skip"]

PHASES: tuple[tuple[str, int], ...] = (
    ("files present", 3),
    ("manifest schema", 4),
    ("signature", 5),
    ("integrity", 6),
    ("report verification", 7),
    ("verdict", 8),
)
PHASE_OF_CODE = {code: i for i, (_, code) in enumerate(PHASES)}


@dataclass
class Check:
    phase: str
    name: str
    outcome: Outcome
    detail: str
    exit_code: int

    def as_dict(self) -> dict[str, Any]:
        return {
            "phase": self.phase,
            "check": self.name,
            "outcome": self.outcome,
            "detail": self.detail,
            "exit_code": self.exit_code,
        }


@dataclass
class PackVerification:
    pack: Path
    policy: str
    checks: list[Check] = field(default_factory=list)
    verdict: str | None = None
    signatures: list[str] = field(default_factory=list)  # e.g. "ed25519 (trusted key)"
    kind: Literal["directory", "archive"] = "directory"
    # What was verified, for callers that go on to read the pack (``diff``): the parsed
    # manifest, its sha256, and the bytes of every parsed file, from the read that hashed it.
    manifest: Manifest | None = None
    manifest_sha256: str | None = None
    files: dict[str, bytes] = field(default_factory=dict, repr=False)

    @property
    def exit_code(self) -> int:
        return next((c.exit_code for c in self.checks if c.outcome == "fail"), 0)

    @property
    def warnings(self) -> list[Check]:
        return [c for c in self.checks if c.outcome == "warn"]

    def as_dict(self) -> dict[str, Any]:
        return {
            "format": "editproof.pack-verification",
            "schema_version": 1,
            "pack": str(self.pack),
            "kind": self.kind,
            "policy": self.policy,
            "exit_code": self.exit_code,
            "ok": self.exit_code == 0,
            "verdict": self.verdict,
            "signatures": self.signatures,
            "checks": [c.as_dict() for c in self.checks],
        }

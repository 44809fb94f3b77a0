"""``manifest.json``: what a proof pack holds and what it claims, signed byte for byte.

Every file of the pack is listed with its size and sha256, except the manifest, its
signatures and ``checksums.sha256`` (bound by ``checksums_sha256_digest`` instead). A valid
signature over these bytes therefore covers every file.
"""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from editproof.errors import validation_summary
from editproof.pack import strictjson
from editproof.pack.layout import collision_key, path_problem

MANIFEST_FORMAT = "editproof.proof-pack-manifest"
SCHEMA_VERSION = 1
SHA256 = r"^[0-9a-f]{64}$"
FINGERPRINT = r"^sha256:[0-9a-f]{64}$"


class ManifestError(ValueError):
    """The manifest is not a valid, known manifest (exit 4 of ``verify``)."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FileEntry(_Model):
    path: str
    size: int = Field(ge=0)
    sha256: str = Field(pattern=SHA256)

    @field_validator("path")
    @classmethod
    def _safe(cls, value: str) -> str:
        problem = path_problem(value)
        if problem:
            raise ValueError(f"unsafe path {value!r}: {problem}")
        return value


class ModelDigest(_Model):
    model: str = Field(min_length=1)
    kind: str | None = None
    revision: str | None = None
    weight_sha256: str | None = Field(default=None, pattern=SHA256)


class Tool(_Model):
    name: Literal["editproof"] = "editproof"
    version: str = Field(min_length=1)
    source_revision: str | None = None  # git commit of the tool's source, when known
    source_dirty: bool | None = None


class Ed25519Signature(_Model):
    file: Literal["manifest.json.sig"] = "manifest.json.sig"
    encoding: Literal["raw"] = "raw"  # 64 bytes, what `openssl pkeyutl -verify -rawin` reads
    fingerprint: str = Field(pattern=FINGERPRINT)
    public_key_hint: str | None = None  # pack path of the public key; a hint, not trust


class GpgSignature(_Model):
    file: Literal["manifest.json.asc"] = "manifest.json.asc"
    fingerprint: str = Field(pattern=r"^[0-9A-F]{40}$")


class Signatures(_Model):
    ed25519: Ed25519Signature | None = None
    gpg: GpgSignature | None = None


class Manifest(_Model):
    format: Literal["editproof.proof-pack-manifest"] = "editproof.proof-pack-manifest"
    schema_version: Literal[1] = 1
    generated_at: str = Field(min_length=20)
    tool: Tool
    suite: str = Field(min_length=1)
    verdict: Literal["PASS", "FAIL"]
    verdict_path: Literal["results/final_verdict.json"] = "results/final_verdict.json"
    proof_grade_needs: str = (
        "a valid signature, checked by a key you trust, strict verification, PASS"
    )
    suite_parameters: dict[str, Any]
    models: list[ModelDigest]
    reports: int = Field(ge=0)
    files: list[FileEntry]
    checksums_sha256: Literal["checksums.sha256"] = "checksums.sha256"
    checksums_sha256_digest: str = Field(pattern=SHA256)
    signing_key_fingerprint: str | None = Field(default=None, pattern=FINGERPRINT)
    signatures: Signatures

    @field_validator("files")
    @classmethod
    def _unique(cls, files: list[FileEntry]) -> list[FileEntry]:
        seen: set[str] = set()
        for f in files:
            key = collision_key(f.path)
            if key in seen:
                raise ValueError(f"two entries collide as '{f.path}'")
            seen.add(key)
        return files

    def to_bytes(self) -> bytes:
        return (json.dumps(self.model_dump(mode="json"), indent=2, sort_keys=True) + "\n").encode()


def parse_manifest(data: bytes) -> Manifest:
    """Parse manifest bytes strictly; ManifestError names the first problem."""
    try:
        raw = strictjson.loads(data)
    except strictjson.StrictJSONError as exc:
        raise ManifestError(f"manifest.json: {exc}") from None
    if not isinstance(raw, dict):
        raise ManifestError("manifest.json: not a JSON object")
    if raw.get("format") != MANIFEST_FORMAT:
        raise ManifestError(f"manifest.json: unknown format {raw.get('format')!r}")
    if raw.get("schema_version") != SCHEMA_VERSION:
        raise ManifestError(
            f"manifest.json: unknown schema_version {raw.get('schema_version')!r} "
            f"(this editproof reads {SCHEMA_VERSION})"
        )
    try:
        return Manifest.model_validate(raw)
    except ValidationError as exc:
        raise ManifestError(f"manifest.json: {validation_summary(exc)}") from None


def listed_paths_leniently(data: bytes) -> list[str]:
    """The safe file paths a (possibly invalid) manifest lists; used only to report missing
    files before the schema check. Unsafe paths are left out (the schema check rejects them)."""
    try:
        raw = json.loads(data)
    except (UnicodeDecodeError, ValueError):
        return []
    files = raw.get("files") if isinstance(raw, dict) else None
    if not isinstance(files, list):
        return []
    out = []
    for f in files:
        path = f.get("path") if isinstance(f, dict) else None
        if isinstance(path, str) and path_problem(path) is None:
            out.append(path)
    return out

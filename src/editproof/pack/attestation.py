"""``attestation.intoto.json``: an in-toto Statement v1 in a DSSE envelope, signed with the
pack's Ed25519 key.

The Statement's subjects are the evaluated model weight sets (name + sha256); its predicate
(type :data:`PREDICATE_TYPE`) carries the verdict, suite, tool and the sha256 of the exact
``manifest.json`` bytes. Because it binds the manifest, the attestation is not listed in the
manifest: like ``manifest.json.sig`` it is a control file, checked on its own.

DSSE (github.com/secure-systems-lab/dsse, protocol.md): the signature is over
``PAE(type, body) = "DSSEv1" SP LEN(type) SP type SP LEN(body) SP body`` with LEN the ASCII
decimal byte count; ``payload`` and ``sig`` are standard base64. The verifier checks the
signature over the payload bytes before parsing them.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from typing import Literal

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from editproof.pack import keys, strictjson
from editproof.pack.manifest import FINGERPRINT, SHA256, Manifest

PAYLOAD_TYPE = "application/vnd.in-toto+json"
STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
PREDICATE_TYPE = "https://editproof.dev/proof-pack/v1"
MAX_ATTESTATION_BYTES = 16 << 20


class AttestationError(ValueError):
    """The envelope or its signature is not valid (exit 5)."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class Subject(_Model):
    name: str = Field(min_length=1)
    digest: dict[Literal["sha256"], str]


class ToolRef(_Model):
    name: Literal["editproof"] = "editproof"
    version: str = Field(min_length=1)
    source_revision: str | None = None


class ManifestRef(_Model):
    path: Literal["manifest.json"] = "manifest.json"
    sha256: str = Field(pattern=SHA256)


class PredicateCounts(_Model):
    models: int = Field(ge=0)
    reports: int = Field(ge=0)
    files: int = Field(ge=0)


class ProofPackPredicate(_Model):
    format: Literal["editproof.proof-pack-predicate"] = "editproof.proof-pack-predicate"
    schema_version: Literal[1] = 1
    verdict: Literal["PASS", "FAIL"]
    suite: str = Field(min_length=1)
    tool: ToolRef
    manifest: ManifestRef
    counts: PredicateCounts
    generated_at: str


class Statement(_Model):
    """in-toto Statement v1 (github.com/in-toto/attestation, spec/v1/statement.md)."""

    type_: Literal["https://in-toto.io/Statement/v1"] = Field(
        default="https://in-toto.io/Statement/v1", alias="_type"
    )
    subject: list[Subject]
    predicate_type: Literal["https://editproof.dev/proof-pack/v1"] = Field(
        default="https://editproof.dev/proof-pack/v1", alias="predicateType"
    )
    predicate: ProofPackPredicate


class Signature(_Model):
    keyid: str = Field(pattern=FINGERPRINT)
    sig: str


class Envelope(_Model):
    payloadType: Literal["application/vnd.in-toto+json"]  # DSSE's field name
    payload: str
    signatures: list[Signature] = Field(min_length=1)


def pae(payload_type: str, body: bytes) -> bytes:
    """DSSE v1 Pre-Authentication Encoding."""
    t = payload_type.encode("utf-8")
    return b"DSSEv1 %d %s %d %s" % (len(t), t, len(body), body)


def subjects(manifest: Manifest) -> list[Subject]:
    """One subject per model whose weight digest the manifest records, sorted by name."""
    return sorted(
        (
            Subject(name=m.model, digest={"sha256": m.weight_sha256})
            for m in manifest.models
            if m.weight_sha256
        ),
        key=lambda s: (s.name, s.digest["sha256"]),
    )


def statement(manifest: Manifest, manifest_bytes: bytes) -> Statement:
    return Statement(
        subject=subjects(manifest),
        predicate=ProofPackPredicate(
            verdict=manifest.verdict,
            suite=manifest.suite,
            tool=ToolRef(
                version=manifest.tool.version, source_revision=manifest.tool.source_revision
            ),
            manifest=ManifestRef(sha256=hashlib.sha256(manifest_bytes).hexdigest()),
            counts=PredicateCounts(
                models=len(manifest.models), reports=manifest.reports, files=len(manifest.files)
            ),
            generated_at=manifest.generated_at,
        ),
    )


def _dump(obj: BaseModel) -> bytes:
    data = obj.model_dump(mode="json", by_alias=True)
    return (json.dumps(data, indent=2, sort_keys=True) + "\n").encode()


def envelope(stmt: Statement, key: Ed25519PrivateKey) -> bytes:
    """The signed DSSE envelope's bytes."""
    body = json.dumps(
        stmt.model_dump(mode="json", by_alias=True), sort_keys=True, separators=(",", ":")
    ).encode()
    sig = keys.sign(key, pae(PAYLOAD_TYPE, body))
    env = Envelope(
        payloadType=PAYLOAD_TYPE,
        payload=base64.b64encode(body).decode(),
        signatures=[
            Signature(keyid=keys.fingerprint(key.public_key()), sig=base64.b64encode(sig).decode())
        ],
    )
    return _dump(env)


def _b64(text: str, what: str) -> bytes:
    """Standard or URL-safe base64, padded or not: DSSE verifiers MUST accept either. The
    signature covers the decoded bytes, so the choice of alphabet carries no meaning."""
    t = text.translate(str.maketrans("-_", "+/"))
    t += "=" * (-len(t) % 4)
    try:
        return base64.b64decode(t, validate=True)
    except (binascii.Error, ValueError):
        raise AttestationError(f"{what} is not base64") from None


def open_envelope(data: bytes, public: Ed25519PublicKey) -> Statement:
    """Check the envelope's signature by ``public`` over PAE, then parse the Statement.
    AttestationError when the envelope is malformed or no signature by that key verifies."""
    if len(data) > MAX_ATTESTATION_BYTES:
        raise AttestationError(f"larger than {MAX_ATTESTATION_BYTES} bytes")
    try:
        env = Envelope.model_validate(strictjson.loads(data))
    except (strictjson.StrictJSONError, ValidationError) as exc:
        raise AttestationError(
            f"not a DSSE in-toto envelope ({str(exc).splitlines()[0]})"
        ) from None
    body = _b64(env.payload, "payload")
    fp = keys.fingerprint(public)
    mine = [s for s in env.signatures if s.keyid == fp]
    if not mine:
        raise AttestationError(f"no signature with keyid {fp}")
    message = pae(env.payloadType, body)
    if not any(keys.verify(public, _b64(s.sig, "sig"), message) for s in mine):
        raise AttestationError(f"the DSSE signature is not a valid signature by {fp}")
    try:
        return Statement.model_validate(strictjson.loads(body))
    except (strictjson.StrictJSONError, ValidationError) as exc:
        raise AttestationError(
            f"signed payload is not an editproof in-toto Statement ({str(exc).splitlines()[0]})"
        ) from None


def binding_problems(stmt: Statement, manifest: Manifest, manifest_bytes: bytes) -> list[str]:
    """Where a validly signed Statement does not describe this pack (exit 6)."""
    problems = []
    actual = hashlib.sha256(manifest_bytes).hexdigest()
    if stmt.predicate.manifest.sha256 != actual:
        problems.append(
            f"it binds manifest sha256 {stmt.predicate.manifest.sha256[:16]}…, "
            f"this pack's manifest is {actual[:16]}…"
        )
    if sorted(stmt.subject, key=lambda s: (s.name, s.digest["sha256"])) != subjects(manifest):
        problems.append("its subjects are not the manifest's model weight digests")
    if stmt.predicate.verdict != manifest.verdict:
        problems.append(f"it says {stmt.predicate.verdict}, the manifest {manifest.verdict}")
    if stmt.predicate.suite != manifest.suite:
        problems.append(f"it names suite {stmt.predicate.suite}, the manifest {manifest.suite}")
    return problems

"""JSON Schemas of the pack's public contracts: the manifest, the in-toto Statement inside
``attestation.intoto.json`` and the output of ``editproof diff --json``."""

from __future__ import annotations

from typing import Any

from editproof.pack.attestation import Statement
from editproof.pack.diff import PackDiff
from editproof.pack.manifest import Manifest

SCHEMAS: dict[str, type[Any]] = {
    "proof_pack_manifest.schema.json": Manifest,
    "proof_pack_attestation_statement.schema.json": Statement,
    "proof_pack_diff.schema.json": PackDiff,
}

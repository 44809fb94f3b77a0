"""JSON Schema of the pack's public contract: the manifest."""

from __future__ import annotations

from typing import Any

from editproof.pack.manifest import Manifest

SCHEMAS: dict[str, type[Any]] = {"proof_pack_manifest.schema.json": Manifest}

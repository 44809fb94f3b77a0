"""Write a model checkpoint (safetensors) plus a metadata file, atomically.

Only ``editproof edit --save`` writes model copies: the suite and ``evaluate --edit`` keep
edits in memory.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from editproof.errors import OutputError

EDIT_METADATA = "edit_metadata.json"
EDIT_METADATA_FORMAT = "editproof.edit-metadata"


def check_target(out: Path) -> None:
    """``out`` must be absent or an empty directory: a checkpoint never overwrites files."""
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise OutputError(f"'{out}' already exists and is not empty; choose another --save")


def save_checkpoint(model: Any, tokenizer: Any | None, out: Path, metadata: dict[str, Any]) -> Path:
    """Save to a temp dir beside ``out`` and rename it into place; ``out`` must not exist."""
    check_target(out)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    except OSError as exc:
        raise OutputError(f"cannot write to '{out.parent}': {exc.strerror}") from None
    try:
        model.save_pretrained(str(tmp), safe_serialization=True)
        if tokenizer is not None:
            tokenizer.save_pretrained(str(tmp))
        doc = {"format": EDIT_METADATA_FORMAT, "schema_version": 1, **metadata}
        (tmp / EDIT_METADATA).write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n")
        tmp.chmod(0o755)
        if out.exists():
            out.rmdir()  # empty (checked above)
        os.replace(tmp, out)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise OutputError(f"cannot save checkpoint to '{out}': {exc.strerror}") from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def read_edit_metadata(directory: Path) -> dict[str, Any] | None:
    """The ``edit_metadata.json`` editproof wrote into a checkpoint, if there is a valid one."""
    path = directory / EDIT_METADATA
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("format") != EDIT_METADATA_FORMAT:
        return None
    return data

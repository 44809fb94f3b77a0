"""JSON Schemas of the public contracts, generated from the pydantic models."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from editproof.fileio import atomic_write_text
from editproof.report.model import EvaluationReport

SCHEMAS: dict[str, type[Any]] = {
    "evaluation_report.schema.json": EvaluationReport,
}


def schema_text(model: type[Any]) -> str:
    schema = model.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    return json.dumps(schema, indent=2, sort_keys=True) + "\n"


def write_schemas(directory: Path, schemas: dict[str, type[Any]] | None = None) -> list[Path]:
    """Write ``schemas`` (default: the report's) as ``<name>`` files into ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, model in (SCHEMAS if schemas is None else schemas).items():
        path = directory / name
        atomic_write_text(path, schema_text(model))
        written.append(path)
    return written

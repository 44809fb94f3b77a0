"""JSON Schemas of the public contracts, generated from the pydantic models."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from editproof.report.model import EvaluationReport

SCHEMAS: dict[str, type[Any]] = {
    "evaluation_report.schema.json": EvaluationReport,
}


def schema_text(model: type[Any]) -> str:
    schema = model.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    return json.dumps(schema, indent=2, sort_keys=True) + "\n"


def write_schemas(directory: Path) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, model in SCHEMAS.items():
        path = directory / name
        path.write_text(schema_text(model))
        written.append(path)
    return written

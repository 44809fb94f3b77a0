"""JSON Schemas of the verdict's public contracts: the catalogue, the inputs the suite hands
over, the final verdict, the detection matrix and one row of the records (records.jsonl)."""

from __future__ import annotations

from typing import Any

from editproof.verdict.catalogue import Catalogue
from editproof.verdict.export_records import RecordRow
from editproof.verdict.model import FinalVerdict, VerdictInputs
from editproof.verdict.views import DetectionMatrix

SCHEMAS: dict[str, type[Any]] = {
    "scenario_catalogue.schema.json": Catalogue,
    "verdict_inputs.schema.json": VerdictInputs,
    "final_verdict.schema.json": FinalVerdict,
    "detection_matrix.schema.json": DetectionMatrix,
    "records.schema.json": RecordRow,
}

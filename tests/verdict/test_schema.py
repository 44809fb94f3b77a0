from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

import pytest

from editproof.report.schema import schema_text
from editproof.verdict.schema import SCHEMAS
from tests.verdict.synth import suite

CONTRACTS = Path(__file__).resolve().parents[2] / "contracts"


@pytest.mark.parametrize("name", sorted(SCHEMAS))
def test_committed_verdict_schemas_are_in_sync(name: str) -> None:
    committed = CONTRACTS / name
    assert committed.is_file(), f"run `make schemas` to create {committed}"
    assert committed.read_text() == schema_text(SCHEMAS[name]), "run `make schemas`"


def test_packaged_catalogue_validates_against_its_schema() -> None:
    jsonschema = pytest.importorskip("jsonschema")
    schema = json.loads((CONTRACTS / "scenario_catalogue.schema.json").read_text())
    text = resources.files("editproof.verdict").joinpath("scenarios.json").read_text()
    jsonschema.validate(json.loads(text), schema)
    bad = json.loads(text)
    bad["scenarios"][0]["strictness"] = "must_shine"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, schema)


def test_verdict_inputs_validate_against_their_schema() -> None:
    jsonschema = pytest.importorskip("jsonschema")
    schema = json.loads((CONTRACTS / "verdict_inputs.schema.json").read_text())
    inputs, _ = suite()
    jsonschema.validate(json.loads(inputs.model_dump_json()), schema)

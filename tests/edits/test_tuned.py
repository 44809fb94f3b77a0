"""Tuned edit params: validation, clean-spec resolution, atomic save."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

from editproof.edits import (
    TunedEntry,
    TunedParams,
    applied,
    default_tuned,
    load_tuned,
    parse_spec,
    resolve_clean,
    save_tuned,
)
from editproof.edits.scope import Scope
from editproof.errors import InvalidInputError, NotFoundError, OutputError
from tests.edits.test_scope import tiny_model


@pytest.fixture(autouse=True, scope="module")
def _one_thread() -> Iterator[None]:
    # Tiny matrices gain nothing from intra-op threads, and on a busy 2-core box OpenMP
    # hand-offs make each small matmul ~16 ms; one thread keeps the suite fast.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _write(tmp_path: Path, data: Any) -> Path:
    path = tmp_path / "tuned_edit_params.json"
    path.write_text(json.dumps(data) if not isinstance(data, str) else data)
    return path


def _doc(**models: Any) -> dict[str, Any]:
    return {"format": "editproof.tuned-edit-params", "schema_version": 1, "models": models}


@pytest.mark.parametrize(
    ("clean", "expected"),
    [
        ("quant_rtn:clean:ffn", "quant_rtn:4:32:ffn"),
        ("fp8_quant:clean:ffn", "fp8_quant:e5m2:ffn"),
        ("magnitude_prune:clean:ffn", "magnitude_prune:0.12:ffn"),
        ("lowrank_svd:clean:ffn", "lowrank_svd:32:ffn@layer=last"),
    ],
)
def test_defaults_match_reference_clean_specs(clean: str, expected: str) -> None:
    spec = resolve_clean(parse_spec(clean), "any/model", default_tuned())
    assert spec.text == expected and not spec.clean
    assert spec.resolved_from == clean
    again = parse_spec(spec.text)
    assert (again.type, dict(again.params), again.scope) == (
        spec.type,
        dict(spec.params),
        spec.scope,
    )


def test_last_layer_resolves_through_layer_count() -> None:
    spec = resolve_clean(parse_spec("lowrank_svd:clean:ffn"), "m", default_tuned(), n_layers=32)
    assert spec.text == "lowrank_svd:32:ffn@layer=31"
    lazy = resolve_clean(parse_spec("lowrank_svd:clean:ffn"), "m", default_tuned())
    model = tiny_model("llama", layers=3)
    with applied(model, lazy) as record:
        assert record.resolved_from == "lowrank_svd:clean:ffn"
        assert {n.split(".")[2] for n in record.tensors} == {"2"}
        assert record.rank == 32


def test_explicit_layer_in_spec_wins_over_tuned_scope() -> None:
    spec = resolve_clean(parse_spec("lowrank_svd:clean:ffn@layer=0"), "m", default_tuned())
    assert spec.scope == Scope("ffn", layer=0)


def test_model_entry_overrides_default(tmp_path: Path) -> None:
    doc = _doc(**{
        "org/model-a": {
            "quant_rtn": {
                "status": "selected",
                "params": {"bits": 8, "group_size": 0},
                "reason": "selected_by_certify_pass:bits8",
                "evidence": {"ratio": 1.01},
            }
        }
    })  # fmt: skip
    doc["defaults"] = default_tuned().model_dump(mode="json")["defaults"]
    tuned = load_tuned(_write(tmp_path, doc))
    a = resolve_clean(parse_spec("quant_rtn:clean:ffn"), "org/model-a", tuned)
    assert a.text == "quant_rtn:8:0:ffn"
    b = resolve_clean(parse_spec("quant_rtn:clean:ffn"), "org/model-b", tuned)
    assert b.text == "quant_rtn:4:32:ffn"
    fp8 = resolve_clean(parse_spec("fp8_quant:clean:ffn"), "org/model-a", tuned)
    assert fp8.text == "fp8_quant:e5m2:ffn"  # no model entry for fp8: the default
    explicit = parse_spec("quant_rtn:3:8:ffn")
    assert resolve_clean(explicit, "org/model-a", tuned) is explicit


def test_missing_and_skipped_entries(tmp_path: Path) -> None:
    doc = _doc(m={"magnitude_prune": {"status": "skipped", "reason": "prune hurts this model"}})
    path = _write(tmp_path, doc)
    tuned = load_tuned(path)
    where = re.escape(str(path))
    with pytest.raises(InvalidInputError, match=rf"'quant_rtn' on model 'm' in {where}"):
        resolve_clean(parse_spec("quant_rtn:clean:ffn"), "m", tuned)
    with pytest.raises(InvalidInputError, match=r"skipped for model 'm'.*prune hurts this model"):
        resolve_clean(parse_spec("magnitude_prune:clean:ffn"), "m", tuned)


def test_tuned_scope_must_refine_spec_family() -> None:
    # Params tuned on ffn are no evidence for attn: a family mismatch is refused.
    tuned = default_tuned()
    with pytest.raises(InvalidInputError, match="does not refine the spec's scope 'attn'"):
        resolve_clean(parse_spec("lowrank_svd:clean:attn"), "m", tuned)
    entry = TunedEntry(status="selected", params={"bits": 4, "group_size": 64}, reason="r")
    no_scope = TunedParams(defaults={"quant_rtn": entry})
    spec = resolve_clean(parse_spec("quant_rtn:clean:attn@layers=2"), "m", no_scope)
    assert spec.text == "quant_rtn:4:64:attn@layers=2"


def test_missing_file() -> None:
    with pytest.raises(NotFoundError, match="tuned params file not found"):
        load_tuned("/nonexistent/tuned_edit_params.json")


def _entry(**params: Any) -> dict[str, Any]:
    return {"status": "selected", "params": params, "reason": "r"}


@pytest.mark.parametrize(
    ("data", "needle"),
    [
        ("{not json", "not valid JSON"),
        ({**_doc(), "format": "other"}, "format: Input should be 'editproof.tuned-edit-params'"),
        ({**_doc(), "schema_version": 2}, "schema_version"),
        ({**_doc(), "extra": 1}, "extra: Extra inputs are not permitted"),
        (
            _doc(m={"quant_rtn": _entry(bits=9, group_size=32)}),
            r"models\.m\.quant_rtn\.params: bits",
        ),
        (_doc(m={"quant_rtn": _entry(bits=4)}), "needs bits, group_size; missing group_size"),
        (_doc(m={"fp8_quant": _entry(format="e3m4")}), "format must be one of"),
        (_doc(m={"magnitude_prune": _entry(sparsity=1.5)}), "sparsity must be strictly"),
        (_doc(m={"lowrank_svd": _entry(rank=8, scope="fnn")}), "bad scope 'fnn'"),
        (_doc(m={"lowrank_svd": _entry(rank=8, layer=3)}), "unexpected layer"),
        (_doc(m={"quant_rnt": _entry(bits=4, group_size=32)}), r"models\.m\.quant_rnt"),
        (
            _doc(m={"quant_rtn": {"status": "chosen", "reason": "r"}}),
            r"models\.m\.quant_rtn\.status",
        ),
        (_doc(m={"quant_rtn": {"status": "selected", "params": {}}}), "reason: Field required"),
    ],
)
def test_invalid_files(tmp_path: Path, data: Any, needle: str) -> None:
    path = _write(tmp_path, data)
    with pytest.raises(InvalidInputError, match=needle) as info:
        load_tuned(path)
    assert "\n" not in str(info.value) and str(path) in str(info.value)


def test_save_round_trip_is_atomic(tmp_path: Path) -> None:
    tuned = TunedParams(
        defaults=default_tuned().defaults,
        models={"m": {"lowrank_svd": TunedEntry(status="skipped", reason="too slow")}},
    )
    path = tmp_path / "tuned_edit_params.json"
    path.write_text("old")
    save_tuned(path, tuned)
    assert os.listdir(tmp_path) == ["tuned_edit_params.json"]  # no temp file left behind
    loaded = load_tuned(path)
    assert loaded.model_dump() == tuned.model_dump() and loaded.source == str(path)
    assert tuned.source == "built-in tuned defaults"
    assert json.loads(path.read_text())["format"] == "editproof.tuned-edit-params"
    with pytest.raises(OutputError, match="cannot write tuned params file"):
        save_tuned(tmp_path / "missing-dir" / "t.json", tuned)

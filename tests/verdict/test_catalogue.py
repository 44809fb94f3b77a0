from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from editproof.errors import InvalidInputError, NotFoundError, UsageError
from editproof.verdict.catalogue import (
    Catalogue,
    Generation,
    load_catalogue,
    packaged_catalogue,
    parse_catalogue,
    select,
)


def _scenario(sid: str, **fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "id": sid,
        "category": "clean",
        "failure_class": "common_edit.quant_rtn",
        "strictness": "must_pass",
        "intent": "clean_control",
        "primary_guard": "primary_metric",
        "generation": {"spec": "quant_rtn:clean:ffn"},
    }
    base.update(fields)
    return base


def _catalogue(*scenarios: dict[str, Any]) -> Catalogue:
    return Catalogue.model_validate({"scenarios": list(scenarios)})


def test_packaged_catalogue_has_23_unique_scenarios() -> None:
    cat = packaged_catalogue()
    assert len(cat.scenarios) == 23
    assert len(set(cat.ids)) == 23
    pgr = [s.id for s in cat.scenarios if s.requirements.primary_guard_required]
    assert pgr == [
        "nan_injection",
        "extreme_quant",
        "rmt_norm_noise",
        "spectral_moderate_scale",
        "ve_mlp_scale_skew",
    ]


def test_scenario_without_suites_belongs_to_every_suite() -> None:
    cat = _catalogue(_scenario("everywhere"), _scenario("only_full", suites=["full"]))
    assert select(cat, "anything").ids == ["everywhere"]
    assert select(cat, "full").ids == ["everywhere", "only_full"]


def test_suite_filter_on_the_packaged_catalogue() -> None:
    cat = packaged_catalogue()
    subset = select(cat, "subset", source="packaged")
    assert len(subset.scenarios) == 20
    assert "rmt_norm_noise_strong" not in subset.ids
    assert len(select(cat, "full").scenarios) == 23
    assert subset.selection is not None
    assert subset.selection.suite == "subset"
    assert subset.selection.source_digest == cat.digest()


def test_scenario_ids_selection_is_exact_and_one_sided() -> None:
    cat = packaged_catalogue()
    clean = [s.id for s in cat.scenarios if s.category == "clean"]
    picked = select(cat, "full", list(reversed(clean)))
    assert picked.ids == clean  # catalogue order, nothing re-expanded
    single = select(cat, "subset", ["nan_injection"])
    assert single.ids == ["nan_injection"]
    assert single.selection is not None and single.selection.scenario_ids == ["nan_injection"]


def test_unknown_and_out_of_suite_ids_are_usage_errors() -> None:
    cat = packaged_catalogue()
    with pytest.raises(UsageError, match=r"unknown scenario id.*no_such"):
        select(cat, "full", ["quant_4bit_clean", "no_such"])
    with pytest.raises(UsageError, match="rmt_norm_noise_strong are not part of suite 'subset'"):
        select(cat, "subset", ["rmt_norm_noise_strong"])
    with pytest.raises(UsageError, match="selects no scenario"):
        select(_catalogue(_scenario("a", suites=["full"])), "demo")


def test_bad_strictness_names_scenario_and_field() -> None:
    data = packaged_catalogue().model_dump(mode="json")
    data["scenarios"][2]["strictness"] = "must_shine"
    with pytest.raises(InvalidInputError) as exc:
        parse_catalogue(json.dumps(data), "cat.json")
    msg = str(exc.value)
    assert "cat.json" in msg and "scenario 'prune_12pct_clean' (#3)" in msg
    assert "strictness" in msg and "\n" not in msg


@pytest.mark.parametrize(
    ("mutate", "match"),
    [
        (lambda d: d["scenarios"][4].update(strictness="must_pass"), r"#5.*does not fit category"),
        (lambda d: d["scenarios"][1].update(id="quant_4bit_clean"), "appears twice"),
        (lambda d: d["scenarios"][0].update(suites=[]), r"#1.*empty list selects nothing"),
        (lambda d: d["scenarios"][0].pop("category"), r"quant_4bit_clean' \(#1\): category"),
        (
            lambda d: d["scenarios"][19]["requirements"]["detectors_any_of"][0].update(min=1),
            r"ve_mlp_scale_skew' \(#20\).*exactly one of 'expected' or 'min'",
        ),
        (
            lambda d: d["scenarios"][8]["requirements"]["detectors_any_of"][0].update(kind="x"),
            r"nan_injection' \(#9\): requirements\.detectors_any_of\.0",
        ),
    ],
)
def test_malformed_catalogue_errors(mutate: Any, match: str) -> None:
    data = packaged_catalogue().model_dump(mode="json")
    mutate(data)
    with pytest.raises(InvalidInputError, match=match):
        parse_catalogue(json.dumps(data), "cat.json")


def test_not_json_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="not valid JSON"):
        parse_catalogue("{", "x.json")
    with pytest.raises(NotFoundError, match="not found"):
        load_catalogue(tmp_path / "absent.json")
    path = tmp_path / "c.json"
    path.write_text(packaged_catalogue().to_json())
    assert load_catalogue(path) == packaged_catalogue()


def test_digest_ignores_the_selection_note() -> None:
    cat = packaged_catalogue()
    full = select(cat, "full")
    assert full.digest() == cat.digest()
    assert select(cat, "subset").digest() != cat.digest()


def test_spec_for_appends_per_model_overrides() -> None:
    gen = Generation(
        spec="rmt_norm_noise:blend=0.98,seed=42",
        params_by_model={"m2": {"seed": 7, "strict": True}},
    )
    assert gen.spec_for("m1") == "rmt_norm_noise:blend=0.98,seed=42"
    assert gen.spec_for("m2") == "rmt_norm_noise:blend=0.98,seed=7,strict=true"

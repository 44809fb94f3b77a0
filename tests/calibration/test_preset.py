"""Preset derivation on a tiny model: overrides, files, loading and applying."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

from editproof.calibration import (
    Preset,
    apply_preset,
    derive_preset,
    load_preset,
    safe_model_id,
    write_preset,
)
from editproof.calibration.null_sweep import LOG_RATIO_FLOOR
from editproof.calibration.preset import DRIFT_FLOOR, MIN_EFFECT_FLOOR
from editproof.errors import InvalidInputError, NotFoundError, UsageError
from editproof.policy import load_tier

pytest.importorskip("torch")
yaml = pytest.importorskip("yaml")

MODEL_ID = "Org/Tiny-Model"


@pytest.fixture(scope="module")
def evaluator(tiny_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Any:
    from editproof.evaluation import EvaluationConfig, Evaluator

    # magnitude_prune is marked skipped for this model: the preset must record and drop it.
    tuned = tmp_path_factory.mktemp("tuned") / "tuned.json"
    skipped = {"status": "skipped", "params": {}, "reason": "too fragile"}
    quant = {"status": "selected", "params": {"bits": 8, "group_size": 32}, "reason": "test"}
    tuned.write_text(
        json.dumps(
            {
                "format": "editproof.tuned-edit-params",
                "schema_version": 1,
                "models": {tiny_dir.name: {"magnitude_prune": skipped, "quant_rtn": quant}},
            }
        )
    )
    config = EvaluationConfig(
        baseline=str(tiny_dir),
        seq_len=32,
        n_preview=4,
        n_final=4,
        device="cpu",
        tuned_params=str(tuned),
    )
    return Evaluator(config)


@pytest.fixture(scope="module")
def preset(evaluator: Any) -> Preset:
    return derive_preset(
        evaluator,
        seeds=[1, 2],
        clean_specs=["quant_rtn:clean:ffn", "magnitude_prune:clean:ffn"],
        model_id=MODEL_ID,
    )


def test_overrides_cover_noise_and_clean_edits(preset: Preset, evaluator: Any) -> None:
    ev = preset.evidence
    assert preset.tier == "balanced" and preset.tier_digest == evaluator.tier.digest()
    assert ev.null_sweep.seeds == [1, 2] and ev.null_sweep.weight_sha256
    assert [r.spec for r in ev.clean_runs] == ["quant_rtn:clean:ffn"]
    assert ev.clean_runs[0].resolved == "quant_rtn:8:32:ffn"
    assert [(s.spec, s.reason) for s in ev.skipped] == [
        ("magnitude_prune:clean:ffn", "too fragile")
    ]
    g = preset.overrides.guards
    null = ev.null_sweep.recommendations
    clean = ev.clean_runs[0]
    tier_kappa = load_tier("balanced").guards.spectral.kappa
    for fam, k in g.spectral.kappa.items():
        z = clean.spectral_max_abs_z.get(fam, 0.0)
        if z > 0:  # the clean edit changed this family: calibrated from evidence
            assert k == max(null.kappa[fam], round(z * 1.1, 3))
        else:  # untouched family: no evidence, the tier's kappa stands
            assert k == tier_kappa[fam]
    # The per-matrix |log sigma ratio| bound follows the same rule as kappa.
    tier_bound = load_tier("balanced").guards.spectral.max_log_ratio
    assert set(g.spectral.max_log_ratio) == set(g.spectral.kappa)
    for fam, b in g.spectral.max_log_ratio.items():
        z = clean.spectral_max_abs_z.get(fam, 0.0)
        if z > 0:
            d = clean.spectral_max_log_ratio[fam]
            assert b == max(null.max_log_ratio[fam], round(d * 1.1, 4)) >= LOG_RATIO_FLOOR
        else:
            assert b == tier_bound[fam]
    assert clean.spectral_caps == 0 and clean.variance_proposals is not None
    for fam, e in g.rmt.epsilon.items():
        d = clean.rmt_delta[fam]
        assert e == max(null.epsilon[fam], round((d or 0.0) * 1.1, 4))
    band = preset.overrides.drift_band
    assert band is not None and clean.paired_drift is not None
    half = max(abs(clean.paired_drift - 1) * 1.1, DRIFT_FLOOR)
    tier_band = load_tier("balanced").drift_band
    assert band == (round(max(1 - half, tier_band[0]), 4), round(min(1 + half, tier_band[1]), 4))
    assert g.variance.min_effect is not None and g.variance.min_effect >= MIN_EFFECT_FLOOR
    assert g.spectral.alpha is None  # a preset leaves alpha to the tier


def test_written_as_equal_json_and_yaml(preset: Preset, tmp_path: Path) -> None:
    paths = write_preset(preset, tmp_path)
    assert [p.name for p in paths] == [
        "calibrated_preset_org__tiny-model.json",
        "calibrated_preset_org__tiny-model.yaml",
    ]
    as_json = json.loads(paths[0].read_text())
    assert as_json["format"] == "editproof.preset" and as_json["schema_version"] == 1
    assert as_json == yaml.safe_load(paths[1].read_text())
    assert load_preset(paths[0]) == preset == load_preset(paths[1])
    yml = tmp_path / "copy.yml"
    yml.write_text(paths[1].read_text())
    assert load_preset(yml) == preset


def test_apply_preset_returns_a_new_tier(preset: Preset) -> None:
    tier = load_tier("balanced")
    applied = apply_preset(tier, preset)
    assert applied.name == f"balanced+preset:{MODEL_ID}" and applied.digest() != tier.digest()
    assert applied.drift_band == preset.overrides.drift_band
    for fam, k in preset.overrides.guards.spectral.kappa.items():
        assert applied.guards.spectral.kappa[fam] == k
    assert applied.guards.spectral.kappa["other"] == tier.guards.spectral.kappa["other"]
    assert applied.guards.variance.min_effect == preset.overrides.guards.variance.min_effect
    assert applied.guards.spectral.alpha == tier.guards.spectral.alpha
    assert applied.ratio_limit == tier.ratio_limit and load_tier("balanced") == tier
    with pytest.raises(InvalidInputError, match="derived on tier 'balanced', not 'aggressive'"):
        apply_preset(load_tier("aggressive"), preset)


def test_preset_never_widens_the_drift_band(preset: Preset) -> None:
    wide = preset.overrides.model_copy(update={"drift_band": (0.5, 1.01)})
    applied = apply_preset(load_tier("balanced"), preset.model_copy(update={"overrides": wide}))
    assert applied.drift_band == (0.95, 1.01)


@pytest.mark.parametrize(
    ("edit", "field"),
    [
        (lambda d: d["overrides"]["guards"]["spectral"]["kappa"].update(attn="x"), "kappa.attn"),
        (lambda d: d["overrides"]["guards"]["rmt"]["epsilon"].update(mlp=0.1), "epsilon.mlp"),
        (lambda d: d.update(format="editproof.tiers"), "format"),
        (lambda d: d.pop("model_id"), "model_id"),
        (lambda d: d["overrides"].update(drift_band=[1.2, 1.3]), "drift_band"),
    ],
)
def test_malformed_preset_names_the_field(
    preset: Preset, tmp_path: Path, edit: Any, field: str
) -> None:
    data = preset.model_dump(mode="json")
    edit(data)
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(InvalidInputError, match=field) as err:
        apply_preset(load_tier("balanced"), load_preset(path))
    assert "\n" not in str(err.value)


def test_unreadable_presets(tmp_path: Path) -> None:
    with pytest.raises(NotFoundError):
        load_preset(tmp_path / "none.json")
    bad = tmp_path / "p.yaml"
    bad.write_text("a: [1, 2")
    with pytest.raises(InvalidInputError, match="not valid YAML"):
        load_preset(bad)
    text = tmp_path / "p.txt"
    text.write_text("{}")
    with pytest.raises(InvalidInputError, match=r"\.json, \.yaml or \.yml"):
        load_preset(text)
    # A YAML tag that would build a Python object is refused by safe_load.
    evil = tmp_path / "evil.yaml"
    evil.write_text("!!python/object/apply:os.system ['true']\n")
    with pytest.raises(InvalidInputError, match="not valid YAML"):
        load_preset(evil)


def test_missing_pyyaml_is_a_usage_error(
    preset: Preset, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "yaml", None)
    with pytest.raises(UsageError, match="pip install pyyaml"):
        write_preset(preset, tmp_path)


def test_safe_model_id() -> None:
    assert safe_model_id("Qwen/Qwen2.5-0.5B") == "qwen__qwen2.5-0.5b"
    assert safe_model_id("demo") == "demo"
    assert safe_model_id("a b:c") == "abc"
    with pytest.raises(UsageError):
        safe_model_id("@@")


def test_unknown_clean_spec_fails_before_work(evaluator: Any) -> None:
    with pytest.raises(UsageError):
        derive_preset(evaluator, seeds=[1], clean_specs=["quant_rnt:clean:ffn"], model_id="m")

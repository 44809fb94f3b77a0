"""Per-model probe strengths in the tuned params file: validation, precedence, old files."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from editproof.edits import (
    PROBE_DEFAULTS,
    ProbeEntry,
    TunedParams,
    load_tuned,
    parse_spec,
    resolve_probe,
    save_tuned,
    shipped_tuned,
)
from editproof.errors import InvalidInputError

ROOT = Path(__file__).resolve().parents[2]


def _tuned(**entries: dict[str, Any]) -> TunedParams:
    return TunedParams.model_validate({"probes": {"m": entries}})


SCALE = {"status": "selected", "params": {"factor": 1.3, "layers": "2"}, "reason": "test"}


def test_tuned_entry_fills_what_the_spec_leaves_unset() -> None:
    tuned = _tuned(spectral_moderate_scale=SCALE)
    bare = parse_spec("spectral_moderate_scale")
    resolved = resolve_probe(bare, "m", tuned)
    assert resolved.params["factor"] == 1.3 and resolved.params["layers"] == "2"
    assert resolved.params["target"] == "o_proj"  # untouched keys keep the defaults
    assert resolved.resolved_from == "spectral_moderate_scale"
    assert resolved.text == "spectral_moderate_scale:factor=1.3,layers=2"
    assert parse_spec(resolved.text).params == resolved.params  # the text round-trips
    # Resolving again changes nothing: every tuned key is now explicit.
    assert resolve_probe(resolved, "m", tuned) is resolved


def test_explicit_spec_values_win() -> None:
    tuned = _tuned(spectral_moderate_scale=SCALE)
    spec = parse_spec("spectral_moderate_scale:factor=1.4,family=mlp,target=up_proj,seed=7")
    assert spec.explicit == {"factor", "family", "target", "seed"}
    resolved = resolve_probe(spec, "m", tuned)
    assert resolved.params["factor"] == 1.4  # explicit beats tuned
    assert resolved.params["layers"] == "2"  # not in the spec: tuned fills it
    assert resolved.params["target"] == "up_proj"
    # Explicitly set to the default value still counts as explicit.
    same = parse_spec("spectral_moderate_scale:factor=2.0")
    assert resolve_probe(same, "m", tuned).params["factor"] == 2.0


def test_no_entry_other_model_or_skipped_keeps_the_defaults() -> None:
    bare = parse_spec("ve_mlp_scale_skew")
    assert resolve_probe(bare, "m", TunedParams()) is bare
    tuned = _tuned(
        ve_mlp_scale_skew={"status": "selected", "params": {"factor": 0.85}, "reason": "x"}
    )
    assert resolve_probe(bare, "other/model", tuned) is bare
    skipped = _tuned(ve_mlp_scale_skew={"status": "skipped", "reason": "no strength fits"})
    assert resolve_probe(bare, "m", skipped) is bare
    assert dict(bare.params) == PROBE_DEFAULTS["ve_mlp_scale_skew"]
    # Non-probe specs pass through.
    noop = parse_spec("noop")
    assert resolve_probe(noop, "m", tuned) is noop


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"factr": 1.2}, "factr"),
        ({"factor": "big"}, "factor must be a float"),
        ({"factor": True}, "factor must be a float"),
        ({"max_params": 1.5}, "max_params must be a int"),
        ({"factor": -1.0}, "factor must be in"),
        ({"target": "o_prj"}, "target must be one of"),
    ],
)
def test_invalid_probe_params_are_rejected(
    tmp_path: Path, params: dict[str, Any], message: str
) -> None:
    path = tmp_path / "t.json"
    entry = {"status": "selected", "params": params, "reason": "x"}
    path.write_text(json.dumps({"probes": {"m": {"spectral_moderate_scale": entry}}}))
    with pytest.raises(InvalidInputError, match=message) as err:
        load_tuned(path)
    assert "probes.m.spectral_moderate_scale.params" in err.value.message


def test_unknown_probe_type_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "t.json"
    entry = {"status": "selected", "params": {}, "reason": "x"}
    path.write_text(json.dumps({"probes": {"m": {"nan_injection": entry}}}))
    with pytest.raises(InvalidInputError, match=r"probes\.m"):
        load_tuned(path)


def test_files_without_probes_still_load(tmp_path: Path) -> None:
    # A file as written before the probes section existed: same format and version.
    old = {
        "format": "editproof.tuned-edit-params",
        "schema_version": 1,
        "defaults": {},
        "models": {
            "m": {
                "quant_rtn": {
                    "status": "selected",
                    "params": {"bits": 5, "group_size": 32},
                    "reason": "r",
                }
            }
        },
    }
    path = tmp_path / "old.json"
    path.write_text(json.dumps(old))
    tuned = load_tuned(path)
    assert tuned.probes == {} and tuned.schema_version == 1
    # Saving keeps format and version and adds the (empty) section; it loads back equal.
    save_tuned(path, tuned)
    data = json.loads(path.read_text())
    assert data["format"] == "editproof.tuned-edit-params" and data["schema_version"] == 1
    assert data["probes"] == {} and load_tuned(path) == tuned


def test_round_trip_with_probes(tmp_path: Path) -> None:
    tuned = _tuned(
        spectral_moderate_scale=SCALE,
        rmt_norm_noise={"status": "skipped", "reason": "none", "evidence": {"trials": []}},
    )
    path = tmp_path / "t.json"
    save_tuned(path, tuned)
    again = load_tuned(path)
    assert again.model_dump() == tuned.model_dump()
    entry = again.probes["m"]["spectral_moderate_scale"]
    assert isinstance(entry, ProbeEntry) and entry.params == {"factor": 1.3, "layers": "2"}


def test_shipped_demo_probe_entries_resolve() -> None:
    tuned = shipped_tuned()
    demo = tuned.probes.get("demo", {})
    assert set(demo) == {"rmt_norm_noise", "spectral_moderate_scale", "ve_mlp_scale_skew"}
    for probe, entry in demo.items():
        evidence = entry.evidence or {}
        assert evidence["tier"] == "balanced" and evidence["trials"], probe
        assert evidence["seq_len"] == 128 and evidence["windows"] == 32
        spec = resolve_probe(parse_spec(probe), "demo", tuned)
        if entry.status == "selected":
            assert spec.resolved_from == probe and spec.params != PROBE_DEFAULTS[probe]
        else:
            assert spec.params == PROBE_DEFAULTS[probe]

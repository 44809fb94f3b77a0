"""Spec grammar: valid specs, clean sentinel, probe overrides and one-line usage errors."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given
from hypothesis import strategies as st

from editproof.edits import EDIT_TYPES, FAULT_TYPES, PROBE_DEFAULTS, PROBE_TYPES, Scope, parse_spec
from editproof.errors import UsageError


@pytest.mark.parametrize(
    ("text", "params", "scope"),
    [
        ("quant_rtn:4:32:ffn", {"bits": 4, "group_size": 32}, Scope("ffn")),
        ("quant_rtn:8:0:all", {"bits": 8, "group_size": 0}, Scope("all")),
        ("fp8_quant:e5m2:ffn", {"format": "e5m2"}, Scope("ffn")),
        ("fp8_quant:e4m3:attn", {"format": "e4m3fn"}, Scope("attn")),
        ("fp8_quant:E4M3FN:attn", {"format": "e4m3fn"}, Scope("attn")),
        ("magnitude_prune:0.12:ffn", {"sparsity": 0.12}, Scope("ffn")),
        ("lowrank_svd:32:ffn@layer=31", {"rank": 32}, Scope("ffn", layer=31)),
        ("lowrank_svd:32:all@layers=4", {"rank": 32}, Scope("all", first_layers=4)),
    ],
)
def test_weight_edit_specs(text: str, params: dict[str, object], scope: Scope) -> None:
    spec = parse_spec(text)
    assert dict(spec.params) == params
    assert spec.scope == scope
    assert spec.text == text
    assert spec.kind == "edit" and spec.label == spec.type == text.split(":")[0]
    assert not spec.clean
    again = parse_spec(spec.canonical)
    assert (again.type, dict(again.params), again.scope) == (spec.type, params, scope)


def test_noop_and_faults() -> None:
    noop = parse_spec("noop")
    assert (noop.kind, noop.label, noop.scope, dict(noop.params)) == ("noop", "noop", None, {})
    for name in FAULT_TYPES:
        spec = parse_spec(name)
        assert (spec.kind, spec.label, spec.scope, dict(spec.params)) == ("fault", name, None, {})


def test_probe_defaults_from_reference() -> None:
    rmt = parse_spec("rmt_norm_noise")
    assert rmt.kind == "probe"
    assert rmt.params["blend"] == 0.98 and rmt.params["row_frac"] == 0.30
    assert rmt.params["max_rows"] == 2048 and rmt.params["max_params"] == 4
    assert rmt.params["target"] == "up_proj" and rmt.params["layers"] == "0-3"
    assert rmt.params["preserve_row_norms"] is True and rmt.params["seed"] == 42
    spectral = parse_spec("spectral_moderate_scale")
    assert spectral.params["factor"] == 2.0 and spectral.params["target"] == "o_proj"
    assert spectral.params["family"] == "attn" and spectral.params["max_params"] == 1
    assert parse_spec("ve_mlp_scale_skew").params["factor"] == 0.90
    assert set(PROBE_DEFAULTS) == set(PROBE_TYPES)


def test_probe_overrides() -> None:
    spec = parse_spec(
        "rmt_norm_noise:blend=1.0, row_frac=0.5,max_rows=8192,seed=7,preserve_row_norms=0"
    )
    assert spec.params["blend"] == 1.0 and spec.params["row_frac"] == 0.5
    assert spec.params["max_rows"] == 8192 and spec.params["seed"] == 7
    assert spec.params["preserve_row_norms"] is False
    assert spec.params["max_params"] == 4  # untouched defaults stay
    mlp = parse_spec("spectral_moderate_scale:factor=1.4,family=mlp,target=up_proj,max_params=2")
    assert mlp.params["family"] == "mlp" and mlp.params["factor"] == 1.4
    assert parse_spec(mlp.canonical).params == mlp.params
    assert (
        mlp.canonical == "spectral_moderate_scale:factor=1.4,family=mlp,target=up_proj,max_params=2"
    )
    assert parse_spec("rmt_norm_noise:seed=42").canonical == "rmt_norm_noise"


def test_clean_sentinel() -> None:
    spec = parse_spec("quant_rtn:clean:ffn")
    assert spec.clean and dict(spec.params) == {} and spec.scope == Scope("ffn")
    assert spec.canonical == "quant_rtn:clean:ffn"
    for edit in EDIT_TYPES:
        assert parse_spec(f"{edit}:clean:attn").clean


def test_spec_is_frozen() -> None:
    spec = parse_spec("quant_rtn:4:32:ffn")
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.type = "x"  # type: ignore[misc]
    with pytest.raises(TypeError):
        spec.params["bits"] = 3  # type: ignore[index]
    assert hash(spec) == hash(parse_spec("quant_rtn:4:32:ffn"))


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("", "empty edit spec"),
        ("   ", "empty edit spec"),
        ("quant_rnt:4:32:ffn", "unknown edit 'quant_rnt'.*did you mean 'quant_rtn'.*valid: noop"),
        ("nan_injektion", "did you mean 'nan_injection'"),
        ("quant_rtn:9:32:ffn", "bits must be an integer in 2..8, got '9'"),
        ("quant_rtn:1:32:ffn", "bits must be an integer in 2..8"),
        ("quant_rtn:4.0:32:ffn", "bits must be an integer"),
        ("quant_rtn:4:-1:ffn", "group_size must be an integer >= 0"),
        ("quant_rtn:4:ffn", r"takes <bits>:<group_size>:<scope> \(e.g. quant_rtn:4:32:ffn\)"),
        ("quant_rtn:4:32:ffn:x", "takes <bits>"),
        ("fp8_quant:e4m4:ffn", "format must be one of e4m3fn.*did you mean"),
        ("magnitude_prune:1.0:ffn", "sparsity must be strictly between 0 and 1"),
        ("magnitude_prune:0:ffn", "strictly between"),
        ("magnitude_prune:nan:ffn", "sparsity must be a number"),
        ("magnitude_prune:abc:ffn", "sparsity must be a number, got 'abc'"),
        ("lowrank_svd:0:ffn", "rank must be an integer >= 1"),
        ("lowrank_svd:32:fnn", "bad scope 'fnn'.*did you mean 'ffn'.*in spec"),
        ("lowrank_svd:32:ffn@layer=x", "layer must be an integer"),
        ("lowrank_svd:clean", "takes <rank>:<scope>"),
        ("noop:ffn", "'noop' takes no parameters"),
        ("nan_injection:1", "'nan_injection' takes no parameters"),
        ("rmt_norm_noise:blnd=1", "bad override 'blnd=1'.*did you mean 'blend'.*valid keys"),
        ("rmt_norm_noise:blend", "bad override 'blend'"),
        ("rmt_norm_noise:blend=2", r"blend must be in \[0, 1\]"),
        ("rmt_norm_noise:max_rows=0", "max_rows must be in"),
        ("rmt_norm_noise:seed=x", "seed must be an integer"),
        ("rmt_norm_noise:preserve_row_norms=maybe", "must be 0/1/true/false"),
        ("rmt_norm_noise:layers=5-2", "layers must be 'all', 'N' or 'A-B'"),
        ("spectral_moderate_scale:target=oproj", "did you mean 'o_proj'"),
        ("spectral_moderate_scale:family=emb", "family must be ffn, attn or all"),
        ("ve_mlp_scale_skew:factor=0", "factor must be in"),
        ("rmt_norm_noise:blend=1:x", "takes key=value overrides"),
    ],
)
def test_usage_errors(text: str, needle: str) -> None:
    with pytest.raises(UsageError, match=needle) as info:
        parse_spec(text)
    assert "\n" not in str(info.value)


@given(
    bits=st.integers(2, 8),
    group=st.integers(0, 4096),
    family=st.sampled_from(["ffn", "attn", "all"]),
    layer=st.one_of(st.none(), st.integers(0, 80)),
)
def test_quant_round_trip(bits: int, group: int, family: str, layer: int | None) -> None:
    scope = family if layer is None else f"{family}@layer={layer}"
    spec = parse_spec(f"quant_rtn:{bits}:{group}:{scope}")
    assert spec.params == {"bits": bits, "group_size": group}
    assert spec.canonical == spec.text
    assert spec.scope is not None and spec.scope.text == scope


@given(st.floats(min_value=1e-6, max_value=1 - 1e-6))
def test_prune_sparsity_round_trip(sparsity: float) -> None:
    spec = parse_spec(f"magnitude_prune:{sparsity!r}:ffn")
    assert spec.params["sparsity"] == sparsity
    assert parse_spec(spec.canonical).params == spec.params

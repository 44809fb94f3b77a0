"""Edit spec grammar: ``<type>:<params...>:<scope>`` parsed into a frozen :class:`EditSpec`.

Weight edits (scope required)::

    quant_rtn:<bits 2-8>:<group >=0, 0 = whole row>:<scope>
    fp8_quant:<e4m3fn|e4m3|e5m2>:<scope>
    magnitude_prune:<0 < sparsity < 1>:<scope>
    lowrank_svd:<rank >= 1>:<scope>

``clean`` in the params position (``quant_rtn:clean:ffn``) leaves the params to the tuned
params file (:func:`editproof.edits.tuned.resolve_clean`). ``noop`` takes nothing. Faults are a
bare name; the three probes also accept ``name:key=value,...`` overrides of their defaults.
"""

from __future__ import annotations

import contextlib
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Literal

from editproof.edits.scope import ROLES, Scope, parse_layers, parse_scope, suggest
from editproof.errors import UsageError

ParamValue = int | float | str | bool
Kind = Literal["noop", "edit", "fault", "probe"]

EDIT_TYPES = ("quant_rtn", "fp8_quant", "magnitude_prune", "lowrank_svd")
FAULT_TYPES = (
    "nan_injection",
    "inf_injection",
    "shape_mismatch",
    "missing_tensors",
    "extreme_quant",
    "scale_explosion",
    "rank_collapse",
    "norm_collapse",
    "weight_tying_break",
)
PROBE_TYPES = ("rmt_norm_noise", "spectral_moderate_scale", "ve_mlp_scale_skew")
ALL_TYPES = ("noop", *EDIT_TYPES, *FAULT_TYPES, *PROBE_TYPES)
CLEAN = "clean"

FP8_FORMATS = ("e4m3fn", "e5m2")
_FP8_ALIASES = {"e4m3fn": "e4m3fn", "e4m3": "e4m3fn", "e5m2": "e5m2"}

# Positional params of each weight edit and an example, for arity messages.
_EDIT_PARAMS: dict[str, tuple[tuple[str, ...], str]] = {
    "quant_rtn": (("bits", "group_size"), "quant_rtn:4:32:ffn"),
    "fp8_quant": (("format",), "fp8_quant:e5m2:ffn"),
    "magnitude_prune": (("sparsity",), "magnitude_prune:0.12:ffn"),
    "lowrank_svd": (("rank",), "lowrank_svd:32:ffn@layer=31"),
}

# Probe defaults from the reference scenario catalogue (scenarios 18-20, INVARLOCK_* env).
PROBE_DEFAULTS: dict[str, dict[str, ParamValue]] = {
    "rmt_norm_noise": {
        "blend": 0.98,
        "row_frac": 0.30,
        "max_rows": 2048,
        "max_params": 4,
        "family": "ffn",
        "target": "up_proj",
        "layers": "0-3",
        "preserve_row_norms": True,
        "jitter": 0.0,
        "include_qkv": False,
        "seed": 42,
        # ours: "input" blends toward the layer inputs' dominant direction (measured on a few
        # evaluation windows); "random" is the reference's seeded random direction.
        "align": "input",
    },
    "spectral_moderate_scale": {
        "factor": 2.0,
        "family": "attn",
        "target": "o_proj",
        "layers": "0-3",
        "max_params": 1,
        "include_qkv": False,
        "seed": 42,
    },
    "ve_mlp_scale_skew": {
        "factor": 0.90,
        "family": "ffn",
        "target": "down_proj",
        "layers": "all",
        "max_params": 1,
        "seed": 42,
    },
}


@dataclass(frozen=True)
class EditSpec:
    """A parsed edit. ``params`` is read-only; ``scope`` is None for noop, faults and probes."""

    type: str
    params: Mapping[str, ParamValue] = field(hash=False)
    scope: Scope | None
    text: str
    clean: bool = False  # params still to come from the tuned params file
    resolved_from: str | None = None  # the clean or probe spec this one was resolved from
    # Probe params the spec set itself (``key=value``): a model's tuned probe strength
    # fills in only the others (:func:`editproof.edits.tuned.resolve_probe`).
    explicit: frozenset[str] = frozenset()

    @property
    def kind(self) -> Kind:
        if self.type == "noop":
            return "noop"
        if self.type in FAULT_TYPES:
            return "fault"
        return "probe" if self.type in PROBE_TYPES else "edit"

    @property
    def label(self) -> str:
        """Provenance label: ``noop`` or the edit/fault type."""
        return self.type

    @property
    def canonical(self) -> str:
        """Normalised spec text: aliases expanded; probes show only overridden params."""
        return format_spec(self.type, self.params, self.scope, clean=self.clean)


def format_spec(
    edit_type: str, params: Mapping[str, ParamValue], scope: Scope | None, *, clean: bool = False
) -> str:
    if edit_type in _EDIT_PARAMS:
        names, _ = _EDIT_PARAMS[edit_type]
        values = [CLEAN] if clean else [_fmt(params[n]) for n in names]
        return ":".join([edit_type, *values, scope.text if scope else "?"])
    defaults = PROBE_DEFAULTS.get(edit_type, {})
    overrides = [f"{k}={_fmt(v)}" for k, v in params.items() if defaults.get(k) != v]
    return f"{edit_type}:{','.join(overrides)}" if overrides else edit_type


def _fmt(value: ParamValue) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    return str(value)


def parse_spec(text: str) -> EditSpec:
    """Parse one spec; UsageError with a one-line message naming the bad part."""
    raw = text.strip()
    if not raw:
        raise UsageError("empty edit spec; expected <type>:<params>:<scope>, a fault name or noop")
    parts = raw.split(":")
    edit_type = parts[0]
    if edit_type not in ALL_TYPES:
        raise UsageError(
            f"unknown edit '{edit_type}' in spec '{raw}'{suggest(edit_type, ALL_TYPES)}; "
            f"valid: {', '.join(ALL_TYPES)}"
        )
    if edit_type in _EDIT_PARAMS:
        return _parse_edit(edit_type, parts[1:], raw)
    if edit_type in PROBE_TYPES and len(parts) == 2:
        params = probe_params(edit_type, parts[1], raw)
        keys = {item.partition("=")[0].strip() for item in parts[1].split(",") if item.strip()}
        return EditSpec(edit_type, MappingProxyType(params), None, raw, explicit=frozenset(keys))
    if len(parts) > 1:
        takes = "key=value overrides" if edit_type in PROBE_TYPES else "no parameters"
        raise UsageError(f"'{edit_type}' takes {takes}, got spec '{raw}'")
    params = dict(PROBE_DEFAULTS.get(edit_type, {}))
    return EditSpec(edit_type, MappingProxyType(params), None, raw)


def _parse_edit(edit_type: str, rest: list[str], raw: str) -> EditSpec:
    names, example = _EDIT_PARAMS[edit_type]
    if len(rest) == 2 and rest[0] == CLEAN:
        return EditSpec(edit_type, MappingProxyType({}), _scope(rest[1], raw), raw, clean=True)
    if len(rest) != len(names) + 1:
        shape = ":".join(f"<{n}>" for n in (*names, "scope"))
        raise UsageError(
            f"'{edit_type}' takes {shape} (e.g. {example}) or {CLEAN}:<scope>, got '{raw}'"
        )
    try:
        params = validate_params(edit_type, dict(zip(names, rest[:-1], strict=True)))
    except UsageError as exc:
        raise UsageError(f"bad edit spec '{raw}': {exc.message}") from None
    return EditSpec(edit_type, MappingProxyType(params), _scope(rest[-1], raw), raw)


def _scope(text: str, raw: str) -> Scope:
    try:
        return parse_scope(text)
    except UsageError as exc:
        raise UsageError(f"{exc.message} in spec '{raw}'") from None


def validate_params(edit_type: str, raw: Mapping[str, object]) -> dict[str, ParamValue]:
    """Check and normalise a weight edit's params (strings or JSON values accepted)."""
    names, _ = _EDIT_PARAMS[edit_type]
    missing = [n for n in names if n not in raw]
    if missing:
        raise UsageError(f"{edit_type} needs {', '.join(names)}; missing {', '.join(missing)}")
    extra = sorted(set(raw) - set(names))
    if extra:
        raise UsageError(f"{edit_type} takes {', '.join(names)}; unexpected {', '.join(extra)}")
    if edit_type == "quant_rtn":
        return {
            "bits": _int_in(raw["bits"], "bits", 2, 8),
            "group_size": _int_in(raw["group_size"], "group_size", 0, None),
        }
    if edit_type == "fp8_quant":
        fmt = str(raw["format"]).lower()
        if fmt not in _FP8_ALIASES:
            raise UsageError(
                f"format must be one of e4m3fn (alias e4m3), e5m2, got '{raw['format']}'"
                f"{suggest(fmt, tuple(_FP8_ALIASES))}"
            )
        return {"format": _FP8_ALIASES[fmt]}
    if edit_type == "magnitude_prune":
        sparsity = _float(raw["sparsity"], "sparsity")
        if not 0.0 < sparsity < 1.0:
            raise UsageError(f"sparsity must be strictly between 0 and 1, got '{raw['sparsity']}'")
        return {"sparsity": sparsity}
    return {"rank": _int_in(raw["rank"], "rank", 1, None)}


def probe_params(edit_type: str, text: str, raw: str) -> dict[str, ParamValue]:
    """Probe defaults overridden by ``key=value,...``; values take the default's type."""
    params = dict(PROBE_DEFAULTS[edit_type])
    for item in filter(None, (p.strip() for p in text.split(","))):
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or key not in params:
            raise UsageError(
                f"bad override '{item}' in spec '{raw}'{suggest(key, tuple(params))}; "
                f"valid keys: {', '.join(params)}"
            )
        try:
            params[key] = _coerce(params[key], value.strip(), key)
            _check_probe_value(key, params[key])
        except UsageError as exc:
            raise UsageError(f"bad override in spec '{raw}': {exc.message}") from None
    return params


def validate_probe_params(edit_type: str, raw: Mapping[str, object]) -> dict[str, ParamValue]:
    """Check probe params given as JSON values (a tuned entry): known keys, the default's type."""
    defaults = PROBE_DEFAULTS[edit_type]
    out: dict[str, ParamValue] = {}
    for key, value in raw.items():
        if key not in defaults:
            raise UsageError(
                f"'{key}' is not a parameter of {edit_type}{suggest(key, tuple(defaults))}; "
                f"valid keys: {', '.join(defaults)}"
            )
        coerced = _json_value(defaults[key], value)
        if coerced is None:
            kind = type(defaults[key]).__name__
            raise UsageError(f"{key} must be a {kind}, got {value!r}")
        _check_probe_value(key, coerced)
        out[key] = coerced
    return out


def _json_value(default: ParamValue, value: object) -> ParamValue | None:
    """``value`` as the default's type (an int is fine for a float), else None."""
    if isinstance(default, bool):
        return value if isinstance(value, bool) else None
    if isinstance(value, bool):
        return None
    if isinstance(default, int):
        return value if isinstance(value, int) else None
    if isinstance(default, float):
        return float(value) if isinstance(value, int | float) else None
    return value if isinstance(value, str) else None


def _coerce(default: ParamValue, value: str, key: str) -> ParamValue:
    if isinstance(default, bool):
        if value.lower() in ("1", "true", "yes"):
            return True
        if value.lower() in ("0", "false", "no"):
            return False
        raise UsageError(f"{key} must be 0/1/true/false, got '{value}'")
    if isinstance(default, int):
        return _int_in(value, key, None, None)
    if isinstance(default, float):
        return _float(value, key)
    return value


def _check_probe_value(key: str, value: ParamValue) -> None:
    ranges: dict[str, tuple[float, float]] = {
        "blend": (0.0, 1.0),
        "row_frac": (1e-9, 1.0),
        "jitter": (0.0, math.inf),
        "factor": (1e-9, math.inf),
        "max_rows": (1, math.inf),
        "max_params": (1, math.inf),
        "seed": (0, math.inf),
    }
    if key in ranges and isinstance(value, int | float):
        low, high = ranges[key]
        if not low <= value <= high:
            raise UsageError(f"{key} must be in [{low:g}, {high:g}], got {value}")
    if key == "family" and value not in ("ffn", "attn", "all", "mlp"):
        raise UsageError(f"family must be ffn, attn or all, got '{value}'")
    if key == "target" and value not in ROLES:
        hint = suggest(str(value), tuple(ROLES))
        raise UsageError(f"target must be one of {', '.join(ROLES)}, got '{value}'{hint}")
    if key == "layers":
        parse_layers(str(value))
    if key == "align" and value not in ("input", "random"):
        raise UsageError(f"align must be input or random, got '{value}'")


def _int_in(value: object, name: str, low: int | None, high: int | None) -> int:
    number: int | None = None
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif isinstance(value, str) and re.fullmatch(r"-?\d+", value.strip()):
        number = int(value)
    if number is None or (low is not None and number < low) or (high is not None and number > high):
        bounds = (
            f" in {low}..{high}" if high is not None else f" >= {low}" if low is not None else ""
        )
        raise UsageError(f"{name} must be an integer{bounds}, got '{value}'")
    return number


def _float(value: object, name: str) -> float:
    number = math.nan
    if isinstance(value, int | float) and not isinstance(value, bool):
        number = float(value)
    elif isinstance(value, str):
        with contextlib.suppress(ValueError):
            number = float(value)
    if not math.isfinite(number):
        raise UsageError(f"{name} must be a number, got '{value}'")
    return number

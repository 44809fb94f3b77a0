"""Tuned edit params (``tuned_edit_params.json``): what a ``clean`` spec means per model.

A clean spec such as ``quant_rtn:clean:ffn`` is resolved from the model's own entry, else
from ``defaults``. An entry may carry a ``scope`` that refines the spec's scope (same family,
e.g. ``ffn@layer=last`` for ``lowrank_svd:clean:ffn``); ``last`` becomes a concrete layer once
the model's layer count is known.

``probes`` holds each model's calibrated probe strengths (``editproof calibrate probes``):
:func:`resolve_probe` fills every probe parameter the spec did not set itself. The section
is optional, so files written before it existed still load (same format and version).
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from types import MappingProxyType
from typing import Literal

from pydantic import BaseModel, ConfigDict, JsonValue, PrivateAttr, ValidationError, model_validator

from editproof.edits.scope import Scope, parse_scope
from editproof.edits.spec import (
    EditSpec,
    ParamValue,
    format_spec,
    validate_params,
    validate_probe_params,
)
from editproof.errors import InvalidInputError, NotFoundError, OutputError, UsageError
from editproof.fileio import atomic_write_text

FORMAT = "editproof.tuned-edit-params"
FILE_NAME = "tuned_edit_params.json"
EditType = Literal["quant_rtn", "fp8_quant", "magnitude_prune", "lowrank_svd"]
ProbeType = Literal["rmt_norm_noise", "spectral_moderate_scale", "ve_mlp_scale_skew"]


class TunedEntry(BaseModel):
    """Chosen params for one edit type; ``params`` may also hold a ``scope``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    status: Literal["selected", "skipped"]
    params: dict[str, int | float | str] = {}
    reason: str
    evidence: dict[str, JsonValue] | None = None


class ProbeEntry(BaseModel):
    """A probe's calibrated strength on one model: the params it overrides, and why.

    ``selected``: ``params`` fill what a spec leaves unset. ``skipped``: no strength met the
    requirements; the spec keeps its defaults and ``reason``/``evidence`` say what was tried.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    status: Literal["selected", "skipped"]
    params: dict[str, bool | int | float | str] = {}
    reason: str
    evidence: dict[str, JsonValue] | None = None


class TunedParams(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    format: Literal["editproof.tuned-edit-params"] = "editproof.tuned-edit-params"
    schema_version: Literal[1] = 1
    defaults: dict[EditType, TunedEntry] = {}
    models: dict[str, dict[EditType, TunedEntry]] = {}
    # model id -> probe type -> calibrated strength (optional: older files have none).
    probes: dict[str, dict[ProbeType, ProbeEntry]] = {}
    _source: str = PrivateAttr(default="built-in tuned defaults")

    @property
    def source(self) -> str:
        """Where these params came from (file path), for error messages."""
        return self._source

    @model_validator(mode="after")
    def _params_match_types(self) -> TunedParams:
        entries = [(f"defaults.{t}", t, e) for t, e in self.defaults.items()]
        for model_id, per_model in self.models.items():
            entries += [(f"models.{model_id}.{t}", t, e) for t, e in per_model.items()]
        for path, edit_type, entry in entries:
            if entry.status == "selected":
                try:
                    entry_params(edit_type, entry)
                except UsageError as exc:
                    raise ValueError(f"{path}.params: {exc.message}") from None
        for model_id, per_probe in self.probes.items():
            for probe_type, probe in per_probe.items():
                try:
                    validate_probe_params(probe_type, probe.params)
                except UsageError as exc:
                    path = f"probes.{model_id}.{probe_type}.params"
                    raise ValueError(f"{path}: {exc.message}") from None
        return self


def entry_params(edit_type: str, entry: TunedEntry) -> tuple[dict[str, ParamValue], Scope | None]:
    """The entry's validated params and optional scope (UsageError when invalid)."""
    raw = {k: v for k, v in entry.params.items() if k != "scope"}
    scope_text = entry.params.get("scope")
    scope = parse_scope(str(scope_text)) if scope_text is not None else None
    return validate_params(edit_type, raw), scope


def default_tuned() -> TunedParams:
    """Shipped defaults: the reference clean specs (4-bit g32, fp8 e5m2, 12% prune, rank 32)."""
    why = "reference clean spec"
    return TunedParams(
        defaults={
            "quant_rtn": TunedEntry(
                status="selected", params={"bits": 4, "group_size": 32, "scope": "ffn"}, reason=why
            ),
            "fp8_quant": TunedEntry(
                status="selected", params={"format": "e5m2", "scope": "ffn"}, reason=why
            ),
            "magnitude_prune": TunedEntry(
                status="selected", params={"sparsity": 0.12, "scope": "ffn"}, reason=why
            ),
            "lowrank_svd": TunedEntry(
                status="selected", params={"rank": 32, "scope": "ffn@layer=last"}, reason=why
            ),
        }
    )


def shipped_tuned() -> TunedParams:
    """The tuned params file shipped in the package (also at
    ``scripts/proof_packs/tuned_edit_params.json``): the reference defaults, the demo model's
    own tuned entries, and reference entries for the seed document's suite models."""
    text = resources.files("editproof.edits").joinpath(FILE_NAME).read_text(encoding="utf-8")
    tuned = TunedParams.model_validate(json.loads(text))
    tuned._source = f"editproof's shipped {FILE_NAME}"
    return tuned


def load_tuned(path: str | Path) -> TunedParams:
    """Read and validate a tuned params file; errors name the file and the bad field."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise NotFoundError(f"tuned params file not found: {path}") from None
    except OSError as exc:
        raise InvalidInputError(f"cannot read tuned params file {path}: {exc.strerror}") from None
    return parse_tuned(text, str(path))


def parse_tuned(text: str, source: str) -> TunedParams:
    """Tuned params from the text of a file; ``source`` names that file in errors and reports."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidInputError(
            f"{source}: not valid JSON ({exc.msg} at line {exc.lineno})"
        ) from None
    try:
        tuned = TunedParams.model_validate(data)
    except ValidationError as exc:
        raise InvalidInputError(f"{source}: {_first_error(exc)}") from None
    tuned._source = source
    return tuned


def _first_error(exc: ValidationError) -> str:
    err = exc.errors()[0]
    loc = ".".join(str(p) for p in err["loc"])
    msg = str(err["msg"]).removeprefix("Value error, ")
    more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
    return f"{loc}: {msg}{more}" if loc else f"{msg}{more}"


def save_tuned(path: str | Path, tuned: TunedParams) -> None:
    """Write atomically: a temp file in the same directory, fsynced, then renamed over."""
    path = Path(path)
    text = json.dumps(tuned.model_dump(mode="json"), indent=2, sort_keys=True) + "\n"
    if not path.parent.is_dir():  # a typo in --out should not create directories
        raise OutputError(f"cannot write tuned params file {path}: no such directory")
    try:
        atomic_write_text(path, text)
    except OSError as exc:
        raise OutputError(f"cannot write tuned params file {path}: {exc.strerror}") from None


def tuned_entry(tuned: TunedParams, model_id: str, edit_type: str) -> TunedEntry | None:
    """The entry a clean spec of ``edit_type`` resolves from: the model's own, else the
    default, else None."""
    per_model = {str(k): v for k, v in tuned.models.get(model_id, {}).items()}
    defaults = {str(k): v for k, v in tuned.defaults.items()}
    return per_model.get(edit_type) or defaults.get(edit_type)


def resolve_clean(
    spec: EditSpec, model_id: str, tuned: TunedParams, *, n_layers: int | None = None
) -> EditSpec:
    """Concrete spec for a ``clean`` spec (other specs are returned unchanged).

    Uses ``models[model_id][type]``, else ``defaults[type]``. With ``n_layers`` a
    ``layer=last`` scope is made concrete; without it, it resolves against the model later.
    """
    if not spec.clean:
        return spec
    entry = tuned_entry(tuned, model_id, spec.type)
    if entry is None:
        raise InvalidInputError(
            f"no tuned params for edit '{spec.type}' on model '{model_id}' in {tuned.source} "
            f"(neither models.{model_id}.{spec.type} nor defaults.{spec.type})"
        )
    if entry.status == "skipped":
        raise InvalidInputError(
            f"edit '{spec.type}' is skipped for model '{model_id}' in {tuned.source}: "
            f"{entry.reason}"
        )
    try:
        params, scope = entry_params(spec.type, entry)
    except UsageError as exc:  # only reachable for entries built without validation
        raise InvalidInputError(f"{tuned.source}: {spec.type}: {exc.message}") from None
    assert spec.scope is not None  # clean specs always carry a scope
    # An explicit layer selector in the spec wins; a bare family is refined by the entry.
    if scope is None or spec.scope.text != spec.scope.family:
        scope = spec.scope
    elif scope.family != spec.scope.family:
        raise InvalidInputError(
            f"tuned scope '{scope.text}' for '{spec.type}' on model '{model_id}' in "
            f"{tuned.source} does not refine the spec's scope '{spec.scope.text}'"
        )
    if n_layers is not None:
        scope = scope.with_layer_count(n_layers)
    text = format_spec(spec.type, params, scope)
    return EditSpec(spec.type, MappingProxyType(params), scope, text, resolved_from=spec.text)


def resolve_probe(spec: EditSpec, model_id: str, tuned: TunedParams) -> EditSpec:
    """``spec`` with ``model_id``'s calibrated probe strength filled in.

    Parameters the spec set itself (``key=value``) win; the model's ``selected`` entry fills
    the others. Without such an entry (or for a non-probe spec) ``spec`` comes back as it is,
    so a bare probe keeps the reference defaults.
    """
    if spec.kind != "probe":
        return spec
    entry = tuned.probes.get(model_id, {}).get(spec.type)  # type: ignore[call-overload]
    if entry is None or entry.status != "selected":
        return spec
    try:
        tuned_values = validate_probe_params(spec.type, entry.params)
    except UsageError as exc:  # only reachable for entries built without validation
        raise InvalidInputError(f"{tuned.source}: {spec.type}: {exc.message}") from None
    params = dict(spec.params)
    params.update({k: v for k, v in tuned_values.items() if k not in spec.explicit})
    if params == dict(spec.params):
        return spec
    return EditSpec(
        spec.type,
        MappingProxyType(params),
        None,
        format_spec(spec.type, params, None),
        resolved_from=spec.text,
        explicit=spec.explicit | frozenset(tuned_values),
    )

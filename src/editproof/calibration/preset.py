"""Per-model presets: tier overrides derived from the null sweep plus clean (benign) edits.

The null sweep gives the noise floor of every statistic; clean edits (the tuned ``clean``
specs) give the benign-change population. A preset widens each threshold just enough that
both populations pass, records the evidence, and is applied on top of the base tier it was
derived on (never written into the packaged tiers). Tier patches from the null sweep merge
the same way.
"""

from __future__ import annotations

import importlib
import json
import math
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any, Final, Literal, TypeVar, cast

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from editproof import __version__
from editproof.calibration.null_sweep import (
    EPSILON_FLOOR,
    KAPPA_FLOOR,
    LOG_RATIO_FLOOR,
    PATCH_FORMAT,
    NullSweep,
    Recommendations,
    SeedRun,
    null_sweep,
    write_files,
)
from editproof.edits import parse_spec
from editproof.edits.tuned import tuned_entry
from editproof.errors import InvalidInputError, NotFoundError, UsageError, validation_summary
from editproof.lm.anatomy import FAMILIES
from editproof.policy import TierPolicy
from editproof.policy.guards import FamilyValues

if TYPE_CHECKING:
    from editproof.evaluation import Evaluator
    from editproof.report.model import EvaluationReport

PRESET_FORMAT: Final = "editproof.preset"
DEFAULT_CLEAN_SPECS = (
    "quant_rtn:clean:ffn",
    "fp8_quant:clean:ffn",
    "magnitude_prune:clean:ffn",
    "lowrank_svd:clean:ffn",
)
# Narrowest drift band half-width a preset may set: below it, window noise alone trips it.
DRIFT_FLOOR = 0.02
_M = TypeVar("_M", bound=BaseModel)
# Smallest A/B gain worth acting on (log-NLL), as the reference's preset generator floors it.
MIN_EFFECT_FLOOR = 0.0009


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class SpectralOverride(_Frozen):
    kappa: FamilyValues = Field(default_factory=dict)
    max_log_ratio: FamilyValues = Field(default_factory=dict)
    alpha: float | None = Field(default=None, gt=0, lt=1)

    @field_validator("kappa", "max_log_ratio")
    @classmethod
    def _positive(cls, values: FamilyValues) -> FamilyValues:
        _check_values(values, lambda v: v > 0, "must be > 0")
        return values


class RmtOverride(_Frozen):
    epsilon: FamilyValues = Field(default_factory=dict)

    @field_validator("epsilon")
    @classmethod
    def _non_negative(cls, epsilon: FamilyValues) -> FamilyValues:
        _check_values(epsilon, lambda v: v >= 0, "must be >= 0")
        return epsilon


def _check_values(values: FamilyValues, ok: Callable[[float], bool], rule: str) -> None:
    bad = [f"{fam}={v:g}" for fam, v in values.items() if not (math.isfinite(v) and ok(v))]
    if bad:
        raise ValueError(f"{', '.join(bad)} {rule}")


class VarianceOverride(_Frozen):
    min_effect: float | None = Field(default=None, ge=0)


class GuardOverrides(_Frozen):
    spectral: SpectralOverride = SpectralOverride()
    rmt: RmtOverride = RmtOverride()
    variance: VarianceOverride = VarianceOverride()


class Overrides(_Frozen):
    drift_band: tuple[float, float] | None = None
    guards: GuardOverrides = GuardOverrides()

    @field_validator("drift_band")
    @classmethod
    def _band_ordered(cls, band: tuple[float, float] | None) -> tuple[float, float] | None:
        if band is not None and not 0 < band[0] <= 1 <= band[1]:
            raise ValueError("must satisfy 0 < low <= 1 <= high")
        return band


class TierPatch(_Frozen):
    """``tiers_patch_null.json``: the partial tier a null sweep calibrated."""

    format: Literal["editproof.tier-patch"] = PATCH_FORMAT
    schema_version: Literal[1] = 1
    tier: str
    guards: GuardOverrides


class CleanRun(_Frozen):
    spec: str
    resolved: str | None
    status: str
    guards_status: str
    ratio: float | None
    paired_drift: float | None
    spectral_max_abs_z: dict[str, float]
    rmt_delta: dict[str, float | None]
    # Added later: empty/None in presets written before these existed.
    spectral_max_log_ratio: dict[str, float] = {}
    spectral_caps: int | None = None
    rmt_max_module_delta: float | None = None
    variance_proposals: int | None = None
    variance_max_deviation: float | None = None
    variance_would_enable: bool | None = None


class SkippedSpec(_Frozen):
    spec: str
    reason: str


class Evidence(_Frozen):
    """What the overrides were derived from; the null sweep pins model, windows and seeds."""

    margin: float
    null_sweep: NullSweep
    clean_runs: list[CleanRun]
    skipped: list[SkippedSpec]


class Preset(_Frozen):
    format: Literal["editproof.preset"] = PRESET_FORMAT
    schema_version: Literal[1] = 1
    editproof_version: str = __version__
    model_id: str
    tier: str  # the base tier the overrides were derived on (and only apply to)
    tier_digest: str
    overrides: Overrides
    evidence: Evidence


def derive_preset(
    evaluator: Evaluator,
    *,
    seeds: Sequence[int],
    clean_specs: Sequence[str] = DEFAULT_CLEAN_SPECS,
    model_id: str,
    margin: float = 0.10,
    progress: Callable[[str], None] | None = None,
) -> Preset:
    """Null sweep over ``seeds`` plus every clean spec, folded into tier overrides."""
    from editproof.evaluation import model_key, tuned_params_for

    say = progress or (lambda _m: None)
    specs = [parse_spec(s) for s in clean_specs]  # a typo fails before minutes of work
    if not model_id:
        raise UsageError("--model-id must not be empty")
    null = null_sweep(evaluator, seeds, margin=margin, progress=say)
    tuned = tuned_params_for(evaluator.config.tuned_params)
    key = model_key(evaluator.base_src)
    runs: list[CleanRun] = []
    skipped: list[SkippedSpec] = []
    for spec in specs:
        entry = tuned_entry(tuned, key, spec.type) if spec.clean else None
        if entry is not None and entry.status == "skipped":
            skipped.append(SkippedSpec(spec=spec.text, reason=entry.reason))
            say(f"preset: {spec.text} skipped ({entry.reason})")
            continue
        say(f"preset: clean edit {spec.text}")
        runs.append(_clean_run(spec.text, evaluator.judge_edit(spec, tuned=tuned)))
    tier = evaluator.tier
    return Preset(
        model_id=model_id,
        tier=tier.name,
        tier_digest=tier.digest(),
        overrides=_overrides(tier, null.recommendations, null.runs, runs, margin),
        evidence=Evidence(margin=margin, null_sweep=null, clean_runs=runs, skipped=skipped),
    )


def _clean_run(spec: str, report: EvaluationReport) -> CleanRun:
    by_name = {g.name: g for g in report.guards.results}
    spectral = by_name["spectral"].details.get("families", {}) if "spectral" in by_name else {}
    rmt = by_name["rmt"].details.get("families", {}) if "rmt" in by_name else {}
    measured = {name: g.measured for name, g in by_name.items()}
    return CleanRun(
        spec=spec,
        resolved=report.edit.spec,
        status=report.status,
        guards_status=report.guards.status,
        ratio=report.primary_metric.ratio,
        paired_drift=report.drift.paired,
        spectral_max_abs_z={f: float(v["max_abs_z"]) for f, v in sorted(spectral.items())},
        rmt_delta={f: v.get("delta") for f, v in sorted(rmt.items())},
        spectral_max_log_ratio={
            f: float(v.get("max_log_ratio", 0.0)) for f, v in sorted(spectral.items())
        },
        spectral_caps=_int(measured.get("spectral", {}).get("caps")),
        rmt_max_module_delta=measured.get("rmt", {}).get("max_module_delta"),
        variance_proposals=_int(measured.get("variance", {}).get("proposed_scales")),
        variance_max_deviation=measured.get("variance", {}).get("max_scale_deviation"),
        variance_would_enable=(
            bool(measured["variance"].get("would_enable")) if "variance" in measured else None
        ),
    )


def _int(value: float | None) -> int | None:
    return None if value is None else int(value)


def _overrides(
    tier: TierPolicy,
    null: Recommendations,
    null_runs: Sequence[SeedRun],
    clean: Sequence[CleanRun],
    margin: float,
) -> Overrides:
    grow = 1 + margin
    # A family no clean edit changed (all z exactly 0: untouched weights) has no evidence of
    # what a benign change looks like; it keeps the tier's kappa rather than the noise floor,
    # so a benign edit of that family is not flagged by a threshold nobody calibrated.
    kappa: dict[str, float] = {str(f): v for f, v in tier.guards.spectral.kappa.items()}
    evidence = {f for run in clean for f, z in run.spectral_max_abs_z.items() if z > 0}
    for fam in evidence:
        kappa[fam] = null.kappa.get(fam, KAPPA_FLOOR)
    # The per-matrix |log sigma ratio| bound follows the same rule as kappa.
    log_ratio: dict[str, float] = {str(f): v for f, v in tier.guards.spectral.max_log_ratio.items()}
    for fam in evidence:
        log_ratio[fam] = null.max_log_ratio.get(fam, LOG_RATIO_FLOOR)
    epsilon = dict(null.epsilon)
    for run in clean:
        for fam, z in run.spectral_max_abs_z.items():
            if fam in evidence:
                kappa[fam] = max(kappa[fam], round(z * grow, 3))
        for fam, ratio in run.spectral_max_log_ratio.items():
            if fam in evidence:
                log_ratio[fam] = max(log_ratio[fam], round(ratio * grow, 4))
        for fam, d in run.rmt_delta.items():
            if d is not None:
                epsilon[fam] = max(epsilon.get(fam, EPSILON_FLOOR), round(d * grow, 4))
    drifts = [abs(r.paired_drift - 1) for r in clean if r.paired_drift is not None]
    band = None
    if drifts:  # no clean evidence: keep the tier's band rather than guess
        half = max(max(drifts) * grow, DRIFT_FLOOR)
        low, high = tier.drift_band
        band = (round(max(1 - half, low), 4), round(min(1 + half, high), 4))
    return Overrides(
        drift_band=band,
        guards=GuardOverrides(
            spectral=SpectralOverride(kappa=_families(kappa), max_log_ratio=_families(log_ratio)),
            rmt=RmtOverride(epsilon=_families(epsilon)),
            variance=VarianceOverride(min_effect=null_min_effect(null_runs)),
        ),
    )


def null_min_effect(null_runs: Sequence[SeedRun]) -> float:
    """Variance ``min_effect``: the 95th percentile of the null runs' |A/B gain|, floored."""
    gains = [abs(r.variance.gain) for r in null_runs if r.variance.gain is not None]
    q95 = float(np.quantile(gains, 0.95)) if gains else 0.0
    return round(max(q95, MIN_EFFECT_FLOOR), 6)


def _families(values: dict[str, float]) -> FamilyValues:
    # Only the families a policy can name (every family_of() result is one of them).
    return cast(FamilyValues, {f: v for f, v in sorted(values.items()) if f in FAMILIES})


# --- applying -------------------------------------------------------------------------------


def apply_overrides(tier: TierPolicy, overrides: Overrides, name: str) -> TierPolicy:
    """A new TierPolicy: ``tier`` with ``overrides`` merged in, renamed ``name``."""
    patch = overrides.model_dump(mode="json", exclude_none=True)
    merged = _merge(tier.model_dump(mode="json"), patch)
    if overrides.drift_band is not None:
        # A preset may narrow the tier's drift band, never widen it.
        low, high = overrides.drift_band
        merged["drift_band"] = [max(low, tier.drift_band[0]), min(high, tier.drift_band[1])]
    merged["name"] = name
    try:
        return TierPolicy.model_validate(merged)
    except ValidationError as exc:
        problem = validation_summary(exc, count_more=True)
        raise InvalidInputError(f"overrides for tier '{tier.name}': {problem}") from None


def apply_preset(tier: TierPolicy, preset: Preset) -> TierPolicy:
    """``tier`` with the preset's overrides; refuses a preset derived on another tier."""
    if preset.tier != tier.name:
        raise InvalidInputError(
            f"preset for '{preset.model_id}' was derived on tier '{preset.tier}', "
            f"not '{tier.name}'; derive one on '{tier.name}' or use --tier {preset.tier}"
        )
    return apply_overrides(tier, preset.overrides, f"{tier.name}+preset:{preset.model_id}")


def apply_tier_patch(tier: TierPolicy, patch_path: str | Path) -> TierPolicy:
    """``tier`` with a null-sweep patch file (``tiers_patch_null.json``) merged in."""
    patch = _load(Path(patch_path), TierPatch, "tier patch")
    if patch.tier != tier.name:
        raise InvalidInputError(
            f"tier patch {patch_path} was calibrated on tier '{patch.tier}', not '{tier.name}'"
        )
    return apply_overrides(tier, Overrides(guards=patch.guards), f"{tier.name}+patch")


def _merge(base: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in patch.items():
        old = out.get(key)
        out[key] = (
            _merge(old, value) if isinstance(old, dict) and isinstance(value, dict) else value
        )
    return out


# --- files ----------------------------------------------------------------------------------


def safe_model_id(model_id: str) -> str:
    """File-name form of a model id: lowercase, ``/`` -> ``__``, only [a-z0-9_.-]."""
    text = re.sub(r"[^a-z0-9_.-]", "", model_id.lower().replace("/", "__")).strip(".")
    if not text:
        raise UsageError(f"model id '{model_id}' has no characters usable in a file name")
    return text


def preset_paths(preset: Preset, out_dir: str | Path) -> tuple[Path, Path]:
    stem = f"calibrated_preset_{safe_model_id(preset.model_id)}"
    return Path(out_dir) / f"{stem}.json", Path(out_dir) / f"{stem}.yaml"


def preset_files(preset: Preset) -> dict[str, str]:
    """The preset as JSON and as YAML (same content): ``{file name: text}``."""
    yaml = _yaml()
    data = preset.model_dump(mode="json")
    json_path, yaml_path = preset_paths(preset, ".")
    return {
        json_path.name: json.dumps(data, indent=2) + "\n",
        yaml_path.name: yaml.safe_dump(data, sort_keys=False, allow_unicode=True),
    }


def write_preset(preset: Preset, out_dir: str | Path) -> list[Path]:
    """Write the preset as JSON and as YAML (same content), each atomically."""
    return write_files(Path(out_dir), preset_files(preset))


def load_preset(path: str | Path) -> Preset:
    """Read and validate a preset (.json, .yaml or .yml); errors name the file and field."""
    return _load(Path(path), Preset, "preset")


def _load(path: Path, model: type[_M], what: str) -> _M:
    if not path.is_file():
        raise NotFoundError(f"{what} file not found: {path}")
    suffix = path.suffix.lower()
    if suffix not in (".json", ".yaml", ".yml"):
        raise InvalidInputError(f"{path}: a {what} must be .json, .yaml or .yml")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidInputError(f"{path}: cannot read {what}: {_one_line(exc)}") from None
    try:
        return model.model_validate(_parse(path, text, suffix))
    except ValidationError as exc:
        raise InvalidInputError(f"{path}: {validation_summary(exc, count_more=True)}") from None


def _parse(path: Path, text: str, suffix: str) -> object:
    if suffix == ".json":
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            msg = f"{path}: not valid JSON ({exc.msg} at line {exc.lineno})"
            raise InvalidInputError(msg) from None
    yaml = _yaml()
    try:
        # safe_load only: a preset is data, and yaml.load could construct arbitrary objects.
        data: object = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise InvalidInputError(f"{path}: not valid YAML ({_one_line(exc)})") from None
    return data


def _yaml() -> ModuleType:
    # Imported lazily (and untyped: PyYAML ships no annotations) so the core stays yaml-free.
    try:
        return importlib.import_module("yaml")
    except ImportError:
        raise UsageError("YAML presets need PyYAML: pip install pyyaml") from None


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())

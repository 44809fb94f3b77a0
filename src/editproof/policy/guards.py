"""Guard policies: the thresholds each guard judges a subject against its baseline with.

Every number here is a calibration output (``editproof calibrate``), shipped with values
that keep the noop and clean edits passing and the reference's faults caught; presets and
tier patches override them per model.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

FamilyValues = dict[Literal["attn", "ffn", "embed", "other"], float]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class InvariantsPolicy(_Frozen):
    # strict: structure/layer-norm/tying changes fail instead of warn.
    strict: bool = False


class SpectralPolicy(_Frozen):
    """sigma_max per 2-D weight; z = (sigma_subj - sigma_base) / (baseline family std).

    ``max_log_ratio`` bounds d = |log(sigma_subj / sigma_base)| per matrix (a flag counts as
    a cap, so warn); empty turns that check off (policies written before it existed).
    """

    kappa: FamilyValues
    max_log_ratio: FamilyValues = Field(default_factory=dict)
    multiple_testing: Literal["bh", "bonferroni"] = "bh"
    alpha: float = Field(gt=0, lt=1)
    max_caps: int = Field(ge=0)
    # Hard bound on sigma_subj / sigma_base (or its inverse) for any single matrix.
    max_sigma_ratio: float = Field(gt=1)
    stable_rank_warn: float = Field(gt=0, le=1)
    stable_rank_fail: float = Field(gt=0, le=1)
    norm_collapse_warn: float = Field(gt=0, le=1)
    norm_collapse_fail: float = Field(gt=0, le=1)
    power_iters: int = Field(ge=1)


class RmtPolicy(_Frozen):
    """Activation edge risk sigma_hat / (sqrt(tokens) + sqrt(features)) per family."""

    epsilon: FamilyValues
    # Largest allowed relative rise of any single hooked module's edge risk.
    module_epsilon: float = Field(gt=0)
    windows: int = Field(ge=1)
    power_iters: int = Field(ge=1)


class VariancePolicy(_Frozen):
    """Residual-branch variance proposal with a paired A/B gate (informational)."""

    windows: int = Field(ge=2)
    min_effect: float = Field(ge=0)
    one_sided: bool = True
    clamp: tuple[float, float]
    deadband: float = Field(ge=0)
    max_adjusted_modules: int = Field(ge=0)
    replicates: int = Field(ge=1)
    alpha: float = Field(gt=0, lt=1)


class GuardPolicies(_Frozen):
    invariants: InvariantsPolicy
    spectral: SpectralPolicy
    rmt: RmtPolicy
    variance: VariancePolicy

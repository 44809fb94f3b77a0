"""Tier policies (balanced / conservative / aggressive), packaged as data, and their digest.

Packaged tiers are read-only inputs: calibration writes patches and presets beside a run,
never into the package.
"""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from editproof.errors import UsageError
from editproof.fileio import canonical_digest
from editproof.policy.guards import GuardPolicies

TIER_NAMES = ("balanced", "conservative", "aggressive")


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class BootstrapPolicy(_Frozen):
    method: Literal["bca", "percentile"] = "bca"
    replicates: int = Field(ge=1)
    alpha: float = Field(gt=0, lt=1)


class CoveragePolicy(_Frozen):
    """Windows per arm below which the CI is flagged ``unstable`` (informational)."""

    preview: int = Field(ge=0)
    final: int = Field(ge=0)


class TailPolicy(_Frozen):
    mode: Literal["off", "warn", "fail"]
    min_windows: int = Field(ge=1)
    quantile: float = Field(gt=0, lt=1)
    quantile_max: float
    epsilon: float
    mass_max: float = Field(ge=0, le=1)


class TierPolicy(_Frozen):
    name: str
    description: str = ""
    ratio_limit: float = Field(gt=1.0)
    hysteresis: float = Field(ge=0)
    min_tokens: int = Field(ge=0)
    min_token_fraction: float = Field(ge=0, le=1)
    drift_band: tuple[float, float]
    bootstrap: BootstrapPolicy
    coverage: CoveragePolicy
    tail: TailPolicy
    guards: GuardPolicies

    @field_validator("drift_band")
    @classmethod
    def _band_ordered(cls, band: tuple[float, float]) -> tuple[float, float]:
        if not 0 < band[0] <= 1 <= band[1]:
            raise ValueError("drift_band must satisfy 0 < low <= 1 <= high")
        return band

    def digest(self) -> str:
        return policy_digest(self.model_dump(mode="json"))


def policy_digest(policy: dict[str, Any]) -> str:
    """sha256 (16 hex) of the canonical JSON of a resolved policy: sorted keys, no spaces."""
    return canonical_digest(policy)


@cache
def _packaged() -> dict[str, Any]:
    text = resources.files("editproof.policy").joinpath("tiers.json").read_text()
    data: dict[str, Any] = json.loads(text)
    return data


def load_tier(name: str) -> TierPolicy:
    """The packaged tier called ``name``."""
    tiers = _packaged()["tiers"]
    if name not in tiers:
        raise UsageError(f"unknown tier '{name}': choose one of {', '.join(TIER_NAMES)}")
    return TierPolicy(name=name, **tiers[name])

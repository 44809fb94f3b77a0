"""Run-scoped calibrated presets: the suite's calibration runs folded into tier overrides.

Each calibration run re-measures the unedited baseline under another seed and window sample
(``editproof.calibration.null_sweep``). The preset takes the sweep's recommendations and
only ever *widens* the tier: kappa and epsilon become max(tier value, measured noise x
(1 + margin)), the variance ``min_effect`` the 95th percentile of the null A/B gains. A
suite preset never tightens a threshold below the packaged tier, so calibration cannot
turn a clean edit that passes the tier into a failure; what it adds is the guarantee that
no threshold sits inside this model's own measurement noise. The packaged tiers are never
written.
"""

from __future__ import annotations

from collections.abc import Sequence

from editproof.calibration.null_sweep import NullSweep, SeedRun, recommend
from editproof.calibration.preset import (
    Evidence,
    GuardOverrides,
    Overrides,
    Preset,
    RmtOverride,
    SpectralOverride,
    VarianceOverride,
    null_min_effect,
)
from editproof.policy import TierPolicy

MARGIN = 0.10
TARGET_WARNING_RATE = 0.01


def suite_preset(
    *,
    model_id: str,
    tier: TierPolicy,
    runs: Sequence[SeedRun],
    baseline: str,
    weight_sha256: str,
    seq_len: int,
    n_windows: int,
    baseline_seed: int,
) -> Preset:
    recs = recommend(runs, tier, margin=MARGIN, target=TARGET_WARNING_RATE)
    kappa = {str(f): v for f, v in tier.guards.spectral.kappa.items()}
    for fam, value in recs.kappa.items():
        kappa[fam] = max(kappa.get(fam, value), value)
    epsilon = {str(f): v for f, v in tier.guards.rmt.epsilon.items()}
    for fam, value in recs.epsilon.items():
        epsilon[fam] = max(epsilon.get(fam, value), value)
    min_effect = max(tier.guards.variance.min_effect, null_min_effect(runs))
    overrides = Overrides.model_validate(
        {
            "guards": GuardOverrides(
                spectral=SpectralOverride.model_validate({"kappa": kappa}),
                rmt=RmtOverride.model_validate({"epsilon": epsilon}),
                variance=VarianceOverride(min_effect=min_effect),
            )
        }
    )
    sweep = NullSweep(
        tier=tier.name,
        tier_digest=tier.digest(),
        baseline=baseline,
        weight_sha256=weight_sha256,
        seq_len=seq_len,
        n_preview=n_windows,
        n_final=n_windows,
        baseline_seed=baseline_seed,
        seeds=[r.seed for r in runs],
        margin=MARGIN,
        target_warning_rate=TARGET_WARNING_RATE,
        runs=list(runs),
        recommendations=recs,
    )
    return Preset(
        model_id=model_id,
        tier=tier.name,
        tier_digest=tier.digest(),
        overrides=overrides,
        evidence=Evidence(margin=MARGIN, null_sweep=sweep, clean_runs=[], skipped=[]),
    )

"""Calibration: thresholds measured on the model itself instead of shipped defaults.

``null_sweep`` re-measures the unedited baseline under other measurement seeds (the noise
floor of each guard statistic) and writes a tier patch; ``derive_preset`` adds clean edits
(the benign-change population) and writes a per-model preset. Both are applied on top of a
packaged tier by pure functions that return a new ``TierPolicy``.
"""

from editproof.calibration.null_sweep import (
    NullSweep,
    Recommendations,
    SeedRun,
    null_sweep,
    sweep_seeds,
    write_null_sweep,
)
from editproof.calibration.preset import (
    DEFAULT_CLEAN_SPECS,
    Preset,
    TierPatch,
    apply_preset,
    apply_tier_patch,
    derive_preset,
    load_preset,
    safe_model_id,
    write_preset,
)

__all__ = [
    "DEFAULT_CLEAN_SPECS",
    "NullSweep",
    "Preset",
    "Recommendations",
    "SeedRun",
    "TierPatch",
    "apply_preset",
    "apply_tier_patch",
    "derive_preset",
    "load_preset",
    "null_sweep",
    "safe_model_id",
    "sweep_seeds",
    "write_null_sweep",
    "write_preset",
]

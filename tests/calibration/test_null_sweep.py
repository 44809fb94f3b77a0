"""Null sweep on a tiny model, and the pure recommendation rules on synthetic runs."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import pytest

from editproof.calibration import NullSweep, apply_tier_patch, null_sweep, write_null_sweep
from editproof.calibration.null_sweep import (
    EPSILON_FLOOR,
    KAPPA_FLOOR,
    LOG_RATIO_FLOOR,
    RmtRun,
    SeedRun,
    SpectralRun,
    VarianceRun,
    recommend,
    sweep_seeds,
)
from editproof.errors import InvalidInputError, NotFoundError, UsageError
from editproof.policy import load_tier

pytest.importorskip("torch")

SEEDS = [1, 2]


@pytest.fixture(scope="module")
def evaluator(tiny_dir: Path) -> Any:
    from editproof.evaluation import EvaluationConfig, Evaluator

    config = EvaluationConfig(
        baseline=str(tiny_dir), seq_len=32, n_preview=4, n_final=4, device="cpu"
    )
    return Evaluator(config)


@pytest.fixture(scope="module")
def sweep(evaluator: Any) -> NullSweep:
    return null_sweep(evaluator, SEEDS)


def _run(
    seed: int,
    z: dict[str, float],
    delta: dict[str, float | None] | None = None,
    *,
    rmt_status: str = "pass",
    other: bool = False,
    caps: int = 0,
) -> SeedRun:
    import math

    return SeedRun(
        seed=seed,
        spectral=SpectralRun(
            status="warn" if caps or other else "pass",
            candidates=caps,
            caps=caps,
            max_abs_z=z,
            family_p={f: math.erfc(v / math.sqrt(2)) for f, v in z.items()},
            other_warning=other,
        ),
        rmt=RmtRun(status=rmt_status, delta=delta or {}),  # type: ignore[arg-type]
        variance=VarianceRun(proposals=0),
        any_warning=rmt_status != "pass" or other or caps > 0,
        seconds=0.0,
    )


def test_sweep_measures_noise_and_applies_floors(sweep: NullSweep, evaluator: Any) -> None:
    assert sweep.seeds == SEEDS and [r.seed for r in sweep.runs] == SEEDS
    assert sweep.tier == "balanced" and sweep.tier_digest == evaluator.tier.digest()
    assert sweep.weight_sha256 == evaluator.base_digest.sha256
    assert (sweep.seq_len, sweep.n_preview, sweep.n_final) == (32, 4, 4)
    run = sweep.runs[0]
    # Other seeds, other windows: the statistics move (a same-seed compare would be exactly 0).
    assert set(run.spectral.max_abs_z) >= {"attn", "ffn"} and set(run.rmt.delta) >= {"attn", "ffn"}
    assert any(d not in (None, 0.0) for d in run.rmt.delta.values())
    rec = sweep.recommendations
    assert set(rec.kappa) == set(run.spectral.max_abs_z)
    assert all(k >= KAPPA_FLOOR for k in rec.kappa.values())
    assert all(e >= EPSILON_FLOOR for e in rec.epsilon.values())
    for fam, k in rec.kappa.items():
        top = max(r.spectral.max_abs_z[fam] for r in sweep.runs)
        assert k == max(round(top * 1.05, 3), KAPPA_FLOOR)
    assert set(rec.max_log_ratio) == set(run.spectral.max_log_ratio) == set(rec.kappa)
    for fam, b in rec.max_log_ratio.items():
        top = max(r.spectral.max_log_ratio[fam] for r in sweep.runs)
        assert b == max(round(top * 1.05, 4), LOG_RATIO_FLOOR)
    assert run.rmt.max_module_delta is not None and run.variance.max_deviation is not None


def test_recommendations_are_deterministic(sweep: NullSweep, evaluator: Any) -> None:
    again = null_sweep(evaluator, SEEDS)
    assert again.recommendations == sweep.recommendations
    strip = [r.model_copy(update={"seconds": 0.0}) for r in again.runs]
    assert strip == [r.model_copy(update={"seconds": 0.0}) for r in sweep.runs]


def test_log_ratio_bound_on_synthetic_runs() -> None:
    tier = load_tier("balanced")
    runs = [_run(1, {"attn": 0.1}), _run(2, {"attn": 0.2})]
    runs = [
        r.model_copy(
            update={"spectral": r.spectral.model_copy(update={"max_log_ratio": {"attn": d}})}
        )
        for r, d in zip(runs, (0.001, 0.05), strict=True)
    ]
    rec = recommend(runs, tier, margin=0.1, target=0.01)
    assert rec.max_log_ratio == {"attn": 0.055} and rec.log_ratio_floor == LOG_RATIO_FLOOR
    quiet = recommend(runs[:1], tier, margin=0.1, target=0.01)
    assert quiet.max_log_ratio == {"attn": LOG_RATIO_FLOOR}
    # An older sweep file without the field still loads, with no bound to recommend.
    old = SpectralRun.model_validate(
        {k: v for k, v in runs[0].spectral.model_dump().items() if k != "max_log_ratio"}
    )
    assert old.max_log_ratio == {}


def test_floors_and_margin_on_synthetic_runs() -> None:
    tier = load_tier("balanced")
    quiet = [_run(1, {"attn": 0.01, "ffn": 0.0}, {"attn": -0.02, "ffn": 0.001})]
    rec = recommend(quiet, tier, margin=0.05, target=0.01)
    assert rec.kappa == {"attn": KAPPA_FLOOR, "ffn": KAPPA_FLOOR}
    assert rec.epsilon == {"attn": EPSILON_FLOOR, "ffn": EPSILON_FLOOR}
    assert rec.alpha == tier.guards.spectral.alpha and rec.alpha_halvings == 0
    loud = [_run(1, {"attn": 2.0}, {"attn": 0.1}), _run(2, {"attn": 1.5}, {"attn": None})]
    rec = recommend(loud, tier, margin=0.05, target=0.01)
    assert rec.kappa == {"attn": 2.1} and rec.epsilon == {"attn": 0.105}


def test_alpha_halves_until_the_warning_rate_is_met() -> None:
    tier = load_tier("balanced")  # kappa attn 3.018, BH alpha 0.05
    capped = _run(1, {"attn": 3.5, "ffn": 0.1}, caps=1)
    runs = [capped, *(_run(s, {"attn": 0.1, "ffn": 0.1}) for s in range(2, 11))]
    rec = recommend(runs, tier, margin=0.05, target=0.05)
    # p(3.5) = 4.65e-4 survives BH (m = 2) at alpha / 2 until alpha < 9.3e-4: six halvings.
    assert rec.alpha == 0.05 / 2**6 and rec.alpha_halvings == 6
    assert rec.any_warning_rate == 0.1 and rec.warning_rate_after == 0.0 and rec.note is None
    # Within the target rate, the tier's alpha stays.
    assert recommend(runs, tier, margin=0.05, target=0.1).alpha == 0.05
    bonf = tier.model_copy(
        update={
            "guards": tier.guards.model_copy(
                update={
                    "spectral": tier.guards.spectral.model_copy(
                        update={"multiple_testing": "bonferroni"}
                    )
                }
            )
        }
    )
    assert recommend(runs, bonf, margin=0.05, target=0.05).alpha_method == "bonferroni"
    # A warning alpha does not govern (rmt) stops the search rather than driving alpha to 0.
    stuck = [_run(1, {"attn": 0.1}, rmt_status="fail"), _run(2, {"attn": 0.1})]
    rec = recommend(stuck, tier, margin=0.05, target=0.01)
    assert rec.alpha == 0.05 and rec.any_warning_rate == 0.5 and rec.note is not None


def test_bad_seeds_are_refused(evaluator: Any) -> None:
    with pytest.raises(UsageError, match="baseline's own seed"):
        null_sweep(evaluator, [42])
    with pytest.raises(UsageError, match="distinct"):
        null_sweep(evaluator, [1, 1])
    with pytest.raises(UsageError, match="at least one"):
        null_sweep(evaluator, [])
    with pytest.raises(UsageError, match="--target-warning-rate"):
        null_sweep(evaluator, [1], target_warning_rate=1.5)
    assert sweep_seeds(41, 3, exclude=42) == [41, 43, 44]
    with pytest.raises(UsageError, match="--seeds must be at least 1"):
        sweep_seeds(42, 0, exclude=42)


def test_files_written_and_patch_applies(sweep: NullSweep, tmp_path: Path) -> None:
    paths = write_null_sweep(sweep, tmp_path / "out")
    names = {p.name for p in paths}
    assert names == {"null_sweep_report.json", "null_sweep_runs.csv", "tiers_patch_null.json"}
    report = json.loads((tmp_path / "out" / "null_sweep_report.json").read_text())
    assert report["format"] == "editproof.null-sweep" and NullSweep.model_validate(report) == sweep
    rows = list(csv.DictReader((tmp_path / "out" / "null_sweep_runs.csv").open()))
    assert [int(r["seed"]) for r in rows] == SEEDS and "spectral.max_abs_z.attn" in rows[0]
    patch_path = tmp_path / "out" / "tiers_patch_null.json"
    patch = json.loads(patch_path.read_text())
    assert patch["format"] == "editproof.tier-patch" and patch["tier"] == "balanced"
    assert set(patch["guards"]) == {"spectral", "rmt"}

    tier = load_tier("balanced")
    patched = apply_tier_patch(tier, patch_path)
    assert patched.digest() != tier.digest() and patched.name == "balanced+patch"
    for fam, k in sweep.recommendations.kappa.items():
        assert patched.guards.spectral.kappa[fam] == k  # type: ignore[index]
    assert patched.guards.spectral.kappa["other"] == tier.guards.spectral.kappa["other"]
    assert patched.guards.rmt.epsilon["attn"] == sweep.recommendations.epsilon["attn"]
    assert load_tier("balanced") == tier  # the packaged tier is untouched
    with pytest.raises(InvalidInputError, match="'balanced', not 'conservative'"):
        apply_tier_patch(load_tier("conservative"), patch_path)


def test_malformed_patch(tmp_path: Path) -> None:
    bad = tmp_path / "p.json"
    bad.write_text(json.dumps({"tier": "balanced", "guards": {"spectral": {"alpha": 2}}}))
    with pytest.raises(InvalidInputError, match=r"guards\.spectral\.alpha"):
        apply_tier_patch(load_tier("balanced"), bad)
    bad.write_text("{not json")
    with pytest.raises(InvalidInputError, match="not valid JSON"):
        apply_tier_patch(load_tier("balanced"), bad)
    with pytest.raises(NotFoundError):
        apply_tier_patch(load_tier("balanced"), tmp_path / "missing.json")

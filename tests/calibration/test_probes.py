"""Probe strength calibration: the search logic on a fake evaluator, then on a tiny model."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from editproof.calibration.probes import GRIDS, calibrate_probe, merge_probes
from editproof.edits import TunedParams, parse_spec, resolve_probe
from editproof.errors import UsageError
from editproof.policy import load_tier

GRID = ("factor", (1.1, 1.2, 1.3, 1.4, 1.5, 1.6, 1.7))


def _report(signal: bool, subtle: bool) -> Any:
    spectral = SimpleNamespace(
        name="spectral",
        status="warn" if signal else "pass",
        enforced=True,
        measured={"caps": 1.0 if signal else 0.0, "max_log_ratio": 0.2},
        thresholds={"max_log_ratio_attn": 0.1},
        details={"top_log_ratio": [{"family": "attn"}]},
    )
    rmt = SimpleNamespace(
        name="rmt", status="pass", enforced=True, measured={}, thresholds={}, details={}
    )
    return SimpleNamespace(
        status="PASS" if subtle else "FAIL",
        validation={"primary_metric_acceptable": subtle, "invariants_pass": True},
        guards=SimpleNamespace(results=[spectral, rmt], probes={}),
        primary_metric=SimpleNamespace(ratio=1.01 if subtle else 1.5, display_ci=(1.0, 1.02)),
    )


class FakeEvaluator:
    """Signals from grid index ``first_signal`` on, subtle up to ``last_subtle``."""

    def __init__(self, first_signal: int, last_subtle: int) -> None:
        self.first_signal, self.last_subtle = first_signal, last_subtle
        self.calls: list[str] = []
        self.tier = load_tier("balanced")
        self.plan = SimpleNamespace(seq_len=128)
        self.windows = [[0]] * 32
        self.config = SimpleNamespace(seed=42, batch_size=8)
        self.base_digest = SimpleNamespace(sha256="ab" * 32)

    def judge_edit(self, spec: str, **_: Any) -> Any:
        self.calls.append(spec)
        value = float(spec.rsplit("=", 1)[1])
        i = GRID[1].index(value)
        return _report(i >= self.first_signal, i <= self.last_subtle)


def _run(fake: FakeEvaluator) -> Any:
    return calibrate_probe(
        fake,  # type: ignore[arg-type]
        "spectral_moderate_scale",
        model_id="m",
        tuned=TunedParams(),
        grid=GRID,
    )


@pytest.mark.parametrize(
    ("first", "last", "chosen"), [(0, 6, 1.4), (2, 4, 1.4), (1, 5, 1.4), (3, 3, 1.4), (5, 6, 1.6)]
)
def test_picks_the_middle_of_the_feasible_range(first: int, last: int, chosen: float) -> None:
    fake = FakeEvaluator(first, last)
    result = _run(fake)
    assert result.entry.status == "selected" and result.entry.params == {"factor": chosen}
    evidence = result.entry.evidence or {}
    assert evidence["feasible"] == [GRID[1][first], GRID[1][last]]
    assert len(evidence["trials"]) == len(fake.calls) == len(set(fake.calls))  # no repeats
    assert len(fake.calls) <= 7  # bisection: fewer trials than the grid's 7 on long ranges
    assert "midway" in result.entry.reason and "caps 1" in result.entry.reason
    assert evidence["tier"] == "balanced" and evidence["seq_len"] == 128


def test_skipped_when_nothing_signals_or_nothing_subtle_signals() -> None:
    silent = _run(FakeEvaluator(first_signal=99, last_subtle=6))
    assert silent.entry.status == "skipped" and "does not signal" in silent.entry.reason
    assert len(silent.trials) == 1  # the strongest strength only
    loud = _run(FakeEvaluator(first_signal=4, last_subtle=2))
    assert loud.entry.status == "skipped" and "not subtle" in loud.entry.reason
    assert loud.entry.params == {} and (loud.entry.evidence or {})["trials"]


def test_unknown_probe_and_bad_grid() -> None:
    fake = FakeEvaluator(0, 6)
    with pytest.raises(UsageError, match="spectral_moderate_scale"):
        calibrate_probe(fake, "nan_injection", model_id="m", tuned=TunedParams())  # type: ignore[arg-type]
    with pytest.raises(UsageError, match="blend"):
        calibrate_probe(
            fake,  # type: ignore[arg-type]
            "spectral_moderate_scale",
            model_id="m",
            tuned=TunedParams(),
            grid=("blend", (0.5,)),
        )
    assert fake.calls == []  # nothing ran


def test_grids_parse_and_run_mildest_first() -> None:
    for probe, (key, values) in GRIDS.items():
        for value in values:
            assert parse_spec(f"{probe}:{key}={value:g}").params[key] == value
    assert list(GRIDS["spectral_moderate_scale"][1]) == sorted(GRIDS["spectral_moderate_scale"][1])
    assert list(GRIDS["ve_mlp_scale_skew"][1]) == sorted(GRIDS["ve_mlp_scale_skew"][1])[::-1]


# --- on a tiny model ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def evaluator(tiny_dir: Path) -> Any:
    pytest.importorskip("torch")
    from editproof.evaluation import EvaluationConfig, Evaluator

    config = EvaluationConfig(
        baseline=str(tiny_dir),
        seq_len=32,
        n_preview=4,
        n_final=4,
        batch_size=8,
        device="cpu",
        relax_token_floor=True,
    )
    return Evaluator(config)


def test_search_on_a_tiny_model_writes_a_resolvable_entry(evaluator: Any, tiny_dir: Path) -> None:
    # A stale entry for this probe must not leak into the trials.
    stale = TunedParams.model_validate(
        {
            "probes": {
                tiny_dir.name: {
                    "spectral_moderate_scale": {
                        "status": "selected",
                        "params": {"layers": "1"},
                        "reason": "stale",
                    }
                }
            }
        }
    )
    result = calibrate_probe(
        evaluator,
        "spectral_moderate_scale",
        model_id=tiny_dir.name,
        tuned=stale,
        grid=("factor", (1.02, 1.5, 3.0)),
    )
    assert result.entry.status == "selected", result.entry.reason
    factor = result.entry.params["factor"]
    chosen = next(t for t in result.trials if t.value == factor)
    assert chosen.signal and chosen.subtle and chosen.statistic["caps"] >= 1
    assert chosen.spec.startswith("spectral_moderate_scale:factor=")
    mild = next((t for t in result.trials if t.value == 1.02), None)
    assert mild is None or not mild.signal  # |log 1.02| is inside the bound
    tuned = merge_probes(stale, tiny_dir.name, [result])
    spec = resolve_probe(parse_spec("spectral_moderate_scale"), tiny_dir.name, tuned)
    assert spec.params["factor"] == factor and spec.params["layers"] == "0-3"
    # Judged through the evaluator, a bare probe now runs at the calibrated strength.
    report = evaluator.judge_edit("spectral_moderate_scale", tuned=tuned)
    assert report.edit.spec == spec.text and report.edit.record["resolved_from"] == (
        "spectral_moderate_scale"
    )

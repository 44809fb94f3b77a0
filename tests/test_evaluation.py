"""Integration: the whole evaluation on tiny random-init models with a real tokenizer."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("torch")
from editproof.errors import InvalidInputError, NotFoundError, UsageError
from editproof.evaluation import EvaluationConfig, evaluate
from editproof.report.verify import verify_report


def _config(base: Path, subj: Path, **kw: object) -> EvaluationConfig:
    defaults: dict[str, object] = {
        "seq_len": 32,
        "n_preview": 12,
        "n_final": 12,
        "device": "cpu",
        "relax_token_floor": True,
    }
    defaults.update(kw)
    return EvaluationConfig(baseline=str(base), subject=str(subj), **defaults)  # type: ignore[arg-type]


def test_same_model_is_exactly_neutral(tiny_dir: Path) -> None:
    report = evaluate(_config(tiny_dir, tiny_dir))
    pm = report.primary_metric
    assert pm.ratio == 1.0 and pm.display_ci == (1.0, 1.0) and pm.delta_log == 0.0
    assert pm.bootstrap is not None and pm.bootstrap.degenerate
    assert report.status == "PASS" and report.edit.label == "noop"
    assert report.baseline.model.weight_sha256 == report.subject.model.weight_sha256
    assert report.baseline.final.window_ids == report.subject.final.window_ids
    assert len(report.baseline.final.window_ids) == 12
    assert verify_report(report).ok


def test_different_weights_are_custom_and_fail(tiny_dir: Path, tiny_dir_other: Path) -> None:
    report = evaluate(_config(tiny_dir, tiny_dir_other, seed=7))
    assert report.edit.label == "custom"
    assert report.baseline.model.weight_sha256 != report.subject.model.weight_sha256
    pm = report.primary_metric
    assert pm.ratio is not None and pm.ratio != 1.0
    assert pm.display_ci is not None and pm.display_ci[0] <= pm.ratio <= pm.display_ci[1]
    assert report.dataset.seed == 7 and report.provenance.seeds["bootstrap"] == 7 + 503
    assert verify_report(report).ok


def test_token_floor_enforced_unless_relaxed(tiny_dir: Path) -> None:
    report = evaluate(_config(tiny_dir, tiny_dir, relax_token_floor=False))
    floor = next(g for g in report.gates if g.name == "token_floor")
    assert not floor.passed and report.status == "FAIL"


def test_bad_inputs_fail_before_loading(tiny_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(UsageError):
        evaluate(_config(tiny_dir, tiny_dir, tier="nope"))
    with pytest.raises(UsageError):
        evaluate(_config(tiny_dir, tiny_dir, provider="nope"))
    with pytest.raises(NotFoundError):
        evaluate(_config(tiny_dir, tmp_path / "missing"))
    with pytest.raises(InvalidInputError, match="windows"):
        evaluate(_config(tiny_dir, tiny_dir, n_preview=5000, n_final=5000))

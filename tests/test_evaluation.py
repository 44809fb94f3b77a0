"""Integration: the whole evaluation on tiny random-init models with a real tokenizer."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("torch")
from editproof.errors import InvalidInputError, NotFoundError, UsageError
from editproof.evaluation import EvaluationConfig, Evaluator, check_config, evaluate
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
        evaluate(_config(tiny_dir, tiny_dir, n_preview=50000, n_final=50000))


# --- bad input fails before anything is measured -------------------------------------------


@pytest.fixture
def no_measuring(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail the test if any window is measured."""

    def boom(*_: object, **__: object) -> None:
        raise AssertionError("measure_nll was called")

    monkeypatch.setattr("editproof.evaluation.measure_nll", boom)


@pytest.fixture
def no_loading(monkeypatch: pytest.MonkeyPatch, no_measuring: None) -> None:
    """Fail the test if any model is loaded."""

    def boom(*_: object, **__: object) -> None:
        raise AssertionError("load_model was called")

    monkeypatch.setattr("editproof.evaluation.load_model", boom)


def _edit_config(base: Path, edit: str, **kw: object) -> EvaluationConfig:
    defaults: dict[str, object] = {
        "seq_len": 32,
        "n_preview": 6,
        "n_final": 6,
        "device": "cpu",
        "relax_token_floor": True,
        "guards": False,
    }
    defaults.update(kw)
    return EvaluationConfig(baseline=str(base), edit=edit, **defaults)  # type: ignore[arg-type]


def test_scope_matching_nothing_fails_before_measuring(tiny_dir: Path, no_measuring: None) -> None:
    needle = (
        r"^edit 'quant_rtn:4:32:ffn@layer=999': scope 'ffn@layer=999' matches no ffn weights: "
        r"LlamaForCausalLM has 2 decoder layers \(0-1\) with attn and ffn weights$"
    )
    with pytest.raises(UsageError, match=needle):
        evaluate(_edit_config(tiny_dir, "quant_rtn:4:32:ffn@layer=999"))
    with pytest.raises(UsageError, match=r"^edit 've_mlp_scale_skew:layers=7': ve_mlp_scale_skew"):
        Evaluator(_edit_config(tiny_dir, "noop"), edits=["noop", "ve_mlp_scale_skew:layers=7"])


@pytest.mark.parametrize("seq_len", [0, 1, -4])
def test_seq_len_below_two_fails_before_loading(
    tiny_dir: Path, no_loading: None, seq_len: int
) -> None:
    with pytest.raises(UsageError, match=rf"--seq-len must be at least 2 .*got {seq_len}$"):
        evaluate(_edit_config(tiny_dir, "noop", seq_len=seq_len))
    with pytest.raises(UsageError, match="--seq-len"):
        check_config(_edit_config(tiny_dir, "noop", seq_len=seq_len))


def test_seq_len_beyond_the_position_table_fails_before_measuring(
    tiny_dir: Path, no_measuring: None
) -> None:
    with pytest.raises(
        UsageError, match=r"--seq-len 600 is longer than .* max_position_embeddings = 512"
    ):
        evaluate(_edit_config(tiny_dir, "noop", seq_len=600))


def test_subject_without_weights_fails_before_loading(
    tiny_dir: Path, tmp_path: Path, no_loading: None
) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "config.json").write_text((tiny_dir / "config.json").read_text())
    with pytest.raises(NotFoundError, match=r"^no weights in '.*empty'"):
        evaluate(_config(tiny_dir, empty))


def test_corrupt_subject_fails_before_loading(
    tiny_dir: Path, tmp_path: Path, no_loading: None
) -> None:
    import shutil

    bad = tmp_path / "bad"
    shutil.copytree(tiny_dir, bad)
    data = (bad / "model.safetensors").read_bytes()
    (bad / "model.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(
        InvalidInputError, match=r"^corrupt safetensors file .*bad/model\.safetensors: .*truncated"
    ):
        evaluate(_config(tiny_dir, bad))


def test_unknown_tuned_entry_fails_before_loading(
    tiny_dir: Path, tmp_path: Path, no_loading: None
) -> None:
    tuned = tmp_path / "tuned.json"
    tuned.write_text('{"format": "editproof.tuned-edit-params", "schema_version": 1}')
    with pytest.raises(InvalidInputError, match="no tuned params for edit 'quant_rtn'"):
        evaluate(_edit_config(tiny_dir, "quant_rtn:clean:ffn", tuned_params=str(tuned)))


# --- resolving edits up front, and window progress ----------------------------------------


def test_edits_are_resolved_before_measuring_and_judged_as_resolved(tiny_dir: Path) -> None:
    calls: list[tuple[str, int, int]] = []
    evaluator = Evaluator(
        _edit_config(tiny_dir, "noop", batch_size=5),
        edits=["lowrank_svd:clean:ffn", "noop", "magnitude_prune:0.5:attn@layers=1"],
        on_windows=lambda phase, done, total: calls.append((phase, done, total)),
    )
    lowrank, noop, prune = evaluator.edits
    assert (
        lowrank.text == "lowrank_svd:32:ffn@layer=1"
    )  # shipped defaults, layer=last made concrete
    assert lowrank.resolved_from == "lowrank_svd:clean:ffn"
    assert noop.kind == "noop" and prune.scope is not None and prune.scope.first_layers == 1
    assert calls == [
        ("baseline", 0, 12),
        ("baseline", 5, 12),
        ("baseline", 10, 12),
        ("baseline", 12, 12),
    ]
    assert evaluator.check_edits([lowrank]) == [lowrank]  # usable again, any time

    calls.clear()
    report = evaluator.judge_edit(lowrank)
    assert report.edit.spec == "lowrank_svd:32:ffn@layer=1"
    assert (
        report.edit.tuned_source is not None
        and "tuned_edit_params.json" in report.edit.tuned_source
    )
    assert (
        report.edit.record is not None
        and report.edit.record["resolved_from"] == "lowrank_svd:clean:ffn"
    )
    assert [c[0] for c in calls] == ["subject"] * 4 and calls[-1] == ("subject", 12, 12)

    calls.clear()
    evaluator.judge_source(str(tiny_dir))
    assert calls[0] == ("subject", 0, 12) and calls[-1] == ("subject", 12, 12)


def test_evaluator_without_edits_measures_as_before(tiny_dir: Path) -> None:
    lines: list[str] = []
    evaluator = Evaluator(_edit_config(tiny_dir, "noop"), lines.append)
    assert evaluator.edits == [] and evaluator.baseline.final.window_ids
    assert "baseline: 12 windows" in lines  # text progress when no on_windows is given


def test_reseeded_measures_the_same_weights_on_other_windows(tiny_dir: Path) -> None:
    from editproof.evaluation import EvaluationConfig, Evaluator

    def cfg(seed: int) -> EvaluationConfig:
        return EvaluationConfig(
            baseline=str(tiny_dir), edit="noop", seq_len=16, n_preview=4, n_final=4,
            device="cpu", seed=seed,
        )  # fmt: skip

    ev = Evaluator(cfg(42))
    other = ev.reseeded(7)
    fresh = Evaluator(cfg(7))
    assert other.dataset.plan_digest == fresh.dataset.plan_digest != ev.dataset.plan_digest
    assert other.baseline.final.mean_nll == fresh.baseline.final.mean_nll  # bit-identical (CPU)
    assert other.base_digest.sha256 == ev.base_digest.sha256
    report = other.judge_edit("quant_rtn:4:32:ffn")
    assert report.dataset.seed == 7 and report.provenance.seeds["windows"] == 7
    again = ev.judge_edit("noop")  # the original is untouched by the sibling
    assert again.primary_metric.ratio == 1.0 and again.dataset.seed == 42


def test_baseline_whose_tokenizer_outgrows_its_embeddings_fails_before_measuring(
    tmp_path: Path, tiny_tokenizer: object, no_measuring: None
) -> None:
    """A config whose vocabulary is smaller than its tokenizer's: one clear error (exit 4),
    not an IndexError from the embedding in the middle of the baseline pass."""
    from tests.models import tiny_model

    model = tiny_model("llama")
    model.config.vocab_size = 64  # the tokenizer's ids go far beyond 64
    folder = tmp_path / "small-vocab"
    model.config.save_pretrained(str(folder))
    tiny_tokenizer.save_pretrained(str(folder))  # type: ignore[attr-defined]
    config = EvaluationConfig(
        baseline=f"random:{folder}", edit="noop", seq_len=16, n_preview=2, n_final=2,
        device="cpu", relax_token_floor=True,
    )  # fmt: skip
    with pytest.raises(InvalidInputError, match=r"^baseline .* has 64 token embeddings .*"):
        evaluate(config)


def test_restore_is_checked_from_the_backups_hashed_beside_the_measurement(
    tiny_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import editproof.evaluation as evaluation
    import editproof.lm.integrity as integrity

    evaluator = Evaluator(_edit_config(tiny_dir, "noop"))
    rehashed: list[str] = []
    inside: list[bool] = []
    real_digest, real_verify = integrity.weight_digest, integrity.verify_restore

    def counting(model: object, names: list[str] | None = None) -> object:
        if inside:  # the edited digest hashes the edited tensors on its thread: not counted
            rehashed.extend(names or ["<all>"])
        return real_digest(model, names)

    def verify(*args: object) -> None:
        inside.append(True)
        try:
            real_verify(*args)  # type: ignore[arg-type]
        finally:
            inside.clear()

    monkeypatch.setattr(integrity, "weight_digest", counting)
    monkeypatch.setattr(evaluation, "verify_restore", verify)
    report = evaluator.judge_edit("quant_rtn:4:8:all")
    assert report.edit.restore_verified and rehashed == []
    assert {"digest_backups", "restore_verify"} <= set(report.provenance.timings)
    # A layout fault keeps the full rehash: its tensors may be replaced, not rewritten.
    report = evaluator.judge_edit("weight_tying_break")
    assert report.edit.restore_verified and rehashed
    assert "digest_backups" not in report.provenance.timings

"""Suites, model overrides, config fingerprints and the task graph (no model is loaded)."""

from __future__ import annotations

import pytest

from editproof.edits.tuned import TunedEntry, TunedParams, default_tuned
from editproof.errors import InvalidInputError, UsageError
from editproof.suite.config import SuiteConfig, differences
from editproof.suite.plan import check_specs, plan_tasks
from editproof.suite.suites import get_suite, model_dir_name, resolve_models
from editproof.verdict.catalogue import packaged_catalogue, select


def _config(**kw: object) -> SuiteConfig:
    base: dict[str, object] = dict(
        suite="subset",
        models=["org/a", "org/b"],
        model_dirs={"org/a": "org__a", "org/b": "org__b"},
        seq_len=16,
        n_windows=4,
        calibration_runs=2,
        catalogue_digest="c",
        tuned_digest="t",
    )
    base.update(kw)
    return SuiteConfig.model_validate(base)


def test_suites_and_alias() -> None:
    assert get_suite("workshop3").name == "workshop"
    assert get_suite("demo").models == ("demo",)
    assert "Qwen/Qwen1.5-72B" in get_suite("full").models
    with pytest.raises(UsageError, match="unknown suite 'nope'"):
        get_suite("nope")


def test_models_override_order() -> None:
    suite = get_suite("subset")
    assert resolve_models(suite, None, {}) == list(suite.models)
    env = {"MODEL_1": "x/y", "MODEL_2": "", "MODEL_3": "z/w"}
    assert resolve_models(suite, None, env) == ["x/y", "z/w"]
    assert resolve_models(suite, " a/b , c/d ", env) == ["a/b", "c/d"]
    with pytest.raises(UsageError, match="up to 8"):
        resolve_models(suite, ",".join(f"m/{i}" for i in range(9)), {})
    with pytest.raises(UsageError, match="names no model"):
        resolve_models(suite, " , ", {})
    with pytest.raises(UsageError, match="more than once"):
        resolve_models(suite, "a/b,a/b", {})


def test_model_dir_names() -> None:
    assert model_dir_name("mistralai/Mistral-7B-v0.1") == "mistralai__mistral-7b-v0.1"
    assert model_dir_name("org/name@abc") == "org__name__abc"


def test_fingerprint_differences_name_the_field() -> None:
    a, b = _config(), _config(tier="conservative", repeats=3)
    assert differences(a, a) == []
    assert differences(a, b) == ["tier: 'balanced' -> 'conservative'"]  # repeats not pinned


def test_forward_reaches_every_evaluation_and_a_resume_may_switch_it() -> None:
    """Like the executor, the forward is not pinned: both give the same numbers."""
    from pydantic import ValidationError

    from editproof.suite.config import evaluation_config

    a, b = _config(), _config(forward="transformers")
    assert a.forward == "auto" and differences(a, b) == []
    assert a.fingerprint() == b.fingerprint()
    ev = evaluation_config(b, "org/a", tuned_params="t.json", device="cpu")
    assert ev.forward == "transformers"
    with pytest.raises(ValidationError):
        _config(forward="fast")
    old = {k: v for k, v in a.model_dump(mode="json").items() if k != "forward"}
    assert SuiteConfig.model_validate(old).forward == "auto"  # a run dir from before


def test_plan_default_runs_and_dependencies() -> None:
    cat = select(packaged_catalogue(), "subset")
    config = _config()
    tasks = plan_tasks(config, cat, [])
    per_model = 1 + 2 + 1 + sum(s.default_runs for s in cat.scenarios)
    assert len(tasks) == 2 * per_model
    ids = {t.id for t in tasks}
    assert len(ids) == len(tasks)
    evals = [t for t in tasks if t.type == "eval" and t.model == "org/a"]
    assert {t.run for t in evals if t.scenario == "quant_4bit_clean"} == {1, 2, 3}
    assert {t.run for t in evals if t.scenario == "prune_50pct_stress"} == {1, 2}
    assert all(set(t.deps) == {"setup/org__a", "preset/org__a"} for t in evals)
    preset = next(t for t in tasks if t.id == "preset/org__a")
    assert preset.deps == ["setup/org__a", "calibrate/org__a/run_1", "calibrate/org__a/run_2"]
    seeds = [t.params["seed"] for t in tasks if t.type == "calibrate" and t.model == "org/a"]
    assert seeds == [43, 44]


def test_plan_modes_and_exact_selection() -> None:
    cat = select(packaged_catalogue(), "subset", ["nan_injection", "quant_4bit_clean"])
    assert [t.type for t in plan_tasks(_config(mode="calibrate-only"), cat, [])].count("eval") == 0
    errs = plan_tasks(_config(mode="errors-only"), cat, [])
    assert {t.scenario for t in errs if t.type == "eval"} == {"nan_injection"}
    full = plan_tasks(_config(runs_override=1, repeats=2), cat, [])
    assert {t.scenario for t in full if t.type == "eval"} == {"nan_injection", "quant_4bit_clean"}
    repeats = [t for t in full if t.type == "repeat"]
    assert [t.scenario for t in repeats] == ["quant_4bit_clean"] * 2  # first model only
    assert {t.model for t in repeats} == {"org/a"}


def test_clean_specs_resolve_before_any_model_loads() -> None:
    cat = select(packaged_catalogue(), "subset")
    assert check_specs(cat, ["org/a"], default_tuned()) == []
    empty = TunedParams()
    with pytest.raises(InvalidInputError, match=r"scenario 'quant_4bit_clean'.*no tuned params"):
        check_specs(cat, ["org/a"], empty)


def test_skipped_tuned_entry_is_recorded_not_dropped() -> None:
    tuned = default_tuned().model_copy(
        update={
            "models": {"a": {"lowrank_svd": TunedEntry(status="skipped", reason="no passing rank")}}
        }
    )
    cat = select(packaged_catalogue(), "subset")
    skips = check_specs(cat, ["org/a"], tuned)
    # the tuned-params key of a hub model is its repo id
    assert skips == [] or all(s.scenario == "svd_rank32_l31_clean" for s in skips)
    tuned = default_tuned().model_copy(
        update={
            "models": {
                "org/a": {"lowrank_svd": TunedEntry(status="skipped", reason="no passing rank")}
            }
        }
    )
    skips = check_specs(cat, ["org/a"], tuned)
    assert [(s.model, s.scenario) for s in skips] == [("org/a", "svd_rank32_l31_clean")]
    tasks = plan_tasks(_config(models=["org/a"], model_dirs={"org/a": "org__a"}), cat, skips)
    svd = [t for t in tasks if t.scenario == "svd_rank32_l31_clean"]
    assert svd and all(t.status == "skipped" for t in svd)
    assert "no passing rank" in svd[0].params["skip_reason"]

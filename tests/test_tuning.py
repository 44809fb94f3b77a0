"""Bisection in ``editproof tune``, against a fake evaluator with a known breaking point."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from editproof.edits import TunedParams, parse_spec, resolve_clean
from editproof.errors import UsageError
from editproof.policy import load_tier
from editproof.tuning import candidates, merge, tune_edit_type
from tests.report.factory import make_report

PASS = make_report(noise=0.01)
FAIL = make_report(shift=0.5, noise=0.01)


class FakeEvaluator:
    """PASS for candidates up to index ``last_pass`` (mildest first), FAIL beyond."""

    def __init__(self, edit_type: str, last_pass: int) -> None:
        self.specs = [spec for spec in _specs(edit_type)]
        self.last_pass = last_pass
        self.calls: list[str] = []
        self.tier = load_tier("balanced")
        self.plan = SimpleNamespace(seq_len=256)
        self.windows = [[0]] * 128
        self.base_digest = SimpleNamespace(sha256="ab" * 32)
        self.config = SimpleNamespace(seed=42)

    def judge_edit(self, spec: str, **_: Any) -> Any:
        self.calls.append(spec)
        return PASS if self.specs.index(spec) <= self.last_pass else FAIL


def _specs(edit_type: str) -> list[str]:
    from editproof.tuning import default_scope, spec_text

    return [spec_text(edit_type, c, default_scope(edit_type)) for c in candidates(edit_type)]


@pytest.mark.parametrize("edit_type", ["quant_rtn", "fp8_quant", "magnitude_prune", "lowrank_svd"])
@pytest.mark.parametrize("fraction", [0.0, 0.5, 1.0])
def test_bisection_finds_the_boundary(edit_type: str, fraction: float) -> None:
    n = len(candidates(edit_type))
    last = min(n - 1, int(fraction * (n - 1)))
    fake = FakeEvaluator(edit_type, last)
    result = tune_edit_type(fake, edit_type)  # type: ignore[arg-type]
    assert result.entry.status == "selected"
    assert _specs(edit_type)[last] in {t.spec for t in result.trials}
    chosen = next(t for t in result.trials if t.spec == _specs(edit_type)[last])
    assert chosen.status == "PASS"
    # Bisection: about log2(n) + 1 evaluations, never all of them for long grids.
    assert len(fake.calls) <= n.bit_length() + 1
    evidence = result.entry.evidence or {}
    assert evidence["tier"] == "balanced" and len(evidence["trials"]) == len(fake.calls)
    # The chosen params resolve back into exactly that spec.
    tuned = merge(TunedParams(), "m", [result])
    clean = parse_spec(f"{edit_type}:clean:ffn")
    assert (
        resolve_clean(clean, "m", tuned, n_layers=2).text.replace("@layer=1", "@layer=last")
        == _specs(edit_type)[last]
    )


def test_mildest_failing_is_skipped() -> None:
    fake = FakeEvaluator("quant_rtn", -1)
    result = tune_edit_type(fake, "quant_rtn")  # type: ignore[arg-type]
    assert result.entry.status == "skipped" and fake.calls == [_specs("quant_rtn")[0]]
    assert "mildest" in result.entry.reason


def test_unknown_edit_type() -> None:
    with pytest.raises(UsageError, match="quant_rtn"):
        candidates("quant_rnt")


def test_candidates_are_ordered_mildest_first() -> None:
    assert [c["bits"] for c in candidates("quant_rtn")] == [8, 7, 6, 5, 4, 3, 2]
    sparsities = [c["sparsity"] for c in candidates("magnitude_prune")]
    assert sparsities == sorted(sparsities)
    ranks = [c["rank"] for c in candidates("lowrank_svd")]
    assert ranks == sorted(ranks, reverse=True)


def test_merge_keeps_other_models() -> None:
    fake = FakeEvaluator("fp8_quant", 0)
    first = merge(TunedParams(), "a", [tune_edit_type(fake, "fp8_quant")])  # type: ignore[arg-type]
    second = merge(first, "b", [tune_edit_type(FakeEvaluator("fp8_quant", 1), "fp8_quant")])  # type: ignore[arg-type]
    assert set(second.models) == {"a", "b"}
    assert second.models["a"]["fp8_quant"].params["format"] == "e4m3fn"
    assert second.models["b"]["fp8_quant"].params["format"] == "e5m2"


def test_margin_below_the_limit_is_required() -> None:
    ci_upper = PASS.primary_metric.display_ci[1]  # type: ignore[index]
    tier = load_tier("balanced")
    room = tier.ratio_limit + tier.hysteresis - ci_upper
    assert room > 0
    ok = tune_edit_type(FakeEvaluator("fp8_quant", 1), "fp8_quant", margin=room / 2)  # type: ignore[arg-type]
    assert ok.entry.status == "selected"
    tight = tune_edit_type(FakeEvaluator("fp8_quant", 1), "fp8_quant", margin=room * 2)  # type: ignore[arg-type]
    assert tight.entry.status == "skipped"
    assert tight.trials[0].failed_gates == ("margin",)


def test_every_window_sample_must_pass() -> None:
    main, other = FakeEvaluator("magnitude_prune", 10), FakeEvaluator("magnitude_prune", 4)
    other.config = SimpleNamespace(seed=43)
    result = tune_edit_type(main, "magnitude_prune", others=[other])  # type: ignore[arg-type, list-item]
    assert result.entry.params["sparsity"] == candidates("magnitude_prune")[4]["sparsity"]
    evidence = result.entry.evidence or {}
    assert evidence["seeds"] == [42, 43]
    failed = [t for t in evidence["trials"] if t["status"] == "FAIL"]
    assert failed and all(t["seeds"][-1]["seed"] == 43 for t in failed)
    passed = [t for t in evidence["trials"] if t["status"] == "PASS"]
    assert passed and all(len(t["seeds"]) == 2 for t in passed)

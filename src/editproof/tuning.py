"""``editproof tune``: the most aggressive parameters of an edit type that still pass.

Candidates run from mildest to most aggressive (more bits -> fewer, lower -> higher
sparsity, higher -> lower rank). Damage grows along that order, so the pass/fail boundary
is found by bisection: the mildest candidate is tried first (if it fails the type is
``skipped``), then each step halves the unknown range. Every trial is kept as evidence
in the tuned-params entry, so a reader sees why a value was chosen, and where it broke.

A candidate passes only if it passes on *every* window sample (the evaluator's own seed and
each ``others`` evaluator, the same weights with windows drawn by other seeds) with its CI
upper bound at least ``margin`` below the tier's limit. A pick at the gate's very edge would
pass on one sample of windows and fail on the next; the margin keeps a clean edit clean.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any, get_args

from editproof.edits import TunedEntry, TunedParams, parse_spec
from editproof.edits.spec import ParamValue
from editproof.edits.tuned import EditType
from editproof.errors import UsageError
from editproof.evaluation import Evaluator
from editproof.report.model import EvaluationReport

EDIT_TYPES: tuple[str, ...] = get_args(EditType)
_PRUNE_GRID = tuple(round(0.05 * k, 2) for k in range(1, 19))  # 0.05 .. 0.90
_RANKS = (512, 256, 128, 64, 32, 16, 8, 4, 2, 1)


def candidates(edit_type: str, *, group_size: int = 32) -> list[dict[str, ParamValue]]:
    """Parameter sets for ``edit_type``, mildest first."""
    if edit_type == "quant_rtn":
        return [{"bits": b, "group_size": group_size} for b in range(8, 1, -1)]
    if edit_type == "fp8_quant":
        return [{"format": "e4m3fn"}, {"format": "e5m2"}]  # e5m2 keeps 2 mantissa bits, not 3
    if edit_type == "magnitude_prune":
        return [{"sparsity": s} for s in _PRUNE_GRID]
    if edit_type == "lowrank_svd":
        return [{"rank": r} for r in _RANKS]
    raise UsageError(f"cannot tune '{edit_type}': choose from {', '.join(EDIT_TYPES)}")


def default_scope(edit_type: str) -> str:
    # The reference's clean low-rank edit touches one layer; a whole-model rank cut is
    # its catastrophic stress case.
    return "ffn@layer=last" if edit_type == "lowrank_svd" else "ffn"


def spec_text(edit_type: str, params: dict[str, ParamValue], scope: str) -> str:
    values = {
        "quant_rtn": lambda p: f"{p['bits']}:{p['group_size']}",
        "fp8_quant": lambda p: str(p["format"]),
        "magnitude_prune": lambda p: str(p["sparsity"]),
        "lowrank_svd": lambda p: str(p["rank"]),
    }[edit_type](params)
    return f"{edit_type}:{values}:{scope}"


@dataclass(frozen=True)
class Trial:
    """One candidate: the worst of its window samples (by CI upper), and every sample."""

    spec: str
    status: str
    ratio: float | None
    ci_upper: float | None
    failed_gates: tuple[str, ...] = ()
    seeds: tuple[dict[str, Any], ...] = ()

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "spec": self.spec,
            "status": self.status,
            "ratio": self.ratio,
            "ci_upper": self.ci_upper,
            "failed_gates": list(self.failed_gates),
        }
        if self.seeds:
            data["seeds"] = list(self.seeds)
        return data

    def outcome(self) -> str:
        text = f"ratio {_fmt(self.ratio)}, CI upper {_fmt(self.ci_upper)}"
        return f"{text}; failed {', '.join(self.failed_gates)}" if self.failed_gates else text


@dataclass(frozen=True)
class TuneResult:
    edit_type: str
    entry: TunedEntry
    trials: list[Trial]


def tune_edit_type(
    evaluator: Evaluator,
    edit_type: str,
    *,
    scope: str | None = None,
    group_size: int = 32,
    progress: Callable[[str], None] | None = None,
    margin: float = 0.0,
    others: Sequence[Evaluator] = (),
) -> TuneResult:
    """Bisect ``edit_type``'s candidates on ``evaluator``'s baseline (and ``others``')."""
    say = progress or (lambda _m: None)
    if not (margin >= 0 and math.isfinite(margin)):
        raise UsageError(f"--margin must be a non-negative number, got {margin}")
    scope = scope or default_scope(edit_type)
    cands = candidates(edit_type, group_size=group_size)
    for cand in cands:  # every candidate must at least parse before any evaluation runs
        parse_spec(spec_text(edit_type, cand, scope))
    tier = evaluator.tier
    limit = tier.ratio_limit + tier.hysteresis
    samples = [evaluator, *others]
    trials: dict[int, Trial] = {}

    def passes(i: int) -> bool:
        spec = spec_text(edit_type, cands[i], scope)
        per_seed: list[Trial] = []
        for ev in samples:  # stop at the first sample that fails
            t = _trial(spec, ev.judge_edit(spec))
            if t.status == "PASS" and (t.ci_upper is None or t.ci_upper > limit - margin):
                t = replace(t, status="FAIL", failed_gates=(*t.failed_gates, "margin"))
            per_seed.append(t)
            say(f"{spec} (seed {ev.config.seed}): {t.status} (ratio {_fmt(t.ratio)})")
            if t.status != "PASS":
                break
        seeds = tuple(
            {"seed": ev.config.seed, **t.to_json()}
            for ev, t in zip(samples, per_seed, strict=False)
        )
        worst = max(per_seed, key=lambda t: (t.status != "PASS", t.ci_upper or math.inf))
        trials[i] = replace(worst, seeds=seeds if others else ())
        return worst.status == "PASS"

    evidence: dict[str, Any] = {
        "tier": tier.name,
        "policy_digest": tier.digest(),
        "seq_len": evaluator.plan.seq_len,
        "windows": len(evaluator.windows),
        "baseline_weight_sha256": evaluator.base_digest.sha256,
        "margin": margin,
        "seeds": [ev.config.seed for ev in samples],
        "limit": limit,
    }
    if not passes(0):
        evidence["trials"] = [t.to_json() for t in trials.values()]
        entry = TunedEntry(
            status="skipped",
            params={},
            reason=(
                f"even the mildest candidate {trials[0].spec} failed tier {tier.name} "
                f"with margin {margin:g} on {len(samples)} window sample(s) "
                f"({trials[0].outcome()})"
            ),
            evidence=evidence,
        )
        return TuneResult(edit_type, entry, list(trials.values()))
    good, bad = 0, len(cands)
    while bad - good > 1:
        mid = (good + bad) // 2
        if passes(mid):
            good = mid
        else:
            bad = mid
    chosen = trials[good]
    reason = (
        f"most aggressive candidate passing tier {tier.name} on {len(samples)} window "
        f"sample(s): worst ratio {_fmt(chosen.ratio)}, CI upper {_fmt(chosen.ci_upper)} <= "
        f"{limit:.4g} - margin {margin:g}"
    )
    if bad < len(cands):
        nxt = trials[bad]
        reason += f"; next step {nxt.spec} failed ({nxt.outcome()})"
    else:
        reason += "; every candidate passed"
    evidence["trials"] = [trials[i].to_json() for i in sorted(trials)]
    params: dict[str, int | float | str] = {**cands[good], "scope": scope}
    entry = TunedEntry(status="selected", params=params, reason=reason, evidence=evidence)
    return TuneResult(edit_type, entry, [trials[i] for i in sorted(trials)])


def merge(tuned: TunedParams, model_id: str, results: list[TuneResult]) -> TunedParams:
    """``tuned`` with ``models[model_id]`` entries replaced by the new results."""
    models = {k: dict(v) for k, v in tuned.models.items()}
    per_model = models.setdefault(model_id, {})
    for result in results:
        per_model[result.edit_type] = result.entry  # type: ignore[index]
    return TunedParams(defaults=dict(tuned.defaults), models=models, probes=dict(tuned.probes))


def _trial(spec: str, report: EvaluationReport) -> Trial:
    pm = report.primary_metric
    return Trial(
        spec=spec,
        status=report.status,
        ratio=pm.ratio,
        ci_upper=pm.display_ci[1] if pm.display_ci else None,
        failed_gates=tuple(g.name for g in report.gates if g.enforced and not g.passed)
        + (("guards",) if report.guards.status == "fail" else ()),
    )


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"

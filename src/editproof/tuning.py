"""``editproof tune``: the most aggressive parameters of an edit type that still pass.

Candidates run from mildest to most aggressive (more bits -> fewer, lower -> higher
sparsity, higher -> lower rank). Damage grows along that order, so the pass/fail boundary
is found by bisection: the mildest candidate is tried first (if it fails the type is
``skipped``), then each step halves the unknown range. Every trial is kept as evidence
in the tuned-params entry, so a reader sees why a value was chosen, and where it broke.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
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
    spec: str
    status: str
    ratio: float | None
    ci_upper: float | None
    failed_gates: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "spec": self.spec,
            "status": self.status,
            "ratio": self.ratio,
            "ci_upper": self.ci_upper,
            "failed_gates": list(self.failed_gates),
        }

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
) -> TuneResult:
    """Bisect ``edit_type``'s candidates on ``evaluator``'s baseline."""
    say = progress or (lambda _m: None)
    scope = scope or default_scope(edit_type)
    cands = candidates(edit_type, group_size=group_size)
    for cand in cands:  # every candidate must at least parse before any evaluation runs
        parse_spec(spec_text(edit_type, cand, scope))
    trials: dict[int, Trial] = {}

    def passes(i: int) -> bool:
        spec = spec_text(edit_type, cands[i], scope)
        report = evaluator.judge_edit(spec)
        trials[i] = _trial(spec, report)
        say(f"{spec}: {report.status} (ratio {_fmt(trials[i].ratio)})")
        return report.status == "PASS"

    tier = evaluator.tier
    evidence: dict[str, Any] = {
        "tier": tier.name,
        "policy_digest": tier.digest(),
        "seq_len": evaluator.plan.seq_len,
        "windows": len(evaluator.windows),
        "baseline_weight_sha256": evaluator.base_digest.sha256,
    }
    if not passes(0):
        evidence["trials"] = [t.to_json() for t in trials.values()]
        entry = TunedEntry(
            status="skipped",
            params={},
            reason=(
                f"even the mildest candidate {trials[0].spec} failed tier {tier.name} "
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
    limit = tier.ratio_limit + tier.hysteresis
    reason = (
        f"most aggressive candidate passing tier {tier.name}: ratio {_fmt(chosen.ratio)}, "
        f"CI upper {_fmt(chosen.ci_upper)} <= {limit:.4g}"
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

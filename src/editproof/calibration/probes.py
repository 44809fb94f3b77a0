"""Probe strength per model: the strength at which a probe is subtle and its own guard signals.

A probe (``rmt_norm_noise``, ``spectral_moderate_scale``, ``ve_mlp_scale_skew``) is meant to
trip exactly one guard while the model stays healthy. The reference's strengths were set for
7B models; on a small model the same strength can be catastrophic. For each probe the search
walks one strength parameter over a grid, mildest first, judging each trial on one
:class:`~editproof.evaluation.Evaluator`:

- *signal*: the probe's own guard reacts (rmt fails / its probe is unstable; spectral has
  caps >= 1 without failing; variance proposes >= 1 scale);
- *subtle*: the primary metric is acceptable (ratio and CI upper bound within the gate),
  invariants pass, and every other enforced guard is stable (does not fail).

Both are taken as monotone along the grid (stronger: more signal, less subtle). Bisection
finds the mildest signalling strength ``s`` and the strongest subtle one ``e``; the entry is
the grid point midway between them, so it keeps a margin on both sides. If the mildest
signalling strength is not subtle, no strength is, and the entry is ``skipped`` with the
trials as evidence (a spec then keeps the reference defaults).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, get_args

from pydantic import JsonValue

from editproof.edits import parse_spec
from editproof.edits.tuned import ProbeEntry, ProbeType, TunedParams
from editproof.errors import UsageError

if TYPE_CHECKING:
    from editproof.evaluation import Evaluator
    from editproof.report.model import EvaluationReport

PROBES: tuple[str, ...] = get_args(ProbeType)
# The strength parameter searched per probe and its grid, mildest first.
GRIDS: dict[str, tuple[str, tuple[float, ...]]] = {
    "rmt_norm_noise": ("blend", (0.01, 0.02, 0.03, 0.05, 0.07, 0.1, 0.2, 0.35, 0.5, 0.98)),
    "spectral_moderate_scale": ("factor", (1.05, 1.1, 1.2, 1.3, 1.4, 1.6, 2.0)),
    "ve_mlp_scale_skew": ("factor", (0.97, 0.95, 0.93, 0.9, 0.87, 0.83, 0.8)),
}
# The guard each probe targets (the one that must signal).
OWN_GUARD = {
    "rmt_norm_noise": "rmt",
    "spectral_moderate_scale": "spectral",
    "ve_mlp_scale_skew": "variance",
}
CRITERIA = (
    "signal: rmt_norm_noise -> rmt fails (rmt_probe unstable); spectral_moderate_scale -> "
    "spectral caps >= 1 without fail; ve_mlp_scale_skew -> variance proposed_scales >= 1. "
    "subtle: primary metric acceptable (ratio and CI upper within the gate), invariants pass, "
    "every other enforced guard does not fail. Chosen: the grid point midway between the "
    "mildest signalling and the strongest subtle strength."
)


@dataclass(frozen=True)
class ProbeTrial:
    spec: str
    value: float
    status: str
    ratio: float | None
    ci_upper: float | None
    signal: bool
    subtle: bool
    why_not_subtle: tuple[str, ...]
    # The own guard's statistic against its threshold, e.g. max_module_delta vs module_epsilon.
    statistic: dict[str, float | None] = field(default_factory=dict)

    def to_json(self) -> dict[str, JsonValue]:
        return {
            "spec": self.spec,
            "value": self.value,
            "status": self.status,
            "ratio": self.ratio,
            "ci_upper": self.ci_upper,
            "signal": self.signal,
            "subtle": self.subtle,
            "why_not_subtle": list(self.why_not_subtle),
            "statistic": dict(self.statistic),
        }


@dataclass(frozen=True)
class ProbeCalibration:
    probe: str
    entry: ProbeEntry
    trials: list[ProbeTrial]


def calibrate_probe(
    evaluator: Evaluator,
    probe: str,
    *,
    model_id: str,
    tuned: TunedParams,
    grid: tuple[str, Sequence[float]] | None = None,
    progress: Callable[[str], None] | None = None,
) -> ProbeCalibration:
    """Search ``probe``'s strength on ``evaluator``'s baseline (see the module docstring)."""
    if probe not in GRIDS:
        raise UsageError(f"cannot calibrate '{probe}': choose from {', '.join(PROBES)}")
    say = progress or (lambda _m: None)
    key, values = grid or GRIDS[probe]
    if not values:
        raise UsageError(f"the strength grid of {probe} is empty")
    for value in values:  # every trial spec must parse before any evaluation runs
        parse_spec(_spec(probe, key, value))
    # Trials run at the reference defaults plus the searched value: an existing entry for
    # this model and probe must not leak into them.
    base_tuned = _without(tuned, model_id, probe)
    trials: dict[int, ProbeTrial] = {}

    def trial(i: int) -> ProbeTrial:
        if i not in trials:
            spec = _spec(probe, key, values[i])
            report = evaluator.judge_edit(spec, tuned=base_tuned)
            trials[i] = _trial(probe, spec, values[i], report)
            t = trials[i]
            say(
                f"{spec}: ratio {_fmt(t.ratio)}, signal {'yes' if t.signal else 'no'}, "
                f"subtle {'yes' if t.subtle else 'no (' + ', '.join(t.why_not_subtle) + ')'}"
            )
        return trials[i]

    evidence: dict[str, JsonValue] = _context(evaluator) | {
        "parameter": key,
        "grid": list(values),
        "criteria": CRITERIA,
    }
    last = len(values) - 1
    if not trial(last).signal:
        return _skipped(
            probe, trials, evidence, f"even the strongest {key}={values[last]:g} does not signal"
        )
    # Mildest signalling strength: bisection over (quiet, signalling].
    quiet, loud = -1, last
    while loud - quiet > 1:
        mid = (quiet + loud) // 2
        quiet, loud = (quiet, mid) if trial(mid).signal else (mid, loud)
    first = trial(loud)
    if not first.subtle:
        return _skipped(
            probe,
            trials,
            evidence,
            f"the mildest signalling strength {key}={values[loud]:g} is not subtle "
            f"({', '.join(first.why_not_subtle)}); no strength is both",
        )
    # Strongest subtle strength at or above it.
    good, bad = loud, len(values)
    if trial(last).subtle:
        good = last
    else:
        bad = last
    while bad - good > 1:
        mid = (good + bad) // 2
        good, bad = (mid, bad) if trial(mid).subtle else (good, mid)
    chosen = (loud + good) // 2
    if not (trial(chosen).signal and trial(chosen).subtle):
        chosen = loud  # the grid was not monotone there; the mildest signalling one holds
    pick = trials[chosen]
    evidence["trials"] = [trials[i].to_json() for i in sorted(trials)]
    evidence["feasible"] = [values[loud], values[good]]
    reason = (
        f"{key}={values[chosen]:g}, midway between the mildest signalling ({values[loud]:g}) "
        f"and the strongest subtle ({values[good]:g}) strength: ratio {_fmt(pick.ratio)}, "
        f"CI upper {_fmt(pick.ci_upper)}; {_describe(probe, pick.statistic)}"
    )
    entry = ProbeEntry(
        status="selected", params={key: values[chosen]}, reason=reason, evidence=evidence
    )
    return ProbeCalibration(probe, entry, [trials[i] for i in sorted(trials)])


def merge_probes(
    tuned: TunedParams, model_id: str, results: Sequence[ProbeCalibration]
) -> TunedParams:
    """``tuned`` with ``probes[model_id]`` entries replaced by the new results."""
    probes = {k: dict(v) for k, v in tuned.probes.items()}
    per_model = probes.setdefault(model_id, {})
    for result in results:
        per_model[result.probe] = result.entry  # type: ignore[index]
    return tuned.model_copy(update={"probes": probes})


# --- one trial ------------------------------------------------------------------------------


def _spec(probe: str, key: str, value: float) -> str:
    return f"{probe}:{key}={value:g}"


def _trial(probe: str, spec: str, value: float, report: EvaluationReport) -> ProbeTrial:
    flags = report.validation
    results = {g.name: g for g in report.guards.results}
    own = OWN_GUARD[probe]
    status = {name: g.status for name, g in results.items()}
    measured = {name: g.measured for name, g in results.items()}
    if probe == "rmt_norm_noise":
        probe_stable = report.guards.probes.get("rmt_probe", {}).get("stable", True)
        signal = status.get("rmt") == "fail" or probe_stable is False
    elif probe == "spectral_moderate_scale":
        caps = measured.get("spectral", {}).get("caps", 0.0)
        signal = caps >= 1 and status.get("spectral") != "fail"
    else:
        signal = measured.get("variance", {}).get("proposed_scales", 0.0) >= 1
    why: list[str] = []
    if not flags.get("primary_metric_acceptable", False):
        why.append("primary metric not acceptable")
    if not flags.get("invariants_pass", True):
        why.append("invariants fail")
    for name, g in results.items():
        if g.enforced and name not in (own, "invariants") and g.status == "fail":
            why.append(f"{name} fails")
    if own == "spectral" and status.get("spectral") == "fail":
        why.append("spectral fails")  # its signal must be a warning, not a failure
    pm = report.primary_metric
    return ProbeTrial(
        spec=spec,
        value=value,
        status=report.status,
        ratio=pm.ratio,
        ci_upper=pm.display_ci[1] if pm.display_ci else None,
        signal=signal,
        subtle=not why,
        why_not_subtle=tuple(why),
        statistic=_statistic(own, results),
    )


def _statistic(own: str, results: dict[str, Any]) -> dict[str, float | None]:
    g = results.get(own)
    if g is None:
        return {}
    m, t = g.measured, g.thresholds
    if own == "rmt":
        return {
            "max_module_delta": m.get("max_module_delta"),
            "module_epsilon": t.get("module_epsilon"),
            "max_delta": m.get("max_delta"),
        }
    if own == "spectral":
        top = (g.details.get("top_log_ratio") or [{}])[0]
        family = top.get("family")
        bound = t.get(f"max_log_ratio_{family}") if family else None
        return {
            "caps": m.get("caps"),
            "max_log_ratio": m.get("max_log_ratio"),
            "max_log_ratio_bound": bound,
            "max_sigma_ratio": m.get("max_sigma_ratio"),
        }
    return {
        "proposed_scales": m.get("proposed_scales"),
        "max_scale_deviation": m.get("max_scale_deviation"),
        "deadband": t.get("deadband"),
        "would_enable": m.get("would_enable"),
    }


def _describe(probe: str, stat: dict[str, float | None]) -> str:
    def f(key: str) -> str:
        value = stat.get(key)
        return "n/a" if value is None else f"{value:.4g}"

    if probe == "rmt_norm_noise":
        return f"rmt max module delta {f('max_module_delta')} > {f('module_epsilon')}"
    if probe == "spectral_moderate_scale":
        return (
            f"spectral caps {f('caps')}, max |log sigma ratio| {f('max_log_ratio')} > "
            f"{f('max_log_ratio_bound')}, without fail"
        )
    return (
        f"variance proposes {f('proposed_scales')} scale(s), max |alpha - 1| "
        f"{f('max_scale_deviation')} >= deadband {f('deadband')}"
    )


# --- helpers --------------------------------------------------------------------------------


def _context(evaluator: Evaluator) -> dict[str, JsonValue]:
    tier = evaluator.tier
    return {
        "tier": tier.name,
        "policy_digest": tier.digest(),
        "seq_len": evaluator.plan.seq_len,
        "windows": len(evaluator.windows),
        "seed": evaluator.config.seed,
        "batch_size": evaluator.config.batch_size,
        "baseline_weight_sha256": evaluator.base_digest.sha256,
    }


def _skipped(
    probe: str, trials: dict[int, ProbeTrial], evidence: dict[str, JsonValue], reason: str
) -> ProbeCalibration:
    evidence["trials"] = [trials[i].to_json() for i in sorted(trials)]
    entry = ProbeEntry(status="skipped", params={}, reason=reason, evidence=evidence)
    return ProbeCalibration(probe, entry, [trials[i] for i in sorted(trials)])


def _without(tuned: TunedParams, model_id: str, probe: str) -> TunedParams:
    probes = {k: dict(v) for k, v in tuned.probes.items()}
    probes.get(model_id, {}).pop(probe, None)  # type: ignore[call-overload]
    return tuned.model_copy(update={"probes": probes})


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"

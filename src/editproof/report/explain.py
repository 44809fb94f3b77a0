"""Plain-text explanation of a report's decision: each gate, measured vs threshold."""

from __future__ import annotations

from editproof.report.model import EvaluationReport, Gate


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.6g}"


def _threshold(gate: Gate) -> str:
    if isinstance(gate.threshold, tuple):
        return f"[{gate.threshold[0]:.6g}, {gate.threshold[1]:.6g}]"
    return f"{gate.threshold:.6g}"


MAX_VIOLATIONS = 5
# Flags that decide the status; informational ones (variance_signal, tail...) are not "unmet".
DECIDING_FLAGS = (
    "primary_metric_acceptable",
    "preview_final_drift_acceptable",
    "token_floor_acceptable",
    "invariants_pass",
    "spectral_stable",
    "rmt_stable",
)
MAX_PAIRS = 8


def _pairs(values: dict[str, float]) -> str:
    items = list(values.items())
    text = ", ".join(f"{k}={_fmt(v)}" for k, v in items[:MAX_PAIRS])
    return text + (f", ... (+{len(items) - MAX_PAIRS})" if len(items) > MAX_PAIRS else "")


def gate_verdict(gate: Gate) -> str:
    if gate.relaxed:
        return "RELAXED"
    if not gate.enforced:
        return "info" if gate.passed else "WARN"
    return "PASS" if gate.passed else "FAIL"


def explain_lines(report: EvaluationReport) -> list[str]:
    pm = report.primary_metric
    lines = [
        f"{report.status}  run {report.run_id}  tier {report.policy.tier.name} "
        f"(policy {report.policy.digest})  edit {report.edit.label}",
        f"baseline {report.baseline.model.label}  ->  subject {report.subject.model.label}",
    ]
    if pm.invalid:
        lines.append(f"primary metric INVALID: {pm.invalid_reason}")
    else:
        ci = pm.display_ci or (float("nan"), float("nan"))
        alpha = pm.bootstrap.alpha if pm.bootstrap else report.policy.tier.bootstrap.alpha
        level = f"{100 * (1 - alpha):g}"
        lines.append(
            f"ppl ratio {_fmt(pm.ratio)}  {level}% CI [{ci[0]:.6g}, {ci[1]:.6g}]  "
            f"(baseline {_fmt(pm.baseline_ppl)}, subject {_fmt(pm.subject_ppl)})"
        )
    for reason in pm.unstable_reasons:
        lines.append(f"note: unstable CI: {reason}")
    lines.append("gates:")
    for gate in report.gates:
        line = (
            f"  {gate_verdict(gate):8} {gate.name:16} measured {_fmt(gate.measured):>12}  "
            f"{gate.comparison} {_threshold(gate)}"
        )
        if gate.note:
            line += f"  ({gate.note})"
        lines.append(line)
    lines.append(f"guards: {report.guards.status}")
    for result in report.guards.results:
        kind = "" if result.enforced else " (informational)"
        lines.append(f"  {result.status.upper():8} {result.name}{kind}")
        if result.measured:
            lines.append(f"           measured   {_pairs(result.measured)}")
        if result.thresholds:
            lines.append(f"           thresholds {_pairs(result.thresholds)}")
        for violation in result.violations[:MAX_VIOLATIONS]:
            lines.append(f"           ! {violation}")
        if len(result.violations) > MAX_VIOLATIONS:
            lines.append(f"           ! ... {len(result.violations) - MAX_VIOLATIONS} more")
    flags = [k for k, v in report.validation.items() if not v and k in DECIDING_FLAGS]
    if flags:
        lines.append(f"flags not met: {', '.join(flags)}")
    if report.policy.token_floor_relaxed and report.policy.relax_reason:
        lines.append(f"note: token floor relaxed: {report.policy.relax_reason}")
    return lines

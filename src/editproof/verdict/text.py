"""``final_verdict.txt``: the verdict for a person to read, in fixed-width plain text."""

from __future__ import annotations

from editproof.verdict.model import FinalVerdict
from editproof.verdict.views import MatrixRow

RULE = "-" * 78
_SHORT = {"invariants": "inv", "spectral": "spec", "rmt": "rmt", "variance": "var"}


def _num(value: float | None) -> str:
    """Four decimals, or three significant digits once that would overflow a column."""
    if value is None:
        return "-"
    return f"{value:.4f}" if abs(value) < 1000 else f"{value:.3g}"


def _yes(value: bool | None) -> str:
    return "-" if value is None else ("yes" if value else "NO")


def _counts(v: FinalVerdict) -> list[str]:
    c = v.counts
    return [
        "Counts",
        f"  models {c.models_total}, scenarios {c.scenarios_total}, runs planned "
        f"{c.runs_planned}, reports {c.records_total}, missing {c.runs_missing}, "
        f"task failures {c.task_failures}, skipped {c.skipped_scenarios}",
        f"  clean: {c.clean_pass} of {c.clean_total} passed",
        f"  stress: {c.stress_fail} of {c.stress_total} failed; catastrophic required "
        f"{c.catastrophic_required_present} of {c.catastrophic_required_total} present, "
        f"{c.catastrophic_required_fail} failed",
        f"  error injection: {c.error_injection_detected} of {c.error_injection_total} "
        "hit their detectors",
        f"  informational stress: {c.informational_stress_signaled} of "
        f"{c.informational_stress_total} signaled, {c.informational_stress_fail} failed",
        f"  primary-guard-required: {c.primary_guard_required_scenarios} scenarios "
        f"({c.primary_guard_required_scenarios_hit} hit on every model), "
        f"{c.primary_guard_required_hits} of {c.primary_guard_required_records} runs hit",
    ]


def _requirements(v: FinalVerdict) -> list[str]:
    lines = ["Requirements"]
    for r in v.requirements:
        mark = "PASS" if r.passed else "FAIL"
        if not r.applicable:
            mark = "n/a "
        lines.append(f"  {mark}  {r.requirement:<42} checked {r.checked:>4}, failed {r.failed}")
    return lines


def _summaries(v: FinalVerdict) -> list[str]:
    lines = [
        "Category summary",
        f"  {'category':<16}{'scen':>5}{'runs':>6}{'pass':>6}{'fail':>6}{'pm':>5}"
        f"{'inv_f':>7}{'inv_w':>7}{'det':>5}{'flag':>6}",
    ]
    for name, s in v.category_summary.categories.items():
        lines.append(
            f"  {name:<16}{s.scenarios:>5}{s.reports:>6}{s.passed:>6}{s.failed:>6}"
            f"{s.primary_metric_fail:>5}{s.invariants_fail:>7}{s.invariants_warn:>7}"
            f"{s.detector_hits:>5}{s.any_flag:>6}"
        )
    g = v.guard_signal_summary
    lines += ["", f"Guard signals ({g.records_total} runs)", f"  {'guard':<16}flagged  unique"]
    lines += [f"  {k:<16}{s.flagged:>7}{s.unique:>8}" for k, s in g.signals.items()]
    i = v.guard_intervention_summary
    lines += ["", f"Interventions ({i.records_total} runs)", f"  {'signal':<16}flagged  unique"]
    lines += [f"  {k:<16}{s.flagged:>7}{s.unique:>8}" for k, s in i.signals.items()]
    return lines


def _absent(v: FinalVerdict) -> list[str]:
    lines = ["Missing runs"]
    for model, entries in v.missing.items():
        for e in entries:
            note = "" if e.counted else " (informational: listed only)"
            runs = ", ".join(map(str, e.runs))
            lines.append(f"  {model}: {e.scenario}: run(s) {runs}{note}")
    if len(lines) == 1:
        lines.append("  none")
    lines += ["", "Skipped scenarios"]
    lines += [f"  {s.model}: {s.scenario}: {s.reason}" for s in v.skipped] or ["  none"]
    lines += ["", "Task failures (no report)"]
    lines += [
        f"  {f.model}: {f.scenario}: run {f.run}: {f.kind}: {f.error.strip()[:160]}"
        for f in v.failures
    ] or ["  none"]
    return lines


def _failed(v: FinalVerdict) -> list[str]:
    lines = ["Failed requirements"]
    if not v.failed_requirements:
        return [*lines, "  none"]
    for f in v.failed_requirements:
        lines.append(f"  [{f.requirement}] {f.message}")
        for run in f.failures:
            where = run.path or "(no report)"
            lines.append(f"      run {run.run}  {where}  {'; '.join(run.reasons)}")
    return lines


def _cell(status: str | None, flagged: bool | None) -> str:
    if status is None:
        return "-"
    return f"{status}*" if flagged and status == "pass" else status


def _matrix_row(row: MatrixRow, multi: bool) -> str:
    status = row.status or row.outcome.upper().replace("_", " ")
    guards = {g.name: g.status for g in row.guards}
    cells = "".join(f"{_cell(guards.get(name), row.guard_flags.get(name)):>8}" for name in _SHORT)
    model = f"{row.model[:20]:<21}" if multi else ""
    return (
        f"  {model}{row.scenario[:28]:<29}{row.run:>3}  {status:<13}{_num(row.ratio):>8}"
        f"{_num(row.ci_upper):>9}{cells}  {_yes(row.requirement_met):>4}"
    )


def _matrix(v: FinalVerdict) -> list[str]:
    m = v.detection_matrix
    multi = len(m.models) > 1
    head = "".join(f"{s:>8}" for s in _SHORT.values())
    model = f"{'model':<21}" if multi else ""
    lines = [
        "Detection matrix (every planned run; req: the run met its scenario's requirement;",
        "  pass*: the guard flagged without failing: spectral caps, RMT probe, VE signal)",
        f"  {model}{'scenario':<29}{'run':>3}  {'status':<13}{'ratio':>8}{'ci_upper':>9}"
        f"{head}  {'req':>4}",
    ]
    return lines + [_matrix_row(row, multi) for row in m.rows]


def final_verdict_text(v: FinalVerdict) -> str:
    selection = v.catalogue.selection
    picked = ""
    if selection is not None and selection.scenario_ids is not None:
        picked = f", selected by --scenario-ids ({len(selection.scenario_ids)})"
    lines = [
        f"EDITPROOF SUITE — FINAL VERDICT: {v.verdict}",
        RULE,
        f"suite {v.suite}; models: {', '.join(v.models)}",
        f"catalogue: {v.catalogue.scenarios} scenarios, digest {v.catalogue.digest}{picked}",
        f"inputs digest {v.inputs_digest}; every run of every scenario counts",
    ]
    if v.generated_at:
        lines.append(f"generated at {v.generated_at}")
    if v.relaxations:
        lines += ["", "Relaxations (this run is weaker evidence than a full suite)"]
        lines += [f"  - {r}" for r in v.relaxations]
    sections = [
        _counts(v),
        _requirements(v),
        _failed(v),
        _summaries(v),
        _absent(v),
        _matrix(v),
    ]
    for section in sections:
        lines += ["", *section]
    return "\n".join(lines) + "\n"

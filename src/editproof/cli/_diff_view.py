"""The terminal view of ``editproof diff``: both packs, their models, requirement changes and a
table of runs (rich; plain text when not a terminal)."""

from __future__ import annotations

import sys

from rich.console import Console
from rich.table import Table

from editproof.pack.diff import PackDiff, RunChange


def _b(x: bool | None) -> str:
    return "-" if x is None else ("yes" if x else "no")


def _f(x: float | None) -> str:
    if x is None:
        return "-"
    return f"{x:.4f}" if abs(x) < 1e4 else f"{x:.3e}"


def _ci(ci: tuple[float, float] | None) -> str:
    return "-" if ci is None else f"[{_f(ci[0])}, {_f(ci[1])}]"


def _flip(a: object, b: object) -> str:
    sa, sb = ("-" if a is None else str(a)), ("-" if b is None else str(b))
    return sa if sa == sb else f"{sa} -> {sb}"


def _short(digest: str | None) -> str:
    return "-" if digest is None else digest[:12]


def _row(r: RunChange) -> list[str]:
    guards = [f"+{g}" for g in r.guards_gained] + [f"-{g}" for g in r.guards_lost]
    delta = (
        "-" if r.ratio_delta is None else ("+" if r.ratio_delta >= 0 else "") + _f(r.ratio_delta)
    )
    return [
        ("REGRESSION" if r.regression else r.change),
        f"{r.model_dir}/{r.scenario}/run_{r.run}",
        _flip(r.status_a, r.status_b),
        _flip(_b(r.requirement_met_a), _b(r.requirement_met_b)),
        _f(r.ratio_a),
        _f(r.ratio_b),
        delta,
        _ci(r.ci_a),
        _ci(r.ci_b),
        _b(r.ci_overlap),
        " ".join(guards) or "-",
    ]


def print_diff(d: PackDiff, console: Console | None = None) -> None:
    # Piped output is not cut to 80 columns: the table is meant to be read whole.
    out = console or Console(highlight=False, width=None if sys.stdout.isatty() else 200)
    for label, side in (("A", d.a), ("B", d.b)):
        out.print(
            f"pack {label}: {side.pack} ({side.kind}) verdict {side.verdict}, suite {side.suite}, "
            f"editproof {side.tool_version} ({side.tool_source_revision or 'source unknown'}), "
            f"manifest sha256 {side.manifest_sha256[:16]}",
            markup=False,
        )
    out.print(f"verdict: {d.verdict_change}; tool changed: {_b(d.tool_changed)}", markup=False)
    for m in d.models:
        out.print(
            f"model {m.model}: weights {_short(m.weight_sha256_a)} -> "
            f"{_short(m.weight_sha256_b)} ({m.change})",
            markup=False,
        )
    for r in d.requirements:
        if r.change != "same":
            out.print(
                f"requirement {r.requirement}: {r.change} ({_b(r.passed_a)} -> {_b(r.passed_b)})",
                markup=False,
            )
    table = Table(title="runs (model dir / scenario / run)", show_lines=False)
    for col in ("change", "run", "status", "req met", "ratio A", "ratio B", "delta", "CI A",
                "CI B", "overlap", "guards"):  # fmt: skip
        table.add_column(col, overflow="fold")
    for run in d.runs:
        table.add_row(*_row(run), style="bold red" if run.regression else None)
    out.print(table)
    c = d.counts
    out.print(
        f"{c.matched} matched run(s), {c.changed} changed ({c.status_flips} status flip(s), "
        f"{c.ci_disjoint} with disjoint CIs), {c.added} added, {c.missing} missing; "
        f"requirements: {c.requirements_newly_failed} newly failed, "
        f"{c.requirements_fixed} fixed",
        markup=False,
    )
    if d.regressions:
        out.print(f"REGRESSION ({len(d.regressions)}):", markup=False, style="bold red")
        for line in d.regressions:
            out.print(f"  {line}", markup=False)
    else:
        out.print("no regression", markup=False)

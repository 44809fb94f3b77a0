"""The proof pack's ``index.html``: one self-contained page over a staged pack directory.

``render_index(root)`` reads ``results/final_verdict.json`` (and the separate summary files
next to it, when present) and every ``certs/**/evaluation.report.json``, and returns one HTML
page: the verdict first (with each failed requirement naming model, scenario and report),
relaxations, every requirement, every planned run linked to its certificate, a scenario x
guard grid of signals (inline SVG) and the per-category summary.

Each verdict record is bound to the certificate whose bytes have the record's
``report_digest``; among several with the same bytes (or when none has them: a report that
changed after the verdict) the one whose directories end in ``<scenario>/run_<n>``, like the
record's run-dir path, and then the one under the record's model directory, wins. Nothing
here depends on how the builder names the model and edit directories.

The page carries no script, font, stylesheet or image from anywhere: inline CSS and SVG only.
The template autoescapes every string from the run; the SVG built here escapes its own.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path, PurePosixPath
from urllib.parse import quote

from jinja2 import Environment, StrictUndefined, Template
from markupsafe import Markup, escape
from pydantic import BaseModel, ValidationError

from editproof import __version__
from editproof.errors import (
    InvalidInputError,
    MalformedReportError,
    NotFoundError,
    validation_summary,
)
from editproof.report.format import DASH, FILTERS, fixed, interval
from editproof.report.io import HTML_NAME, REPORT_NAME, parse_report
from editproof.report.model import EvaluationReport
from editproof.verdict.matrix import record_row
from editproof.verdict.model import FinalVerdict, Record
from editproof.verdict.views import MatrixRow
from editproof.verdict.write import (
    CATEGORY_SUMMARY,
    DETECTION_MATRIX,
    FINAL_JSON,
    GUARD_INTERVENTION_SUMMARY,
    GUARD_SIGNAL_SUMMARY,
    SCENARIO_SIGNAL_SUMMARY,
)

TEMPLATE_NAME = "index.html.j2"
RESULTS = "results"
CERTS = "certs"
METADATA = "metadata"
# Top-level files every built pack has, linked even though the index is rendered first.
PACK_FILES = ("README.md", "manifest.json", "checksums.sha256")
DETECTORS_COLUMN = "detectors"


# --- certificates and their binding to records -------------------------------------------


@dataclass(frozen=True)
class Cert:
    """One ``evaluation.report.json`` under ``certs/``; ``path`` is relative to the pack."""

    path: PurePosixPath
    digest: str
    report: EvaluationReport | None
    problem: str | None = None  # why the report could not be read
    html: bool = False  # an evaluation.html sits next to it

    @property
    def dir(self) -> PurePosixPath:
        return self.path.parent


@dataclass(frozen=True)
class Match:
    cert: Cert
    digest_ok: bool  # the certificate's bytes are the ones the verdict judged


def scan_certs(root: Path) -> list[Cert]:
    """Every report file under ``root/certs``, sorted by path; unreadable ones keep a reason."""
    certs_dir = root / CERTS
    if not certs_dir.is_dir():
        return []
    out = []
    for path in sorted(certs_dir.rglob(REPORT_NAME)):
        if not path.is_file():
            continue
        rel = PurePosixPath(path.relative_to(root).as_posix())
        data = path.read_bytes()
        report, problem = None, None
        try:
            report = parse_report(data, str(rel))
        except MalformedReportError as exc:
            problem = exc.message
        out.append(
            Cert(
                path=rel,
                digest=hashlib.sha256(data).hexdigest(),
                report=report,
                problem=problem,
                html=(path.parent / HTML_NAME).is_file(),
            )
        )
    return out


def _tail(path: PurePosixPath) -> tuple[str, str] | None:
    """``(<scenario dir>, <run dir>)`` of a report path, e.g. ``("quant_4bit", "run_1")``."""
    parts = path.parts
    return (parts[-3], parts[-2]) if len(parts) >= 3 else None


def match_certs(records: Sequence[Record], certs: Sequence[Cert]) -> list[Match | None]:
    """The certificate of each record (None: not in the pack); each certificate serves one.

    A pair qualifies when the digest matches or the path ends in the record's
    ``<scenario>/run_<n>``; pairs are taken best first (digest, then path tail, then model
    directory), so an exact binding is never displaced by a guess.
    """
    by_digest: dict[str, list[int]] = defaultdict(list)
    by_tail: dict[tuple[str, str], list[int]] = defaultdict(list)
    for j, cert in enumerate(certs):
        by_digest[cert.digest].append(j)
        tail = _tail(cert.path)
        if tail is not None:
            by_tail[tail].append(j)
    pairs: list[tuple[int, int, int]] = []
    for i, rec in enumerate(records):
        rec_path = PurePosixPath(rec.path)
        tail = _tail(rec_path)
        model_dirs = {rec_path.parts[0], rec.model}
        near = by_tail.get(tail, []) if tail is not None else []
        for j in set(by_digest.get(rec.report_digest, [])) | set(near):
            cert = certs[j]
            score = (
                4 * (cert.digest == rec.report_digest)
                + 2 * (_tail(cert.path) == tail)
                + (bool(model_dirs & set(cert.path.parts[1:-3])))
            )
            pairs.append((-score, i, j))
    out: list[Match | None] = [None] * len(records)
    used: set[int] = set()
    for _, i, j in sorted(pairs):
        if out[i] is None and j not in used:
            used.add(j)
            out[i] = Match(certs[j], certs[j].digest == records[i].report_digest)
    return out


# --- reading the pack ---------------------------------------------------------------------


def _load_verdict(root: Path) -> FinalVerdict:
    path = root / RESULTS / FINAL_JSON
    if not path.is_file():
        raise NotFoundError(f"{RESULTS}/{FINAL_JSON} not found in pack {root}")
    try:
        return FinalVerdict.model_validate_json(path.read_bytes())
    except ValidationError as exc:
        raise InvalidInputError(f"{RESULTS}/{FINAL_JSON}: {validation_summary(exc)}") from None


def _summary_notes(root: Path, v: FinalVerdict) -> list[str]:
    """Where a separate summary file disagrees with the copy embedded in the verdict."""
    embedded: dict[str, BaseModel] = {
        CATEGORY_SUMMARY: v.category_summary,
        GUARD_SIGNAL_SUMMARY: v.guard_signal_summary,
        GUARD_INTERVENTION_SUMMARY: v.guard_intervention_summary,
        SCENARIO_SIGNAL_SUMMARY: v.scenario_signal_summary,
        DETECTION_MATRIX: v.detection_matrix,
    }
    notes = []
    for name, model in embedded.items():
        path = root / RESULTS / name
        if not path.is_file():
            continue
        try:
            same = type(model).model_validate_json(path.read_bytes()) == model
        except (ValidationError, ValueError):
            notes.append(f"{RESULTS}/{name} is not a valid {model.__class__.__name__}")
            continue
        if not same:
            notes.append(f"{RESULTS}/{name} differs from the copy in {RESULTS}/{FINAL_JSON}")
    return notes


def _href(path: PurePosixPath | str) -> str:
    return quote(str(path), safe="/")


def _listing(root: Path, folder: str) -> list[tuple[str, str]]:
    base = root / folder
    if not base.is_dir():
        return []
    files = sorted(p for p in base.rglob("*") if p.is_file())
    return [(rel, _href(rel)) for rel in (p.relative_to(root).as_posix() for p in files)]


# --- rows for the template ----------------------------------------------------------------


@dataclass(frozen=True)
class Link:
    text: str
    href: str | None  # None: nothing in the pack to link to


@dataclass(frozen=True)
class RunRow:
    model: str
    scenario: str
    category: str
    strictness: str
    run: int
    status: str
    css: str
    ratio: str
    ci: str
    guards_hit: list[str]
    requirement: str
    requirement_css: str
    html: str | None
    json: str | None
    notes: list[str]


@dataclass(frozen=True)
class FailedRunRow:
    where: str
    reasons: list[str]
    html: str | None
    json: str | None
    report: str  # the report path to name: in the pack, else in the run dir


@dataclass(frozen=True)
class FailedRow:
    requirement: str
    message: str
    scope: str
    runs: list[FailedRunRow]


@dataclass(frozen=True)
class RequirementRow:
    name: str
    status: str
    css: str
    checked: int
    failed: int
    meaning: str


Key = tuple[str, str, int]


def _links(match: Match | None) -> tuple[str | None, str | None]:
    if match is None:
        return None, None
    html = _href(match.cert.dir / HTML_NAME) if match.cert.html else None
    return html, _href(match.cert.path)


def _ci(match: Match | None, ci_upper: float | None) -> str:
    report = match.cert.report if match else None
    if report is not None and report.primary_metric.display_ci is not None:
        return interval(report.primary_metric.display_ci, 4)
    return DASH if ci_upper is None else f"\u2264 {fixed(ci_upper, 4)}"


def _requirement(met: bool | None) -> tuple[str, str]:
    if met is None:
        return DASH, "muted"
    return ("met", "pass") if met else ("NOT met", "fail")


def _cert_notes(match: Match | None, outcome: str) -> list[str]:
    if outcome != "report":
        return []
    if match is None:
        return ["report not in the pack"]
    notes = []
    if not match.digest_ok:
        notes.append("report bytes differ from the ones the verdict judged")
    if match.cert.problem:
        notes.append(f"unreadable report: {match.cert.problem}")
    return notes


def _run_row(row: MatrixRow, match: Match | None) -> RunRow:
    if row.outcome == "report":
        status = row.status or DASH
        css = "pass" if status == "PASS" else "fail"
    else:
        status, css = row.outcome.replace("_", " "), "warn"
    req, req_css = _requirement(row.requirement_met)
    html, js = _links(match)
    hit = [g for g, flagged in row.guard_flags.items() if flagged]
    if row.detectors_hit:
        hit.append(DETECTORS_COLUMN)
    notes = _cert_notes(match, row.outcome)
    if row.note:
        notes.insert(0, row.note)
    return RunRow(
        model=row.model,
        scenario=row.scenario,
        category=row.category,
        strictness=row.strictness.replace("_", " "),
        run=row.run,
        status=status,
        css=css,
        ratio=fixed(row.ratio, 4),
        ci=_ci(match, row.ci_upper),
        guards_hit=hit,
        requirement=req,
        requirement_css=req_css,
        html=html,
        json=js,
        notes=notes,
    )


def _record_row(rec: Record, match: Match | None) -> RunRow:
    """A record the detection matrix does not list (a matrix and a verdict out of step)."""
    return _run_row(record_row(rec, note="not in the detection matrix"), match)


def _failed_rows(v: FinalVerdict, matches: dict[Key, Match | None]) -> list[FailedRow]:
    out = []
    for f in v.failed_requirements:
        scope = ", ".join(
            f"{label} {value}"
            for label, value in (("model", f.model), ("scenario", f.scenario), ("guard", f.guard))
            if value and value not in f.message
        )
        runs = []
        for run in f.failures:
            key = (run.model, run.scenario, run.run)
            match = matches.get(key)
            html, js = _links(match)
            if match is not None:
                report = str(match.cert.dir / HTML_NAME if match.cert.html else match.cert.path)
            elif run.path:
                report = f"{run.path} (run dir; not in the pack)"
            else:
                report = "no report"
            runs.append(
                FailedRunRow(
                    where=f"{run.model} \u00b7 {run.scenario} \u00b7 run {run.run}",
                    reasons=list(run.reasons),
                    html=html,
                    json=js,
                    report=report,
                )
            )
        out.append(FailedRow(f.requirement, f.message, scope, runs))
    return out


def _requirement_rows(v: FinalVerdict) -> list[RequirementRow]:
    rows = []
    for r in v.requirements:
        if not r.applicable:
            status, css = "n/a", "muted"
        else:
            status, css = ("PASS", "pass") if r.passed else ("FAIL", "fail")
        rows.append(RequirementRow(r.requirement, status, css, r.checked, r.failed, r.meaning))
    return rows


# --- the scenario x guard grid ------------------------------------------------------------


@dataclass(frozen=True)
class GridCell:
    flagged: int
    runs: int
    expected: bool  # the scenario's primary guard
    detail: str  # per-model counts, for the hover title


def _grid(v: FinalVerdict) -> tuple[list[str], list[tuple[str, str, list[GridCell]]]]:
    columns = [*v.core_guard_order, DETECTORS_COLUMN]
    by_scenario: dict[str, list[Record]] = defaultdict(list)
    for rec in v.records:
        by_scenario[rec.scenario].append(rec)
    order = [s.id for s in v.scenario_signal_summary.scenarios]
    order += [s for s in by_scenario if s not in order]
    category = {s.id: s.category for s in v.scenario_signal_summary.scenarios}
    primary = {s.id: s.primary_guard for s in v.scenario_signal_summary.scenarios}
    rows = []
    for scenario in order:
        recs = by_scenario.get(scenario, [])
        cells = []
        for col in columns:

            def flagged(r: Record, col: str = col) -> bool:
                return r.detectors_hit if col == DETECTORS_COLUMN else r.guard_flags.get(col, False)

            per_model: dict[str, list[bool]] = defaultdict(list)
            for r in recs:
                per_model[r.model].append(flagged(r))
            detail = "; ".join(f"{m}: {sum(f)}/{len(f)}" for m, f in per_model.items())
            cells.append(
                GridCell(
                    flagged=sum(flagged(r) for r in recs),
                    runs=len(recs),
                    expected=primary.get(scenario) == col,
                    detail=detail,
                )
            )
        cat: str = category.get(scenario) or (recs[0].category if recs else "")
        rows.append((scenario, cat, cells))
    return columns, rows


def _shade(fraction: float) -> str:
    """White (nothing flagged) to the page's orange (every run flagged)."""
    lo, hi = (255, 255, 255), (188, 76, 0)
    rgb = (round(a + (b - a) * fraction) for a, b in zip(lo, hi, strict=True))
    return "#{:02x}{:02x}{:02x}".format(*rgb)


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "\u2026"


def guard_grid_svg(v: FinalVerdict) -> Markup | None:
    """Scenario rows x guard columns; a cell is shaded by the fraction of runs flagged."""
    columns, rows = _grid(v)
    if not rows:
        return None
    label_w, cell_w, cell_h, head_h = 300.0, 96.0, 22.0, 30.0
    width = label_w + cell_w * len(columns) + 8
    height = head_h + cell_h * len(rows) + 8
    parts = [
        f'<svg class="chart grid" viewBox="0 0 {width:.0f} {height:.0f}" '
        f'width="{width:.0f}" role="img" aria-label="Guard signals per scenario">',
        "<title>Guard signals per scenario: runs flagged by each guard</title>",
    ]
    for k, col in enumerate(columns):
        x = label_w + (k + 0.5) * cell_w
        parts.append(
            f'<text x="{x:.1f}" y="{head_h - 10:.1f}" text-anchor="middle" '
            f'class="head">{escape(col.replace("_", " "))}</text>'
        )
    for r, (scenario, category, cells) in enumerate(rows):
        y = head_h + r * cell_h
        parts.append(
            f'<text x="{label_w - 8:.1f}" y="{y + cell_h / 2 + 4:.1f}" text-anchor="end">'
            f"<title>{escape(scenario)} ({escape(category)})</title>"
            f"{escape(_clip(scenario, 34))} "
            f'<tspan class="cat">{escape(category)}</tspan></text>'
        )
        for k, cell in enumerate(cells):
            x = label_w + k * cell_w
            frac = cell.flagged / cell.runs if cell.runs else 0.0
            fill = _shade(frac) if cell.runs else "#eaeef2"
            css = "cell expected" if cell.expected else "cell"
            what = "expected (primary guard)" if cell.expected else ""
            title = (
                f"{scenario} \u00b7 {columns[k]}: {cell.flagged} of {cell.runs} runs flagged"
                + (f" ({cell.detail})" if cell.detail else "")
                + (f"; {what}" if what else "")
            )
            parts.append(
                f'<rect class="{css}" x="{x + 1:.1f}" y="{y + 1:.1f}" width="{cell_w - 2:.1f}" '
                f'height="{cell_h - 2:.1f}" fill="{fill}"><title>{escape(title)}</title></rect>'
            )
            text = f"{cell.flagged}/{cell.runs}" if cell.runs else DASH
            ink = "ink light" if frac > 0.55 else "ink"
            parts.append(
                f'<text x="{x + cell_w / 2:.1f}" y="{y + cell_h / 2 + 4:.1f}" '
                f'text-anchor="middle" class="{ink}">{escape(text)}</text>'
            )
    parts.append("</svg>")
    return Markup("\n".join(parts))


# --- the page -----------------------------------------------------------------------------


def render_index(root: Path) -> str:
    """The pack's ``index.html`` for the staged pack at ``root`` (UTF-8 text)."""
    v = _load_verdict(root)
    certs = scan_certs(root)
    found = match_certs(v.records, certs)
    records = {(r.model, r.scenario, r.run): r for r in v.records}
    matches = {(r.model, r.scenario, r.run): m for r, m in zip(v.records, found, strict=True)}
    runs = [
        _run_row(row, matches.get(key))
        for row in v.detection_matrix.rows
        for key in [(row.model, row.scenario, row.run)]
    ]
    listed = {(row.model, row.scenario, row.run) for row in v.detection_matrix.rows}
    runs += [_record_row(r, matches[k]) for k, r in records.items() if k not in listed]
    bound = {m.cert.path for m in found if m is not None}
    extra = [
        Link(str(c.path), _href(c.dir / HTML_NAME) if c.html else _href(c.path))
        for c in certs
        if c.path not in bound
    ]
    return _template().render(
        v=v,
        failed=_failed_rows(v, matches),
        requirements=_requirement_rows(v),
        runs=runs,
        grid=guard_grid_svg(v),
        extra_certs=extra,
        summary_notes=_summary_notes(root, v),
        results_files=_listing(root, RESULTS),
        metadata_files=_listing(root, METADATA),
        pack_files=[(name, _href(name)) for name in PACK_FILES],
        n_certs=len(certs),
        show_model=len(v.models) > 1,
        n_bound=len(bound),
        renderer_version=__version__,
    )


@cache
def _template() -> Template:
    env = Environment(
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters.update(FILTERS)
    source = resources.files("editproof.pack").joinpath("templates").joinpath(TEMPLATE_NAME)
    return env.from_string(source.read_text(encoding="utf-8"))

"""Render an :class:`EvaluationReport` as one self-contained HTML page.

The page carries everything inline (CSS, SVG charts) so it can be mailed, archived next to
the JSON or printed without a network. Formatting and charts live here, layout lives in the
Jinja2 template ``templates/evaluation.html.j2``. The template autoescapes: report strings
(model specs, paths, commands) are user-controlled, and only the SVG built below, from
numbers and fixed labels, is marked safe.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cache
from importlib import resources

from jinja2 import Environment, StrictUndefined, Template

from editproof import __version__
from editproof.report.charts import delta_bars_svg, final_pairs, histogram_svg, scatter_svg
from editproof.report.format import (
    DASH,
    FILTERS,
    count,
    fixed,
    interval,
    measure,
    params,
    seconds,
    short_sha,
    size_bytes,
    yes_no,
)
from editproof.report.model import Arm, EvaluationReport, Gate, GuardResult

TEMPLATE_NAME = "evaluation.html.j2"

_SYMBOLS = {"<=": "\u2264", ">=": "\u2265"}


def render_html(report: EvaluationReport) -> str:
    """The report as one HTML document (UTF-8 text; the caller writes it)."""
    pm = report.primary_metric
    pairs = final_pairs(report)
    alpha = pm.bootstrap.alpha if pm.bootstrap else report.policy.tier.bootstrap.alpha
    return _template().render(
        r=report,
        pm=pm,
        ci_label=f"{100 * (1 - alpha):g}% CI",
        gates=[_gate_row(g) for g in report.gates],
        guards=[_guard_row(g) for g in report.guards.results],
        models=_model_rows(report.baseline, report.subject),
        same_weights=report.baseline.model.weight_sha256 == report.subject.model.weight_sha256,
        drift_rows=_drift_rows(report),
        dataset_rows=_dataset_rows(report),
        provenance_rows=_provenance_rows(report),
        pairs=pairs,
        bars=delta_bars_svg(pairs) if pairs.n else None,
        histogram=histogram_svg(pairs) if pairs.n else None,
        scatter=scatter_svg(pairs) if pairs.n else None,
        renderer_version=__version__,
    )


def prepare() -> None:
    """Compile the page's template now (once per process), so that a later
    :func:`render_html` does not: a command may do this on a thread while it measures."""
    _template()


@cache
def _template() -> Template:
    env = Environment(
        autoescape=True,
        undefined=StrictUndefined,  # a typo in the template fails loudly, not as blank text
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters.update(FILTERS)
    source = resources.files("editproof.report").joinpath("templates").joinpath(TEMPLATE_NAME)
    return env.from_string(source.read_text(encoding="utf-8"))


# --- rows for the template ---------------------------------------------------------------


@dataclass(frozen=True)
class GateRow:
    name: str
    status: str
    css: str
    measured: str
    threshold: str
    note: str


@dataclass(frozen=True)
class GuardRow:
    name: str
    status: str
    measured: list[str]
    thresholds: list[str]
    violations: list[str]
    seconds: str


@dataclass(frozen=True)
class Row:
    """One labelled line of a key/value or two-arm table; ``title`` is a hover/full value."""

    label: str
    value: str
    title: str = ""
    other: str = ""
    other_title: str = ""
    mono: bool = False


def _gate_row(g: Gate) -> GateRow:
    if not g.enforced:
        status, css = "not enforced", "muted" if g.passed else "warn"
    elif g.relaxed:
        status, css = "relaxed", "warn"
    else:
        status, css = ("PASS", "pass") if g.passed else ("FAIL", "fail")
    if isinstance(g.threshold, tuple):
        threshold = f"within [{measure(g.threshold[0])}, {measure(g.threshold[1])}]"
    else:
        threshold = f"{_SYMBOLS.get(g.comparison, g.comparison)} {measure(g.threshold)}"
    note = g.note
    if not g.enforced and not g.passed:
        note = f"{note} (outside threshold; reported only)" if note else "outside threshold"
    return GateRow(g.name, status, css, measure(g.measured), threshold, note)


def _pairs_text(values: Mapping[str, float]) -> list[str]:
    return [f"{k} = {measure(v)}" for k, v in values.items()]


def _guard_row(g: GuardResult) -> GuardRow:
    return GuardRow(
        name=g.name,
        status=g.status,
        measured=_pairs_text(g.measured),
        thresholds=_pairs_text(g.thresholds),
        violations=list(g.violations),
        seconds=seconds(g.seconds),
    )


def _model_rows(base: Arm, subj: Arm) -> list[Row]:
    def row(
        label: str,
        get: Callable[[Arm], str],
        *,
        full: Callable[[Arm], str] | None = None,
        mono: bool = False,
    ) -> Row:
        return Row(
            label=label,
            value=get(base),
            other=get(subj),
            title=full(base) if full else "",
            other_title=full(subj) if full else "",
            mono=mono,
        )

    def peak(a: Arm) -> str:
        kind = a.telemetry.peak_memory_kind.replace("_", " ")
        return f"{size_bytes(a.telemetry.peak_memory_bytes)} ({kind})"

    return [
        row("spec", lambda a: a.model.spec, mono=True),
        row("kind / label", lambda a: f"{a.model.kind} / {a.model.label}"),
        row("revision", lambda a: a.model.resolved_revision or DASH, mono=True),
        row("architecture", lambda a: f"{a.model.architecture} ({a.model.model_type})"),
        row(
            "parameters", lambda a: params(a.model.n_params), full=lambda a: count(a.model.n_params)
        ),
        row("layers", lambda a: str(a.model.n_layers)),
        row("vocab size", lambda a: count(a.model.vocab_size)),
        row("dtype", lambda a: a.model.dtype),
        row("device", lambda a: a.model.device),
        row(
            "weight sha256",
            lambda a: short_sha(a.model.weight_sha256),
            full=lambda a: a.model.weight_sha256,
            mono=True,
        ),
        row("weight tensors", lambda a: count(a.model.weight_tensors)),
        row(
            "weight bytes",
            lambda a: size_bytes(a.model.weight_bytes),
            full=lambda a: count(a.model.weight_bytes),
        ),
        row("load time", lambda a: seconds(a.model.load_seconds)),
        row("measure time", lambda a: seconds(a.telemetry.seconds)),
        row("throughput", lambda a: f"{count(a.telemetry.tokens_per_s)} tokens/s"),
        row("peak memory", peak, full=lambda a: count(a.telemetry.peak_memory_bytes)),
        row("batch size", lambda a: str(a.telemetry.batch_size)),
        row("OOM retries", lambda a: str(a.telemetry.oom_retries)),
        row("fast head", lambda a: yes_no(a.telemetry.fast_head)),
        row(
            "ppl preview / final",
            lambda a: f"{fixed(a.summary.ppl_preview, 3)} / {fixed(a.summary.ppl_final, 3)}",
        ),
        row("non-finite windows", lambda a: str(a.summary.non_finite_windows)),
    ]


def _drift_rows(report: EvaluationReport) -> list[Row]:
    d = report.drift
    b, s = report.baseline.summary, report.subject.summary
    return [
        Row("subject drift (final / preview ppl)", fixed(d.subject, 4)),
        Row("baseline drift (final / preview ppl)", fixed(d.baseline, 4)),
        Row("paired drift (subject / baseline)", fixed(d.paired, 4)),
        Row("allowed band", interval(d.band, 3)),
        Row(
            "subject ppl preview \u2192 final",
            f"{fixed(s.ppl_preview, 3)} \u2192 {fixed(s.ppl_final, 3)}",
        ),
        Row(
            "baseline ppl preview \u2192 final",
            f"{fixed(b.ppl_preview, 3)} \u2192 {fixed(b.ppl_final, 3)}",
        ),
    ]


def _dataset_rows(report: EvaluationReport) -> list[Row]:
    ds = report.dataset
    rows = [Row("provider", ds.provider)]
    rows += [Row(f"source: {k}", v, mono=True) for k, v in ds.source.items()]
    rows += [
        Row("corpus sha256", short_sha(ds.corpus_sha256), title=ds.corpus_sha256, mono=True),
        Row("characters", count(ds.n_chars)),
        Row(
            "tokenizer sha256", short_sha(ds.tokenizer_sha256), title=ds.tokenizer_sha256, mono=True
        ),
        Row("separator id", DASH if ds.separator_id is None else str(ds.separator_id)),
        Row("sequence length", count(ds.seq_len)),
        Row("windows preview / final", f"{ds.n_preview} / {ds.n_final}"),
        Row("candidate windows (duplicates)", f"{count(ds.candidates)} ({ds.duplicates})"),
        Row("tokens available", count(ds.tokens_available)),
        Row("plan digest", short_sha(ds.plan_digest), title=ds.plan_digest, mono=True),
        Row("window seed", str(ds.seed)),
    ]
    rows += [
        Row(f"difficulty: {k.replace('_', ' ')}", fixed(v, 4)) for k, v in ds.difficulty.items()
    ]
    return rows


def _provenance_rows(report: EvaluationReport) -> list[Row]:
    pv, pol = report.provenance, report.policy
    rows = [
        Row("tier", pol.tier.name),
        Row("policy digest", pol.digest, mono=True),
        Row(
            "token floor relaxed",
            yes_no(pol.token_floor_relaxed)
            + (f" \u2014 {pol.relax_reason}" if pol.relax_reason else ""),
        ),
        Row("device", f"{pv.device} ({pv.device_name})"),
        Row("dtype / batch size", f"{pv.dtype} / {pv.batch_size}"),
        Row("deterministic algorithms", yes_no(pv.deterministic)),
    ]
    rows += [Row(f"seed: {k}", str(v)) for k, v in pv.seeds.items()]
    rows += [Row(f"version: {k}", v, mono=True) for k, v in pv.versions.items()]
    rows += [Row(f"time: {k.replace('_', ' ')}", seconds(v)) for k, v in pv.timings.items()]
    if pv.command:
        rows.append(Row("command", " ".join(pv.command), mono=True))
    return rows

"""Render an :class:`EvaluationReport` as one self-contained HTML page.

The page carries everything inline (CSS, SVG charts) so it can be mailed, archived next to
the JSON or printed without a network. Formatting and charts live here, layout lives in the
Jinja2 template ``templates/evaluation.html.j2``. The template autoescapes: report strings
(model specs, paths, commands) are user-controlled, and only the SVG built below, from
numbers and fixed labels, is marked safe.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cache
from importlib import resources

import numpy as np
from jinja2 import Environment, StrictUndefined, Template
from markupsafe import Markup, escape

from editproof import __version__
from editproof.report import derive
from editproof.report.model import Arm, EvaluationReport, Gate, GuardResult

TEMPLATE_NAME = "evaluation.html.j2"
DASH = "\u2014"  # shown for missing values, so a gap never reads as zero
SHA_SHOWN = 12

_SYMBOLS = {"<=": "\u2264", ">=": "\u2265"}


def render_html(report: EvaluationReport) -> str:
    """The report as one HTML document (UTF-8 text; the caller writes it)."""
    pm = report.primary_metric
    pairs = _final_pairs(report)
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
        histogram=_histogram_svg(pairs) if pairs.n else None,
        scatter=_scatter_svg(pairs) if pairs.n else None,
        renderer_version=__version__,
    )


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


# --- number formatting -------------------------------------------------------------------


def fixed(x: float | None, digits: int = 4) -> str:
    if x is None or not math.isfinite(x):
        return DASH
    text = f"{x:.{digits}f}"
    # "-0.0000" reads as a regression that is not there.
    return text[1:] if text.startswith("-") and float(text) == 0 else text


def signed(x: float | None, digits: int = 4) -> str:
    text = fixed(x, digits)
    return text if text == DASH or text.startswith("-") else "+" + text


def interval(pair: tuple[float, float] | None, digits: int = 4) -> str:
    if pair is None:
        return DASH
    return f"[{fixed(pair[0], digits)}, {fixed(pair[1], digits)}]"


def count(n: float | None) -> str:
    return DASH if n is None or not math.isfinite(n) else f"{n:,.0f}"


def short_sha(value: str | None, shown: int = SHA_SHOWN) -> str:
    if not value:
        return DASH
    return value if len(value) <= shown else value[:shown] + "\u2026"


def size_bytes(n: float | None) -> str:
    if n is None or not math.isfinite(n):
        return DASH
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(size) < 1024:
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.2f} TiB"


def params(n: int) -> str:
    """Parameter count with two or three significant digits, never scientific notation."""
    for scale, suffix in ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "k")):
        if n >= scale:
            value = n / scale
            return f"{value:.{2 if value < 10 else 1 if value < 100 else 0}f}{suffix}"
    return str(n)


def seconds(x: float | None) -> str:
    if x is None or not math.isfinite(x):
        return DASH
    if x < 0.01:
        return "<0.01 s"
    if x < 59.995:
        return f"{x:.2f} s"
    minutes, rest = divmod(round(x), 60)  # round first so 119.6 s never reads "1 min 60 s"
    return f"{minutes} min {rest} s"


def yes_no(flag: bool | None) -> str:
    return DASH if flag is None else ("yes" if flag else "no")


def _measure(x: float | None) -> str:
    """Counts (token floors) read best with separators, ratios with four decimals."""
    if x is not None and math.isfinite(x) and x.is_integer() and abs(x) >= 1000:
        return count(x)
    return fixed(x, 4)


FILTERS: dict[str, Callable[..., str]] = {
    "fixed": fixed,
    "signed": signed,
    "interval": interval,
    "count": count,
    "sha": short_sha,
    "size": size_bytes,
    "params": params,
    "seconds": seconds,
    "yesno": yes_no,
    "measure": _measure,
}


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
        threshold = f"within [{_measure(g.threshold[0])}, {_measure(g.threshold[1])}]"
    else:
        threshold = f"{_SYMBOLS.get(g.comparison, g.comparison)} {_measure(g.threshold)}"
    note = g.note
    if not g.enforced and not g.passed:
        note = f"{note} (outside threshold; reported only)" if note else "outside threshold"
    return GateRow(g.name, status, css, _measure(g.measured), threshold, note)


def _pairs_text(values: Mapping[str, float]) -> list[str]:
    return [f"{k} = {_measure(v)}" for k, v in values.items()]


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


# --- chart data ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Pairs:
    """Final windows where both arms have a finite loss, in stored order."""

    baseline: list[float]
    subject: list[float]
    weights: list[float]
    total: int
    skipped: int
    problem: str | None  # why the arms cannot be paired (then nothing is plotted)

    @property
    def n(self) -> int:
        return len(self.baseline)

    @property
    def deltas(self) -> list[float]:
        return [s - b for s, b in zip(self.subject, self.baseline, strict=True)]

    @property
    def weighted_mean(self) -> float:
        w = np.asarray(self.weights, dtype=np.float64)
        d = np.asarray(self.deltas, dtype=np.float64)
        total = float(w.sum())
        return float(np.dot(w, d) / total) if total > 0 else float(d.mean())


def _final_pairs(report: EvaluationReport) -> Pairs:
    base, subj = report.baseline.final, report.subject.final
    total = len(subj.mean_nll)
    problem = derive.pairing_problem(base, subj)
    if problem is not None:
        # Different windows (or tokens) in the two arms: per-window comparison is meaningless.
        return Pairs([], [], [], total, total, problem)
    bs, ss, ws = [], [], []
    for b, s, w in zip(base.mean_nll, subj.mean_nll, subj.token_counts, strict=True):
        if b is not None and s is not None and math.isfinite(b) and math.isfinite(s):
            bs.append(b)
            ss.append(s)
            ws.append(float(w))
    return Pairs(bs, ss, ws, total, total - len(bs), problem)


# --- inline SVG ----------------------------------------------------------------------------


def _nice_ticks(lo: float, hi: float, target: int = 5) -> tuple[list[float], int]:
    """Round tick values covering [lo, hi] (steps of 1, 2, 2.5, 5 x 10^k) and their decimals."""
    span = hi - lo
    if not span > 0:
        return [lo], 2
    raw = span / target
    mag = 10.0 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1.0, 2.0, 2.5, 5.0, 10.0) if m * mag >= raw * (1 - 1e-9))
    first = math.ceil(lo / step - 1e-9)
    last = math.floor(hi / step + 1e-9)
    decimals = max(0, -math.floor(math.log10(step) + 1e-9))
    if not math.isclose(round(step / mag) * mag, step):  # 2.5 x 10^k needs one more digit
        decimals += 1
    return [i * step for i in range(first, last + 1)], decimals


def _f(x: float) -> str:
    return f"{x:.2f}"


def _text(x: float, y: float, label: str, *, anchor: str = "middle", css: str = "") -> str:
    cls = f' class="{css}"' if css else ""
    return f'<text x="{_f(x)}" y="{_f(y)}" text-anchor="{anchor}"{cls}>{escape(label)}</text>'


def _padded(lo: float, hi: float, frac: float = 0.06) -> tuple[float, float]:
    span = hi - lo
    # A zero span (one distinct value) still needs a visible, centred range.
    pad = span * frac if span > 1e-12 * max(1.0, abs(lo), abs(hi)) else max(abs(lo) * 0.05, 0.01)
    return lo - pad, hi + pad


def _histogram_svg(pairs: Pairs) -> Markup:
    deltas = np.asarray(pairs.deltas, dtype=np.float64)
    mean = pairs.weighted_mean
    lo, hi = float(deltas.min()), float(deltas.max())
    dom_lo, dom_hi = _padded(min(lo, 0.0, mean), max(hi, 0.0, mean))
    width, height = 560.0, 240.0
    ml, mr, mt, mb = 44.0, 28.0, 26.0, 40.0
    pw, ph = width - ml - mr, height - mt - mb

    if hi - lo > 1e-12 * max(1.0, abs(lo), abs(hi)):
        n_bins = int(min(50, max(5, math.ceil(2 * len(deltas) ** (1 / 3)))))
        counts, edges = np.histogram(deltas, bins=n_bins, range=(lo, hi))
    else:
        # Every window moved by the same amount (a noop moves none): one bar, not 0-width bins.
        half = (dom_hi - dom_lo) / 60
        counts, edges = np.array([len(deltas)]), np.array([lo - half, lo + half])

    def sx(v: float) -> float:
        return ml + (v - dom_lo) / (dom_hi - dom_lo) * pw

    y_ticks, _ = _nice_ticks(0.0, float(counts.max()), 4)
    y_ticks = [t for t in y_ticks if float(t).is_integer()] or [0.0]
    y_max = max(float(counts.max()), y_ticks[-1])

    def sy(c: float) -> float:
        return mt + ph - c / y_max * ph

    parts = [
        f'<svg class="chart" viewBox="0 0 {width:.0f} {height:.0f}" role="img" '
        f'aria-label="Histogram of per-window change in log-loss">',
        "<title>Per-window \u0394 log-loss, subject \u2212 baseline (final windows)</title>",
    ]
    for t in y_ticks:
        parts.append(
            f'<line class="grid" x1="{_f(ml)}" x2="{_f(ml + pw)}" '
            f'y1="{_f(sy(t))}" y2="{_f(sy(t))}" />'
        )
        parts.append(_text(ml - 6, sy(t) + 4, f"{t:.0f}", anchor="end"))
    for c, a, b in zip(counts.tolist(), edges[:-1].tolist(), edges[1:].tolist(), strict=True):
        if c:
            x0, x1 = sx(a), sx(b)
            parts.append(
                f'<rect class="bar" x="{_f(x0)}" y="{_f(sy(c))}" width="{_f(max(x1 - x0 - 1, 1))}" '
                f'height="{_f(sy(0) - sy(c))}"><title>{c} windows in '
                f"[{a:+.4f}, {b:+.4f}]</title></rect>"
            )
    x_ticks, decimals = _nice_ticks(dom_lo, dom_hi)
    parts.append(
        f'<line class="axis" x1="{_f(ml)}" x2="{_f(ml + pw)}" y1="{_f(sy(0))}" y2="{_f(sy(0))}" />'
    )
    for t in x_ticks:
        label = fixed(t, decimals)
        parts.append(
            f'<line class="axis" x1="{_f(sx(t))}" x2="{_f(sx(t))}" '
            f'y1="{_f(sy(0))}" y2="{_f(sy(0) + 4)}" />'
        )
        parts.append(_text(sx(t), sy(0) + 16, label))
    parts.append(
        _text(
            ml + pw / 2,
            height - 6,
            "\u0394 mean NLL per window (subject \u2212 baseline, nats/token)",
            css="axis-label",
        )
    )
    # The two reference lines are named in a legend above the plot: labels next to the lines
    # would collide whenever the mean is near zero (always, for a noop).
    zx, mx = sx(0.0), sx(mean)
    parts.append(
        f'<line class="zero" x1="{_f(zx)}" x2="{_f(zx)}" y1="{_f(mt)}" y2="{_f(sy(0))}" />'
    )
    parts.append(
        f'<line class="mean" x1="{_f(mx)}" x2="{_f(mx)}" y1="{_f(mt)}" y2="{_f(sy(0))}" />'
    )
    x = ml
    for css, label in (("zero", "\u0394 = 0"), ("mean", f"token-weighted mean {signed(mean, 4)}")):
        parts.append(f'<line class="{css}" x1="{_f(x)}" x2="{_f(x + 18)}" y1="10" y2="10" />')
        parts.append(_text(x + 23, 14, label, anchor="start"))
        x += 23 + len(label) * 6.2 + 18  # rough advance of an 11px sans-serif label
    parts.append("</svg>")
    return Markup("\n".join(parts))


def _scatter_svg(pairs: Pairs) -> Markup:
    xs, ys = pairs.baseline, pairs.subject
    lo, hi = _padded(min(min(xs), min(ys)), max(max(xs), max(ys)), 0.04)
    size = 300.0
    ml, mr, mt, mb = 46.0, 12.0, 12.0, 40.0
    plot = size - ml - mr
    width, height = size, plot + mt + mb

    def sx(v: float) -> float:
        return ml + (v - lo) / (hi - lo) * plot

    def sy(v: float) -> float:
        return mt + plot - (v - lo) / (hi - lo) * plot

    parts = [
        f'<svg class="chart scatter" viewBox="0 0 {width:.0f} {height:.0f}" role="img" '
        f'aria-label="Baseline versus subject mean NLL per window">',
        "<title>Per-window mean NLL: baseline (x) vs subject (y), final windows</title>",
        f'<rect class="frame" x="{_f(ml)}" y="{_f(mt)}" width="{_f(plot)}" height="{_f(plot)}" />',
    ]
    ticks, decimals = _nice_ticks(lo, hi, 4)
    for t in ticks:
        parts.append(
            f'<line class="grid" x1="{_f(sx(t))}" x2="{_f(sx(t))}" y1="{_f(mt)}" '
            f'y2="{_f(mt + plot)}" />'
        )
        parts.append(
            f'<line class="grid" x1="{_f(ml)}" x2="{_f(ml + plot)}" y1="{_f(sy(t))}" '
            f'y2="{_f(sy(t))}" />'
        )
        parts.append(_text(sx(t), mt + plot + 15, fixed(t, decimals)))
        parts.append(_text(ml - 5, sy(t) + 4, fixed(t, decimals), anchor="end"))
    parts.append(
        f'<line class="diagonal" x1="{_f(sx(lo))}" y1="{_f(sy(lo))}" '
        f'x2="{_f(sx(hi))}" y2="{_f(sy(hi))}" />'
    )
    for x, y in zip(xs, ys, strict=True):
        # Points above the diagonal are windows the edit made harder.
        css = "pt worse" if y > x else "pt"
        parts.append(f'<circle class="{css}" cx="{_f(sx(x))}" cy="{_f(sy(y))}" r="2.6" />')
    parts.append(_text(ml + plot / 2, height - 6, "baseline NLL", css="axis-label"))
    parts.append(
        f'<text class="axis-label" text-anchor="middle" transform="translate(12 '
        f'{_f(mt + plot / 2)}) rotate(-90)">subject NLL</text>'
    )
    parts.append("</svg>")
    return Markup("\n".join(parts))

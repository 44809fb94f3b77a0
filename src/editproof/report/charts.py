"""Inline SVG charts for the HTML report: per-window delta bars and histogram, NLL scatter.

Built from numbers and fixed labels only (labels are escaped anyway), so the markup can be
marked safe in the template. No chart library: the page must stay self-contained.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from markupsafe import Markup, escape

from editproof.report import derive
from editproof.report.format import fixed, signed
from editproof.report.model import EvaluationReport

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
    ids: list[str] = field(default_factory=list)  # window id of each pair

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


def final_pairs(report: EvaluationReport) -> Pairs:
    base, subj = report.baseline.final, report.subject.final
    total = len(subj.mean_nll)
    problem = derive.pairing_problem(base, subj)
    if problem is not None:
        # Different windows (or tokens) in the two arms: per-window comparison is meaningless.
        return Pairs([], [], [], total, total, problem)
    bs, ss, ws, ids = [], [], [], []
    rows = zip(base.mean_nll, subj.mean_nll, subj.token_counts, subj.window_ids, strict=True)
    for b, s, w, i in rows:
        if b is not None and s is not None and math.isfinite(b) and math.isfinite(s):
            bs.append(b)
            ss.append(s)
            ws.append(float(w))
            ids.append(i)
    return Pairs(bs, ss, ws, total, total - len(bs), problem, ids)


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


def _y_label(y: float, label: str) -> str:
    """An axis label rotated up the left edge, centred on ``y``."""
    return (
        f'<text class="axis-label" text-anchor="middle" transform="translate(12 '
        f'{_f(y)}) rotate(-90)">{escape(label)}</text>'
    )


def _padded(lo: float, hi: float, frac: float = 0.06) -> tuple[float, float]:
    span = hi - lo
    # A zero span (one distinct value) still needs a visible, centred range.
    pad = span * frac if span > 1e-12 * max(1.0, abs(lo), abs(hi)) else max(abs(lo) * 0.05, 0.01)
    return lo - pad, hi + pad


def histogram_svg(pairs: Pairs) -> Markup:
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


def scatter_svg(pairs: Pairs) -> Markup:
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
    parts.append(_y_label(mt + plot / 2, "subject NLL"))
    parts.append("</svg>")
    return Markup("\n".join(parts))


def delta_bars_svg(pairs: Pairs) -> Markup:
    """Subject minus baseline mean NLL of each final window, in stored window order."""
    deltas = pairs.deltas
    lo, hi = _padded(min(0.0, *deltas), max(0.0, *deltas), 0.08)
    width, height = 860.0, 200.0
    ml, mr, mt, mb = 52.0, 14.0, 12.0, 40.0
    pw, ph = width - ml - mr, height - mt - mb
    n = len(deltas)
    slot = pw / n

    def sy(v: float) -> float:
        return mt + (hi - v) / (hi - lo) * ph

    parts = [
        f'<svg class="chart" viewBox="0 0 {width:.0f} {height:.0f}" role="img" '
        f'aria-label="Change in log-loss of each final window, in window order">',
        "<title>\u0394 mean NLL per final window, subject \u2212 baseline, in window order</title>",
    ]
    ticks, decimals = _nice_ticks(lo, hi, 4)
    for t in ticks:
        parts.append(
            f'<line class="grid" x1="{_f(ml)}" x2="{_f(ml + pw)}" y1="{_f(sy(t))}" '
            f'y2="{_f(sy(t))}" />'
        )
        parts.append(_text(ml - 6, sy(t) + 4, fixed(t, decimals), anchor="end"))
    zero = sy(0.0)
    gap = min(1.0, slot * 0.2)
    for k, (d, wid) in enumerate(zip(deltas, pairs.ids or [""] * n, strict=True)):
        top, bottom = (sy(d), zero) if d >= 0 else (zero, sy(d))
        css = "dbar worse" if d > 0 else "dbar"
        label = f"{wid}: {signed(d, 5)}" if wid else f"window {k + 1}: {signed(d, 5)}"
        parts.append(
            f'<rect class="{css}" x="{_f(ml + k * slot + gap / 2)}" y="{_f(top)}" '
            f'width="{_f(max(slot - gap, 0.5))}" height="{_f(max(bottom - top, 0.5))}">'
            f"<title>{escape(label)}</title></rect>"
        )
    parts.append(
        f'<line class="axis" x1="{_f(ml)}" x2="{_f(ml + pw)}" y1="{_f(zero)}" y2="{_f(zero)}" />'
    )
    for k in sorted({0, n // 4, n // 2, 3 * n // 4, n - 1}):
        parts.append(_text(ml + (k + 0.5) * slot, mt + ph + 15, str(k + 1)))
    parts.append(_text(ml + pw / 2, height - 6, "final window (stored order)", css="axis-label"))
    parts.append(_y_label(mt + ph / 2, "\u0394 NLL"))
    parts.append("</svg>")
    return Markup("\n".join(parts))

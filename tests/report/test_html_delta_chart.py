"""The per-window delta chart of evaluation.html: one bar per paired final window, in order."""

from __future__ import annotations

import re

from editproof.report.charts import final_pairs
from editproof.report.html import render_html
from tests.report.factory import make_report


def _bars(html: str) -> list[tuple[str, str]]:
    chart = html.split('aria-label="Change in log-loss of each final window')[1].split("</svg>")[0]
    return re.findall(r'<rect class="(dbar(?: worse)?)"[^>]*><title>([^<]*)</title>', chart)


def test_one_bar_per_window_worse_ones_marked() -> None:
    r = make_report(shift=0.01, noise=0.02, seed=5)
    pairs = final_pairs(r)
    bars = _bars(render_html(r))
    assert len(bars) == pairs.n == 64
    assert [css == "dbar worse" for css, _ in bars] == [d > 0 for d in pairs.deltas]
    # Titles name the window and its delta, in stored order.
    first_id, first_delta = pairs.ids[0], pairs.deltas[0]
    assert bars[0][1] == f"{first_id}: {first_delta:+.5f}"


def test_skipped_windows_leave_no_bar() -> None:
    r = make_report(nan=True, noise=0.02)
    bars = _bars(render_html(r))
    assert len(bars) == final_pairs(r).n == 60
    missing = {
        i
        for i, v in zip(r.subject.final.window_ids, r.subject.final.mean_nll, strict=True)
        if v is None
    }
    assert not missing & {title.split(":")[0] for _, title in bars}


def test_noop_bars_sit_on_zero() -> None:
    bars = _bars(render_html(make_report()))
    assert len(bars) == 64 and all(
        css == "dbar" and title.endswith(": +0.00000") for css, title in bars
    )

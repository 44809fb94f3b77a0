"""Tests for the self-contained HTML rendering of evaluation reports."""

from __future__ import annotations

import re
import subprocess
import sys
from functools import cache
from html.parser import HTMLParser

import pytest

from editproof.report import derive
from editproof.report.charts import _nice_ticks
from editproof.report.format import fixed, params, seconds, short_sha
from editproof.report.html import render_html
from editproof.report.model import EvaluationReport, GuardResult, GuardsSection
from tests.report.factory import make_report

# Named report variants; each is built and rendered once per test session.
CASES: dict[str, dict[str, object]] = {
    "pass": {"noise": 0.02, "seed": 3},
    "fail": {"shift": 0.3, "noise": 0.02},
    "noop": {},
    "nan": {"nan": True, "noise": 0.02},
    "one_window": {"n_windows": 1, "noise": 0.01},
    "strict_floor": {"relax": False, "noise": 0.02},
    "conservative": {"relax": False, "noise": 0.02, "tier": "conservative"},
}


@cache
def report(name: str) -> EvaluationReport:
    return make_report(**CASES[name])  # type: ignore[arg-type]


@cache
def page(name: str) -> str:
    return render_html(report(name))


def _overflowed(r: EvaluationReport) -> EvaluationReport:
    """A report whose primary metric became invalid after the bootstrap (ratio overflow)."""
    pm = r.primary_metric.model_copy(
        update={
            "ratio": None,
            "display_ci": None,
            "invalid": True,
            "invalid_reason": "perplexity ratio overflows",
        }
    )
    return r.model_copy(update={"primary_metric": pm, "status": "FAIL"})


class _Walker(HTMLParser):
    """Checks that every non-void element is closed, in order, and collects badge text."""

    VOID = frozenset({"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.errors: list[str] = []
        self.seen: set[str] = set()
        self.badge: list[str] = []
        self._in_badge = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.seen.add(tag)
        classes = (dict(attrs).get("class") or "").split()
        self._in_badge = tag == "div" and "badge" in classes
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.seen.add(tag)

    def handle_endtag(self, tag: str) -> None:
        if tag in self.VOID:
            return
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"</{tag}> closes <{self.stack[-1] if self.stack else None}>")
            return
        self.stack.pop()
        self._in_badge = False

    def handle_data(self, data: str) -> None:
        if self._in_badge and data.strip():
            self.badge.append(data.strip())


def walk(html: str) -> _Walker:
    w = _Walker()
    w.feed(html)
    w.close()
    return w


def test_factory_is_consistent() -> None:
    r = report("noop")
    assert r.subject.final.mean_nll == r.baseline.final.mean_nll
    assert r.subject.preview.mean_nll == r.baseline.preview.mean_nll
    assert r.baseline.model.weight_sha256 == r.subject.model.weight_sha256
    assert r.edit.label == "noop" and r.status == "PASS"
    assert r.primary_metric.ratio == 1.0
    assert all(len(h) == 16 for h in r.subject.final.token_hashes)
    assert all(re.fullmatch(r"w\d{6}", i) for i in r.subject.final.window_ids)
    assert set(r.baseline.final.token_counts) == {255}
    # Deriving again from the raw windows reproduces the stored numbers.
    pol = r.policy.tier
    assert derive.primary_metric(
        r.baseline.final,
        r.subject.final,
        pol,
        seed=503,
        n_preview=len(r.subject.preview.window_ids),
    ) == (r.primary_metric)
    assert EvaluationReport.model_validate_json(r.model_dump_json()) == r
    assert make_report() == r  # deterministic


def test_factory_variants() -> None:
    assert report("fail").status == "FAIL"
    assert report("pass").status == "PASS"
    nan = report("nan")
    assert nan.primary_metric.invalid
    assert nan.subject.final.mean_nll.count(None) == 4
    assert report("strict_floor").status == "FAIL"  # 2 x 64 windows miss the 50k floor
    assert report("conservative").status == "PASS"  # ...but meet conservative's 20k floor
    assert report("conservative").policy.tier.name == "conservative"


@pytest.mark.parametrize("name", sorted(CASES))
def test_page_is_self_contained_and_well_formed(name: str) -> None:
    html = page(name)
    assert html.startswith("<!DOCTYPE html>")
    for needle in ("http://", "https://", "<script", "src=", "<link", "@import", "url("):
        assert needle not in html.lower(), needle
    w = walk(html)
    assert w.errors == [] and w.stack == []
    assert {"html", "head", "style", "body", "header", "section", "table", "footer"} <= w.seen
    assert w.badge == [report(name).status]
    for gate in report(name).gates:
        assert f"<code>{gate.name}</code>" in html
    assert report(name).run_id in html
    assert f"editproof {report(name).tool.version}" in html


def test_pass_page_contents() -> None:
    r, html = report("pass"), page("pass")
    pm = r.primary_metric
    assert f"{pm.ratio:.4f}" in html
    assert pm.display_ci is not None
    assert f"[{pm.display_ci[0]:.4f}, {pm.display_ci[1]:.4f}]" in html
    assert f"{pm.baseline_ppl:.3f}" in html and f"{pm.subject_ppl:.3f}" in html
    assert "95% CI" in html
    assert html.count("<svg") == 3
    # Full weight digest in a title attribute, shortened in the text.
    sha = r.subject.model.weight_sha256
    assert f'title="{sha}"' in html and f">{sha[:12]}\u2026<" in html
    assert "Guards</h2>" in html and "not run" in html
    assert "relaxed" in html  # the token floor gate of a relaxed run
    assert html.count('<circle class="pt') == 64


def test_fail_page_shows_failing_gates() -> None:
    html = page("fail")
    assert '<div class="badge FAIL"' in html
    assert re.search(r'<td class="status fail">FAIL</td>', html)
    assert "outside threshold" in html  # the tail gate is reported, not enforced


def test_noop_histogram_is_one_bar() -> None:
    html = page("noop")
    assert html.count('<rect class="bar"') == 1
    assert "64 windows in" in html
    assert "token-weighted mean +0.0000" in html
    assert "no variation" in html  # degenerate bootstrap reason, humanised
    assert "identical weight digests" in html


def test_nan_subject_skips_windows_and_shows_reason() -> None:
    html = page("nan")
    assert "non-finite window loss" in html
    assert "4 of 64 final windows skipped" in html
    assert html.count('<circle class="pt') == 60
    assert "Primary metric invalid" in html


def test_invalid_metric_after_bootstrap() -> None:
    html = render_html(_overflowed(report("pass")))
    assert "perplexity ratio overflows" in html
    assert walk(html).badge == ["FAIL"]
    assert html.count("<svg") == 3  # the windows themselves are still fine to plot


def test_unpaired_windows_omit_charts() -> None:
    r = report("pass")
    final = r.subject.final.model_copy(
        update={"window_ids": [f"x{i}" for i in range(len(r.subject.final.window_ids))]}
    )
    pm = derive.primary_metric(r.baseline.final, final, r.policy.tier, seed=0)
    bad = r.model_copy(
        update={
            "subject": r.subject.model_copy(update={"final": final}),
            "primary_metric": pm,
        }
    )
    html = render_html(bad)
    assert "<svg" not in html
    assert "Charts omitted: window ids differ" in html
    assert walk(html).errors == []


def test_all_windows_non_finite() -> None:
    r = report("nan")
    final = r.subject.final.model_copy(update={"mean_nll": [None] * 64})
    html = render_html(
        r.model_copy(update={"subject": r.subject.model_copy(update={"final": final})})
    )
    assert "<svg" not in html and "nothing to plot" in html


def test_report_strings_are_escaped() -> None:
    evil = '<script>alert("x")</script>'
    r = make_report(noise=0.02, subject_spec=evil, edit_label='"><b onmouseover=x>')
    html = render_html(r)
    assert "<script" not in html and "<b " not in html
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in html
    w = walk(html)
    assert w.errors == [] and w.stack == []


def test_guard_results_table() -> None:
    guards = GuardsSection(
        status="warn",
        results=[
            GuardResult(
                name="spectral",
                status="warn",
                measured={"max_sigma_ratio": 1.31},
                thresholds={"max_sigma_ratio": 1.25},
                violations=["layer 7 mlp.down_proj: sigma ratio 1.31 > 1.25"],
                seconds=0.42,
            ),
            GuardResult(name="rmt", status="pass"),
        ],
    )
    r = make_report(noise=0.02, seed=3, guards=guards)
    html = render_html(r)
    assert r.status == "PASS"  # a warning guard does not fail the run
    assert "<code>spectral</code>" in html and "<code>rmt</code>" in html
    assert "max_sigma_ratio = 1.3100" in html and "layer 7 mlp.down_proj" in html
    assert walk(html).errors == []


def test_render_is_deterministic() -> None:
    assert render_html(report("pass")) == page("pass")


def test_formatting_helpers() -> None:
    assert fixed(None) == "\u2014" and fixed(float("nan")) == "\u2014"
    assert fixed(-0.00001, 4) == "0.0000" and fixed(1.23456, 3) == "1.235"
    assert short_sha("ab" * 32) == "abababababab\u2026" and short_sha("abc") == "abc"
    assert params(134_515_008) == "135M" and params(1_235_814_400) == "1.24B"
    assert params(7_241_732_096) == "7.24B" and params(999) == "999"
    assert seconds(0.001) == "<0.01 s" and seconds(75.2) == "1 min 15 s"


@pytest.mark.parametrize(
    ("lo", "hi"), [(-0.057, 0.041), (0.0, 0.3), (-0.01, 0.01), (1.2, 3.9), (0.0, 64.0)]
)
def test_nice_ticks_cover_the_range(lo: float, hi: float) -> None:
    ticks, _ = _nice_ticks(lo, hi)
    assert 2 <= len(ticks) <= 11
    assert all(lo - 1e-12 <= t <= hi + 1e-12 for t in ticks)
    assert ticks == sorted(ticks)


def test_module_does_not_import_torch() -> None:
    code = "import sys, editproof.report.html; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0

"""Every string from a run is escaped, in both pages: text, attributes, SVG titles and labels.

The payloads go into model ids, labels, specs, edit specs, guard violations, gate notes,
reasons, window ids, scenario ids, relaxations, task errors and certificate paths. Neither
page may contain a payload raw, nor any element or attribute a payload could smuggle in.
"""

from __future__ import annotations

import json
from html.parser import HTMLParser
from pathlib import Path, PurePosixPath
from typing import Any

import pytest

from editproof.pack.index import render_index
from editproof.report.html import render_html
from editproof.report.model import EvaluationReport, GuardResult, GuardsSection
from editproof.verdict.model import TaskFailure
from tests.chromium import dump_dom
from tests.pack.staging import cert_dir, stage
from tests.report.factory import make_report
from tests.report.test_html import walk
from tests.verdict.synth import catastrophic_report, override, suite

SCRIPT = "<script>alert(1)</script>"
BREAKOUT = "\"'><img src=x onerror=alert(1)>"
PAYLOADS = (SCRIPT, BREAKOUT)
ESCAPED = (
    "&lt;script&gt;alert(1)&lt;/script&gt;",
    "&#34;&#39;&gt;&lt;img src=x onerror=alert(1)&gt;",
)
SCENARIO = "quant_4bit_clean"
EVIL_SCENARIO = f"quant{BREAKOUT}"
EVIL_MODEL = f"m1{SCRIPT}"


class _Elements(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: set[str] = set()
        self.attrs: set[str] = set()
        self.hrefs: list[str] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.add(tag)
        self.attrs.update(name for name, _ in attrs)
        self.hrefs += [v or "" for k, v in attrs if k == "href"]

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def assert_no_markup(html: str) -> _Elements:
    """No element or attribute that a payload could have added (rendered DOM or source)."""
    e = _Elements()
    e.feed(html)
    e.close()
    assert not e.tags & {"script", "img", "iframe", "object", "embed", "link", "base"}
    assert not [a for a in e.attrs if a.startswith("on") or a == "src"]
    assert all(not h.lower().lstrip().startswith(("javascript:", "data:")) for h in e.hrefs)
    return e


def assert_inert(html: str) -> _Elements:
    for raw in PAYLOADS:
        assert raw not in html
    e = assert_no_markup(html)
    w = walk(html)
    assert w.errors == [] and w.stack == []
    # The text a reader sees holds the payloads verbatim: escaped, not dropped.
    text = "".join(e.text)
    assert SCRIPT in text and BREAKOUT in text
    return e


def evil_report() -> EvaluationReport:
    guards = GuardsSection(
        status="warn",
        results=[
            GuardResult(
                name="spectral",
                status="warn",
                measured={"max_sigma_ratio": 1.31},
                thresholds={"max_sigma_ratio": 1.25},
                violations=[f"layer {SCRIPT}: {BREAKOUT}"],
            )
        ],
    )
    r = make_report(
        noise=0.02, subject_spec=f"./runs/{BREAKOUT}{SCRIPT}", edit_label=BREAKOUT, guards=guards
    )
    # Window ids reach the SVG titles of the per-window chart; both arms keep them paired.
    ids = list(r.subject.final.window_ids)
    ids[0] = BREAKOUT
    ids[1] = SCRIPT
    subject = r.subject.model_copy(
        update={"final": r.subject.final.model_copy(update={"window_ids": ids})}
    )
    baseline = r.baseline.model_copy(
        update={"final": r.baseline.final.model_copy(update={"window_ids": ids})}
    )
    gates = [g.model_copy(update={"note": SCRIPT}) for g in r.gates]
    return r.model_copy(
        update={
            "subject": subject,
            "baseline": baseline,
            "gates": gates,
            "edit": r.edit.model_copy(update={"spec": BREAKOUT}),
            "run_id": BREAKOUT,
            "provenance": r.provenance.model_copy(update={"command": ["editproof", SCRIPT]}),
        }
    )


def test_evaluation_page_escapes_every_run_string(tmp_path: Path) -> None:
    html = render_html(evil_report())
    assert_inert(html)
    for escaped in ESCAPED:
        assert escaped in html
    bars = html.split('aria-label="Change in log-loss of each final window')[1].split("</svg>")[0]
    assert f"<title>{ESCAPED[1]}: " in bars and f"<title>{ESCAPED[0]}: " in bars
    assert f'title="./runs/{ESCAPED[1]}{ESCAPED[0]}"' not in html  # the spec is not a digest
    page = tmp_path / "evaluation.html"
    page.write_text(html, encoding="utf-8")
    dom = dump_dom(page)
    assert_no_markup(dom)
    assert '<div class="badge PASS"' in dom


def _poison(value: Any) -> Any:
    """Every model id, scenario id and reason of a verdict file replaced by a payload."""
    if isinstance(value, dict):
        return {_poison(k): _poison(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_poison(v) for v in value]
    if isinstance(value, str):
        if value == "m1":
            return EVIL_MODEL
        return value.replace(SCENARIO, EVIL_SCENARIO)
    return value


def _add_reasons(verdict: dict[str, Any]) -> None:
    for rec in verdict["records"]:
        rec["reasons"].append(SCRIPT)
    for failed in verdict["failed_requirements"]:
        failed["message"] += BREAKOUT
        for run in failed["failures"]:
            run["reasons"].append(SCRIPT)
    verdict["relaxations"].append(BREAKOUT)


@pytest.fixture(scope="module")
def evil_pack(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("evil") / "pack"
    inputs, reports = suite(
        make=override(SCENARIO, catastrophic_report(), run=2),
        failures=[
            TaskFailure(model="m1", scenario="nan_injection", run=9, error=BREAKOUT + SCRIPT)
        ],
    )
    # The certificate of the failed run lives in a directory named by the payload.
    bad = "m1/reports/quant_4bit_clean/run_2/evaluation.report.json"
    place = {bad: PurePosixPath("certs", "m1", EVIL_SCENARIO, "run_2")}
    stage(root, inputs, reports, place=place)
    for path in (root / "results").glob("*.json"):
        data = _poison(json.loads(path.read_text()))
        if path.name == "final_verdict.json":
            _add_reasons(data)
        path.write_text(json.dumps(data, indent=2))
    assert (root / cert_dir(bad).parent.parent / EVIL_SCENARIO / "run_2").is_dir()
    return root


def test_index_page_escapes_every_run_string(evil_pack: Path) -> None:
    html = render_index(evil_pack)
    e = assert_inert(html)
    for escaped in ESCAPED:
        assert escaped in html
    grid = html.split('<svg class="chart grid"')[1].split("</svg>")[0]
    assert f"quant{ESCAPED[1]}" in grid  # row labels and cell titles
    assert BREAKOUT not in grid and "<img" not in grid
    # The certificate path is a link target: percent-encoded, and still relative.
    evil_href = [h for h in e.hrefs if "onerror" in h]
    assert evil_href and all(h.startswith("certs/m1/quant%22%27%3E%3Cimg") for h in evil_href)
    assert "task failure" in html
    (evil_pack / "index.html").write_text(html, encoding="utf-8")
    dom = dump_dom(evil_pack / "index.html")
    assert_no_markup(dom)
    assert 'id="verdict-badge"' in dom and ">FAIL<" in dom

"""The pack's index.html: verdict first, every requirement and run, links to each certificate,
the guard grid, and nothing from the network. Packs are staged from synthesized suite runs."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path, PurePosixPath

import pytest

from editproof.errors import InvalidInputError, NotFoundError
from editproof.pack.index import Cert, match_certs, render_index
from editproof.verdict.compile import compile_verdict
from editproof.verdict.model import FinalVerdict, TaskFailure
from tests.chromium import count_colour, dump_dom, screenshot
from tests.pack.staging import cert_dir, stage
from tests.report.test_html import walk
from tests.verdict.synth import catastrophic_report, override, suite

PASS_RGB = (0xDA, 0xFB, 0xE1)  # --pass-bg, the verdict badge and box
FAIL_RGB = (0xFF, 0xEB, 0xE9)  # --fail-bg


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.hrefs: list[str] = []
        self.badge: list[str] = []
        self._badge = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "a" and a.get("href"):
            self.hrefs.append(a["href"] or "")
        self._badge = a.get("id") == "verdict-badge"

    def handle_data(self, data: str) -> None:
        if self._badge and data.strip():
            self.badge.append(data.strip())


def links(html: str) -> _Links:
    p = _Links()
    p.feed(html)
    return p


@pytest.fixture(scope="module")
def passing(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, FinalVerdict, str]:
    root = tmp_path_factory.mktemp("pack") / "pass"
    v = stage(root, *suite(models=("m1", "m2")))
    html = render_index(root)
    (root / "index.html").write_text(html, encoding="utf-8")
    return root, v, html


@pytest.fixture(scope="module")
def failing(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, FinalVerdict, str]:
    """A clean scenario whose second run degraded, plus a task failure."""
    root = tmp_path_factory.mktemp("pack") / "fail"
    inputs, reports = suite(
        make=override("quant_4bit_clean", catastrophic_report(), run=2),
        failures=[TaskFailure(model="m1", scenario="nan_injection", run=2, error="worker died")],
        relaxations=["--windows 6: fewer windows than the tier asks for"],
    )
    # The failed task has no report: drop the one the synthesizer made for it.
    gone = "m1/reports/nan_injection/run_2/evaluation.report.json"
    inputs = inputs.model_copy(update={"reports": [r for r in inputs.reports if r.path != gone]})
    reports.pop(gone, None)
    v = stage(root, inputs, reports)
    html = render_index(root)
    (root / "index.html").write_text(html, encoding="utf-8")
    return root, v, html


def test_pass_page_is_self_contained_and_complete(
    passing: tuple[Path, FinalVerdict, str],
) -> None:
    root, v, html = passing
    assert v.verdict == "PASS"
    assert html.startswith("<!DOCTYPE html>")
    lower = html.lower()
    for needle in ("http://", "https://", "<script", "src=", "<link", "@import", "url(", "<img"):
        assert needle not in lower, needle
    w = walk(html)
    assert w.errors == [] and w.stack == []
    assert links(html).badge == ["PASS"]
    assert "Suite verdict: PASS" in html
    for r in v.requirements:
        assert f"<code>{r.requirement}</code>" in html
    assert html.count("<tr>") >= len(v.requirements) + len(v.detection_matrix.rows)
    # Every record links to its certificate's page and JSON, relative to the pack.
    hrefs = set(links(html).hrefs)
    for rec in v.records:
        d = cert_dir(rec.path)
        assert f"{d}/evaluation.html" in hrefs and f"{d}/evaluation.report.json" in hrefs
        assert (root / d / "evaluation.html").is_file()
    assert all(not h.startswith(("/", "http", "file:")) and ".." not in h for h in hrefs)
    assert "results/final_verdict.txt" in hrefs and "manifest.json" in hrefs
    # The guard grid: one row per scenario, one cell per core guard and the detectors.
    grid = re.search(r'<svg class="chart grid".*?</svg>', html, re.S)
    assert grid is not None
    n_scen = len(v.scenario_signal_summary.scenarios)
    assert grid.group(0).count("<rect") == n_scen * (len(v.core_guard_order) + 1)
    assert grid.group(0).count('class="cell expected"') == n_scen
    assert 'id="relaxations"' not in html
    assert "not in this pack" not in html and "differ" not in html
    for name in v.category_summary.categories:
        assert f"<td>{name}</td>" in html


def test_render_is_deterministic(passing: tuple[Path, FinalVerdict, str]) -> None:
    root, _, html = passing
    assert render_index(root) == html


def test_fail_page_names_failed_requirements(failing: tuple[Path, FinalVerdict, str]) -> None:
    _, v, html = failing
    assert v.verdict == "FAIL"
    assert links(html).badge == ["FAIL"]
    assert "Suite verdict: FAIL" in html
    failed = {f.requirement for f in v.failed_requirements}
    assert {"clean_all_pass", "no_task_failures"} <= failed
    verdict = html.split('id="verdict"')[1].split("</section>")[0]
    for f in v.failed_requirements:
        assert f"<code>{f.requirement}</code>" in verdict
    # The failed clean run: model, scenario, run and a link to its certificate.
    assert "m1 \u00b7 quant_4bit_clean \u00b7 run 2" in verdict
    assert 'href="certs/m1/quant_4bit_clean/run_2/evaluation.html"' in verdict
    assert "m1 \u00b7 nan_injection \u00b7 run 2" in verdict
    assert "task failure" in html and "worker died" in html
    assert "Relaxations" in html and "fewer windows than the tier asks for" in html
    assert '<td class="status warn">task failure</td>' in html


def test_certificates_found_by_digest_whatever_the_layout(tmp_path: Path) -> None:
    """The builder may name directories by model and edit: the digest still binds them."""
    inputs, reports = suite()
    place = {
        path: PurePosixPath("certs", "org__model", f"edit-{i:02d}", "0")
        for i, path in enumerate(sorted(reports))
    }
    # Identical report bytes in several runs would be ambiguous by digest alone: make each
    # report unique so the layout-free binding is exact.
    unique = {}
    for path, (report, _) in reports.items():
        r = report.model_copy(update={"run_id": f"{abs(hash(path)) % 16**12:012x}"})
        unique[path] = (r, r.model_dump_json(indent=2).encode() + b"\n")
    v = stage(tmp_path, inputs, unique, place=place)
    html = render_index(tmp_path)
    hrefs = set(links(html).hrefs)
    for path in reports:
        assert f"{place[path]}/evaluation.html" in hrefs
    assert "not in this pack" not in html and "no verdict record refers to" not in html
    assert len(v.records) == len(reports)


def _cert(path: str, digest: str) -> Cert:
    return Cert(PurePosixPath(path), digest, None)


def test_match_prefers_digest_then_path_then_model() -> None:
    v = compile_verdict(*suite())
    a, b = v.records[0], v.records[1]
    same = a.report_digest
    assert b.report_digest == same  # synthesized runs of one scenario share their bytes
    # Same bytes twice: the path tail decides which run is which.
    certs = [
        _cert(f"certs/m1/{b.scenario}/run_{b.run}/evaluation.report.json", same),
        _cert(f"certs/m1/{a.scenario}/run_{a.run}/evaluation.report.json", same),
    ]
    got = match_certs([a, b], certs)
    assert got[0] is not None and got[0].cert is certs[1] and got[0].digest_ok
    assert got[1] is not None and got[1].cert is certs[0]
    # A changed report is still found by its place, and flagged.
    changed = [_cert(f"certs/x/{a.scenario}/run_{a.run}/evaluation.report.json", "0" * 64)]
    (m,) = match_certs([a], changed)
    assert m is not None and not m.digest_ok
    # An exact binding is never displaced by a path guess.
    exact = _cert("certs/elsewhere/e/1/evaluation.report.json", same)
    (m,) = match_certs([a], [changed[0], exact])
    assert m is not None and m.cert is exact
    # The model directory breaks a tie between two models' copies of the same run.
    tail = f"{a.scenario}/run_{a.run}/evaluation.report.json"
    twins = [_cert(f"certs/other/{tail}", "1" * 64), _cert(f"certs/m1/{tail}", "1" * 64)]
    (m,) = match_certs([a], twins)
    assert m is not None and m.cert is twins[1]
    # Nothing that fits: no match; each certificate serves one record.
    assert match_certs([a], [_cert("certs/m1/other/run_9/evaluation.report.json", "2")]) == [None]
    assert match_certs([a, a], [certs[1]])[1] is None


def test_missing_changed_and_extra_certificates(tmp_path: Path) -> None:
    inputs, reports = suite()
    v = stage(tmp_path, inputs, reports)
    recs = v.records
    gone, changed = cert_dir(recs[0].path), cert_dir(recs[1].path)
    (tmp_path / gone / "evaluation.report.json").unlink()
    (tmp_path / gone / "evaluation.html").unlink()
    body = json.loads((tmp_path / changed / "evaluation.report.json").read_text())
    body["run_id"] = "feedfacefeed"
    (tmp_path / changed / "evaluation.report.json").write_text(json.dumps(body))
    stray = tmp_path / "certs" / "stray" / "x" / "run_1"
    stray.mkdir(parents=True)
    (stray / "evaluation.report.json").write_text("{not json")
    html = render_index(tmp_path)
    assert "1 of 35 judged reports are not in this pack" in html
    assert "report not in the pack" in html
    assert "report bytes differ from the ones the verdict judged" in html
    assert "Certificates no verdict record refers to" in html
    assert 'href="certs/stray/x/run_1/evaluation.report.json"' in html
    assert walk(html).errors == []


def test_summary_file_out_of_step_is_flagged(tmp_path: Path) -> None:
    stage(tmp_path, *suite())
    path = tmp_path / "results" / "category_summary.json"
    data = json.loads(path.read_text())
    data["categories"]["clean"]["passed"] += 1
    path.write_text(json.dumps(data))
    (tmp_path / "results" / "detection_matrix.json").write_text("[]")
    html = render_index(tmp_path)
    assert "results/category_summary.json differs from the copy" in html
    assert "results/detection_matrix.json is not a valid DetectionMatrix" in html


def test_missing_or_malformed_verdict(tmp_path: Path) -> None:
    with pytest.raises(NotFoundError, match=r"final_verdict\.json"):
        render_index(tmp_path)
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "final_verdict.json").write_text('{"verdict": "MAYBE"}')
    with pytest.raises(InvalidInputError, match=r"final_verdict\.json"):
        render_index(tmp_path)


def test_index_module_does_not_import_torch() -> None:
    code = (
        "import sys, editproof.pack.index; "
        "sys.exit(any(m in sys.modules for m in ('torch', 'transformers', 'editproof.suite')))"
    )
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


@pytest.mark.parametrize(("name", "rgb"), [("passing", PASS_RGB), ("failing", FAIL_RGB)])
def test_chromium_shows_the_verdict(
    name: str, rgb: tuple[int, int, int], request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    root, v, _ = request.getfixturevalue(name)
    dom = dump_dom(root / "index.html")
    assert links(dom).badge == [v.verdict]
    assert f"Suite verdict: {v.verdict}" in dom
    shot = screenshot(root / "index.html", tmp_path / "index.png", size=(1280, 900))
    # The badge and the verdict box are painted in the verdict's colour near the top.
    assert count_colour(shot, rgb, rows=260) > 5000
    other = FAIL_RGB if rgb == PASS_RGB else PASS_RGB
    assert count_colour(shot, other, rows=260) == 0


def test_preview_script_stages_a_run_dir(tmp_path: Path) -> None:
    """scripts/html_preview.py (how the docs screenshot is made) on a run-dir layout."""
    from editproof.report.io import report_json
    from editproof.verdict.write import write_verdict

    inputs, reports = suite()
    run = tmp_path / "run"
    write_verdict(_mkdir(run / "reports"), compile_verdict(inputs, reports))
    for path, (report, data) in reports.items():
        (_mkdir((run / path).parent) / "evaluation.report.json").write_bytes(data)
        assert data == report_json(report).encode()
    script = Path(__file__).resolve().parents[2] / "scripts" / "html_preview.py"
    res = subprocess.run(
        [sys.executable, str(script), str(run), str(tmp_path / "preview")],
        capture_output=True,
        text=True,
        check=False,
        env={"PYTHONPATH": str(script.parents[1] / "src"), "PATH": "/usr/bin:/bin"},
    )
    assert res.returncode == 0, res.stderr
    assert res.stdout.startswith("PASS: ")
    html = (tmp_path / "preview" / "index.html").read_text()
    assert links(html).badge == ["PASS"] and "not in this pack" not in html
    assert (
        tmp_path / "preview" / "certs" / "m1" / "quant_4bit_clean" / "run_1" / "evaluation.html"
    ).is_file()


def _mkdir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path

"""evaluation.html in headless Chromium: the rendered page shows the verdict, in colour."""

from __future__ import annotations

from html.parser import HTMLParser
from pathlib import Path

import pytest

from editproof.report.html import render_html
from tests.chromium import count_colour, dump_dom, screenshot
from tests.report.factory import make_report

PASS_BG, FAIL_BG = (0xDA, 0xFB, 0xE1), (0xFF, 0xEB, 0xE9)


class _Badge(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.text: list[str] = []
        self.svgs = 0
        self._in = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.svgs += tag == "svg"
        self._in = tag == "div" and "badge" in (dict(attrs).get("class") or "").split()

    def handle_data(self, data: str) -> None:
        if self._in and data.strip():
            self.text.append(data.strip())


@pytest.mark.parametrize(("kwargs", "status", "bg"), [
    ({"noise": 0.02, "seed": 3}, "PASS", PASS_BG),
    ({"shift": 0.3, "noise": 0.02}, "FAIL", FAIL_BG),
])  # fmt: skip
def test_rendered_page_shows_the_verdict(
    kwargs: dict[str, float], status: str, bg: tuple[int, int, int], tmp_path: Path
) -> None:
    report = make_report(**kwargs)  # type: ignore[arg-type]
    assert report.status == status
    page = tmp_path / "evaluation.html"
    page.write_text(render_html(report), encoding="utf-8")
    dom = dump_dom(page)
    badge = _Badge()
    badge.feed(dom)
    assert badge.text == [status]
    assert badge.svgs == 3  # per-window bars, histogram, scatter
    for gate in report.gates:
        assert f"<code>{gate.name}</code>" in dom
    shot = screenshot(page, tmp_path / "evaluation.png", size=(1280, 400))
    assert count_colour(shot, bg, rows=160) > 2000  # the badge, painted in the verdict colour

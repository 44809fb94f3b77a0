"""``index.html`` of a pack: the verdict and one row per scenario run, linking its report.

Self-contained (no scripts, no network), relative links, every string from the run escaped.
A richer renderer replaces this module; builders call only ``render_index(root)``.
"""

from __future__ import annotations

import json
from html import escape
from pathlib import Path
from typing import Any

from editproof.pack import layout as L


def _load(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _row(root: Path, report: Path) -> str:
    r = _load(report)
    rel = report.relative_to(root).as_posix()
    html_rel = report.with_name("evaluation.html")
    pm = r.get("primary_metric") or {}
    ratio = pm.get("ratio")
    ci = pm.get("display_ci") or []
    ci_text = f"[{ci[0]:.4f}, {ci[1]:.4f}]" if len(ci) == 2 and None not in ci else "—"
    parts = report.relative_to(root / L.CERTS).parts
    links = f'<a href="{escape(rel)}">json</a>'
    if html_rel.is_file():
        links += f' · <a href="{escape(html_rel.relative_to(root).as_posix())}">html</a>'
    cells = [
        escape(parts[0]),
        escape("/".join(parts[1:-1])),
        escape(str((r.get("edit") or {}).get("spec", ""))),
        escape(f"{ratio:.4f}" if isinstance(ratio, float) else "—"),
        escape(ci_text),
        escape(str(r.get("status", "?"))),
        links,
    ]
    return "<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>"


def render_index(root: Path) -> str:
    """HTML for the staged pack at ``root``."""
    v = _load(root / L.FINAL_VERDICT)
    verdict = str(v.get("verdict", "UNKNOWN"))
    failed = [
        f"<li>{escape(str(f.get('requirement')))}: {escape(str(f.get('message')))}</li>"
        for f in v.get("failed_requirements") or []
    ]
    rows = [_row(root, p) for p in sorted((root / L.CERTS).rglob(L.REPORT_NAME))]
    models = ", ".join(map(str, v.get("models") or []))
    colour = "#1a7f37" if verdict == "PASS" else "#b42318"
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>editproof proof pack — {escape(verdict)}</title>
<style>body{{font-family:sans-serif;margin:2em;max-width:70em}}
table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:.3em .6em;text-align:left}}
.verdict{{font-size:2em;font-weight:bold;color:{colour}}}</style></head>
<body>
<h1>editproof proof pack</h1>
<p class="verdict" id="verdict">FINAL VERDICT: {escape(verdict)}</p>
<p>suite {escape(str(v.get("suite", "?")))}; models: {escape(models)}</p>
{"<h2>Failed requirements</h2><ul>" + "".join(failed) + "</ul>" if failed else ""}
<p><a href="results/final_verdict.txt">final_verdict.txt</a> ·
<a href="README.md">README.md</a> (what is inside and how to verify it)</p>
<h2>Scenario runs</h2>
<table><thead><tr><th>model</th><th>scenario / run</th><th>edit</th><th>ratio</th>
<th>95% CI</th><th>status</th><th>report</th></tr></thead>
<tbody>
{chr(10).join(rows)}
</tbody></table>
</body></html>
"""

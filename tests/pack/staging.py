"""Stage a pack directory the way the builder lays it out, from synthesized suite runs.

Only what ``render_index`` reads: ``results/`` (the verdict files) and
``certs/<model>/<scenario>/run_<n>/evaluation.report.json`` (+ ``evaluation.html``).
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath

from editproof.report.html import render_html
from editproof.verdict.compile import compile_verdict
from editproof.verdict.model import FinalVerdict, VerdictInputs
from editproof.verdict.write import write_verdict
from tests.verdict.synth import Reports

GENERATED_AT = "2025-03-14T10:00:00+00:00"


def cert_dir(run_path: str) -> PurePosixPath:
    """``<model_dir>/reports/<scenario>/run_<n>/evaluation.report.json`` -> ``certs/...``."""
    parts = PurePosixPath(run_path).parts
    return PurePosixPath("certs", parts[0], *parts[-3:-1])


def stage(
    root: Path,
    inputs: VerdictInputs,
    reports: Reports,
    *,
    html: bool = True,
    place: dict[str, PurePosixPath] | None = None,
) -> FinalVerdict:
    """Write the verdict and every report into ``root``; ``place`` overrides cert dirs."""
    v = compile_verdict(inputs, reports)
    results = root / "results"
    results.mkdir(parents=True)
    write_verdict(results, v, generated_at=GENERATED_AT)
    for path, (report, data) in reports.items():
        target = root / (place or {}).get(path, cert_dir(path))
        target.mkdir(parents=True, exist_ok=True)
        (target / "evaluation.report.json").write_bytes(data)
        if html:
            (target / "evaluation.html").write_text(render_html(report), encoding="utf-8")
    return v

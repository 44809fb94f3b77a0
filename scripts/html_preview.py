"""Preview a suite run's proof-pack pages without building (or signing) a pack.

    python scripts/html_preview.py RUN_DIR OUT_DIR [--screenshot PNG]

Copies the run's verdict files into ``OUT_DIR/results/`` and each judged report (with its
``evaluation.html``) into ``OUT_DIR/certs/<model dir>/<scenario>/run_<n>/``, as a pack lays
them out, renders ``OUT_DIR/index.html`` with ``editproof.pack.index.render_index`` and, with
``--screenshot``, takes a 1280 px wide headless-Chromium screenshot of it. This is how
``docs/img/pack_index.png`` was made; ``editproof pack`` builds the real thing.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path, PurePosixPath

from editproof.pack.index import render_index
from editproof.report.html import render_html
from editproof.report.io import HTML_NAME, REPORT_NAME, load_report
from editproof.verdict.model import FinalVerdict
from editproof.verdict.write import FINAL_JSON, VERDICT_FILES


def stage(run: Path, out: Path) -> FinalVerdict:
    results = out / "results"
    results.mkdir(parents=True)
    for name in VERDICT_FILES:
        shutil.copy2(run / "reports" / name, results / name)
    verdict = FinalVerdict.model_validate_json((results / FINAL_JSON).read_bytes())
    for rec in verdict.records:
        parts = PurePosixPath(rec.path).parts
        src = run / rec.path
        dst = out / "certs" / parts[0] / parts[-3] / parts[-2]
        dst.mkdir(parents=True)
        shutil.copy2(src, dst / REPORT_NAME)
        html = src.parent / HTML_NAME
        if html.is_file():
            shutil.copy2(html, dst / HTML_NAME)
        else:
            (dst / HTML_NAME).write_text(render_html(load_report(src)), encoding="utf-8")
    (out / "index.html").write_text(render_index(out), encoding="utf-8")
    return verdict


def screenshot(page: Path, png: Path, height: int) -> None:
    with tempfile.TemporaryDirectory() as profile:
        subprocess.run(
            [
                shutil.which("chromium") or "chromium",
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--hide-scrollbars",
                f"--user-data-dir={profile}",
                f"--screenshot={png.resolve()}",
                f"--window-size=1280,{height}",
                page.resolve().as_uri(),
            ],
            check=True,
            capture_output=True,
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--screenshot", type=Path)
    parser.add_argument("--height", type=int, default=2000)
    args = parser.parse_args()
    if args.out_dir.exists():
        parser.error(f"{args.out_dir} exists")
    verdict = stage(args.run_dir, args.out_dir)
    print(f"{verdict.verdict}: {args.out_dir / 'index.html'}")
    if args.screenshot:
        screenshot(args.out_dir / "index.html", args.screenshot, args.height)
        print(f"screenshot: {args.screenshot}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

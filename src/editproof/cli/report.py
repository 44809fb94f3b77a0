"""``editproof report``: verify, explain, render and publish the schema of reports."""

from __future__ import annotations

from pathlib import Path

import typer

from editproof.errors import MalformedReportError, NotFoundError, OutputError
from editproof.fileio import atomic_write_text
from editproof.report.explain import explain_lines
from editproof.report.io import load_report
from editproof.report.verify import verify_report

app = typer.Typer(help="Verify, explain and render evaluation reports.", no_args_is_help=True)


@app.command("verify")
def verify(
    files: list[Path] = typer.Argument(..., help="evaluation.report.json files (or their dirs)."),
) -> None:
    """Recompute ratio, CI, counts and gates from the raw data.

    Exit 0 when every report verifies, 1 on a mismatch, 2 on a malformed or missing file.
    """
    worst = 0
    for path in files:
        try:
            report = load_report(path)
        except (MalformedReportError, NotFoundError) as exc:
            # A missing file is as unverifiable as a malformed one: both exit 2 here.
            typer.echo(f"MALFORMED {exc.message}")
            worst = max(worst, 2)
            continue
        result = verify_report(report)
        for note in result.notes:
            typer.echo(f"note      {path}: {note}")
        if result.ok:
            typer.echo(f"OK        {path}: {result.checks} checks, status {report.status}")
        else:
            typer.echo(f"MISMATCH  {path}: {len(result.problems)} of {result.checks} checks failed")
            for problem in result.problems:
                typer.echo(f"  - {problem}")
            worst = max(worst, 1) if worst != 2 else worst
    raise typer.Exit(worst)


@app.command("explain")
def explain(
    file: Path = typer.Argument(..., help="An evaluation.report.json (or its dir)."),
) -> None:
    """Print each gate: measured value against its threshold, and the overall decision."""
    report = load_report(file)
    typer.echo("\n".join(explain_lines(report)))


@app.command("html")
def html(
    file: Path = typer.Argument(..., help="An evaluation.report.json (or its dir)."),
    out: Path = typer.Option(..., "--out", "-o", help="Where to write the HTML page."),
) -> None:
    """Render a report as one self-contained HTML page."""
    from editproof.report.html import render_html

    report = load_report(file)
    try:
        atomic_write_text(out, render_html(report))
    except OSError as exc:
        raise OutputError(f"cannot write '{out}': {exc.strerror}") from None
    typer.echo(str(out))


@app.command("schema")
def schema(
    out: Path = typer.Option(Path("contracts"), "--out", help="Directory for the schemas."),
) -> None:
    """Write the JSON Schemas of the public contracts (reports, catalogue, verdict, pack)."""
    from editproof.pack.schema import SCHEMAS as PACK_SCHEMAS
    from editproof.report.schema import SCHEMAS as REPORT_SCHEMAS
    from editproof.report.schema import write_schemas
    from editproof.verdict.schema import SCHEMAS as VERDICT_SCHEMAS

    try:
        written = write_schemas(out, {**REPORT_SCHEMAS, **VERDICT_SCHEMAS, **PACK_SCHEMAS})
    except OSError as exc:
        raise OutputError(f"cannot write schemas to '{out}': {exc.strerror}") from None
    for path in written:
        typer.echo(str(path))

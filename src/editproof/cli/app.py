"""The ``editproof`` command. Parsing and presentation only; the library does the work.

Every :class:`~editproof.errors.EditproofError` becomes one ``error: ...`` line on stderr and
its documented exit code (docs/cli.md). Usage mistakes exit 2 the same way.
"""

from __future__ import annotations

import os
import sys
import traceback

import typer

try:  # typer >= 0.26 vendors click; its exceptions live there, not in the `click` package
    from typer._click import exceptions as click_exc
except ImportError:  # pragma: no cover - older typer on top of click
    from click import exceptions as click_exc  # type: ignore[no-redef]

from editproof import __version__
from editproof.cli import calibrate as calibrate_cmd
from editproof.cli import diff as diff_cmd
from editproof.cli import edit as edit_cmd
from editproof.cli import evaluate as evaluate_cmd
from editproof.cli import pack as pack_cmd
from editproof.cli import report as report_cmd
from editproof.cli import suite as suite_cmd
from editproof.cli import tune as tune_cmd
from editproof.errors import EXIT_INTERNAL, EditproofError

app = typer.Typer(
    name="editproof",
    help="Prove that a weight edit kept a language model healthy.",
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
app.command("evaluate")(evaluate_cmd.evaluate)
app.command("edit")(edit_cmd.edit)
app.command("tune")(tune_cmd.tune)
app.add_typer(report_cmd.app, name="report")
app.add_typer(calibrate_cmd.app, name="calibrate")
app.command("suite")(suite_cmd.suite)
app.add_typer(suite_cmd.list_app, name="list")
app.command("run")(pack_cmd.run)
app.command("pack")(pack_cmd.pack)
app.command("verify")(pack_cmd.verify)
app.command("inspect")(pack_cmd.inspect_pack)
app.command("diff")(diff_cmd.diff)
app.command("keygen")(pack_cmd.keygen)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"editproof {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """Prove that a weight edit kept a language model healthy."""


def main(argv: list[str] | None = None) -> None:
    """Run one command and exit with its code (``sys.exit``)."""
    sys.exit(exit_code(sys.argv[1:] if argv is None else argv))


def exit_code(args: list[str]) -> int:
    """Run one command; its documented exit code (errors are printed, never raised)."""
    try:
        code = app(args=args, prog_name="editproof", standalone_mode=False)
    except click_exc.NoArgsIsHelpError as exc:
        typer.echo(exc.ctx.get_help() if exc.ctx else "")
        code = 0
    except click_exc.UsageError as exc:
        typer.echo(f"error: {exc.format_message()} (see --help)", err=True)
        code = 2
    except click_exc.ClickException as exc:
        typer.echo(f"error: {exc.format_message()}", err=True)
        code = exc.exit_code
    except typer.Exit as exc:
        code = exc.exit_code
    except typer.Abort:
        typer.echo("error: aborted", err=True)
        code = 130
    except EditproofError as exc:
        typer.echo(f"error: {exc.message}", err=True)
        code = exc.exit_code
    except KeyboardInterrupt:
        typer.echo("error: interrupted", err=True)
        code = 130
    except Exception as exc:  # a bug: say so plainly, keep the traceback for debugging only
        if os.environ.get("EDITPROOF_DEBUG"):
            traceback.print_exc()
        typer.echo(
            f"error: internal error ({type(exc).__name__}: {exc}); "
            "rerun with EDITPROOF_DEBUG=1 and report it",
            err=True,
        )
        code = EXIT_INTERNAL
    return code if isinstance(code, int) else 0

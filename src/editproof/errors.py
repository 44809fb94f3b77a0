"""Typed errors. Each carries the process exit code the CLI maps it to.

The CLI prints ``error: <message>`` on one line and exits with ``exit_code``; no traceback
is shown for these. Anything else escaping the library is a bug and exits 70.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pydantic import ValidationError


class EditproofError(Exception):
    """Base class for every error the user can cause or fix."""

    exit_code: int = 1

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class UsageError(EditproofError):
    """A flag or value the tool does not accept (unknown tier, provider, spec...)."""

    exit_code = 2


class NotFoundError(EditproofError):
    """Something named on the command line does not exist or is not cached locally."""

    exit_code = 3


class InvalidInputError(EditproofError):
    """An input exists but cannot be used: not a model, malformed file, too little text."""

    exit_code = 4


class OutputError(EditproofError):
    """The output location cannot be written."""

    exit_code = 5


class EvaluationError(EditproofError):
    """The evaluation itself could not be carried out (device, memory, numerics)."""

    exit_code = 6


class RestoreError(EvaluationError):
    """The baseline's exact weights did not come back after an in-memory edit: later
    results on this loaded model would be unsafe."""


class ReportMismatchError(EditproofError):
    """A report's stored numbers disagree with what its raw data recomputes to."""

    exit_code = 1


class MalformedReportError(EditproofError):
    """A report file that is not valid JSON or does not match the report schema."""

    exit_code = 2


# Exit code of a run whose gates failed (the report is still written).
EXIT_GATES_FAILED = 1
# Exit code for an unexpected internal error (a bug): BSD EX_SOFTWARE.
EXIT_INTERNAL = 70


def validation_summary(exc: ValidationError, *, count_more: bool = False) -> str:
    """``where: message`` of a validation error's first problem, for one-line errors:
    ``where`` is the dotted field path (``(top level)`` for the whole object), and the
    message loses pydantic's ``Value error, `` prefix. ``count_more`` adds how many other
    problems there were."""
    first = exc.errors()[0]
    where = ".".join(str(x) for x in first["loc"]) or "(top level)"
    msg = str(first["msg"]).removeprefix("Value error, ")
    more = exc.error_count() - 1
    return f"{where}: {msg}" + (f" (and {more} more)" if count_more and more else "")

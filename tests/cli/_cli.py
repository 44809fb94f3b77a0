from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pytest

from editproof.cli.app import main


@dataclass
class Result:
    code: int
    out: str
    err: str


def make_cli(capsys: pytest.CaptureFixture[str]) -> Callable[..., Result]:
    def run(*args: str) -> Result:
        with pytest.raises(SystemExit) as exc:
            main(list(args))
        captured = capsys.readouterr()
        code = exc.value.code
        return Result(code=code if isinstance(code, int) else 0, out=captured.out, err=captured.err)

    return run

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.cli._cli import Result, make_cli


@pytest.fixture(scope="session")
def tiny_tokenizer() -> Any:
    pytest.importorskip("torch")
    from tests.models import train_tokenizer

    return train_tokenizer()


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory, tiny_tokenizer: Any) -> Path:
    """A local HF directory holding a tiny random-init Llama and its tokenizer."""
    from tests.models import save_tiny

    return save_tiny(tmp_path_factory.mktemp("tiny") / "llama", tokenizer=tiny_tokenizer)


@pytest.fixture(scope="session")
def tiny_dir_other(tmp_path_factory: pytest.TempPathFactory, tiny_tokenizer: Any) -> Path:
    """Same architecture and tokenizer, different random weights (a 'custom' subject)."""
    from tests.models import save_tiny

    return save_tiny(tmp_path_factory.mktemp("tiny") / "llama2", seed=1, tokenizer=tiny_tokenizer)


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]) -> Callable[..., Result]:
    """Run the ``editproof`` CLI in-process; returns exit code, stdout and stderr."""
    return make_cli(capsys)

"""The ``stdlib`` provider: a larger offline text, the same in every process."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from editproof.data import load_corpus
from editproof.data.stdlib_docs import MODULES
from editproof.errors import UsageError

SRC = str(Path(__file__).resolve().parents[2] / "src")


def _digest(hash_seed: str) -> str:
    env = {**os.environ, "PYTHONHASHSEED": hash_seed, "PYTHONPATH": SRC}
    code = "from editproof.data import load_corpus; print(load_corpus('stdlib').sha256)"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def test_same_text_whatever_the_hash_seed() -> None:
    assert _digest("1") == _digest("2") == load_corpus("stdlib").sha256


def test_larger_than_pydoc_and_without_addresses() -> None:
    pydoc, stdlib = load_corpus("pydoc"), load_corpus("stdlib")
    assert stdlib.documents[: len(pydoc.documents)] == pydoc.documents
    assert stdlib.n_chars > 2 * pydoc.n_chars
    text = "\n".join(stdlib.documents[len(pydoc.documents) :])
    assert not re.search(r" at 0x[0-9a-fA-F]{8,}", text)  # no reprs of live objects
    assert int(stdlib.source["stdlib_modules"]) == len(MODULES)  # all import on CPython
    assert stdlib.source["python"]
    # Own docstrings only: an inherited one is not repeated under every subclass.
    assert text.count("Return repr(self).") <= 1


def test_no_data_path() -> None:
    with pytest.raises(UsageError, match="not used by the 'stdlib' provider"):
        load_corpus("stdlib", path="x.txt")

"""The configuration layer: what ``--provider auto`` stands for, and text read ahead."""

from __future__ import annotations

from pathlib import Path

import pytest

from editproof.errors import NotFoundError, UsageError
from editproof.evalconfig import EvaluationConfig, load_text, prefetch_text, text_provider


def _cfg(baseline: str, **kw: object) -> EvaluationConfig:
    return EvaluationConfig(baseline=baseline, edit="noop", **kw)  # type: ignore[arg-type]


def test_auto_picks_pydoc_for_the_demo_and_stdlib_for_other_models(tiny_dir: Path) -> None:
    assert text_provider(_cfg("demo")) == "pydoc"
    assert text_provider(_cfg(str(tiny_dir))) == "stdlib"
    assert text_provider(_cfg(str(tiny_dir), provider="pydoc")) == "pydoc"  # explicit wins


def test_auto_follows_data_and_dataset(tiny_dir: Path) -> None:
    assert text_provider(_cfg(str(tiny_dir), data_path="notes.JSONL")) == "jsonl"
    assert text_provider(_cfg(str(tiny_dir), data_path="notes/")) == "text"
    assert text_provider(_cfg("demo", dataset="wikitext")) == "hf"


def test_the_report_names_the_provider_used_not_auto(tiny_dir: Path) -> None:
    corpus = load_text(_cfg(str(tiny_dir)))
    assert corpus.provider == "stdlib" and corpus.source["provider"] == "stdlib"


def test_prefetched_text_is_the_same_corpus(tmp_path: Path) -> None:
    data = tmp_path / "t.txt"
    data.write_text("alpha beta\n\ngamma delta\n")
    config = _cfg("demo", data_path=str(data))
    prefetch_text(config)
    prefetch_text(config)  # a second call for the same text starts nothing new
    ahead = load_text(config)
    again = load_text(config)  # taken once: this one reads the file itself
    assert ahead.sha256 == again.sha256 and ahead.provider == "text"


def test_prefetch_hands_over_the_error(tmp_path: Path) -> None:
    config = _cfg("demo", data_path=str(tmp_path / "missing.txt"))
    prefetch_text(config)
    with pytest.raises(NotFoundError, match="text path not found"):
        load_text(config)


def test_data_with_an_explicit_builtin_provider_is_still_refused(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="--data is not used by the 'stdlib' provider"):
        load_text(_cfg("demo", provider="stdlib", data_path=str(tmp_path)))

"""Tokenized-corpus cache: keyed by corpus, tokenizer and separator; a bad entry is redone."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from editproof.data.token_cache import cache_key, cached_tokens, tokenizer_identity


@pytest.fixture(autouse=True)
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("EDITPROOF_CACHE", str(tmp_path / "c"))
    monkeypatch.delenv("EDITPROOF_TOKEN_CACHE", raising=False)
    return tmp_path / "c" / "tokens"


class Counter:
    def __init__(self, values: list[int]) -> None:
        self.values = values
        self.calls = 0

    def __call__(self) -> Any:
        self.calls += 1
        return np.array(self.values, dtype=np.int64)


def test_miss_then_hit(cache: Path) -> None:
    tok = Counter([5, 6, 7])
    a, hit_a = cached_tokens("c1", "t1", 0, tok)
    b, hit_b = cached_tokens("c1", "t1", 0, tok)
    assert (hit_a, hit_b, tok.calls) == (False, True, 1)
    assert a.tolist() == b.tolist() == [5, 6, 7] and b.dtype == np.int64
    assert len(list(cache.glob("*.npy"))) == 1 and len(list(cache.glob("*.json"))) == 1


@pytest.mark.parametrize("other", [("c2", "t1", 0), ("c1", "t2", 0), ("c1", "t1", None)])
def test_every_part_of_the_key_matters(other: tuple[str, str, int | None]) -> None:
    cached_tokens("c1", "t1", 0, Counter([1]))
    tok = Counter([2])
    stream, hit = cached_tokens(*other, tok)
    assert not hit and stream.tolist() == [2] and tok.calls == 1
    assert cache_key("c1", "t1", 0) != cache_key(*other)


def _entry(cache: Path) -> Path:
    (npy,) = cache.glob("*.npy")
    return npy


def test_edited_array_is_recomputed(cache: Path) -> None:
    cached_tokens("c1", "t1", 0, Counter([1, 2, 3]))
    np.save(_entry(cache), np.array([9, 9, 9], dtype=np.int64))  # same length, other tokens
    tok = Counter([1, 2, 3])
    stream, hit = cached_tokens("c1", "t1", 0, tok)
    assert not hit and tok.calls == 1 and stream.tolist() == [1, 2, 3]
    assert cached_tokens("c1", "t1", 0, Counter([0]))[1]  # rewritten: a hit again


def test_torn_or_pickled_entries_are_recomputed(cache: Path) -> None:
    cached_tokens("c1", "t1", 0, Counter([1, 2]))
    npy = _entry(cache)
    npy.write_bytes(npy.read_bytes()[:20])  # torn write
    tok = Counter([1, 2])
    assert cached_tokens("c1", "t1", 0, tok)[1] is False and tok.calls == 1
    # An object array needs pickle to load: refused, never unpickled.
    np.save(npy, np.array([{"x": 1}], dtype=object), allow_pickle=True)
    tok = Counter([1, 2])
    stream, hit = cached_tokens("c1", "t1", 0, tok)
    assert not hit and tok.calls == 1 and stream.tolist() == [1, 2]


def test_sidecar_for_another_key_is_not_trusted(cache: Path) -> None:
    cached_tokens("c1", "t1", 0, Counter([1, 2]))
    (side,) = cache.glob("*.json")
    meta = json.loads(side.read_text())
    meta["corpus_sha256"] = "other"
    side.write_text(json.dumps(meta))
    tok = Counter([1, 2])
    assert cached_tokens("c1", "t1", 0, tok)[1] is False and tok.calls == 1


def test_no_identity_or_turned_off_means_no_cache(
    cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tok = Counter([4])
    cached_tokens("c1", None, 0, tok)
    cached_tokens("c1", None, 0, tok)
    assert tok.calls == 2 and not cache.exists()
    monkeypatch.setenv("EDITPROOF_TOKEN_CACHE", "0")
    cached_tokens("c1", "t1", 0, tok)
    cached_tokens("c1", "t1", 0, tok)
    assert tok.calls == 4 and not cache.exists()


def test_unwritable_cache_still_tokenizes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    monkeypatch.setenv("EDITPROOF_CACHE", str(blocker))
    stream, hit = cached_tokens("c1", "t1", 0, Counter([3]))
    assert stream.tolist() == [3] and not hit


def test_tokenizer_identity_sees_the_whole_tokenizer() -> None:
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    def fast(merges: list[tuple[str, str]]) -> Any:
        vocab = {"a": 0, "b": 1, "ab": 2, "<eos>": 3}
        raw = Tokenizer(models.BPE(vocab=vocab, merges=merges))
        raw.pre_tokenizer = pre_tokenizers.Whitespace()
        return PreTrainedTokenizerFast(tokenizer_object=raw, eos_token="<eos>")

    same_vocab_other_merges = (fast([("a", "b")]), fast([]))
    ids = [tokenizer_identity(t) for t in same_vocab_other_merges]
    assert ids[0] and ids[1] and ids[0] != ids[1]
    assert tokenizer_identity(fast([("a", "b")])) == ids[0]
    assert tokenizer_identity(object()) is None

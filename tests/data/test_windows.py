"""Token windows: shape, disjointness, determinism, balance, and errors."""

from __future__ import annotations

import re
from collections.abc import Callable

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from editproof.data import (
    Corpus,
    WindowPlan,
    load_corpus,
    make_windows,
    plan_digest,
    token_hash,
    tokenize_corpus,
)
from editproof.data.providers import corpus_digest
from editproof.errors import InvalidInputError, UsageError


def toy_encoder() -> Callable[[str], list[int]]:
    """Word/punctuation encoder; ids are assigned on first sight (deterministic by order)."""
    vocab: dict[str, int] = {}

    def encode(text: str) -> list[int]:
        return [vocab.setdefault(t, len(vocab) + 1) for t in re.findall(r"\w+|[^\w\s]", text)]

    return encode


def corpus_of(*docs: str) -> Corpus:
    return Corpus("text", docs, {"provider": "text"}, corpus_digest(docs), sum(map(len, docs)))


@pytest.fixture(scope="module")
def pydoc_stream() -> np.ndarray:
    return tokenize_corpus(load_corpus("pydoc"), toy_encoder(), separator_id=0)


def check_plan(plan: WindowPlan, stream: np.ndarray) -> None:
    L = plan.seq_len
    for group in (plan.preview, plan.final):
        assert [w.index for w in group] == sorted(w.index for w in group)
    for w in plan.all_windows():
        assert len(w.tokens) == L
        assert w.tokens == tuple(stream[w.index * L : (w.index + 1) * L].tolist())
        assert w.id == f"w{w.index:06d}"
        assert w.token_hash == token_hash(w.tokens)
    prev = {w.index for w in plan.preview}
    fin = {w.index for w in plan.final}
    assert not prev & fin
    hashes = [w.token_hash for w in plan.all_windows()]
    assert len(set(hashes)) == len(hashes)
    assert plan.digest == plan_digest(plan.preview, plan.final)


def test_tokenize_separator_between_documents() -> None:
    c = corpus_of("a b", "b c")
    enc = toy_encoder()
    s = tokenize_corpus(c, enc, separator_id=99)
    assert s.dtype == np.int64
    assert s.tolist() == [1, 2, 99, 2, 3]
    assert tokenize_corpus(c, toy_encoder(), separator_id=None).tolist() == [1, 2, 2, 3]


def test_token_hash_golden_and_encoding() -> None:
    assert token_hash([1, 2, 3]) == "4636993d3e1da4e9"
    assert token_hash(np.array([1, 2, 3], dtype=np.int64)) == "4636993d3e1da4e9"
    assert token_hash((0, 2**31 - 1)) == "b6d07a2a406a5dd2"


@pytest.mark.parametrize("bad", [[2**31], [-1], [2**70]])
def test_token_hash_rejects_out_of_range(bad: list[int]) -> None:
    with pytest.raises(InvalidInputError, match=r"2\*\*31"):
        token_hash(bad)


def test_make_windows_rejects_big_token_ids() -> None:
    with pytest.raises(InvalidInputError, match="int32"):
        make_windows(np.array([1, 2, 2**31, 4]), seq_len=1, n_preview=1, n_final=1, seed=0)


def test_plan_shape_and_disjointness(pydoc_stream: np.ndarray) -> None:
    plan = make_windows(pydoc_stream, seq_len=64, n_preview=40, n_final=40, seed=1)
    assert len(plan.preview) == len(plan.final) == 40
    assert plan.candidates == len(pydoc_stream) // 64
    assert plan.tokens_available == len(pydoc_stream)
    check_plan(plan, pydoc_stream)


def test_deterministic_and_seed_sensitive(pydoc_stream: np.ndarray) -> None:
    kw = {"seq_len": 32, "n_preview": 30, "n_final": 30}
    a = make_windows(pydoc_stream, seed=7, **kw)
    b = make_windows(pydoc_stream, seed=7, **kw)
    c = make_windows(pydoc_stream, seed=8, **kw)
    assert a == b
    assert a.digest == b.digest
    assert a.digest != c.digest
    assert {w.id for w in a.preview} != {w.id for w in c.preview}


def test_balanced_difficulty(pydoc_stream: np.ndarray) -> None:
    for seed in range(3):
        plan = make_windows(pydoc_stream, seq_len=64, n_preview=100, n_final=100, seed=seed)
        assert plan.stats.candidate_std > 0
        assert plan.stats.gap < 0.1 * plan.stats.candidate_std
        assert plan.stats.gap == pytest.approx(abs(plan.stats.preview_mean - plan.stats.final_mean))
        # Both sets span the difficulty range rather than clustering.
        for group in (plan.preview, plan.final):
            d = [w.difficulty for w in group]
            assert np.std(d) > 0.5 * plan.stats.candidate_std


def test_uneven_sets(pydoc_stream: np.ndarray) -> None:
    for n_p, n_f in [(5, 37), (37, 5), (1, 1), (1, 12)]:
        plan = make_windows(pydoc_stream, seq_len=48, n_preview=n_p, n_final=n_f, seed=3)
        assert (len(plan.preview), len(plan.final)) == (n_p, n_f)
        check_plan(plan, pydoc_stream)
    plan = make_windows(pydoc_stream, seq_len=48, n_preview=20, n_final=60, seed=3)
    assert plan.stats.gap < 0.25 * plan.stats.candidate_std


def test_too_little_text_message() -> None:
    stream = np.arange(1, 101)
    with pytest.raises(InvalidInputError) as info:
        make_windows(stream, seq_len=32, n_preview=2, n_final=2, seed=0)
    msg = str(info.value)
    assert "3 distinct windows of 32 tokens" in msg
    assert "4 were asked" in msg
    assert "--windows" in msg and "--seq-len" in msg
    assert "\n" not in msg


def test_exact_fit_and_remainder_dropped() -> None:
    stream = np.arange(1, 11)  # 3 windows of 3, remainder 1 token
    plan = make_windows(stream, seq_len=3, n_preview=1, n_final=2, seed=0)
    assert plan.candidates == 3
    assert sorted(w.index for w in plan.all_windows()) == [0, 1, 2]
    check_plan(plan, stream)


def test_duplicates_never_chosen_twice() -> None:
    block = [5, 6, 7, 8]
    stream = np.array(block * 6 + [1, 2, 3, 4] + block + [9, 10, 11, 12])
    plan = make_windows(stream, seq_len=4, n_preview=1, n_final=2, seed=0)
    assert plan.candidates == 9
    assert plan.duplicates == 6
    ids = {w.id for w in plan.all_windows()}
    assert ids == {"w000000", "w000006", "w000008"}  # first copy of the repeated block kept
    with pytest.raises(InvalidInputError, match=r"3 distinct windows.*6 duplicates dropped"):
        make_windows(stream, seq_len=4, n_preview=2, n_final=2, seed=0)


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"seq_len": 0}, "--seq-len"),
        ({"n_preview": 0}, "at least 1 preview"),
        ({"n_final": 0}, "1 final window"),
        ({"seed": -1}, "--seed"),
    ],
)
def test_bad_options(kw: dict[str, int], match: str) -> None:
    args = {"seq_len": 2, "n_preview": 1, "n_final": 1, "seed": 0} | kw
    with pytest.raises(UsageError, match=match):
        make_windows(np.arange(1, 50), **args)


@settings(max_examples=60, deadline=None)
@given(
    tokens=st.lists(st.integers(0, 20), min_size=1, max_size=300),
    seq_len=st.integers(1, 8),
    n_p=st.integers(1, 5),
    n_f=st.integers(1, 5),
    seed=st.integers(0, 2**32),
)
def test_property_windows_valid(
    tokens: list[int], seq_len: int, n_p: int, n_f: int, seed: int
) -> None:
    stream = np.array(tokens, dtype=np.int64)
    distinct = len(
        {
            tuple(tokens[i : i + seq_len])
            for i in range(0, len(tokens) // seq_len * seq_len, seq_len)
        }
    )
    if distinct < n_p + n_f:
        with pytest.raises(InvalidInputError):
            make_windows(stream, seq_len=seq_len, n_preview=n_p, n_final=n_f, seed=seed)
        return
    plan = make_windows(stream, seq_len=seq_len, n_preview=n_p, n_final=n_f, seed=seed)
    assert (len(plan.preview), len(plan.final)) == (n_p, n_f)
    check_plan(plan, stream)

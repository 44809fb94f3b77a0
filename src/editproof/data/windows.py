"""Fixed-length token windows, split into disjoint preview and final sets.

The stream is cut into consecutive, non-overlapping windows of ``seq_len`` tokens. A
subset is chosen spread evenly over a cheap difficulty proxy and dealt into preview and
final sets pair by pair, so both sets see the same mix of easy and hard text.

Difficulty proxy: the mean unigram surprisal (bits per token) of a window's tokens under
a unigram model with add-one smoothing fitted on the whole stream. It needs no model, is
fully deterministic, and tracks model loss well enough to balance the two sets (rare
tokens are both high-surprisal here and hard for a language model).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from editproof.data.providers import Corpus
from editproof.errors import InvalidInputError, UsageError

# Window hashes encode tokens as little-endian int32, so ids must fit in [0, 2**31).
_MAX_TOKEN = 2**31 - 1


@dataclass(frozen=True)
class Window:
    """One window: ``index`` is its position k in the stream (tokens k*L .. k*L+L-1)."""

    id: str
    index: int
    tokens: tuple[int, ...]
    token_hash: str
    difficulty: float


@dataclass(frozen=True)
class WindowStats:
    """Mean difficulty of each set, their absolute gap, and the spread over candidates."""

    preview_mean: float
    final_mean: float
    gap: float
    candidate_std: float


@dataclass(frozen=True)
class WindowPlan:
    """The chosen windows. ``preview`` and ``final`` are disjoint and in stream order.

    ``candidates`` counts every full window the text offered (before de-duplication);
    ``duplicates`` is how many of those repeated an earlier window's tokens.
    """

    seq_len: int
    seed: int
    preview: tuple[Window, ...]
    final: tuple[Window, ...]
    candidates: int
    duplicates: int
    tokens_available: int
    stats: WindowStats
    digest: str

    def all_windows(self) -> tuple[Window, ...]:
        """Preview windows then final windows (the order :func:`plan_digest` uses)."""
        return self.preview + self.final


def window_id(index: int) -> str:
    """Stable id of the window at stream position ``index``."""
    return f"w{index:06d}"


def _check_token_range(arr: npt.NDArray[np.int64]) -> None:
    if arr.size and (int(arr.min()) < 0 or int(arr.max()) > _MAX_TOKEN):
        bad = int(arr.min()) if int(arr.min()) < 0 else int(arr.max())
        raise InvalidInputError(
            f"token id {bad} is outside [0, 2**31); window hashes store tokens as int32, "
            "so use a tokenizer whose ids fit"
        )


def token_hash(tokens: Sequence[int] | npt.NDArray[np.integer]) -> str:
    """First 16 hex chars of sha256 over the tokens as little-endian int32 bytes.

    E.g. tokens ``[1, 2]`` hash the 8 bytes ``01 00 00 00 02 00 00 00``. Ids outside
    ``[0, 2**31)`` are rejected rather than silently wrapped.
    """
    try:
        arr = np.asarray(tokens, dtype=np.int64).reshape(-1)
    except (OverflowError, ValueError, TypeError) as exc:
        raise InvalidInputError(f"tokens must be integers in [0, 2**31): {exc}") from exc
    _check_token_range(arr)
    return hashlib.sha256(arr.astype("<i4").tobytes()).hexdigest()[:16]


def plan_digest(preview: Sequence[Window], final: Sequence[Window]) -> str:
    """Hex sha256 over ``(id, token_hash)`` of preview then final windows.

    Framing is line-based: ``"preview\\n"``, one ``"{id}\\t{token_hash}\\n"`` per window,
    then ``"final\\n"`` and its windows; ids and hashes contain no tabs or newlines.
    """
    return plan_digest_of(
        [(w.id, w.token_hash) for w in preview], [(w.id, w.token_hash) for w in final]
    )


def plan_digest_of(preview: Sequence[tuple[str, str]], final: Sequence[tuple[str, str]]) -> str:
    """:func:`plan_digest` from ``(id, token_hash)`` pairs, as a report stores them."""
    h = hashlib.sha256()
    for label, pairs in (("preview", preview), ("final", final)):
        h.update(f"{label}\n".encode())
        for window_id, hashed in pairs:
            h.update(f"{window_id}\t{hashed}\n".encode())
    return h.hexdigest()


def tokenize_corpus(
    corpus: Corpus, encode: Callable[[str], list[int]], *, separator_id: int | None
) -> npt.NDArray[np.int64]:
    """Concatenate each document's tokens, with ``separator_id`` between documents."""
    parts: list[npt.NDArray[np.int64]] = []
    sep = None if separator_id is None else np.array([separator_id], dtype=np.int64)
    for i, doc in enumerate(corpus.documents):
        if i and sep is not None:
            parts.append(sep)
        parts.append(np.asarray(encode(doc), dtype=np.int64).reshape(-1))
    if not parts:
        return np.zeros(0, dtype=np.int64)
    return np.concatenate(parts)


def unigram_difficulty(stream: npt.NDArray[np.int64], seq_len: int) -> npt.NDArray[np.float64]:
    """Mean add-one-smoothed unigram surprisal (bits) of each full window in ``stream``."""
    n = len(stream) // seq_len
    vocab, counts = np.unique(stream, return_counts=True)
    # Add-one over the observed vocabulary; every window token is observed, so no OOV.
    surprisal = -np.log2((counts + 1.0) / (len(stream) + len(vocab)))
    body = stream[: n * seq_len].reshape(n, seq_len)
    per_token = surprisal[np.searchsorted(vocab, body)]
    return np.asarray(per_token.mean(axis=1), dtype=np.float64)


def make_windows(
    stream: npt.NDArray[np.int64], *, seq_len: int, n_preview: int, n_final: int, seed: int
) -> WindowPlan:
    """Choose ``n_preview`` + ``n_final`` distinct windows, balanced by difficulty."""
    if seq_len < 1:
        raise UsageError(f"--seq-len must be at least 1, got {seq_len}")
    if n_preview < 1 or n_final < 1:
        raise UsageError(
            f"need at least 1 preview and 1 final window, got {n_preview} and {n_final}"
        )
    if seed < 0:
        raise UsageError(f"--seed must be a non-negative integer, got {seed}")
    stream = np.asarray(stream, dtype=np.int64)
    if stream.ndim != 1:
        raise InvalidInputError(f"token stream must be 1-D, got shape {stream.shape}")
    _check_token_range(stream)

    n_cand = len(stream) // seq_len
    body = stream[: n_cand * seq_len].reshape(n_cand, seq_len)
    hashes = [token_hash(row) for row in body]
    # Identical windows would be measured twice; keep only the first occurrence.
    first: dict[str, int] = {}
    for k, hx in enumerate(hashes):
        first.setdefault(hx, k)
    unique = np.fromiter(first.values(), dtype=np.int64, count=len(first))

    total = n_preview + n_final
    if len(unique) < total:
        dup_note = f" ({n_cand - len(unique)} duplicates dropped)" if n_cand > len(unique) else ""
        raise InvalidInputError(
            f"the text gives {len(unique)} distinct windows of {seq_len} tokens{dup_note} "
            f"from {len(stream)} tokens, but {total} were asked ({n_preview} preview + "
            f"{n_final} final); lower --windows or --seq-len, or give more text"
        )

    difficulty = unigram_difficulty(stream, seq_len) if n_cand else np.zeros(0)
    rng = np.random.default_rng(seed)

    # Sort unique candidates by difficulty; a seeded random key breaks ties.
    diff_u = difficulty[unique]
    order = unique[np.lexsort((rng.random(len(unique)), diff_u))]
    # Stratified pick: one window at a random spot in each of `total` equal strata.
    edges = (np.arange(total + 1) * len(order)) // total
    picks = edges[:-1] + rng.integers(0, edges[1:] - edges[:-1])
    chosen = order[picks]  # in difficulty order

    # Leftovers (uneven sizes) are spread evenly over the difficulty range, not bunched
    # at one end; the rest are dealt in consecutive pairs by a seeded coin flip.
    n_pairs = min(n_preview, n_final)
    n_left = total - 2 * n_pairs
    left_pos = {int((j + 0.5) * total / n_left) for j in range(n_left)}
    paired = [int(k) for i, k in enumerate(chosen) if i not in left_pos]
    leftovers = [int(chosen[i]) for i in sorted(left_pos)]
    flips = rng.integers(0, 2, size=n_pairs)
    prev_idx: list[int] = []
    final_idx: list[int] = []
    for p, flip in enumerate(flips):
        a, b = paired[2 * p], paired[2 * p + 1]
        prev_idx.append(a if flip == 0 else b)
        final_idx.append(b if flip == 0 else a)
    (prev_idx if n_preview > n_final else final_idx).extend(leftovers)

    def build(indices: list[int]) -> tuple[Window, ...]:
        return tuple(
            Window(
                id=window_id(k),
                index=k,
                tokens=tuple(body[k].tolist()),
                token_hash=hashes[k],
                difficulty=float(difficulty[k]),
            )
            for k in sorted(indices)
        )

    preview, final = build(prev_idx), build(final_idx)
    p_mean = float(np.mean([w.difficulty for w in preview]))
    f_mean = float(np.mean([w.difficulty for w in final]))
    stats = WindowStats(
        preview_mean=p_mean,
        final_mean=f_mean,
        gap=abs(p_mean - f_mean),
        candidate_std=float(np.std(diff_u)),
    )
    return WindowPlan(
        seq_len=seq_len,
        seed=seed,
        preview=preview,
        final=final,
        candidates=n_cand,
        duplicates=n_cand - len(unique),
        tokens_available=len(stream),
        stats=stats,
        digest=plan_digest(preview, final),
    )

"""A disk cache of tokenized corpora, keyed by what decides the tokens.

Tokenizing the stdlib text (1.25 MB) takes about half a second, and every evaluation and
every suite worker of the same model does it again. The token stream depends only on the
corpus (its sha256), the tokenizer (the sha256 of its full serialisation: vocabulary,
merges, normaliser, pre-tokeniser, special tokens), and the separator put between
documents. Those three name a cache entry: ``<cache>/tokens/<key>.npy`` plus a JSON
sidecar that repeats them with the array's own sha256. An entry is used only when the
sidecar matches the key and the array matches its sha256; anything else (a torn write, a
file edited by hand, a different numpy) is recomputed and rewritten. Arrays are read with
``allow_pickle=False``; nothing here ever unpickles.

A tokenizer with no full serialisation (a slow, Python-only tokenizer) is never cached.
``EDITPROOF_TOKEN_CACHE=0`` turns the cache off; a cache that cannot be written is skipped.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from editproof.fileio import atomic_write_text, cache_root

FORMAT = "editproof.token-cache"
SCHEMA_VERSION = 1


def tokenizer_identity(tok: Any) -> str | None:
    """sha256 of the tokenizer's full serialisation and class, or None when it has none."""
    backend = getattr(tok, "backend_tokenizer", None)
    to_str = getattr(backend, "to_str", None)
    if not callable(to_str):
        return None
    try:
        text = to_str()
    except Exception:  # a tokenizer that cannot serialise itself is simply not cached
        return None
    if not isinstance(text, str):
        return None
    h = hashlib.sha256(type(tok).__name__.encode())
    h.update(b"\0")
    h.update(text.encode("utf-8"))
    return h.hexdigest()


def cache_key(corpus_sha256: str, tokenizer_id: str, separator_id: int | None) -> str:
    blob = json.dumps(
        {"v": SCHEMA_VERSION, "corpus": corpus_sha256, "tok": tokenizer_id, "sep": separator_id},
        sort_keys=True,
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:32]


def _enabled() -> bool:
    return os.environ.get("EDITPROOF_TOKEN_CACHE", "1") != "0"


def _array_sha256(stream: npt.NDArray[np.int64]) -> str:
    return hashlib.sha256(np.ascontiguousarray(stream, dtype="<i8").tobytes()).hexdigest()


def _read(folder: Path, key: str, expect: dict[str, Any]) -> npt.NDArray[np.int64] | None:
    try:
        meta = json.loads((folder / f"{key}.json").read_text(encoding="utf-8"))
        if not isinstance(meta, dict) or any(meta.get(k) != v for k, v in expect.items()):
            return None
        with open(folder / f"{key}.npy", "rb") as handle:
            stream = np.load(handle, allow_pickle=False)
    except (OSError, ValueError, TypeError):
        return None
    if stream.ndim != 1 or stream.dtype != np.dtype("<i8") or len(stream) != meta.get("n_tokens"):
        return None
    if _array_sha256(stream) != meta.get("sha256"):
        return None
    return np.asarray(stream, dtype=np.int64)


def _write(folder: Path, key: str, expect: dict[str, Any], stream: npt.NDArray[np.int64]) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{key}.", suffix=".npy", dir=folder)
        try:
            with os.fdopen(fd, "wb") as handle:
                np.save(handle, np.ascontiguousarray(stream, dtype="<i8"), allow_pickle=False)
            os.chmod(tmp, 0o644)
            os.replace(tmp, folder / f"{key}.npy")
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        meta = {**expect, "n_tokens": len(stream), "sha256": _array_sha256(stream)}
        atomic_write_text(folder / f"{key}.json", json.dumps(meta, indent=2) + "\n")
    except OSError:
        pass  # a cache that cannot be written costs the next run its tokenizing, nothing else


def cached_tokens(
    corpus_sha256: str,
    tokenizer_id: str | None,
    separator_id: int | None,
    tokenize: Callable[[], npt.NDArray[np.int64]],
) -> tuple[npt.NDArray[np.int64], bool]:
    """The token stream for this corpus and tokenizer, from the cache when a valid entry
    exists, else from ``tokenize()`` (then stored). Returns the stream and whether it was
    a cache hit."""
    if tokenizer_id is None or not _enabled():
        return tokenize(), False
    key = cache_key(corpus_sha256, tokenizer_id, separator_id)
    folder = cache_root() / "tokens"
    expect = {
        "format": FORMAT,
        "schema_version": SCHEMA_VERSION,
        "corpus_sha256": corpus_sha256,
        "tokenizer_sha256": tokenizer_id,
        "separator_id": separator_id,
    }
    hit = _read(folder, key, expect)
    if hit is not None:
        return hit, True
    stream = np.asarray(tokenize(), dtype=np.int64)
    _write(folder, key, expect, stream)
    return stream, False

"""Evaluation text: corpus providers and balanced preview/final token windows."""

from editproof.data.providers import (
    AUTO_PROVIDER,
    PROVIDERS,
    Corpus,
    corpus_digest,
    load_corpus,
)
from editproof.data.windows import (
    Window,
    WindowPlan,
    WindowStats,
    make_windows,
    plan_digest,
    plan_digest_of,
    token_hash,
    tokenize_corpus,
    unigram_difficulty,
    window_id,
)

__all__ = [
    "AUTO_PROVIDER",
    "PROVIDERS",
    "Corpus",
    "Window",
    "WindowPlan",
    "WindowStats",
    "corpus_digest",
    "load_corpus",
    "make_windows",
    "plan_digest",
    "plan_digest_of",
    "token_hash",
    "tokenize_corpus",
    "unigram_difficulty",
    "window_id",
]

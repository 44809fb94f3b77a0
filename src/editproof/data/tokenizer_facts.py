"""What a run needs to know about its tokenizer, cached by the files that decide it.

An evaluation uses three facts of the tokenizer once its tokens are cached: the identity that
keys the token cache, the digest the report records, and the end-of-text id put between
documents. A fourth, the tokenizer's tokenizers-library backend, encodes a new corpus without
the tokenizer's own class, when that backend encoded a set of probe texts exactly as the
class did. All three follow from the tokenizer's files in the model directory (and the
versions of the libraries that read them), so they are stored under the sha256 of those
files and library versions: ``<cache>/tokenizer-facts/<key>.json``. A run whose facts and
tokens are both cached never loads the tokenizer, and so never imports the library that
loads it (transformers, several seconds on a GPU host). An entry that does not parse or does
not repeat its key is ignored and rewritten; ``EDITPROOF_TOKEN_CACHE=0`` turns this off with
the token cache.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from editproof.data.token_cache import tokenizer_identity
from editproof.fileio import atomic_write_text, cache_root

FORMAT = "editproof.tokenizer-facts"
SCHEMA_VERSION = 1
# Files a Hugging Face tokenizer is built from (config.json: the class when
# tokenizer_config.json does not name it).
TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "vocab.json",
    "vocab.txt",
    "merges.txt",
    "tokenizer.model",
    "spiece.model",
    "config.json",
)
_LIBRARIES = ("transformers", "tokenizers")


@dataclass(frozen=True)
class TokenizerFacts:
    identity: str | None  # keys the token cache (None: the tokenizer cannot be cached)
    digest: str  # the report's tokenizer_sha256
    eos_token_id: int | None  # the separator between documents
    # The tokenizers-library serialisation the loaded tokenizer encodes with, kept when it
    # encoded every probe text exactly as the loaded tokenizer did (see probe_backend):
    # in memory when just computed; a cached entry names its file and reads it only when a
    # text is to be tokenized (backend_text), not on every run.
    backend: str | None = field(default=None, compare=False, repr=False)
    backend_sha256: str | None = None
    backend_file: Path | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.backend is not None and self.backend_sha256 is None:
            object.__setattr__(self, "backend_sha256", _sha256(self.backend))

    def backend_text(self) -> str | None:
        """The verified backend's serialisation, or None (none kept, or its cached file is
        gone or does not match its sha256)."""
        if self.backend is not None or self.backend_sha256 is None or self.backend_file is None:
            return self.backend
        try:
            text = self.backend_file.read_text(encoding="utf-8")
        except OSError:
            return None
        return text if _sha256(text) == self.backend_sha256 else None


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


# Texts on which a tokenizer and its bare tokenizers-library backend must agree before the
# backend may stand in for it: spaces and newlines of every kind, Unicode, code, digits,
# a markup-like special-token spelling.
PROBES = (
    "Hello, world! The quick brown fox jumps over the lazy dog.",
    "  leading spaces\n\ttabs and\r\nwindows line ends   trailing  ",
    "def f(x):\n    return x ** 2  # squares 12345678901234567890\n",
    "Ünïcödé — “quotes” · 日本語のテキスト · emoji 🙂 · ﬁ ligature · e\u0301",
    "</s><s><|endoftext|> [CLS] <unk> <pad>",
    "",
    "\n\n\n",
)


def tokenizer_digest(tok: Any) -> str:
    """sha256 (16 hex) of the tokenizer's vocabulary and special tokens."""
    vocab = sorted(tok.get_vocab().items())
    special = sorted((str(k), str(v)) for k, v in tok.special_tokens_map.items())
    blob = json.dumps({"vocab": vocab, "special": special}, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def facts_of(tok: Any) -> TokenizerFacts:
    eos = tok.eos_token_id
    return TokenizerFacts(
        identity=tokenizer_identity(tok),
        digest=tokenizer_digest(tok),
        eos_token_id=int(eos) if isinstance(eos, int) else None,
        backend=probe_backend(tok),
    )


def probe_backend(tok: Any) -> str | None:
    """The serialisation of ``tok``'s tokenizers-library backend when, rebuilt from it, the
    bare backend encodes every text of :data:`PROBES` exactly as ``tok`` does (no special
    tokens added); else None. A fast tokenizer encodes through that backend, so they agree
    unless a tokenizer class adds its own steps, which the probes are there to catch."""
    backend = getattr(tok, "backend_tokenizer", None)
    try:
        text = backend.to_str() if backend is not None else None
        if not isinstance(text, str):
            return None
        bare = bare_encoder(text)
        if all(list(tok.encode(p, add_special_tokens=False)) == bare(p) for p in PROBES):
            return text
    except Exception:  # a tokenizer the probes cannot run on keeps its own encoder
        return None
    return None


def bare_encoder(serialised: str) -> Callable[[str], list[int]]:
    """An encoder (no special tokens) from a tokenizers-library serialisation."""
    from tokenizers import Tokenizer

    bare = Tokenizer.from_str(serialised)

    def encode(text: str) -> list[int]:
        return list(bare.encode(text, add_special_tokens=False).ids)

    return encode


def _version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "absent"


def files_key(folder: Path) -> str | None:
    """sha256 of the tokenizer files in ``folder`` and the reading libraries' versions, or
    None when the folder holds no tokenizer file (or one cannot be read)."""
    files: dict[str, str] = {}
    for name in TOKENIZER_FILES:
        path = folder / name
        if not path.is_file():
            continue
        try:
            files[name] = hashlib.sha256(path.read_bytes()).hexdigest()
        except OSError:
            return None
    if not set(files) - {"config.json"}:
        return None
    blob = {
        "v": SCHEMA_VERSION,
        "files": files,
        "libraries": {name: _version(name) for name in _LIBRARIES},
    }
    return hashlib.sha256(json.dumps(blob, sort_keys=True).encode()).hexdigest()


def _enabled() -> bool:
    return os.environ.get("EDITPROOF_TOKEN_CACHE", "1") != "0"


def _path(key: str) -> Path:
    return cache_root() / "tokenizer-facts" / f"{key}.json"


def cached_facts(folder: Path) -> TokenizerFacts | None:
    """The facts stored for the tokenizer files in ``folder``, or None."""
    key = files_key(folder) if _enabled() else None
    if key is None:
        return None
    try:
        meta = json.loads(_path(key).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(meta, dict) or (
        meta.get("format"),
        meta.get("schema_version"),
        meta.get("key"),
    ) != (
        FORMAT,
        SCHEMA_VERSION,
        key,
    ):
        return None
    identity, digest, eos = meta.get("identity"), meta.get("digest"), meta.get("eos_token_id")
    if not (identity is None or isinstance(identity, str)) or not isinstance(digest, str):
        return None
    if not (eos is None or (isinstance(eos, int) and not isinstance(eos, bool))):
        return None
    sha = meta.get("backend_sha256")
    if not (sha is None or isinstance(sha, str)):
        return None
    return TokenizerFacts(
        identity=identity,
        digest=digest,
        eos_token_id=eos,
        backend_sha256=sha,
        backend_file=_path(key).with_suffix(".backend.json") if sha else None,
    )


def store_facts(folder: Path, facts: TokenizerFacts) -> None:
    """Remember ``facts`` for the tokenizer files in ``folder`` (skipped when unwritable)."""
    key = files_key(folder) if _enabled() else None
    if key is None:
        return
    backend = facts.backend_text()
    meta = {
        "format": FORMAT,
        "schema_version": SCHEMA_VERSION,
        "key": key,
        "identity": facts.identity,
        "digest": facts.digest,
        "eos_token_id": facts.eos_token_id,
        "backend_sha256": _sha256(backend) if backend else None,
    }
    try:
        _path(key).parent.mkdir(parents=True, exist_ok=True)
        if backend:  # the backend first: an entry never names a backend not written
            atomic_write_text(_path(key).with_suffix(".backend.json"), backend)
        atomic_write_text(_path(key), json.dumps(meta, indent=2) + "\n")
    except OSError:
        pass

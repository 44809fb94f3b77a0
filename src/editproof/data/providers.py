"""Text corpora for evaluation windows, from a few simple providers.

Every provider yields a :class:`Corpus`: an ordered tuple of non-blank documents plus
provenance and a content digest, so a report can name exactly which text it measured.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import os
import platform
import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from editproof.errors import InvalidInputError, NotFoundError, UsageError

PROVIDERS: tuple[str, ...] = ("pydoc", "stdlib", "text", "jsonl", "hf")
# Not a provider of its own: the configuration layer picks one of PROVIDERS for it.
AUTO_PROVIDER = "auto"

# Suffixes picked up when a folder is given to the ``text`` provider.
TEXT_SUFFIXES: frozenset[str] = frozenset({".txt", ".md", ".rst", ".text"})

# Env switches that make `datasets` / `huggingface_hub` use only the local cache.
_OFFLINE_ENV = ("HF_DATASETS_OFFLINE", "HF_HUB_OFFLINE")


@dataclass(frozen=True)
class Corpus:
    """Ordered documents plus where they came from.

    ``sha256`` covers the documents in order; each is framed as an 8-byte big-endian
    length followed by its UTF-8 bytes, so no two different document lists collide.
    """

    provider: str
    documents: tuple[str, ...]
    source: dict[str, str]
    sha256: str
    n_chars: int


def corpus_digest(documents: Iterable[str]) -> str:
    """Hex sha256 over length-prefixed UTF-8 documents (see :class:`Corpus`)."""
    h = hashlib.sha256()
    for doc in documents:
        raw = doc.encode("utf-8")
        h.update(len(raw).to_bytes(8, "big"))
        h.update(raw)
    return h.hexdigest()


def load_corpus(
    provider: str,
    *,
    path: str | None = None,
    field: str = "text",
    dataset: str | None = None,
    config: str | None = None,
    split: str = "validation",
    net: bool = False,
) -> Corpus:
    """Load a corpus from ``provider`` (one of :data:`PROVIDERS`)."""
    if provider not in PROVIDERS:
        names = ", ".join((AUTO_PROVIDER, *PROVIDERS))
        raise UsageError(f"unknown text provider {provider!r}; use one of: {names}")
    if provider in ("pydoc", "stdlib", "hf") and path is not None:
        raise UsageError(f"--data is not used by the {provider!r} provider; drop it")
    if provider != "hf" and (dataset is not None or config is not None):
        raise UsageError(
            f"--dataset/--dataset-config only apply to the 'hf' provider, not {provider!r}"
        )

    source: dict[str, str] = {"provider": provider}
    docs: list[str]
    if provider == "pydoc":
        docs = _pydoc_documents()
        source |= {"module": "pydoc_data.topics", "python": platform.python_version()}
    elif provider == "stdlib":
        from editproof.data.stdlib_docs import stdlib_documents

        extra, imported = stdlib_documents()
        docs = _pydoc_documents() + extra
        source |= {
            "module": "pydoc_data.topics + stdlib docstrings",
            "python": platform.python_version(),
            "stdlib_modules": str(imported),
        }
    elif provider in ("text", "jsonl"):
        if path is None:
            raise UsageError(f"the {provider!r} provider needs --data pointing to a file or folder")
        p = Path(path)
        if not p.exists():
            raise NotFoundError(f"text path not found: {path}; check the --data value")
        if provider == "text":
            docs = _text_documents(p)
        else:
            docs = _jsonl_documents(p, field)
            source["field"] = field
        source["path"] = str(p)
    else:
        if not dataset:
            raise UsageError("the 'hf' provider needs --dataset NAME (e.g. wikitext)")
        docs = _hf_documents(dataset, config, split, field, net)
        source |= {"dataset": dataset, "split": split, "field": field}
        if config is not None:
            source["config"] = config

    # Whitespace-only documents carry no tokens worth measuring; drop them everywhere.
    kept = tuple(d for d in docs if d.strip())
    if not kept:
        raise InvalidInputError(
            f"the {provider!r} corpus has no non-blank text; point it at files with content"
        )
    return Corpus(
        provider=provider,
        documents=kept,
        source=source,
        sha256=corpus_digest(kept),
        n_chars=sum(len(d) for d in kept),
    )


def _pydoc_documents() -> list[str]:
    # Ships with CPython, so it needs no network; sorted keys make the order stable.
    from pydoc_data.topics import topics

    return [topics[key] for key in sorted(topics)]


def _read_utf8(path: Path) -> str:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise InvalidInputError(f"cannot read {path}: {exc.strerror or exc}") from exc
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidInputError(
            f"{path} is not UTF-8 (bad byte at offset {exc.start}); re-save it as UTF-8"
        ) from exc


def _text_documents(path: Path) -> list[str]:
    # One document per file: deterministic and keeps provenance per file simple.
    if path.is_file():
        return [_read_utf8(path)]
    files = sorted(
        (f for f in path.rglob("*") if f.is_file() and f.suffix.lower() in TEXT_SUFFIXES),
        key=lambda f: f.relative_to(path).as_posix(),
    )
    if not files:
        raise InvalidInputError(
            f"folder {path} has no text files ({', '.join(sorted(TEXT_SUFFIXES))}); "
            "add some or give a file"
        )
    return [_read_utf8(f) for f in files]


def _jsonl_documents(path: Path, field: str) -> list[str]:
    if path.is_dir():
        raise InvalidInputError(f"{path} is a folder; the 'jsonl' provider needs one .jsonl file")
    docs: list[str] = []
    for lineno, line in enumerate(_read_utf8(path).splitlines(), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InvalidInputError(
                f"{path} line {lineno} is not valid JSON ({exc.msg}); fix or remove that line"
            ) from exc
        if not isinstance(obj, dict):
            raise InvalidInputError(
                f"{path} line {lineno} is not a JSON object; each line must be {{...}}"
            )
        if field not in obj:
            raise InvalidInputError(
                f"{path} line {lineno} has no field {field!r}; set --field to the text key"
            )
        value = obj[field]
        if not isinstance(value, str):
            raise InvalidInputError(
                f"{path} line {lineno} field {field!r} is {type(value).__name__}, not a string"
            )
        docs.append(value)
    return docs


@contextmanager
def _offline(enabled: bool) -> Iterator[None]:
    """Force the HF libraries onto their local cache, restoring everything afterwards.

    The libraries read these flags at import time, so import them *before* entering:
    their cached constants are patched here (and restored) alongside the env vars.
    """
    if not enabled:
        yield
        return
    saved_env = {name: os.environ.get(name) for name in _OFFLINE_ENV}
    patched: list[tuple[Any, str, Any]] = []
    for mod_name, attrs in (
        ("datasets.config", ("HF_DATASETS_OFFLINE", "HF_HUB_OFFLINE")),
        ("huggingface_hub.constants", ("HF_HUB_OFFLINE",)),
    ):
        mod = sys.modules.get(mod_name)
        for attr in attrs:
            if mod is not None and hasattr(mod, attr):
                patched.append((mod, attr, getattr(mod, attr)))
    try:
        for name in _OFFLINE_ENV:
            os.environ[name] = "1"
        for mod, attr, _ in patched:
            setattr(mod, attr, True)
        yield
    finally:
        for mod, attr, old in patched:
            setattr(mod, attr, old)
        for name, old_value in saved_env.items():
            if old_value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = old_value


def _hf_documents(dataset: str, config: str | None, split: str, field: str, net: bool) -> list[str]:
    try:
        # Imported lazily: `datasets` is an optional extra, and this module must stay light.
        hf = importlib.import_module("datasets")
    except ImportError as exc:
        raise UsageError(
            "the 'hf' provider needs the datasets package; pip install 'editproof[hf]'"
        ) from exc
    name = dataset if config is None else f"{dataset}/{config}"
    with _offline(not net):
        try:
            ds = hf.load_dataset(dataset, config, split=split)
        except (FileNotFoundError, ConnectionError) as exc:
            # Offline, a dataset missing from the cache surfaces as one of these.
            if net:
                raise NotFoundError(
                    f"dataset {name!r} could not be fetched ({exc}); check the name and network"
                ) from exc
            raise NotFoundError(
                f"dataset {name!r} (split {split!r}) is not in the local cache; "
                "rerun with --net 1 to download it"
            ) from exc
        except ValueError as exc:
            # `datasets` reports unknown configs and splits as ValueError.
            msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise UsageError(f"dataset {name!r} split {split!r}: {msg}") from exc
    columns = list(getattr(ds, "column_names", []) or [])
    if field not in columns:
        raise InvalidInputError(
            f"dataset {name!r} has no column {field!r} (columns: {', '.join(columns)}); set --field"
        )
    docs: list[str] = []
    for row, value in enumerate(ds[field]):
        if not isinstance(value, str):
            raise InvalidInputError(
                f"dataset {name!r} row {row} column {field!r} is {type(value).__name__}, "
                "not a string"
            )
        docs.append(value)
    return docs

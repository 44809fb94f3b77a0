"""A larger offline text: the stdlib's pydoc topics plus its modules' own docstrings.

``pydoc_data.topics`` alone holds about 0.5 MB, which a 24k-vocabulary tokenizer cuts into
roughly 200 windows of 512 tokens: too few for 200+200. This provider adds the docstrings of
a fixed list of standard-library modules, their public functions and classes, and those
classes' methods, about 1.6 MB more on CPython 3.11.

Deterministic by construction: modules in a fixed order, members sorted by name, only
docstrings (never reprs, so no memory addresses), only an object's own docstring (nothing
inherited, so one text is not repeated under every subclass). The text depends on the
Python version, which the corpus's provenance records, and on which listed modules import
here (a missing one is skipped; the count is recorded too).
"""

from __future__ import annotations

import importlib
import inspect
import json
import subprocess
import sys
import warnings
from functools import cache
from pathlib import Path
from typing import Any

# Pure-stdlib modules present in every CPython build that editproof supports.
MODULES: tuple[str, ...] = (
    "abc", "argparse", "array", "ast", "asyncio", "base64", "bisect", "builtins", "bz2",
    "calendar", "cmath", "codecs", "collections", "collections.abc", "concurrent.futures",
    "configparser", "contextlib", "copy", "csv", "dataclasses", "datetime", "decimal",
    "difflib", "email.message", "enum", "fileinput", "fnmatch", "fractions", "ftplib",
    "functools", "getopt", "gettext", "glob", "gzip", "hashlib", "heapq", "hmac", "html",
    "html.parser", "http.client", "http.server", "imaplib", "importlib", "inspect", "io",
    "ipaddress", "itertools", "json", "keyword", "locale", "logging", "lzma", "mailbox",
    "math", "mimetypes", "multiprocessing", "numbers", "operator", "os", "os.path", "pathlib",
    "pickle", "pkgutil", "platform", "poplib", "pprint", "queue", "random", "re", "sched",
    "secrets", "selectors", "shelve", "shlex", "shutil", "signal", "smtplib", "socket",
    "socketserver", "sqlite3", "ssl", "statistics", "string", "struct", "subprocess",
    "tarfile", "tempfile", "textwrap", "threading", "time", "timeit", "tokenize",
    "traceback", "types", "typing", "unittest", "urllib.parse", "urllib.request", "uuid",
    "warnings", "wave", "weakref", "xml.dom.minidom", "xml.etree.ElementTree", "zipfile",
    "zlib", "zoneinfo",
)  # fmt: skip


def _own_doc(obj: Any) -> str | None:
    doc = getattr(obj, "__doc__", None)
    return inspect.cleandoc(doc) if isinstance(doc, str) and doc.strip() else None


def _module_text(name: str, module: Any) -> str:
    parts = [f"{name}\n\n{_own_doc(module) or ''}"]
    # The public names, resolved through getattr: a module's namespace grows as other code
    # imports its submodules or touches its lazy attributes, its public list does not.
    public = getattr(module, "__all__", None)
    names = sorted(public) if isinstance(public, list | tuple) else sorted(dir(module))
    for attr in names:
        if attr.startswith("_"):
            continue
        try:
            obj = getattr(module, attr)
        except AttributeError:  # listed in __all__ but absent on this platform
            continue
        home = getattr(obj, "__module__", name)
        if inspect.ismodule(obj) or (home != name and not inspect.isbuiltin(obj)):
            continue  # re-exported from elsewhere: documented where it lives
        doc = _own_doc(obj) if callable(obj) else None
        if doc is None:
            continue
        parts.append(f"{name}.{attr}\n{doc}")
        if inspect.isclass(obj):
            for member in sorted(vars(obj)):
                value = vars(obj)[member]
                method = callable(value) or isinstance(value, property | classmethod | staticmethod)
                mine = getattr(value, "__module__", None) in (None, name, obj.__module__)
                if member.startswith("_") or not method or not mine:
                    continue
                text = _own_doc(value)
                if text:
                    parts.append(f"{name}.{attr}.{member}\n{text}")
    return "\n\n".join(parts)


def stdlib_documents() -> tuple[list[str], int]:
    """One document per listed module that imports here, and how many did (built once per
    process: the text depends only on this interpreter's stdlib).

    Built in a fresh, isolated interpreter (``python -I``): libraries imported into this
    process patch stdlib objects (transformers adds methods to ``logging.Logger``, torch
    replaces ``inspect.getfile``), which would change the text with what ran before.
    """
    docs, count = _built()
    return list(docs), count


@cache
def _built() -> tuple[tuple[str, ...], int]:
    # The child runs this file's own source (it needs nothing but the stdlib).
    from editproof.errors import InvalidInputError

    code = (
        Path(__file__).read_text(encoding="utf-8")
        + "\nimport json, sys\nsys.stdout.write(json.dumps(_build()))\n"
    )
    try:
        out = subprocess.run(
            [sys.executable, "-I", "-c", code],
            capture_output=True,
            text=True,
            timeout=300,
            check=True,
        ).stdout
        docs = json.loads(out)
    except (OSError, subprocess.SubprocessError, ValueError) as exc:
        raise InvalidInputError(f"cannot build the stdlib text: {exc}") from None
    if not isinstance(docs, list) or not all(isinstance(d, str) for d in docs):
        raise InvalidInputError("cannot build the stdlib text: unexpected output")
    return tuple(docs), len(docs)


def _build() -> list[str]:
    docs: list[str] = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # deprecated aliases (typing.io, ...) warn on access
        for name in MODULES:
            try:
                module = importlib.import_module(name)
            except ImportError:
                continue
            docs.append(_module_text(name, module))
    return docs

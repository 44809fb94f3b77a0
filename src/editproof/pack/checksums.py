"""``checksums.sha256`` in coreutils format, so ``sha256sum -c checksums.sha256`` works in the
pack. One line per manifest entry, ``<64 hex>  <path>``, sorted by path."""

from __future__ import annotations

import re

_LINE = re.compile(r"^([0-9a-f]{64})  (.+)$")


def render(entries: list[tuple[str, str]]) -> bytes:
    """``entries`` = (path, sha256); paths must be safe (no newline or backslash)."""
    return "".join(f"{digest}  {path}\n" for path, digest in sorted(entries)).encode()


def parse(data: bytes) -> dict[str, str]:
    """path -> sha256; ValueError on any line not in the exact format or a repeated path."""
    out: dict[str, str] = {}
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise ValueError("checksums.sha256 is not UTF-8") from None
    if text and not text.endswith("\n"):
        raise ValueError("checksums.sha256 does not end with a newline")
    for n, line in enumerate(text.splitlines(), 1):
        m = _LINE.match(line)
        if m is None:
            raise ValueError(f"checksums.sha256 line {n} is not '<sha256>  <path>'")
        if m.group(2) in out:
            raise ValueError(f"checksums.sha256 lists '{m.group(2)}' twice")
        out[m.group(2)] = m.group(1)
    return out

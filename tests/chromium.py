"""Headless Chromium for the HTML tests: render a page, read its DOM, take a screenshot.

Debian's ``chromium`` (``.ci/run`` installs it with apt-get when missing). Without it the
tests skip, naming the reason; with ``EDITPROOF_REQUIRE_DEMO=1`` (CI) they fail instead.
``EDITPROOF_CHROMIUM`` names another binary. A PNG reader (stdlib only) lets a test look at
the pixels: the verdict must be *visible*, not only present in the markup.
"""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
import tempfile
import zlib
from pathlib import Path

import pytest

NAMES = ("chromium", "chromium-browser")
INSTALL_HINT = "install Debian's chromium: apt-get install -y chromium (.ci/run does)"


def chromium_binary() -> str:
    """The chromium to use; skips (fails under EDITPROOF_REQUIRE_DEMO=1) when there is none."""
    override = os.environ.get("EDITPROOF_CHROMIUM")
    found = (
        shutil.which(override) if override else next(filter(None, map(shutil.which, NAMES)), None)
    )
    if found is None:
        reason = f"headless chromium not found ({override or ' / '.join(NAMES)}); {INSTALL_HINT}"
        if os.environ.get("EDITPROOF_REQUIRE_DEMO") == "1":
            pytest.fail(reason)
        pytest.skip(reason)
    return found


def _run(page: Path, *args: str) -> subprocess.CompletedProcess[str]:
    with tempfile.TemporaryDirectory(prefix="editproof-chromium-") as profile:
        cmd = [
            chromium_binary(),
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            "--no-first-run",
            "--disable-extensions",
            "--disable-background-networking",
            f"--user-data-dir={profile}",
            *args,
            page.resolve().as_uri(),
        ]
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
    assert res.returncode == 0, f"chromium failed ({res.returncode}): {res.stderr[-2000:]}"
    return res


def dump_dom(page: Path) -> str:
    """The DOM after Chromium loaded and laid out the page, serialised."""
    return _run(page, "--dump-dom").stdout


def screenshot(page: Path, out: Path, *, size: tuple[int, int] = (1280, 2000)) -> Path:
    _run(page, f"--screenshot={out.resolve()}", f"--window-size={size[0]},{size[1]}")
    assert out.is_file() and out.stat().st_size > 0
    return out


def _paeth(a: int, b: int, c: int) -> int:
    p = a + b - c
    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
    return a if pa <= pb and pa <= pc else (b if pb <= pc else c)


def png_rows(path: Path, limit: int | None = None) -> tuple[int, list[bytes]]:
    """Width and the first ``limit`` rows as RGB(A) bytes of an 8-bit RGB or RGBA PNG."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, idat, width = 8, bytearray(), 0
    height = depth = ctype = interlace = 0
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        pos += 12 + length
        if kind == b"IHDR":
            width, height, depth, ctype, _, _, interlace = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat += body
        elif kind == b"IEND":
            break
    assert depth == 8 and ctype in (2, 6) and interlace == 0, (depth, ctype, interlace)
    bpp = 4 if ctype == 6 else 3
    stride = width * bpp
    raw = zlib.decompressobj().decompress(bytes(idat))
    rows: list[bytes] = []
    prev = bytearray(stride)
    for y in range(min(height, limit or height)):
        start = y * (stride + 1)
        ftype, line = raw[start], bytearray(raw[start + 1 : start + 1 + stride])
        for i in range(stride):
            left = line[i - bpp] if i >= bpp else 0
            up, corner = prev[i], (prev[i - bpp] if i >= bpp else 0)
            if ftype == 1:
                line[i] = (line[i] + left) & 0xFF
            elif ftype == 2:
                line[i] = (line[i] + up) & 0xFF
            elif ftype == 3:
                line[i] = (line[i] + ((left + up) >> 1)) & 0xFF
            elif ftype == 4:
                line[i] = (line[i] + _paeth(left, up, corner)) & 0xFF
        rows.append(bytes(line))
        prev = line
    return bpp, rows


def count_colour(path: Path, rgb: tuple[int, int, int], *, rows: int) -> int:
    """Pixels of exactly ``rgb`` in the top ``rows`` rows of a screenshot."""
    bpp, lines = png_rows(path, rows)
    target = bytes(rgb)
    return sum(1 for line in lines for i in range(0, len(line), bpp) if line[i : i + 3] == target)

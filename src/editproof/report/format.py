"""Number and text formatting shared by the HTML page and its charts."""

from __future__ import annotations

import math
from collections.abc import Callable

DASH = "\u2014"  # shown for missing values, so a gap never reads as zero
SHA_SHOWN = 12


def fixed(x: float | None, digits: int = 4) -> str:
    if x is None or not math.isfinite(x):
        return DASH
    text = f"{x:.{digits}f}"
    # "-0.0000" reads as a regression that is not there.
    return text[1:] if text.startswith("-") and float(text) == 0 else text


def signed(x: float | None, digits: int = 4) -> str:
    text = fixed(x, digits)
    return text if text == DASH or text.startswith("-") else "+" + text


def interval(pair: tuple[float, float] | None, digits: int = 4) -> str:
    if pair is None:
        return DASH
    return f"[{fixed(pair[0], digits)}, {fixed(pair[1], digits)}]"


def count(n: float | None) -> str:
    return DASH if n is None or not math.isfinite(n) else f"{n:,.0f}"


def short_sha(value: str | None, shown: int = SHA_SHOWN) -> str:
    if not value:
        return DASH
    return value if len(value) <= shown else value[:shown] + "\u2026"


def size_bytes(n: float | None) -> str:
    if n is None or not math.isfinite(n):
        return DASH
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(size) < 1024:
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.2f} TiB"


def params(n: int) -> str:
    """Parameter count with two or three significant digits, never scientific notation."""
    for scale, suffix in ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "k")):
        if n >= scale:
            value = n / scale
            return f"{value:.{2 if value < 10 else 1 if value < 100 else 0}f}{suffix}"
    return str(n)


def seconds(x: float | None) -> str:
    if x is None or not math.isfinite(x):
        return DASH
    if x < 0.01:
        return "<0.01 s"
    if x < 59.995:
        return f"{x:.2f} s"
    minutes, rest = divmod(round(x), 60)  # round first so 119.6 s never reads "1 min 60 s"
    return f"{minutes} min {rest} s"


def yes_no(flag: bool | None) -> str:
    return DASH if flag is None else ("yes" if flag else "no")


def measure(x: float | None) -> str:
    """Counts (token floors) read best with separators, ratios with four decimals."""
    if x is not None and math.isfinite(x) and x.is_integer() and abs(x) >= 1000:
        return count(x)
    return fixed(x, 4)


FILTERS: dict[str, Callable[..., str]] = {
    "fixed": fixed,
    "signed": signed,
    "interval": interval,
    "count": count,
    "sha": short_sha,
    "size": size_bytes,
    "params": params,
    "seconds": seconds,
    "yesno": yes_no,
    "measure": measure,
}

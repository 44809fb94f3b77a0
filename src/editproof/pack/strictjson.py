"""One JSON parser for everything the verifier reads: duplicate keys and non-finite numbers
are errors, so two parsers can never see two different documents in the same bytes."""

from __future__ import annotations

import json
from typing import Any


class StrictJSONError(ValueError):
    pass


def _pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise StrictJSONError(f"duplicate key '{key}'")
        out[key] = value
    return out


def _constant(name: str) -> Any:
    raise StrictJSONError(f"non-finite number {name}")


def loads(data: bytes | str, *, allow_nan: bool = False) -> Any:
    """Parse ``data``; raise StrictJSONError on bad UTF-8, bad JSON, duplicate keys and (unless
    ``allow_nan``) NaN / Infinity."""
    try:
        text = data.decode("utf-8") if isinstance(data, bytes) else data
        if allow_nan:
            return json.loads(text, object_pairs_hook=_pairs)
        return json.loads(text, object_pairs_hook=_pairs, parse_constant=_constant)
    except StrictJSONError:
        raise
    except (UnicodeDecodeError, ValueError) as exc:
        raise StrictJSONError(f"not valid JSON ({exc})") from None

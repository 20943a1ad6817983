"""Refusing JSON objects with duplicate keys.

orjson keeps the last of two equal keys silently, so `{"origin": {"agency": "48"}, "origin": {...}}` would
be read differently by different parsers.  `duplicate_key(body, parsed)` finds such a key, if any:

1. a body without a backslash has no escape sequences, so every `"` in it delimits a string and its
   strings are written back by orjson byte for byte.  Then, with whitespace removed, the `":` pairs of
   the body and of orjson's serialisation of what it kept differ exactly by the keys orjson dropped:
   equal counts prove there is no duplicate (the common case: a few µs, no second parse);
2. any other body (an escape such as `\\"\\u003a` can make the counts agree while a key was dropped) is
   parsed again by the standard library with an `object_pairs_hook` that sees every key of every object.
"""

from __future__ import annotations

import json
from typing import Any

import orjson

_WHITESPACE = b" \t\r\n"
TOO_DEEP = "(too deeply nested to check)"


def duplicate_key(body: bytes, parsed: Any) -> str | None:
    """The first duplicated key in `body` (already parsed by orjson as `parsed`), or None."""
    if b"\\" not in body and _same_key_count(body, parsed):
        return None
    return _first_duplicate(body)


def _same_key_count(body: bytes, parsed: Any) -> bool:
    try:
        kept = orjson.dumps(parsed)
    except orjson.JSONEncodeError:  # nested deeper than orjson writes (254): take the parser hook
        return False
    return body.translate(None, _WHITESPACE).count(b'":') == kept.translate(None, _WHITESPACE).count(b'":')


def _first_duplicate(body: bytes) -> str | None:
    found: list[str] = []

    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        if not found:
            seen: set[str] = set()
            for key, _value in items:
                if key in seen:
                    found.append(key)
                    break
                seen.add(key)
        return dict(items)

    try:
        json.loads(body, object_pairs_hook=pairs)
    except (ValueError, RecursionError):  # nested deeper than the standard library reads
        return TOO_DEEP
    return found[0] if found else None

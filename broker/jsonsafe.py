"""Refusing JSON objects with duplicate keys, cheaply.

orjson keeps the last of two equal keys silently, so `{"origin": {"agency": "48"}, "origin": {...}}` would
be read differently by different parsers.  `duplicate_key(body, parsed)` finds such a key, if any:

1. a fast proof: with whitespace removed, every key ends with `":`.  Count that in the body and in orjson's
   own serialisation of what it kept.  Inside strings the two agree (a quote is `\"` in both, raw
   control characters are not allowed) unless the body spells a quote `\u0022`, so equal counts prove
   no key was dropped (the common case: a few µs, no second parse);
2. otherwise the body is parsed again with the standard library, keeping every pair, to name the key.
"""

from __future__ import annotations

import json
from typing import Any

import orjson

_WHITESPACE = b" \t\r\n"


def duplicate_key(body: bytes, parsed: Any) -> str | None:
    """The first duplicated key in `body` (already parsed by orjson as `parsed`), or None."""
    if b"\\u0022" not in body:
        written = body.translate(None, _WHITESPACE).count(b'":')
        try:
            kept = orjson.dumps(parsed).translate(None, _WHITESPACE).count(b'":')
        except orjson.JSONEncodeError:   # nested deeper than orjson writes (254): take the slow path
            kept = -1
        if written == kept:
            return None
    found: list[str] = []

    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        seen: set[str] = set()
        for key, _value in items:
            if key in seen and not found:
                found.append(key)
            seen.add(key)
        return dict(items)

    try:
        json.loads(body, object_pairs_hook=pairs)
    except (ValueError, RecursionError):   # nested deeper than the standard library reads
        return "(too deeply nested to check)"
    return found[0] if found else None

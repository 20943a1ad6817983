"""Common-schema JSON passed through: one JSON object, a JSON array of objects, or NDJSON (one per line).

Nothing is translated (schema and identifier validation happen in the core); the adapter only parses
safely: bounded size, line length and nesting depth, duplicate keys refused, NaN and Infinity refused.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from adapters.base import AdapterError, InboundAdapter, Result
from adapters.mapping import Mapping

_STRINGS = re.compile(rb'"(?:[^"\\]|\\.)*"', re.S)
_BRACKETS = re.compile(rb"[\[\]{}]")


class CommonJsonAdapter(InboundAdapter):
    name = "common-json"
    description = "Common-schema JSON or NDJSON, passed through with size, depth and duplicate-key checks"
    folder = Path(__file__).resolve().parent

    def _translate(self, stream: IO[bytes], mapping: Mapping) -> Iterator[Result]:
        limits = {
            "max_bytes": 16 * 1024 * 1024,
            "max_line": 1024 * 1024,
            "max_depth": 32,
            **mapping.get("limits", {}),
        }
        first = stream.readline(limits["max_line"] + 1)
        if not first.strip():
            raise AdapterError("json_empty", "the input holds no JSON", location="line 1")
        try:
            head = _loads(first, limits["max_depth"])
        except AdapterError:
            head = None
        if isinstance(head, dict) and first.endswith(b"\n"):
            yield from _ndjson(first, stream, limits)
            return
        body = first + stream.read(limits["max_bytes"] + 1 - len(first))
        if len(body) > limits["max_bytes"]:
            raise AdapterError("body_too_large", f"the JSON input exceeds {limits['max_bytes']} bytes")
        yield from _document(body, limits["max_depth"])


def _ndjson(first: bytes, stream: IO[bytes], limits: dict[str, int]) -> Iterator[Result]:
    line, number = first, 1
    while line:
        if len(line) > limits["max_line"] and not line.endswith(b"\n"):
            yield AdapterError(
                "line_too_long",
                f"a line is longer than {limits['max_line']} bytes",
                location=f"line {number}",
            )
            return
        if line.strip():
            yield _one(line, limits["max_depth"], f"line {number}")
        line, number = stream.readline(limits["max_line"] + 1), number + 1


def _document(body: bytes, max_depth: int) -> Iterator[Result]:
    try:
        value = _loads(body, max_depth)
    except AdapterError as error:
        yield error
        return
    items = value if isinstance(value, list) else [value]
    for index, item in enumerate(items, start=1):
        yield (
            item
            if isinstance(item, dict)
            else AdapterError(
                "json_not_object",
                f"record {index} is a JSON {type(item).__name__}, not an object",
                location=f"record {index}",
            )
        )


def _one(text: bytes, max_depth: int, location: str) -> Result:
    try:
        value = _loads(text, max_depth)
    except AdapterError as error:
        first = error.errors[0]
        return AdapterError(error.code, first.message, location=location, path=first.path)
    if not isinstance(value, dict):
        return AdapterError("json_not_object", f"a JSON {type(value).__name__}, not an object", location=location)
    return value


def _loads(text: bytes, max_depth: int) -> Any:
    depth = _depth(text)
    if depth > max_depth:
        raise AdapterError("json_too_deep", f"JSON nested {depth} deep, more than {max_depth}")
    try:
        return json.loads(text.decode("utf-8-sig"), object_pairs_hook=_no_duplicates, parse_constant=_no_constant)
    except UnicodeDecodeError as exc:
        raise AdapterError(
            "json_encoding_invalid", f"byte {exc.start} is not UTF-8", location=f"byte {exc.start}"
        ) from None
    except json.JSONDecodeError as exc:
        raise AdapterError(
            "malformed_json", f"{exc.msg} at line {exc.lineno} column {exc.colno}", location=f"byte {exc.pos}"
        ) from None


def _depth(text: bytes) -> int:
    deepest = level = 0
    for bracket in _BRACKETS.findall(_STRINGS.sub(b"", text)):
        level += 1 if bracket in b"[{" else -1
        deepest = max(deepest, level)
    return deepest


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise AdapterError("json_duplicate_key", f"key {key!r} appears twice in one object", path=key)
        result[key] = value
    return result


def _no_constant(name: str) -> Any:
    raise AdapterError("json_not_finite", f"{name} is not a JSON number")

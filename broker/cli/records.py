"""Records read from the JSON and NDJSON files named on the command line."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson

from broker.errors import DataError, FieldError


def read_records(paths: list[Path]) -> Iterator[tuple[str, dict[str, Any] | DataError]]:
    """(where, record or error) for every record in JSON or NDJSON files or folders of them."""
    for path in paths:
        files = sorted(path.glob("*.json")) + sorted(path.glob("*.ndjson")) if path.is_dir() else [path]
        for file in files:
            yield from _records_in(file)


def _records_in(file: Path) -> Iterator[tuple[str, dict[str, Any] | DataError]]:
    def bad(where: str, message: str) -> tuple[str, DataError]:
        return where, DataError("malformed_json", [FieldError(None, "", "malformed_json", message)], location=where)

    if file.suffix == ".ndjson":
        with file.open("rb") as fh:
            for n, line in enumerate(fh, start=1):
                if line.strip():
                    try:
                        yield f"{file}:{n}", orjson.loads(line)
                    except orjson.JSONDecodeError as exc:
                        yield bad(f"{file}:{n}", f"not valid JSON: {exc}")
        return
    try:
        doc = orjson.loads(file.read_bytes())
    except (OSError, orjson.JSONDecodeError) as exc:
        yield bad(str(file), f"not readable JSON: {exc}")
        return
    for i, record in enumerate(doc if isinstance(doc, list) else [doc]):
        yield (f"{file}[{i}]" if isinstance(doc, list) else str(file)), record

"""Streaming CSV reading shared by the CSV adapters: one row at a time, bounded field sizes.

`rows(stream, encoding)` yields `(line_number, row)` where `line_number` is the physical line on which
the row starts (quoted fields may span lines).  A BOM is honoured.  A field longer than `max_field`
characters or an undecodable byte stops the input with an AdapterError naming the line.
"""

from __future__ import annotations

import codecs
import csv
import io
from collections.abc import Iterator
from typing import IO

from adapters.base import AdapterError

MAX_FIELD = 64 * 1024


class _LineCounter:
    """Iterates text lines for csv.reader and remembers how many it has handed out."""

    def __init__(self, text: IO[str], max_line: int) -> None:
        self.text, self.max_line, self.lines = text, max_line, 0

    def __iter__(self) -> _LineCounter:
        return self

    def __next__(self) -> str:
        line = self.text.readline(self.max_line + 1)
        if not line:
            raise StopIteration
        if len(line) > self.max_line and not line.endswith("\n"):
            raise AdapterError(
                "line_too_long",
                f"a line is longer than {self.max_line} characters",
                location=f"line {self.lines + 1}",
            )
        self.lines += 1
        return line


def rows(
    stream: IO[bytes], encoding: str = "utf-8", *, max_field: int = MAX_FIELD, dialect: str = "excel"
) -> Iterator[tuple[int, list[str]]]:
    """Yield (starting line number, row) for each CSV row of a binary stream."""
    codecs.lookup(encoding)
    text = io.TextIOWrapper(_without_bom(stream), encoding=encoding, errors="strict", newline="")
    counter = _LineCounter(text, max_field * 4)
    reader = csv.reader(counter, dialect=dialect, strict=True)
    start = 1
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            raise AdapterError("csv_malformed", str(exc), location=f"line {counter.lines}") from None
        except UnicodeDecodeError as exc:
            raise AdapterError(
                "csv_encoding_invalid",
                f"not valid {encoding}: {exc.reason}",
                location=f"line {counter.lines + 1}",
            ) from None
        if any(len(field) > max_field for field in row):
            raise AdapterError(
                "csv_field_too_long",
                f"a field is longer than {max_field} characters",
                location=f"line {start}",
            )
        yield start, row
        start = counter.lines + 1


class _Head(io.RawIOBase):
    """A binary stream with its first bytes already read (so a BOM can be dropped before decoding)."""

    def __init__(self, head: bytes, rest: IO[bytes]) -> None:
        self.head, self.rest = head, rest

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:  # type: ignore[no-untyped-def]
        if self.head:
            count = min(len(buffer), len(self.head))
            buffer[:count], self.head = self.head[:count], self.head[count:]
            return count
        data = self.rest.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


def _without_bom(stream: IO[bytes]) -> IO[bytes]:
    """Drop a leading UTF-8 BOM (Excel writes one even before Windows-1252 text)."""
    head = stream.read(3)
    return io.BufferedReader(_Head(b"" if head == codecs.BOM_UTF8 else head, stream))

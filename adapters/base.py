"""The adapter contract: inbound adapters translate, outbound adapters render.

An inbound adapter turns the bytes of one legacy export into common-schema records (docs/DESIGN.md §2):

    for result in adapter.translate(source, mapping):
        if isinstance(result, DataError): ...   # one bad record; the others still come
        else: ...                              # a common-schema record dict

`source` is bytes, a binary file object or a path.  Inputs are read as a stream (line by line, or XML
iterparse with elements cleared), so memory does not grow with the size of the input.  A problem with
one record is yielded as an `AdapterError` (a `DataError`) naming where (`location`: line, record
number or XPath), which field (`errors[0].path`) and why (`errors[0].code`); translation then carries
on with the next record.  A problem with the whole input (hostile XML, unknown layout) is yielded as a
single `AdapterError` and translation stops.  Adapters never raise for bad data.

An outbound adapter renders one common-schema record for a partner:
`adapter.render(record, options) -> (body_bytes, content_type)`; a record it cannot render raises
`AdapterError`.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, ClassVar
from zoneinfo import ZoneInfo

from adapters.mapping import Mapping, load_mapping, mapping_names
from broker.errors import DataError, FieldError

Record = dict[str, Any]
Result = Record | DataError
Source = bytes | bytearray | memoryview | IO[bytes] | str | os.PathLike

SPEC_VERSION = "1.0"
SCHEMA_BASE = "https://interchange.police.uk/schemas/v1/"
_ID_UNSAFE = re.compile(r"[^A-Za-z0-9._:-]+")
MAX_ID = 128
KEEP_EMPTY = frozenset({"given"})  # required by the schema even when empty


class AdapterError(DataError):
    """One record (or the whole input) an adapter could not translate or render.

    `code` is the adapter's own short code (`asn_check_character`, `xml_entity_declared`, ...); the
    broker-level reason is always `adapter_error`.
    """

    notice = False

    def __init__(
        self,
        code: str,
        message: str,
        *,
        location: str | None = None,
        path: str = "",
        record_id: str | None = None,
    ) -> None:
        self.code = code
        super().__init__(
            "adapter_error",
            [FieldError(record_id, path, code, message)],
            record_id=record_id,
            location=location,
        )

    @classmethod
    def of(cls, errors: list[FieldError], *, location: str | None = None, record_id: str | None = None) -> AdapterError:
        """One error carrying every field error found in one record (the first gives `code`)."""
        first = errors[0]
        error = cls(first.code, first.message, location=location, path=first.path, record_id=record_id)
        error.errors = tuple(FieldError(record_id, e.path, e.code, e.message) for e in errors)
        return error


class AdapterNotice(AdapterError):
    """Something about a whole input worth telling its sender, reported once; its records still go.

    It is an AdapterError (so existing consumers write it where rejections go, with its code and
    location) but rejects no record: `notice` is True.
    """

    notice = True


@contextlib.contextmanager
def open_binary(source: Source) -> Iterator[IO[bytes]]:
    """Yield a binary stream for bytes, an open binary file or a path (closing only what it opened)."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        yield io.BytesIO(bytes(source))
    elif isinstance(source, (str, os.PathLike)):
        with open(source, "rb") as handle:
            yield handle
    else:
        yield source


def make_id(*parts: str) -> str:
    """A record id from stable parts: joined by '-', unsafe characters replaced, hashed when too long."""
    raw = "-".join(_ID_UNSAFE.sub("_", str(part)).strip("_") for part in parts if part not in (None, ""))
    if len(raw) <= MAX_ID:
        return raw
    digest = hashlib.sha256(raw.encode()).hexdigest()[:32]
    return f"{raw[: MAX_ID - 33]}-{digest}"


def digest(*values: object, size: int = 20) -> str:
    """A short stable hex digest of values (used for ids of rows that carry no key of their own)."""
    joined = "\x1f".join("" if v is None else str(v) for v in values)
    return hashlib.sha256(joined.encode("utf-8")).hexdigest()[:size]


def envelope(
    mapping: Mapping,
    record_type: str,
    record_id: str,
    time: str,
    data: Record,
    *,
    correlation_id: str | None = None,
    subjects: list[str] | None = None,
) -> Record:
    """Wrap `data` in the common envelope, taking origin and default markings from the mapping."""
    record: Record = {
        "specversion": SPEC_VERSION,
        "id": record_id,
        "source": mapping.source,
        "type": record_type,
        "time": time,
        "dataschema": f"{SCHEMA_BASE}{record_type}.json",
        "origin": {"agency": mapping.agency, "system": mapping.system},
    }
    if correlation_id:
        record["correlation_id"] = make_id(correlation_id)
    record["classification"] = dict(mapping.classification)
    if mapping.handling:
        record["handling"] = dict(mapping.handling)
    if subjects:
        record["subjects"] = subjects
    record["data"] = prune(data)
    return record


def number(text: str) -> float | int | None:
    """A decimal from legacy text (`"150.00"` -> 150), or None when it is not a number."""
    try:
        value = float(text)
    except ValueError:
        return None
    return int(value) if value.is_integer() else value


def utc(text: str) -> str | None:
    """An ISO 8601 timestamp as RFC 3339 UTC (`...Z`); a time without an offset is taken as UTC."""
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


LONDON = ZoneInfo("Europe/London")


def london_utc(text: str) -> str | None:
    """An ISO 8601 date-time as RFC 3339 UTC; a time without an offset is UK local time (Europe/London).

    Times with an offset (or `Z`) are kept as they are.  The two hours a year that local time cannot
    name unambiguously follow one rule each:
    - the hour that repeats in October (01:00-01:59 happens twice) is read as its first occurrence, in
      summer time (BST, +01:00): 01:30 on 25 Oct 2026 is 00:30Z;
    - the hour that is skipped in March (01:00-01:59 does not exist) is read with the offset in force
      before the change (GMT): 01:30 on 29 Mar 2026 is 01:30Z, the instant clocks show as 02:30 BST.
    """
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=LONDON)  # fold=0 gives both rules above (PEP 495)
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def zoned_utc(text: str, zone: str) -> str | None:
    """As london_utc, for a source whose local time is another IANA zone (same rules at its clock changes)."""
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=ZoneInfo(zone))
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def problem(path: str, code: str, message: str) -> FieldError:
    """A field error before the record id is known (AdapterError.of fills it in)."""
    return FieldError(None, path, code, message)


def prune(value: Any) -> Any:
    """Drop None, empty strings, empty lists and empty dicts, recursively (absent beats empty)."""
    if isinstance(value, dict):
        return _prune_dict(value)
    if isinstance(value, list):
        return _prune_list(value)
    return value


def _prune_dict(value: dict[str, Any]) -> dict[str, Any]:
    # One pass per level (this runs on every record of a bulk ingest): prune children, then keep them
    # unless None, "" or empty ("given": [] is required by the schema and stays).
    out = {}
    for key, item in value.items():
        if isinstance(item, dict):
            item = _prune_dict(item)
            if not item:
                continue
        elif isinstance(item, list):
            item = _prune_list(item)
            if not item and key not in KEEP_EMPTY:
                continue
        elif item is None or item == "":
            continue
        out[key] = item
    return out


def _prune_list(value: list[Any]) -> list[Any]:
    out = []
    for item in value:
        if isinstance(item, dict):
            item = _prune_dict(item)
            if not item:
                continue
        elif isinstance(item, list):
            item = _prune_list(item)
            if not item:
                continue
        elif item is None or item == "":
            continue
        out.append(item)
    return out


class Adapter:
    """What every adapter declares: its registry name, direction, description and folder."""

    name: ClassVar[str]
    direction: ClassVar[str]
    description: ClassVar[str]
    folder: ClassVar[Path]

    @classmethod
    def mappings(cls) -> list[str]:
        """Names of the mapping files shipped under `<folder>/mappings/`."""
        return mapping_names(cls.folder)

    @classmethod
    def load_mapping(cls, name_or_path: str | os.PathLike) -> Mapping:
        """Load a shipped mapping by name, or any mapping file by path; checked against the schema."""
        return load_mapping(cls.folder, name_or_path)


class InboundAdapter(Adapter):
    """Legacy bytes -> common-schema records."""

    direction: ClassVar[str] = "inbound"
    lineage: Any = None

    def translate(self, source: Source, mapping: Mapping | str, *, lineage: Any = None) -> Iterator[Result]:
        """Yield one record dict or one AdapterError per record of `source`; never raise for bad data.

        `lineage` (an `adapters.lineage.Lineage`) remembers earlier versions of re-sent source records so
        a changed re-send supersedes them; without one, lineage holds within this translation only.
        """
        if not isinstance(mapping, Mapping):
            mapping = self.load_mapping(mapping)
        self.lineage = lineage
        try:
            with open_binary(source) as stream:
                yield from self._translate(stream, mapping)
        except DataError as exc:
            yield exc
        except (UnicodeDecodeError, ValueError, OSError) as exc:
            yield AdapterError("input_unreadable", f"{type(exc).__name__}: {exc}")

    def _translate(self, stream: IO[bytes], mapping: Mapping) -> Iterator[Result]:
        raise NotImplementedError


class OutboundAdapter(Adapter):
    """One common-schema record -> (bytes, content type) for a partner system."""

    direction: ClassVar[str] = "outbound"
    content_type: ClassVar[str]
    record_types: ClassVar[tuple[str, ...]]
    # True only for adapters whose output is fit to publish (no personal data, no force reference):
    # the only formats a recipient marked `public` may have (broker.config.check_public_recipients)
    anonymising: ClassVar[bool] = False

    def render(self, record: Record, options: dict[str, Any] | None = None) -> tuple[bytes, str]:
        """Render `record`; raise AdapterError if it is of the wrong type or lacks what the layout needs."""
        if record.get("type") not in self.record_types:
            raise AdapterError(
                "record_type_not_supported",
                f"{self.name} renders {', '.join(self.record_types)}, not {record.get('type')!r}",
                path="type",
                record_id=record.get("id"),
            )
        try:
            return self._render(record, options or {})
        except DataError:
            raise
        except (KeyError, TypeError, ValueError, AttributeError, IndexError) as exc:
            raise AdapterError(
                "record_incomplete", f"cannot render: {type(exc).__name__} {exc}", record_id=record.get("id")
            ) from None

    def _render(self, record: Record, options: dict[str, Any]) -> tuple[bytes, str]:
        raise NotImplementedError

"""Force records-system mainframe extract (fixed-width, EBCDIC or ASCII) -> `crime.report` records.

The record layout is data (`layouts/<name>.yaml`, copybook-like; see README.md); each force's mapping
names the layout, the encoding, the framing and its code tables.  Records arrive sorted by crime
reference: a `CR` header, then the crime's `NM` nominals, `OF` offences and `AR` arrests.  The adapter
reads one record at a time and keeps only the current crime's records, so memory stays flat.  Dates and
times are UK local time (Europe/London, `adapters.base.london_utc`).  Each version of a crime has its own
id; with a lineage store a changed re-send supersedes the version before (key: the crime reference).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from typing import IO, Any

import yaml
from jsonschema import Draft202012Validator

from adapters.base import AdapterError, InboundAdapter, Result, envelope, london_utc, make_id, problem
from adapters.lineage import Lineage, Stateless
from adapters.mapping import Mapping
from broker import identifiers
from broker.errors import ConfigError, FieldError

HERE = Path(__file__).resolve().parent
POSITIVE = "{ABCDEFGHI"  # overpunched last digit 0-9, sign +
NEGATIVE = "}JKLMNOPQR"  # overpunched last digit 0-9, sign -


@lru_cache(maxsize=8)
def load_layout(name: str) -> dict[str, Any]:
    """A layout from `layouts/<name>.yaml`, checked against layout.schema.json (ConfigError if wrong)."""
    path = HERE / "layouts" / f"{name}.yaml"
    if not path.is_file():
        raise ConfigError(str(path), "", f"no layout named {name!r}")
    layout = yaml.safe_load(path.read_text(encoding="utf-8"))
    schema = json.loads((HERE / "layout.schema.json").read_text(encoding="utf-8"))
    for error in Draft202012Validator(schema).iter_errors(layout):
        raise ConfigError(str(path), ".".join(map(str, error.absolute_path)), error.message)
    for kind, record in layout["records"].items():
        for field in record["fields"]:
            if field["start"] + field["length"] - 1 > layout["record_length"]:
                raise ConfigError(str(path), f"records.{kind}.{field['name']}", "field ends beyond record_length")
    return layout


def zoned(text: str) -> int:
    """A zoned-decimal number as decoded text, its sign overpunched on the last digit ('12{' = 120)."""
    digits, last = text.strip(), ""
    if not digits:
        raise ValueError("empty number")
    last = digits[-1]
    sign = 1
    if last in POSITIVE:
        digits = digits[:-1] + str(POSITIVE.index(last))
    elif last in NEGATIVE:
        digits, sign = digits[:-1] + str(NEGATIVE.index(last)), -1
    if not digits.isdigit():
        raise ValueError(f"{text.strip()!r} is not a zoned decimal")
    return sign * int(digits)


def decode_field(kind: str, raw: str) -> Any:
    """One field's value by layout type; None for blank (or all-zero) dates and times."""
    text = raw.rstrip()
    if kind == "text":
        return text or None
    if kind == "zoned":
        return zoned(raw) if raw.strip() else None
    if kind == "date":
        return None if text.strip("0 ") == "" else datetime.strptime(text, "%Y%m%d").date().isoformat()
    if kind == "time":
        return None if not text.strip() else datetime.strptime(text, "%H%M").strftime("%H:%M")
    raise ValueError(f"unknown field type {kind}")


def encode_record(layout: dict[str, Any], kind: str, values: dict[str, Any]) -> str:
    """The fixed-width text of one record (used to build fixtures and by tests)."""
    line = [" "] * layout["record_length"]
    start, length = layout["type_field"]["start"], layout["type_field"]["length"]
    line[start - 1 : start - 1 + length] = kind.ljust(length)
    for field in layout["records"][kind]["fields"]:
        value = values.get(field["name"])
        text = "" if value is None else str(value)
        if field["type"] == "zoned" and value is not None:
            text = str(abs(int(value))).rjust(field["length"], "0")
            text = text[:-1] + (POSITIVE if int(value) >= 0 else NEGATIVE)[int(text[-1])]
        elif field["type"] in ("date", "time") and value is not None:
            text = text.replace("-", "").replace(":", "")
        if len(text) > field["length"]:
            raise ValueError(f"{field['name']}: {text!r} is longer than {field['length']}")
        line[field["start"] - 1 : field["start"] - 1 + field["length"]] = text.ljust(field["length"])
    return "".join(line)


class FixedWidthAdapter(InboundAdapter):
    name = "fixed-width"
    description = "Force crime-records mainframe extract (fixed-width, EBCDIC or ASCII, layout as data) -> crime.report"
    folder = HERE

    def _translate(self, stream: IO[bytes], mapping: Mapping) -> Iterator[Result]:
        layout = load_layout(mapping.get("layout"))
        lineage = self.lineage or Stateless()
        group: list[tuple[str, dict[str, Any], str]] = []
        seen = 0
        for location, kind, values, error in _records(stream, layout, mapping):
            seen += 1
            if error is not None:
                yield error
                continue
            if group and values.get(layout["group_by"]) != group[0][1].get(layout["group_by"]):
                yield _crime(group, mapping, lineage)
                group = []
            group.append((kind, values, location))
        if group:
            yield _crime(group, mapping, lineage)
        if not seen:
            yield AdapterError("input_empty", "the extract holds no records", location="byte 0")


def _records(
    stream: IO[bytes], layout: dict[str, Any], mapping: Mapping
) -> Iterator[tuple[str, str, dict[str, Any], AdapterError | None]]:
    size, encoding = layout["record_length"], mapping.get("encoding")
    type_start, type_length = layout["type_field"]["start"] - 1, layout["type_field"]["length"]
    for number, offset, raw in _blocks(stream, size, mapping.get("framing")):
        location = f"record {number} (byte {offset})"
        try:
            text = raw.decode(encoding)
        except UnicodeDecodeError as exc:
            yield (
                location,
                "",
                {},
                AdapterError("encoding_invalid", f"byte {offset + exc.start} is not {encoding}", location=location),
            )
            continue
        if len(text) != size:
            yield (
                location,
                "",
                {},
                AdapterError(
                    "record_length",
                    f"record is {len(text)} characters, layout says {size}",
                    location=location,
                ),
            )
            continue
        kind = text[type_start : type_start + type_length]
        yield (location, kind, *_fields(text, kind, layout, location))


def _fields(text: str, kind: str, layout: dict[str, Any], location: str) -> tuple[dict[str, Any], AdapterError | None]:
    spec = layout["records"].get(kind)
    if spec is None:
        known = ", ".join(layout["records"])
        return {}, AdapterError("record_type_unknown", f"record type {kind!r} is not one of {known}", location=location)
    values: dict[str, Any] = {}
    for field in spec["fields"]:
        raw = text[field["start"] - 1 : field["start"] - 1 + field["length"]]
        try:
            values[field["name"]] = decode_field(field["type"], raw)
        except ValueError as exc:
            return {}, AdapterError(
                f"{field['type']}_invalid", f"{field['name']}: {exc}", location=location, path=field["name"]
            )
    return values, None


def _blocks(stream: IO[bytes], size: int, framing: str) -> Iterator[tuple[int, int, bytes]]:
    """(record number, byte offset, raw bytes) for fixed-length blocks or for lines (CR/LF stripped)."""
    offset, number = 0, 0
    if framing == "fixed":
        while block := stream.read(size):
            number += 1
            yield number, offset, block
            offset += len(block)
        return
    while line := stream.readline(size + 3):
        number += 1
        stripped = line.rstrip(b"\r\n")
        if stripped:
            yield number, offset, stripped
        offset += len(line)


def _crime(group: list[tuple[str, dict[str, Any], str]], mapping: Mapping, lineage: Lineage) -> Result:
    problems: list[FieldError] = []
    header = next((v for k, v, _ in group if k == "CR"), None)
    ref = group[0][1].get("crime_ref") or ""
    if header is None:
        problems.append(problem("data.crime_ref", "crime_header_missing", f"crime {ref} has no CR record before it"))
        header = {}
    persons, links, by_seq = _nominals([v for k, v, _ in group if k == "NM"], mapping, problems)
    offences, category = _offences([v for k, v, _ in group if k == "OF"], mapping, problems)
    events, arrest_links = _arrests([v for k, v, _ in group if k == "AR"], by_seq, problems)
    recorded = _instant(header.get("recorded_date"), header.get("recorded_time"))
    location = _location(header)
    events.insert(0, {"id": "e1", "kind": "crime", "start": recorded})
    data = {
        "crime_ref": ref,
        "category": category or mapping.get("default_category"),
        "recorded": recorded,
        "month": (recorded or "")[:7],
        "persons": persons,
        "offences": offences,
        "events": events,
        "locations": [location] if location else [],
        "links": links + arrest_links + ([{"from": "e1", "to": "l1", "type": "occurred-at"}] if location else []),
    }
    record_id = make_id(mapping.agency, mapping.system, ref)
    if problems:
        return AdapterError.of(problems, location=group[0][2], record_id=record_id)
    record = envelope(
        mapping,
        "crime.report",
        record_id,
        recorded or "1970-01-01T00:00:00Z",
        data,
        correlation_id=f"crime-{mapping.agency}-{ref}",
        subjects=[p["id"] for p in persons],
    )
    return lineage.stamp(record, f"crime-{ref}")


def _nominals(
    nominals: list[dict[str, Any]], mapping: Mapping, problems: list[FieldError]
) -> tuple[list[dict[str, Any]], list[dict[str, str]], dict[Any, str]]:
    persons: list[dict[str, Any]] = []
    links: list[dict[str, str]] = []
    by_seq: dict[Any, str] = {}
    for index, nominal in enumerate(nominals):
        path, pid = f"data.persons[{index}]", f"p{nominal.get('nominal_seq') or index + 1}"
        by_seq[nominal.get("nominal_seq")] = pid
        if not nominal.get("family"):
            problems.append(problem(f"{path}.name.family", "name_missing", "the nominal has no family name"))
        ids = []
        if pnc := nominal.get("pnc_id"):
            if message := identifiers.check("pnc", pnc):
                problems.append(problem(f"{path}.identifiers[0]", "pnc_invalid", message))
            ids.append({"scheme": "pnc", "value": identifiers.normalise("pnc", pnc)})
        ethnicity = _code(mapping, "ethnicity", nominal.get("ethnicity"), f"{path}.ethnicity.self_defined", problems)
        persons.append(
            {
                "id": pid,
                "name": {"given": (nominal.get("given") or "").split(), "family": nominal.get("family")},
                "birth_date": nominal.get("birth_date"),
                "gender": _code(mapping, "gender", nominal.get("gender"), f"{path}.gender", problems),
                "ethnicity": {"self_defined": ethnicity} if ethnicity else None,
                "identifiers": ids,
            }
        )
        role = mapping.code("role", nominal.get("role"))
        if role is None:
            problems.append(
                problem(f"{path}", "role_unknown", f"nominal role {nominal.get('role')!r} is not in the mapping")
            )
        else:
            links.append({"from": pid, "to": "e1", "type": role})
    return persons, links, by_seq


def _code(mapping: Mapping, table: str, value: str | None, path: str, problems: list[FieldError]) -> str | None:
    """A code from the mapping's table; blank stays absent, a code the table lacks is refused."""
    if not value:
        return None
    found = mapping.code(table, value)
    if found is None:
        problems.append(problem(path, f"{table}_unknown", f"{table} code {value!r} is not in the mapping"))
    return found


def _offences(
    rows: list[dict[str, Any]], mapping: Mapping, problems: list[FieldError]
) -> tuple[list[dict[str, Any]], str | None]:
    offences, category = [], None
    for index, row in enumerate(rows):
        local = row.get("offence_code") or ""
        cjs = mapping.code("offence", local)
        if cjs is None:
            problems.append(
                problem(
                    f"data.offences[{index}].cjs_code",
                    "offence_code_unknown",
                    f"local offence code {local!r} is not in the mapping's offence table",
                )
            )
        category = category or mapping.code("offence_category", local)
        offences.append(
            {
                "id": f"o{index + 1}",
                "sequence": row.get("offence_seq") or index + 1,
                "cjs_code": cjs,
                "start": row.get("committed_from"),
                "end": row.get("committed_to"),
            }
        )
    return offences, category


def _arrests(
    rows: list[dict[str, Any]], by_seq: dict[Any, str], problems: list[FieldError]
) -> tuple[list[dict[str, Any]], list[dict[str, str]]]:
    events, links = [], []
    for index, row in enumerate(rows):
        person = by_seq.get(row.get("nominal_seq"))
        if person is None:
            problems.append(
                problem(
                    f"data.events[{index + 1}]",
                    "arrest_nominal_unknown",
                    f"arrest names nominal {row.get('nominal_seq')} which the crime does not list",
                )
            )
            continue
        event_id = f"a{index + 1}"
        text = f"custody {row['custody_number']} at {row.get('station') or '?'}" if row.get("custody_number") else None
        events.append(
            {
                "id": event_id,
                "kind": "arrest",
                "start": _instant(row.get("arrest_date"), row.get("arrest_time")),
                "description": text,
            }
        )
        links.append({"from": person, "to": event_id, "type": "arrested-in"})
    return events, links


def _location(header: dict[str, Any]) -> dict[str, Any] | None:
    if not header.get("location"):
        return None
    return {
        "id": "l1",
        "kind": "address",
        "address": {"lines": [header["location"]], "postcode": header.get("postcode")},
    }


def _instant(date: str | None, time: str | None) -> str | None:
    """A UK local date and time (midnight when the time is blank) as UTC."""
    return london_utc(f"{date}T{time or '00:00'}") if date else None

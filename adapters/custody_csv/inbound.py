"""Custody-system CSV export (Windows-1252 with BOM, dd/mm/yyyy, multi-line fields) -> `custody.record`.

Which header holds which field, the date formats, the encoding and the code tables are all in the
mapping, so a force whose export names its columns differently joins with a mapping file.  Arrest and
release times are UK local time (Europe/London, `adapters.base.london_utc`).  Each version of a custody
record has its own id; with a lineage store a changed re-send supersedes the version before (key: the
custody number).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import IO, Any

from adapters.base import AdapterError, InboundAdapter, Result, envelope, london_utc, make_id, problem
from adapters.csvsafe import rows
from adapters.lineage import Stateless
from adapters.mapping import Mapping
from broker import identifiers
from broker.errors import FieldError

REQUIRED = ("custody_number", "arrest_date", "arrest_reason", "family")


class CustodyCsvAdapter(InboundAdapter):
    name = "custody-csv"
    description = "Custody-system CSV export (Windows-1252, dd/mm/yyyy, multi-line fields) -> custody.record"
    folder = Path(__file__).resolve().parent

    def _translate(self, stream: IO[bytes], mapping: Mapping) -> Iterator[Result]:
        lineage = self.lineage or Stateless()
        lines = rows(stream, mapping.get("encoding", "cp1252"))
        first = next(lines, None)
        header = [h.strip() for h in first[1]] if first else []
        columns = _columns(header, mapping)
        for line, row in lines:
            if not any(cell.strip() for cell in row):
                continue
            if len(row) != len(header):
                yield AdapterError(
                    "csv_column_count",
                    f"expected {len(header)} columns, found {len(row)}",
                    location=f"line {line}",
                )
                continue
            values = {field: row[index].strip() for field, index in columns.items()}
            problems: list[FieldError] = []
            record = _record(values, mapping, problems)
            if problems:
                yield AdapterError.of(problems, location=f"line {line}", record_id=record["id"])
            else:
                yield lineage.stamp(record, f"custody-{values['custody_number']}")


def _columns(header: list[str], mapping: Mapping) -> dict[str, int]:
    wanted: dict[str, str] = mapping.get("columns")
    missing = [f"{field} ({name!r})" for field, name in wanted.items() if name not in header and field in REQUIRED]
    if not header or missing:
        raise AdapterError(
            "layout_unknown", f"the header lacks {', '.join(missing) or 'every column'}", location="line 1"
        )
    return {field: header.index(name) for field, name in wanted.items() if name in header}


def _record(v: dict[str, str], mapping: Mapping, problems: list[FieldError]) -> dict[str, Any]:
    for field in REQUIRED:
        if not v.get(field):
            problems.append(
                problem(_PATHS.get(field, field), f"{field}_missing", f"{field.replace('_', ' ')} is empty")
            )
    formats = mapping.get("date_formats") or ["%d/%m/%Y"]
    arrested = _utc(_when(v.get("arrest_date"), v.get("arrest_time"), formats, "data.arrest.time", problems))
    released = _utc(_when(v.get("release_date"), v.get("release_time"), formats, "data.released.time", problems))
    birth = _when(v.get("birth_date"), None, formats, "data.persons[0].birth_date", problems)
    asn = _identifier("asn", v.get("asn"), "data.asn", problems)
    pnc = _identifier("pnc", v.get("pnc_id"), "data.persons[0].identifiers[0]", problems)
    outcome = (
        mapping.code("release_outcome", v.get("release_outcome"), fold_case=True) if v.get("release_outcome") else None
    )
    if v.get("release_outcome") and outcome is None:
        problems.append(
            problem(
                "data.released.outcome",
                "release_outcome_unknown",
                f"release outcome {v['release_outcome']!r} is not in the mapping",
            )
        )
    person = {
        "id": "p1",
        "name": {"given": (v.get("given") or "").split(), "family": v.get("family")},
        "birth_date": (birth or "")[:10],
        "gender": _code(mapping, "gender", v.get("gender"), "data.persons[0].gender", problems),
        "ethnicity": {
            "self_defined": _code(mapping, "ethnicity", v.get("ethnicity"), "data.persons[0].ethnicity", problems)
        },
        "identifiers": [{"scheme": s, "value": x} for s, x in (("pnc", pnc), ("asn", asn)) if x],
        "addresses": ["l1"] if v.get("address") else [],
    }
    locations = []
    if v.get("address"):
        lines = [part.strip() for part in v["address"].replace("\r", "").replace("\n", ",").split(",") if part.strip()]
        locations.append(
            {"id": "l1", "kind": "address", "address": {"lines": lines[:6], "postcode": v.get("postcode")}}
        )
    if v.get("arrest_location"):
        locations.append({"id": "l2", "kind": "address", "address": {"lines": [v["arrest_location"][:256]]}})
    data = {
        "custody_number": v.get("custody_number"),
        "asn": asn,
        "arrest": {
            "time": arrested,
            "reason": " ".join(v.get("arrest_reason", "").split())[:2000],
            "location": "l2" if v.get("arrest_location") else None,
        },
        "detained_person": "p1",
        "station": mapping.code("station", v.get("station")) or v.get("station"),
        "released": {"time": released, "outcome": outcome} if released and outcome else None,
        "persons": [person],
        "locations": locations,
        "links": [{"from": "p1", "to": "l1", "type": "resides-at"}] if v.get("address") else [],
    }
    record_id = make_id(mapping.agency, mapping.system, v.get("custody_number") or "no-custody-number")
    return envelope(
        mapping,
        "custody.record",
        record_id,
        arrested or "1970-01-01T00:00:00Z",
        data,
        correlation_id=f"asn-{asn}" if asn else record_id,
        subjects=["p1"],
    )


_PATHS = {
    "custody_number": "data.custody_number",
    "arrest_date": "data.arrest.time",
    "arrest_reason": "data.arrest.reason",
    "family": "data.persons[0].name.family",
}


def _code(mapping: Mapping, table: str, value: str | None, path: str, problems: list[FieldError]) -> str | None:
    """A code from the mapping's table (case-insensitive); blank stays absent, an unknown code is refused."""
    if not value:
        return None
    found = mapping.code(table, value, fold_case=True)
    if found is None:
        problems.append(problem(path, f"{table}_unknown", f"{table} {value!r} is not in the mapping"))
    return found


def _utc(local: str | None) -> str | None:
    return london_utc(local) if local else None


def _when(date: str | None, time: str | None, formats: list[str], path: str, problems: list[FieldError]) -> str | None:
    """The local date (and time) as ISO 8601 without an offset, or None (a problem is recorded)."""
    if not date:
        return None
    for form in formats:
        try:
            day = datetime.strptime(date, form)
            break
        except ValueError:
            continue
    else:
        problems.append(problem(path, "date_invalid", f"date {date!r} matches none of {', '.join(formats)}"))
        return None
    if time:
        try:
            clock = datetime.strptime(time, "%H:%M")
        except ValueError:
            problems.append(problem(path, "time_invalid", f"time {time!r} is not HH:MM"))
            return None
        day = day.replace(hour=clock.hour, minute=clock.minute)
    return day.strftime("%Y-%m-%dT%H:%M:%S")


def _identifier(scheme: str, value: str | None, path: str, problems: list[FieldError]) -> str | None:
    if not value:
        return None
    if message := identifiers.check(scheme, value):
        problems.append(problem(path, f"{scheme}_invalid", message))
    return identifiers.normalise(scheme, value)

"""data.police.uk CSV (street, outcomes, stop-and-search) -> `crime.report` and `stop.search` records.

The layout is detected from the header row, which must start with one of the published column sets
(REFERENCE §7.1); trailing empty or extra columns are reported once per file (`csv_extra_columns`, an
AdapterNotice) and the rows still go.  Labels (crime types, outcomes, objects of search) map to common
codes through the mapping's code tables, case-insensitively, with aliases for the wording variants the
files use.  Outcome rows take the category of their crime from the street files of the same force found
beside the outcomes file (the download's `YYYY-MM/` folders), joined on Crime ID.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import IO, Any

from adapters.base import (
    AdapterError,
    AdapterNotice,
    InboundAdapter,
    Result,
    Source,
    digest,
    envelope,
    london_utc,
    make_id,
    problem,
)
from adapters.csvsafe import rows
from adapters.lineage import Stateless
from adapters.mapping import Mapping
from adapters.police_uk_csv.stops import label, stop_search
from broker.errors import FieldError

COMMON = ["Longitude", "Latitude", "Location", "LSOA code", "LSOA name"]
LAYOUTS: dict[str, list[str]] = {
    "street": [
        "Crime ID",
        "Month",
        "Reported by",
        "Falls within",
        *COMMON,
        "Crime type",
        "Last outcome category",
        "Context",
    ],
    "outcomes": ["Crime ID", "Month", "Reported by", "Falls within", *COMMON, "Outcome type"],
    "stop-and-search": [
        "Type",
        "Date",
        "Part of a policing operation",
        "Policing operation",
        "Latitude",
        "Longitude",
        "Gender",
        "Age range",
        "Self-defined ethnicity",
        "Officer-defined ethnicity",
        "Legislation",
        "Object of search",
        "Outcome",
        "Outcome linked to object of search",
        "Removal of more than just outer clothing",
    ],
}


class PoliceUkCsvAdapter(InboundAdapter):
    name = "police-uk-csv"
    description = "data.police.uk CSV downloads (street, outcomes, stop-and-search) -> crime.report"
    folder = Path(__file__).resolve().parent

    path: Path | None = None

    def translate(self, source: Source, mapping: Mapping | str, *, lineage: Any = None) -> Iterator[Result]:
        """As InboundAdapter.translate; a path (or a file opened from one) lets outcome rows find the street
        files beside it."""
        name = source if isinstance(source, (str, os.PathLike)) else getattr(source, "name", None)
        self.path = Path(name) if isinstance(name, (str, os.PathLike)) else None
        yield from super().translate(source, mapping, lineage=lineage)  # read before the first result

    def _translate(self, stream: IO[bytes], mapping: Mapping) -> Iterator[Result]:
        lineage = self.lineage or Stateless()
        lines = rows(stream, "utf-8")
        header = next(lines, None)
        layout, extra = _layout(header[1] if header else [])
        columns = LAYOUTS[layout]
        categories = street_categories(self.path, mapping) if layout == "outcomes" else {}
        if extra:
            yield _extra_notice(extra)
        build = BUILDERS[layout]
        widths_reported = bool(extra)
        for number, (line, row) in enumerate(lines, start=1):
            if not any(cell.strip() for cell in row):
                continue
            if len(row) < len(columns):
                yield AdapterError(
                    "csv_column_count", f"expected {len(columns)} columns, found {len(row)}", location=f"line {line}"
                )
                continue
            if len(row) > len(columns) and not widths_reported:
                widths_reported = True
                yield _extra_notice([f"column {i + 1}" for i in range(len(columns), len(row))], line)
            problems: list[FieldError] = []
            fields = dict(zip(columns, row, strict=False))
            record = build(fields, number, mapping, problems, categories)
            if problems:
                yield AdapterError.of(problems, location=f"line {line}", record_id=record["id"])
            elif layout == "street" and fields["Crime ID"].strip():
                yield lineage.stamp(record, f"street-{fields['Crime ID'].strip().lower()}")
            else:
                yield record


def _extra_notice(extra: list[str], line: int = 1) -> AdapterNotice:
    names = ", ".join(name or "(empty)" for name in extra)[:200]
    return AdapterNotice(
        "csv_extra_columns",
        f"{len(extra)} column(s) beyond the published layout are ignored ({names}); the rows still go",
        location=f"line {line}",
    )


def street_categories(path: Path | None, mapping: Mapping) -> dict[int, str]:
    """Crime ID (first 64 bits) -> category, from the force's street files beside an outcomes file.

    The files searched are `*-street.csv` of the same force slug in the outcomes file's folder and in its
    sibling folders (data.police.uk downloads hold one `YYYY-MM/` folder per month).  Memory is about
    60 bytes per crime.  Rows whose crime type the mapping does not know are left out.
    """
    if path is None or not path.name.endswith("-outcomes.csv"):
        return {}
    slug = path.name[len("YYYY-MM-") : -len("-outcomes.csv")]
    pattern = f"*-{slug}-street.csv"
    found = sorted({*path.parent.glob(pattern), *path.parent.parent.glob(f"*/{pattern}")})
    categories: dict[int, str] = {}
    for street in found:
        with street.open("rb") as stream:
            lines = rows(stream, "utf-8")
            next(lines, None)
            for _line, row in lines:
                crime_id = row[0].strip().lower() if row else ""
                if len(row) > 9 and len(crime_id) == 64:
                    category = mapping.code("crime_type", row[9], fold_case=True)
                    if category:
                        categories[int(crime_id[:16], 16)] = category
    return categories


def _layout(header: list[str]) -> tuple[str, list[str]]:
    """The layout the header starts with, and the names of any columns after it."""
    cleaned = [h.strip() for h in header]
    for name, columns in LAYOUTS.items():
        if cleaned[: len(columns)] == columns:
            return name, cleaned[len(columns) :]
    raise AdapterError(
        "layout_unknown",
        f"the header is not a data.police.uk street, outcomes or stop-and-search layout: {', '.join(cleaned)[:200]}",
        location="line 1",
    )


def _street(
    row: dict[str, str], number: int, mapping: Mapping, problems: list[FieldError], categories: dict[int, str]
) -> dict[str, Any]:
    crime_id = row["Crime ID"].strip().lower()
    category = _label(mapping, "crime_type", row["Crime type"], "data.category", problems)
    outcome = _label(mapping, "outcome", row["Last outcome category"], "data.outcome", problems, optional=True)
    if crime_id:
        record_id, ref = make_id(mapping.agency, mapping.system, "street", crime_id), crime_id
    else:  # anti-social behaviour rows carry no Crime ID: key on the row's content and position
        ref = f"row-{digest(*row.values())}-{number}"
        record_id = make_id(mapping.agency, mapping.system, "street", ref)
    month = _month(row["Month"], problems)
    data = {
        "crime_ref": ref,
        "category": category,
        "recorded": _month_start(month),
        "month": month,
        "outcome": outcome,
        "summary": row["Context"].strip(),
        **_place(row, problems, event_kind=category),
    }
    return envelope(
        mapping,
        "crime.report",
        record_id,
        _month_start(month) or "1970-01-01T00:00:00Z",
        data,
        correlation_id=f"police-uk-{crime_id}" if crime_id else record_id,
    )


def _outcome(
    row: dict[str, str], number: int, mapping: Mapping, problems: list[FieldError], categories: dict[int, str]
) -> dict[str, Any]:
    crime_id = row["Crime ID"].strip().lower()
    if not crime_id:
        problems.append(problem("data.crime_ref", "crime_id_missing", "an outcome row must carry a Crime ID"))
    outcome = _label(mapping, "outcome", row["Outcome type"], "data.outcome", problems)
    month = _month(row["Month"], problems)
    ref = f"{crime_id}-{digest(*row.values(), size=12)}-{number}"
    data = {
        "crime_ref": crime_id,
        "category": _crime_category(crime_id, categories) or mapping.get("outcomes_category", "other-crime"),
        "recorded": _month_start(month),
        "month": month,
        "outcome": outcome,
        **_place(row, problems, event_kind="outcome"),
    }
    return envelope(
        mapping,
        "crime.report",
        make_id(mapping.agency, mapping.system, "outcome", ref),
        _month_start(month) or "1970-01-01T00:00:00Z",
        data,
        correlation_id=f"police-uk-{crime_id}" if crime_id else None,
    )


def _crime_category(crime_id: str, categories: dict[int, str]) -> str | None:
    try:
        return categories.get(int(crime_id[:16], 16)) if len(crime_id) == 64 else None
    except ValueError:
        return None


def _place(row: dict[str, str], problems: list[FieldError], *, event_kind: str | None) -> dict[str, Any]:
    lat, lon = _coordinates(row, problems)
    location: dict[str, Any] = {"id": "l1", "description": row["Location"].strip()}
    if row["LSOA code"].strip():
        location["area"] = {
            "scheme": "lsoa",
            "code": row["LSOA code"].strip(),
            "name": row["LSOA name"].strip(),
        }
    if lat is not None:
        location.update(kind="point", point={"lat": lat, "lon": lon})
    elif "area" in location:
        location["kind"] = "area"
    else:
        return {}
    kind = (event_kind or "crime").lower()
    return {
        "locations": [location],
        "events": [{"id": "e1", "kind": kind}],
        "links": [{"from": "e1", "to": "l1", "type": "occurred-at"}],
    }


def _coordinates(row: dict[str, str], problems: list[FieldError]) -> tuple[float | None, float | None]:
    lat, lon = row["Latitude"].strip(), row["Longitude"].strip()
    if not lat and not lon:
        return None, None
    try:
        la, lo = float(lat), float(lon)
    except ValueError:
        problems.append(
            problem("data.locations[0].point", "coordinates_invalid", f"latitude {lat!r}, longitude {lon!r}")
        )
        return None, None
    if not (-90 <= la <= 90 and -180 <= lo <= 180):
        problems.append(problem("data.locations[0].point", "coordinates_invalid", f"({la}, {lo}) is off the globe"))
        return None, None
    return la, lo


_label = label


def _month(text: str, problems: list[FieldError]) -> str | None:
    month = _parse_month(text)
    if month is None:
        problems.append(problem("data.month", "month_invalid", f"month {text!r} is not YYYY-MM"))
    return month


@functools.lru_cache(maxsize=1024)
def _parse_month(text: str) -> str | None:
    """`YYYY-MM` normalised, or None (cached: a file holds a handful of months; strptime is slow)."""
    try:
        return datetime.strptime(text.strip(), "%Y-%m").strftime("%Y-%m")
    except ValueError:
        return None


def _month_start(month: str | None) -> str | None:
    return f"{month}-01T00:00:00Z" if month else None


def _instant(text: str, problems: list[FieldError]) -> str | None:
    """A stop's date: kept when it has an offset (the published files do), else UK local time."""
    moment = london_utc(text)
    if moment is None:
        problems.append(problem("data.time", "date_invalid", f"date {text!r} is not ISO 8601"))
    return moment


def _stop(
    row: dict[str, str], number: int, mapping: Mapping, problems: list[FieldError], categories: dict[int, str]
) -> dict[str, Any]:
    return stop_search(row, number, mapping, problems, _instant(row["Date"], problems), _coordinates(row, problems))


BUILDERS: dict[str, Callable[[dict[str, str], int, Mapping, list[FieldError], dict[int, str]], dict[str, Any]]] = {
    "street": _street,
    "outcomes": _outcome,
    "stop-and-search": _stop,
}

"""`safeguarding.notification` -> safeguarding referral CSV for a local-authority MASH.

One row per person named in the referral (children first), UTF-8 with CRLF line ends.  Every cell that
a spreadsheet would treat as a formula (starting = + - @, tab or carriage return) is prefixed with a
single quote, so opening the file cannot run anything (CSV/formula injection).
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

from adapters.base import AdapterError, OutboundAdapter, Record

COLUMNS = [
    "Referral ID",
    "Incident Ref",
    "Incident Time",
    "Risk",
    "Child Present",
    "Role",
    "Family Name",
    "Given Names",
    "Date of Birth",
    "Under 18",
    "NHS Number",
    "PNC ID",
    "School URN",
    "School",
    "Address",
    "Postcode",
    "Summary",
]
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def neutralise(cell: Any) -> str:
    """The cell as text, prefixed with ' when a spreadsheet would read it as a formula."""
    text = "" if cell is None else str(cell)
    return "'" + text if text.startswith(FORMULA_START) else text


class MashCsvAdapter(OutboundAdapter):
    name = "mash-csv"
    description = "safeguarding.notification -> MASH referral CSV (one row per person, formula cells neutralised)"
    folder = Path(__file__).resolve().parent
    content_type = "text/csv; charset=utf-8"
    columns = tuple(COLUMNS)  # the header row every rendered delivery starts with (the partner contract)
    record_types = ("safeguarding.notification",)

    def _render(self, record: Record, options: dict[str, Any]) -> tuple[bytes, str]:
        data = record["data"]
        if not data.get("children"):
            raise AdapterError(
                "field_missing",
                "a MASH referral names at least one child",
                path="data.children",
                record_id=record.get("id"),
            )
        persons = {p["id"]: p for p in data.get("persons") or []}
        locations = {loc["id"]: loc for loc in data.get("locations") or []}
        buffer = io.StringIO(newline="")
        writer = csv.writer(buffer, lineterminator="\r\n", quoting=csv.QUOTE_MINIMAL)
        writer.writerow(COLUMNS)
        for role, refs in (("child", data["children"]), ("adult", data.get("adults") or [])):
            for ref in refs:
                row = _row(record, data, role, persons[ref], locations)
                writer.writerow([neutralise(cell) for cell in row])
        return buffer.getvalue().encode("utf-8"), self.content_type


def _row(
    record: Record, data: dict[str, Any], role: str, person: dict[str, Any], locations: dict[str, Any]
) -> list[Any]:
    incident = data["incident"]
    ids = {i["scheme"]: i["value"] for i in person.get("identifiers") or []}
    address: dict[str, Any] = next(
        (
            locations[a]["address"]
            for a in person.get("addresses") or []
            if a in locations and locations[a].get("address")
        ),
        {},
    )
    school = person.get("school") or {}
    return [
        record["id"],
        incident["ref"],
        incident["time"],
        data.get("risk"),
        _yes_no(data.get("child_present")),
        role,
        person["name"]["family"],
        " ".join(person["name"].get("given") or []),
        person.get("birth_date"),
        _yes_no(person.get("under18")),
        ids.get("nhs"),
        ids.get("pnc"),
        school.get("urn"),
        school.get("name"),
        ", ".join(address.get("lines") or []),
        address.get("postcode"),
        data.get("summary"),
    ]


def _yes_no(flag: object) -> str:
    return {True: "yes", False: "no"}.get(flag, "") if isinstance(flag, bool) else ""

"""`crime.report` -> one row of the data.police.uk street-level CSV layout, for a crime-mapping partner.

Anonymised as data.police.uk does (REFERENCE §7.4): the location is snapped to the nearest anonymous map
point from `map_points.csv` (points published by data.police.uk, OGL v3), the date is cut to the month,
persons, objects, identifiers, free text and the force's crime reference are dropped.  The Crime ID is
HMAC-SHA256 of the origin agency and the record's lineage id (the id it supersedes, else its own) under
`options["crime_id_key"]`, a secret of the deployment: without the key nobody can link a published row back
to the force's reference, and a correction keeps its crime's Crime ID.  No key, no row
(`crime_id_key_missing`).  Anti-social behaviour rows have no Crime ID.
"""

from __future__ import annotations

import csv
import hashlib
import hmac
import io
import math
from functools import lru_cache
from pathlib import Path
from typing import Any, NamedTuple

from adapters.base import AdapterError, OutboundAdapter, Record
from broker.identifiers import force_name

HERE = Path(__file__).resolve().parent
COLUMNS = [
    "Crime ID",
    "Month",
    "Reported by",
    "Falls within",
    "Longitude",
    "Latitude",
    "Location",
    "LSOA code",
    "LSOA name",
    "Crime type",
    "Last outcome category",
    "Context",
]
CATEGORY_LABELS = {
    "anti-social-behaviour": "Anti-social behaviour",
    "bicycle-theft": "Bicycle theft",
    "burglary": "Burglary",
    "criminal-damage-arson": "Criminal damage and arson",
    "drugs": "Drugs",
    "other-theft": "Other theft",
    "possession-of-weapons": "Possession of weapons",
    "public-order": "Public order",
    "robbery": "Robbery",
    "shoplifting": "Shoplifting",
    "theft-from-the-person": "Theft from the person",
    "vehicle-crime": "Vehicle crime",
    "violent-crime": "Violence and sexual offences",
    "other-crime": "Other crime",
}
OUTCOME_LABELS = {
    "awaiting-court-result": "Awaiting court outcome",
    "court-result-unavailable": "Court result unavailable",
    "unable-to-proceed": "Court case unable to proceed",
    "local-resolution": "Local resolution",
    "no-further-action": "Investigation complete; no suspect identified",
    "deprived-of-property": "Offender deprived of property",
    "fined": "Offender fined",
    "absolute-discharge": "Offender given absolute discharge",
    "cautioned": "Offender given a caution",
    "drugs-possession-warning": "Offender given a drugs possession warning",
    "penalty-notice-issued": "Offender given a penalty notice",
    "community-penalty": "Offender given community sentence",
    "conditional-discharge": "Offender given conditional discharge",
    "suspended-sentence": "Offender given suspended prison sentence",
    "imprisoned": "Offender sent to prison",
    "other-court-disposal": "Offender otherwise dealt with",
    "compensation": "Offender ordered to pay compensation",
    "sentenced-in-another-case": "Suspect charged as part of another case",
    "charged": "Suspect charged",
    "not-guilty": "Defendant found not guilty",
    "sent-to-crown-court": "Defendant sent to Crown Court",
    "unable-to-prosecute": "Unable to prosecute suspect",
    "formal-action-not-in-public-interest": "Formal action is not in the public interest",
    "action-taken-by-another-organisation": "Action to be taken by another organisation",
    "further-investigation-not-in-public-interest": "Further investigation is not in the public interest",
    "further-action-not-in-public-interest": "Further action is not in the public interest",
    "under-investigation": "Under investigation",
    "status-update-unavailable": "Status update unavailable",
}


class MapPoint(NamedTuple):
    lat: float
    lon: float
    location: str
    lsoa_code: str
    lsoa_name: str


@lru_cache(maxsize=4)
def map_points(path: str = str(HERE / "map_points.csv")) -> tuple[MapPoint, ...]:
    """The anonymous map points to snap to (latitude, longitude, location, lsoa_code, lsoa_name)."""
    with open(path, newline="", encoding="utf-8") as handle:
        return tuple(
            MapPoint(float(r["latitude"]), float(r["longitude"]), r["location"], r["lsoa_code"], r["lsoa_name"])
            for r in csv.DictReader(handle)
        )


def nearest(lat: float, lon: float, points: tuple[MapPoint, ...]) -> tuple[MapPoint, float]:
    """The closest map point and its distance in metres (equirectangular; fine at street scale)."""
    scale = math.cos(math.radians(lat))

    def metres(p: MapPoint) -> float:
        return 6_371_000 * math.hypot(math.radians(p.lat - lat), math.radians(p.lon - lon) * scale)

    best = min(points, key=metres)
    return best, metres(best)


class CrimeMapCsvAdapter(OutboundAdapter):
    name = "crime-map-csv"
    description = "crime.report -> data.police.uk street CSV row (snapped, month only, no personal data)"
    folder = HERE
    content_type = "text/csv; charset=utf-8"
    columns = tuple(COLUMNS)  # the header row every rendered delivery starts with (the partner contract)
    record_types = ("crime.report",)
    anonymising = True

    def _render(self, record: Record, options: dict[str, Any]) -> tuple[bytes, str]:
        row = street_row(record, options)
        buffer = io.StringIO(newline="")
        writer = csv.writer(buffer, lineterminator="\r\n")
        if options.get("header", True):
            writer.writerow(COLUMNS)
        writer.writerow(row)
        return buffer.getvalue().encode("utf-8"), self.content_type


def street_row(record: Record, options: dict[str, Any]) -> list[str]:
    """The published row for one crime.report: only category, month, force, snapped place and outcome."""
    data = record["data"]
    category = CATEGORY_LABELS.get(data.get("category"))
    if category is None:
        raise AdapterError(
            "category_unknown",
            f"category {data.get('category')!r} has no data.police.uk label",
            path="data.category",
            record_id=record.get("id"),
        )
    month = data.get("month") or (data.get("recorded") or "")[:7]
    force = force_name(record["origin"]["agency"]) or options.get("force_name") or record["origin"]["agency"]
    place = _snapped(data, options)
    crime_id = "" if data["category"] == "anti-social-behaviour" else _crime_id(record, options)
    lon, lat = (f"{place.lon:.6f}", f"{place.lat:.6f}") if place else ("", "")
    return [
        crime_id,
        month,
        force,
        force,
        lon,
        lat,
        place.location if place else "No Location",
        place.lsoa_code if place else "",
        place.lsoa_name if place else "",
        category,
        OUTCOME_LABELS.get(data.get("outcome"), "") if category != "Anti-social behaviour" else "",
        "",
    ]


def _snapped(data: dict[str, Any], options: dict[str, Any]) -> MapPoint | None:
    point = next((loc["point"] for loc in data.get("locations") or [] if loc.get("point")), None)
    if point is None:
        return None
    points = map_points(str(options.get("map_points", HERE / "map_points.csv")))
    best, distance = nearest(point["lat"], point["lon"], points)
    return best if distance <= float(options.get("max_snap_metres", 2000)) else None


def _crime_id(record: Record, options: dict[str, Any]) -> str:
    key = str(options.get("crime_id_key") or "").encode("utf-8")
    if not key:
        raise AdapterError(
            "crime_id_key_missing",
            "no crime_id_key: a Crime ID without a secret key could be linked back to the force's reference",
            path="id",
            record_id=record.get("id"),
        )
    supersedes = record.get("supersedes")
    lineage = supersedes["id"] if isinstance(supersedes, dict) and supersedes.get("id") else record["id"]
    message = f"{record['origin']['agency']}\x00{lineage}".encode()
    return hmac.new(key, message, hashlib.sha256).hexdigest()

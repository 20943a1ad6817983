"""Fixed-width and custody CSV times are UK local time, around both daylight-saving changes; re-sends supersede."""

from __future__ import annotations

from pathlib import Path

import pytest

from adapters import get_adapter
from adapters.fixed_width.inbound import encode_record, load_layout
from adapters.lineage import Lineage

CUSTODY = Path(__file__).resolve().parents[2] / "adapters" / "custody_csv" / "fixtures" / "force-a-custody.csv"

# (local date, local time, UTC): winter, summer, the October hour that repeats (first occurrence, BST)
# and the March hour that is skipped (read with the offset before the change, GMT).
TIMES = [
    ("2026-01-13", "14:15", "2026-01-13T14:15:00Z"),
    ("2026-06-15", "10:00", "2026-06-15T09:00:00Z"),
    ("2026-10-25", "00:30", "2026-10-24T23:30:00Z"),
    ("2026-10-25", "01:30", "2026-10-25T00:30:00Z"),
    ("2026-10-25", "02:30", "2026-10-25T02:30:00Z"),
    ("2026-03-29", "00:30", "2026-03-29T00:30:00Z"),
    ("2026-03-29", "01:30", "2026-03-29T01:30:00Z"),
    ("2026-03-29", "02:30", "2026-03-29T01:30:00Z"),
    ("2026-03-29", "03:00", "2026-03-29T02:00:00Z"),
]


def _extract(date: str, time: str, *, location: str = "Example Market") -> bytes:
    layout = load_layout("rms-mainframe-v1")
    ymd, hm = date.replace("-", ""), time.replace(":", "")
    lines = [
        encode_record(
            layout, "CR", {"crime_ref": "FB/000900/26", "recorded_date": ymd, "recorded_time": hm, "location": location}
        ),
        encode_record(
            layout,
            "NM",
            {
                "crime_ref": "FB/000900/26",
                "nominal_seq": 1,
                "role": "S",
                "family": "Specimen",
                "given": "Sam",
                "birth_date": "19990615",
            },
        ),
        encode_record(
            layout,
            "AR",
            {
                "crime_ref": "FB/000900/26",
                "nominal_seq": 1,
                "arrest_date": ymd,
                "arrest_time": hm,
                "custody_number": "FB26000900",
                "station": "FB01",
            },
        ),
    ]
    return "".join(line + "\n" for line in lines).encode("ascii")


def _fixed(source: bytes, lineage: Lineage | None = None) -> dict:
    (record,) = get_adapter("fixed-width").translate(source, "force-b", lineage=lineage)
    assert isinstance(record, dict), record.errors
    return record


@pytest.mark.parametrize(("date", "time", "expected"), TIMES)
def test_fixed_width_times_are_uk_local_time(date, time, expected):
    record = _fixed(_extract(date, time))

    assert record["data"]["recorded"] == expected
    assert record["data"]["events"][1]["start"] == expected  # the arrest


def test_a_fixed_width_date_without_a_time_is_local_midnight_and_birth_dates_stay_dates():
    record = _fixed(_extract("2026-06-15", ""))

    assert record["data"]["recorded"] == "2026-06-14T23:00:00Z"
    assert record["data"]["persons"][0]["birth_date"] == "1999-06-15"


def test_a_changed_fixed_width_resend_supersedes_the_earlier_version_and_the_same_version_keeps_its_id():
    lineage = Lineage()
    first = _fixed(_extract("2026-06-15", "10:00"), lineage)
    again = _fixed(_extract("2026-06-15", "10:00"), lineage)
    changed = _fixed(_extract("2026-06-15", "10:00", location="Example Square"), lineage)

    assert again == first and "supersedes" not in first
    assert changed["id"] != first["id"]
    assert changed["supersedes"] == {"id": first["id"], "kind": "correction"}


def _custody(date: str, time: str, *, release: tuple[str, str] = ("", ""), reason: str = "Theft") -> bytes:
    day = "/".join(reversed(date.split("-")))
    release_day = "/".join(reversed(release[0].split("-"))) if release[0] else ""
    header = CUSTODY.read_bytes().decode("cp1252").splitlines()[0]
    row = (
        f"TV01/26/00900,{day},{time},{reason},,Specimen,Sam,15/06/1999,Male,B2,,,,,TV01,"
        f"{release_day},{release[1]},{'Charged' if release[0] else ''}"
    )
    return f"{header}\r\n{row}\r\n".encode("cp1252")


def _custody_record(source: bytes, lineage: Lineage | None = None) -> dict:
    (record,) = get_adapter("custody-csv").translate(source, "force-a-custody", lineage=lineage)
    assert isinstance(record, dict), record.errors
    return record


@pytest.mark.parametrize(("date", "time", "expected"), TIMES)
def test_custody_arrest_and_release_times_are_uk_local_time(date, time, expected):
    record = _custody_record(_custody(date, time, release=(date, time)))

    assert record["data"]["arrest"]["time"] == expected
    assert record["data"]["released"]["time"] == expected
    assert record["data"]["persons"][0]["birth_date"] == "1999-06-15"


def test_a_changed_custody_resend_supersedes_the_earlier_version():
    lineage = Lineage()
    first = _custody_record(_custody("2026-06-15", "10:00"), lineage)
    again = _custody_record(_custody("2026-06-15", "10:00"), lineage)
    released = _custody_record(_custody("2026-06-15", "10:00", release=("2026-06-16", "09:30")), lineage)

    assert again == first and "supersedes" not in first
    assert released["id"] != first["id"] and released["id"].startswith("43-custody-TV01_26_00900-v")
    assert released["supersedes"] == {"id": first["id"], "kind": "correction"}

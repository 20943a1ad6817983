"""NIBRS reports keep their meaning: replaces supersede, deletes retract, Group B arrests map, no code vanishes."""

from __future__ import annotations

from pathlib import Path

import pytest

from adapters import get_adapter
from adapters.lineage import Lineage, SqliteLineage

FIXTURES = Path(__file__).resolve().parents[2] / "adapters" / "niem" / "fixtures"
INCIDENT = (FIXTURES / "nibrs-group-a-incident.xml").read_bytes()
REPLACE = (FIXTURES / "nibrs-group-a-replace.xml").read_bytes()
ORIGINAL_ID = "nibrs-sample-nibrs-incident-000054236732"


def translate(source: bytes, lineage: Lineage | None = None) -> list:
    return list(get_adapter("niem-nibrs").translate(source, "nibrs-sample", lineage=lineage))


def only(source: bytes, lineage: Lineage | None = None) -> dict:
    (result,) = translate(source, lineage)
    assert isinstance(result, dict), result.errors
    return result


def test_a_replace_report_is_a_new_record_that_supersedes_the_original():
    original, replacement = only(INCIDENT), only(REPLACE)

    assert original["id"] == ORIGINAL_ID and "supersedes" not in original
    assert replacement["id"] != original["id"]
    assert replacement["supersedes"] == {"id": ORIGINAL_ID, "kind": "correction"}
    assert replacement["data"]["objects"][3]["status"] == "damaged"  # DESTROYED, the replaced value


def test_the_same_replace_keeps_its_id_and_a_different_replace_gets_another():
    second_version = REPLACE.replace(b"<nc:Amount>12000</nc:Amount>", b"<nc:Amount>9000</nc:Amount>", 1)

    assert only(REPLACE)["id"] == only(REPLACE)["id"]
    assert only(second_version)["id"] not in (only(REPLACE)["id"], ORIGINAL_ID)


def test_a_second_replace_supersedes_the_first_when_lineage_is_kept_across_runs(tmp_path):
    second_version = REPLACE.replace(b"<nc:Amount>12000</nc:Amount>", b"<nc:Amount>9000</nc:Amount>", 1)
    store = SqliteLineage(tmp_path / "lineage.sqlite")
    only(INCIDENT, store)
    first = only(REPLACE, store)
    store.close()

    reopened = SqliteLineage(tmp_path / "lineage.sqlite")
    second = only(second_version, reopened)
    again = only(second_version, reopened)

    assert first["supersedes"]["id"] == ORIGINAL_ID
    assert second["supersedes"] == {"id": first["id"], "kind": "correction"}
    assert again == second


def test_an_incident_delete_becomes_a_retraction_of_the_incident():
    record = only((FIXTURES / "nibrs-incident-delete.xml").read_bytes())

    assert record["supersedes"] == {"id": "nibrs-sample-nibrs-incident-020160005029", "kind": "retraction"}
    assert record["id"] == "nibrs-sample-nibrs-incident-020160005029-deleted"
    assert set(record["data"]) == {"crime_ref", "category", "recorded", "summary"}


def test_a_group_b_arrest_is_mapped_not_refused_for_a_missing_incident_number():
    record = only((FIXTURES / "nibrs-group-b-arrest.xml").read_bytes())

    assert record["data"]["crime_ref"] == "12345"
    assert record["data"]["recorded"] == "2016-02-28T05:00:00Z"  # local midnight, US Eastern (EST)
    assert record["data"]["events"] == [
        {
            "id": "Arrest1",
            "kind": "arrest",
            "start": "2016-02-28T05:00:00Z",
            "description": "NIBRS 64A human trafficking, commercial sex acts; arrest: on-view arrest",
        }
    ]
    assert {"from": "PersonArrestee1", "to": "Arrest1", "type": "arrested-in"} in record["data"]["links"]


def test_an_arrest_delete_retracts_the_arrest_record():
    record = only((FIXTURES / "nibrs-group-b-arrest-delete.xml").read_bytes())

    assert record["supersedes"] == {"id": "nibrs-sample-nibrs-arrest-12345", "kind": "retraction"}


def test_ages_and_age_ranges_are_kept_as_ranges():
    persons = {p["id"]: p for p in only(INCIDENT)["data"]["persons"]}

    assert persons["PersonVictim1"]["age_range"] == {"min": 32, "max": 32}
    assert persons["PersonVictim2"]["age_range"] == {"min": 0, "max": 0}  # BABY
    assert persons["PersonSubject1"]["age_range"] == {"min": 25, "max": 30}
    assert persons["PersonSubject1"]["under18"] is False


@pytest.mark.parametrize(
    ("old", "new", "code"),
    [
        (b"<j:PersonSexCode>F</j:PersonSexCode>", b"<j:PersonSexCode>Q</j:PersonSexCode>", "sex_unknown"),
        (b"<j:PersonRaceNDExCode>B<", b"<j:PersonRaceNDExCode>Z<", "race_unknown"),
        (b">RECOVERED</cjis:ItemStatusCode>", b">MELTED</cjis:ItemStatusCode>", "item_status_unknown"),
        (b">Acquaintance<", b">Pen_Pal<", "relationship_unknown"),
        (b"ClearanceCode>A<", b"ClearanceCode>Q<", "clearance_unknown"),
        (b">13A</nibrs:OffenseUCRCode>", b">99Z</nibrs:OffenseUCRCode>", "offense_code_unknown"),
        (b"<nc:MeasureValueText>BABY<", b"<nc:MeasureValueText>ELDERLY<", "age_unknown"),
    ],
)
def test_a_code_the_mapping_does_not_know_is_refused_with_its_reason_never_dropped(old, new, code):
    assert old in INCIDENT
    (result,) = translate(INCIDENT.replace(old, new, 1))

    assert not isinstance(result, dict)
    assert code in [e.code for e in result.errors]


def test_a_zero_report_is_refused_with_a_reason():
    zero = INCIDENT.replace(b"GROUP A INCIDENT REPORT", b"ZERO REPORT")

    (result,) = translate(zero)

    assert result.errors[0].code == "zero_report"


def test_an_unknown_report_action_is_refused():
    (result,) = translate(INCIDENT.replace(b"ActionCategoryCode>I<", b"ActionCategoryCode>X<"))

    assert result.errors[0].code == "report_action_unknown"


def test_every_item_status_of_the_cjis_code_list_maps():
    statuses = [
        "BAIT",
        "BURNED",
        "CARGO",
        "CONTRABAND",
        "COUNTERFEITED",
        "CULTIVATED",
        "DAMAGED",
        "DESTROYED",
        "DESTROYED_DAMAGED_VANDALIZED",
        "FOUND",
        "LOST",
        "RECOVERED",
        "RETURNED",
        "SEIZED",
        "STOLEN",
        "STOLEN_BRIBED",
        "STOLEN_DEFRAUDED",
        "STOLEN_EMBEZZLED",
        "STOLEN_EXTORTED",
        "STOLEN_RANSOMED",
        "STOLEN_ROBBED",
        "VANDALIZED",
        "NONE",
        "UNKNOWN",
    ]
    for status in statuses:
        changed = INCIDENT.replace(b">RECOVERED</cjis:ItemStatusCode>", f">{status}</cjis:ItemStatusCode>".encode())
        assert only(changed)["data"]["objects"][4]["status"], status


def test_nibrs_times_are_the_reporting_agencys_local_time():
    record = only(INCIDENT)

    assert record["data"]["recorded"] == "2016-02-19T15:00:00Z"  # 10:00 EST
    assert record["time"] == "2017-03-23T07:00:00Z"  # 03:00 EDT (US summer time from 12 March)


@pytest.mark.parametrize(
    ("local", "expected"),
    [
        ("2026-06-15T10:00:00", "2026-06-15T09:00:00Z"),
        ("2026-10-25T01:30:00", "2026-10-25T00:30:00Z"),  # the repeated hour: its first occurrence (BST)
        ("2026-03-29T01:30:00", "2026-03-29T01:30:00Z"),  # the skipped hour: read as GMT
        ("2026-03-29T02:30:00", "2026-03-29T01:30:00Z"),
        ("2026-06-15T10:00:00+02:00", "2026-06-15T08:00:00Z"),  # an offset is kept
    ],
)
def test_a_uk_nibrs_mapping_reads_times_as_uk_local_time_around_both_clock_changes(tmp_path, local, expected):
    uk = tmp_path / "nibrs-uk.yaml"
    uk.write_text("extends: nibrs-sample\nname: nibrs-uk\ntimezone: Europe/London\n")
    source = INCIDENT.replace(
        b"<nc:DateTime>2016-02-19T10:00:00</nc:DateTime>", f"<nc:DateTime>{local}</nc:DateTime>".encode()
    )

    (record,) = get_adapter("niem-nibrs").translate(source, get_adapter("niem-nibrs").load_mapping(uk))

    assert record["data"]["recorded"] == expected

"""data.police.uk files: extra columns are reported once and the rows go; outcomes take their crime's category."""

from __future__ import annotations

import csv
import io
import shutil
from pathlib import Path

from adapters import get_adapter
from adapters.lineage import Lineage

PUBLIC = Path(__file__).resolve().parents[2] / "tests" / "fixtures" / "public"
STREET = PUBLIC / "2017-01-city-of-london-street.csv"
OUTCOMES = PUBLIC / "2017-01-city-of-london-outcomes.csv"


def translate(source, lineage=None) -> list:
    return list(get_adapter("police-uk-csv").translate(source, "city-of-london", lineage=lineage))


def with_extra_columns(text: str, extra: str) -> bytes:
    return "".join(line.rstrip("\r\n") + extra + "\n" for line in text.splitlines()).encode()


def test_a_trailing_empty_column_is_reported_once_and_every_row_still_goes():
    rows = STREET.read_text(encoding="utf-8").count("\n") - 1

    results = translate(with_extra_columns(STREET.read_text(encoding="utf-8"), ","))

    notices = [r for r in results if not isinstance(r, dict)]
    assert [(n.code, n.location, n.notice) for n in notices] == [("csv_extra_columns", "line 1", True)]
    assert sum(isinstance(r, dict) for r in results) == rows


def test_an_extra_named_column_is_reported_once_and_ignored():
    text = STREET.read_text(encoding="utf-8").splitlines()
    body = "\n".join([text[0] + ",Notes"] + [line + ",checked" for line in text[1:]]) + "\n"

    results = translate(body.encode())

    notices = [r for r in results if not isinstance(r, dict)]
    assert len(notices) == 1 and "Notes" in notices[0].errors[0].message
    assert len(results) - 1 == len(text) - 1


def test_rows_wider_than_the_header_are_reported_once_and_still_go():
    text = STREET.read_text(encoding="utf-8").splitlines()
    body = "\n".join([text[0]] + [line + ",," for line in text[1:]]) + "\n"

    results = translate(body.encode())

    assert [r.code for r in results if not isinstance(r, dict)] == ["csv_extra_columns"]
    assert sum(isinstance(r, dict) for r in results) == len(text) - 1


def test_a_row_with_too_few_columns_is_still_refused_alone():
    text = STREET.read_text(encoding="utf-8").splitlines()
    body = "\n".join([text[0], text[1].rsplit(",", 3)[0]] + text[2:]) + "\n"

    results = translate(body.encode())

    assert [r.code for r in results if not isinstance(r, dict)] == ["csv_column_count"]


def _street_categories() -> dict[str, str]:
    return {
        r["data"]["crime_ref"]: r["data"]["category"]
        for r in translate(STREET)
        if isinstance(r, dict) and not r["data"]["crime_ref"].startswith("row-")
    }


def test_outcome_rows_take_the_category_of_their_crime_from_the_street_file_beside_them():
    categories = _street_categories()

    outcomes = [r for r in translate(OUTCOMES) if isinstance(r, dict)]

    joined = [r for r in outcomes if r["data"]["crime_ref"] in categories]
    assert len(joined) > 100
    assert all(r["data"]["category"] == categories[r["data"]["crime_ref"]] for r in joined)
    assert {r["data"]["category"] for r in joined} != {"other-crime"}


def test_outcomes_find_street_files_in_the_sibling_month_folders_of_a_download(tmp_path):
    (tmp_path / "2017-01").mkdir()
    (tmp_path / "2017-02").mkdir()
    shutil.copy(STREET, tmp_path / "2017-01" / STREET.name)
    moved = tmp_path / "2017-02" / "2017-02-city-of-london-outcomes.csv"
    shutil.copy(OUTCOMES, moved)
    categories = _street_categories()

    outcomes = [r for r in translate(moved) if isinstance(r, dict)]

    assert sum(r["data"]["category"] == categories.get(r["data"]["crime_ref"]) for r in outcomes) > 100


def test_outcome_rows_read_from_bytes_fall_back_to_the_mappings_category():
    outcomes = [r for r in translate(OUTCOMES.read_bytes()) if isinstance(r, dict)]

    assert {r["data"]["category"] for r in outcomes} == {"other-crime"}


def test_a_street_row_republished_with_a_new_outcome_supersedes_the_earlier_version():
    lines = STREET.read_text(encoding="utf-8").splitlines()
    row = next(line for line in lines[1:] if line.split(",")[0] and "Awaiting court outcome" in line)
    crime_id = row.split(",")[0]
    later = row.replace("Awaiting court outcome", "Suspect charged")
    lineage = Lineage()

    (first,) = [r for r in translate(f"{lines[0]}\n{row}\n".encode(), lineage)]
    (again,) = [r for r in translate(f"{lines[0]}\n{row}\n".encode(), lineage)]
    (changed,) = [r for r in translate(f"{lines[0]}\n{later}\n".encode(), lineage)]

    assert first == again and "supersedes" not in first
    assert changed["id"] != first["id"] and changed["id"].startswith(f"48-police-uk-street-{crime_id}")
    assert changed["supersedes"] == {"id": first["id"], "kind": "correction"}
    assert changed["data"]["outcome"] == "charged"


STOPS = PUBLIC / "2017-01-city-of-london-stop-and-search.csv"


def _stop_row(**changes: str) -> bytes:
    reader = csv.DictReader(io.StringIO(STOPS.read_text(encoding="utf-8-sig")))
    row = {**next(reader), **changes}
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(row))
    writer.writeheader()
    writer.writerow(row)
    return out.getvalue().encode()


def test_the_stop_and_search_file_maps_into_stop_search_records_not_crime_reports():
    records = [r for r in translate(STOPS) if isinstance(r, dict)]

    assert len(records) == 100 and {r["type"] for r in records} == {"stop.search"}
    first = records[0]["data"]
    assert first["kind"] == "person-and-vehicle"
    assert first["legislation"] == "Misuse of Drugs Act 1971 (section 23)"
    assert first["object_of_search"] == "Controlled drugs"
    assert first["outcome"] == "no-further-action"
    assert first["subject"] == {
        "gender": "male",
        "age_range": {"min": 25, "max": 34},
        "ethnicity": {"self_defined": "B2", "officer_defined": "B"},
    }
    assert {r["data"]["outcome"] for r in records} == {
        "no-further-action",
        "arrest",
        "local-resolution",
        "drugs-possession-warning",
        "summons",
    }
    assert "events" not in first and "description" not in str(first)


def test_a_stop_keeps_its_point_operation_and_flags():
    (record,) = translate(
        _stop_row(
            **{
                "Latitude": "51.515419",
                "Longitude": "-0.090386",
                "Part of a policing operation": "True",
                "Policing operation": "Operation Example",
                "Outcome linked to object of search": "True",
                "Removal of more than just outer clothing": "True",
            }
        )
    )

    assert record["data"]["location"] == {"id": "l1", "kind": "point", "point": {"lat": 51.515419, "lon": -0.090386}}
    assert record["data"]["operation"] == {"part_of": True, "name": "Operation Example"}
    assert record["data"]["outcome_linked_to_object"] is True
    assert record["data"]["more_than_outer_clothing_removed"] is True


def test_open_ended_age_ranges_become_one_sided_ranges():
    (under,) = translate(_stop_row(**{"Age range": "under 10"}))
    (over,) = translate(_stop_row(**{"Age range": "over 34"}))

    assert under["data"]["subject"]["age_range"] == {"max": 9}
    assert over["data"]["subject"]["age_range"] == {"min": 35}


def test_a_stop_date_without_an_offset_is_uk_local_time():
    (record,) = translate(_stop_row(Date="2017-06-15T10:00:00"))

    assert record["data"]["time"] == "2017-06-15T09:00:00Z"


def test_unknown_stop_labels_are_refused_with_their_reason():
    for column, value, code in [
        ("Officer-defined ethnicity", "Purple", "officer_ethnicity_unknown"),
        ("Type", "Boat search", "search_type_unknown"),
        ("Outcome", "Sent to the moon", "stop_outcome_unknown"),
        ("Age range", "about 40", "age_range_invalid"),
        ("Self-defined ethnicity", "White British", "self_defined_ethnicity_invalid"),
        ("Removal of more than just outer clothing", "Maybe", "flag_invalid"),
    ]:
        (result,) = translate(_stop_row(**{column: value}))
        assert not isinstance(result, dict) and result.errors[0].code == code, column


def test_two_translations_started_together_each_use_their_own_files_street_categories(tmp_path):
    adapter = get_adapter("police-uk-csv")
    with_street = adapter.translate(OUTCOMES, "city-of-london")
    # a download folder of its own (the adapter also searches sibling month folders of the file's folder)
    alone = tmp_path / "download" / "2017-01" / "2017-01-city-of-london-outcomes.csv"
    alone.parent.mkdir(parents=True)
    shutil.copy(OUTCOMES, alone)
    without_street = adapter.translate(alone, "city-of-london")

    joined = {r["data"]["category"] for r in with_street if isinstance(r, dict)}
    placeholder = {r["data"]["category"] for r in without_street if isinstance(r, dict)}

    assert joined != {"other-crime"} and placeholder == {"other-crime"}

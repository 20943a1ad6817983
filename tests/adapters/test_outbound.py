"""Outbound formats round-trip from the shared examples and are checked against their layouts."""

from __future__ import annotations

import copy
import csv
import io
import json
from pathlib import Path

import pytest
from lxml import etree

from adapters import AdapterError, get_adapter
from adapters.cps_xml.outbound import NS, schema
from adapters.crime_map_csv.outbound import COLUMNS, map_points
from adapters.mash_csv.outbound import neutralise
from adapters.xmlsafe import parse

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "records"


def _example(name: str) -> dict:
    return json.loads((EXAMPLES / name).read_text())


def test_the_cps_case_file_validates_against_the_shipped_xsd_and_round_trips():
    record = _example("02-case.file-to-cps.json")

    body, content_type = get_adapter("cps-xml").render(record)
    root = parse(io.BytesIO(body))

    assert content_type == "application/xml"
    assert schema().validate(root)
    ns = {"c": NS}
    assert root.findtext("c:URN", namespaces=ns) == record["data"]["urn"]
    assert root.findtext("c:CaseSummary", namespaces=ns) == record["data"]["summary"]
    assert root.xpath("c:Charges/c:Charge/c:CJSOffenceCode/text()", namespaces=ns) == ["TH68010"]
    assert root.xpath("c:WitnessList/c:Witness/c:Name/c:FamilyName/text()", namespaces=ns) == [
        "Harcourt",
        "Teague",
    ]
    assert root.xpath("c:Defendants/c:Defendant/c:Identifier[@scheme='pnc']/text()", namespaces=ns) == ["2015/0123457V"]


def test_a_charge_of_common_law_murder_renders_and_validates_against_the_xsd():
    record = _example("02-case.file-to-cps.json")
    record["data"]["charges"][0]["cjs_code"] = "COML025"

    body, _content_type = get_adapter("cps-xml").render(record)
    root = parse(io.BytesIO(body))

    assert schema().validate(root)
    assert root.xpath("c:Charges/c:Charge/c:CJSOffenceCode/text()", namespaces={"c": NS}) == ["COML025"]


def test_a_case_file_that_breaks_the_xsd_is_refused_not_sent():
    record = _example("02-case.file-to-cps.json")
    record["data"]["urn"] = "NOT-A-URN"

    with pytest.raises(AdapterError) as caught:
        get_adapter("cps-xml").render(record)

    assert caught.value.code == "xsd_invalid"


def test_a_case_file_naming_an_absent_witness_is_refused():
    record = _example("02-case.file-to-cps.json")
    record["data"]["witnesses"].append("p9")

    with pytest.raises(AdapterError, match="p9"):
        get_adapter("cps-xml").render(record)


@pytest.mark.parametrize("cell", ["=1+1", "+44 20", "-2", "@SUM(A1)", "\tx", "\rx"])
def test_cells_a_spreadsheet_would_run_as_formulas_are_prefixed_with_a_quote(cell):
    assert neutralise(cell) == "'" + cell


def test_the_mash_referral_csv_has_one_row_per_person_and_no_live_formula_cells():
    record = json.loads((Path(get_adapter("mash-csv").folder) / "fixtures" / "mash-formula-injection.json").read_text())

    body, _ = get_adapter("mash-csv").render(record)
    rows = list(csv.reader(io.StringIO(body.decode("utf-8"))))

    assert len(rows) == 3
    assert [row[5] for row in rows[1:]] == ["child", "adult"]
    assert all(not cell.startswith(("=", "+", "-", "@", "\t", "\r")) for row in rows for cell in row)
    assert rows[2][6].startswith("'=HYPERLINK")


def test_the_encompass_notice_tells_the_school_only_about_its_pupils():
    record = _example("05-safeguarding.notification-encompass.json")

    body, _ = get_adapter("encompass").render(record, {"format": "json"})
    notice = json.loads(body)
    text, content_type = get_adapter("encompass").render(record, {"format": "text"})

    assert [c["family"] for c in notice["children"]] == ["Brierley"]
    assert len(notice["children"]) == 1  # the home-educated child goes to the local authority instead
    assert "Craig" not in body.decode() and "Heddon" not in body.decode() and "9990000018" not in body.decode()
    assert content_type.startswith("text/plain")
    assert "Mia Brierley" in text.decode()
    with pytest.raises(AdapterError):
        get_adapter("encompass").render(record, {"school_urn": "999999"})


def test_the_crime_map_row_is_snapped_month_only_and_free_of_personal_data():
    record = json.loads(
        (Path(get_adapter("crime-map-csv").folder) / "fixtures" / "exact-point-with-victim.json").read_text()
    )

    body, _ = get_adapter("crime-map-csv").render(record, {"crime_id_key": "k"})
    header, row = list(csv.reader(io.StringIO(body.decode("utf-8"))))
    published = dict(zip(header, row, strict=False))
    points = {(f"{p.lat:.6f}", f"{p.lon:.6f}") for p in map_points()}

    assert header == COLUMNS
    assert (published["Latitude"], published["Longitude"]) in points
    assert (published["Latitude"], published["Longitude"]) != ("51.514010", "-0.089030")
    assert published["Month"] == "2026-11"
    assert published["Context"] == ""
    text = body.decode()
    assert "Jane" not in text and "Example" not in text and "CR-48" not in text and "08:05" not in text


def test_the_crime_id_is_keyed_so_the_force_reference_cannot_be_recovered():
    record = _example("12-crime.report-open-data-crime-map.json")
    adapter = get_adapter("crime-map-csv")

    one, _ = adapter.render(record, {"crime_id_key": "one"})
    two, _ = adapter.render(copy.deepcopy(record), {"crime_id_key": "two"})

    assert one.splitlines()[1].split(b",")[0] != two.splitlines()[1].split(b",")[0]


def test_a_crime_far_from_every_map_point_is_published_without_a_location():
    record = _example("12-crime.report-open-data-crime-map.json")
    record["data"]["locations"][0]["point"] = {"lat": 53.8, "lon": -1.55}

    body, _ = get_adapter("crime-map-csv").render(record, {"crime_id_key": "k"})

    assert b"No Location" in body
    assert etree  # lxml stays importable for the CPS checks above

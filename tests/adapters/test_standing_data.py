"""The vendored CJSE standing data: complete, licensed, and rebuilt by the refresh script."""

from __future__ import annotations

import gzip
import json

from adapters import standing_data
from adapters.standing_data import refresh

# Row counts of the vendored copy (bichard7-next-data 6b2cf0a); courts are the B and C organisation units.
COUNTS = {
    "plea-status": 8,
    "verdict": 5,
    "duration-unit": 7,
    "remand-status": 7,
    "mode-of-trial-reason": 9,
    "gender": 4,
    "result-code": 898,
    "result-qualifier-code": 299,
    "cjs-offences": 15_352,
    "courts": 440,
}


def test_every_vendored_table_is_complete():
    assert {name: len(standing_data.table(name)) for name in standing_data.names()} == COUNTS


def test_the_licence_and_the_source_commit_travel_with_the_data():
    folder = standing_data.HERE

    assert "MIT License" in (folder / "LICENSE").read_text()
    assert "6b2cf0a4c4c86be6a94f74a64a543219fded92bd" in (folder / "README.md").read_text()


def test_the_common_law_codes_are_in_the_offence_table():
    offences = standing_data.table("cjs-offences")

    assert sum(1 for code in offences if code.startswith("COML")) == 51
    assert offences["COML025"].title.startswith("Murder")


def _upstream(tmp_path):
    """A tiny copy of the upstream JSON tables, in their own shape."""
    spi = [{"cjsCode": "G", "description": "Guilty", "pncCode": "GUILTY", "spiCode": "1"}]
    tables = {
        name: spi
        for name in ("plea-status", "verdict", "duration-unit", "remand-status", "mode-of-trial-reason", "gender")
    }
    tables["result-code"] = [
        {
            "cjsCode": "1015",
            "description": "Fine",
            "recordableOnPnc": "",
            "type": "F",
            "resultCodeQualifiers": "A,B,",
            "resultHalfLifeHours": "",
        }
    ]
    tables["result-qualifier-code"] = [{"cjsCode": "BA", "description": "With Electronic Tagging"}]
    tables["cjs-offences"] = [
        {"cjsCode": "COML025", "offenceCategory": "CI", "offenceTitle": "Murder", "recordableOnPnc": True}
    ]
    levels = {
        "topLevelCode": "B",
        "secondLevelCode": "01",
        "thirdLevelCode": "EF",
        "bottomLevelCode": "00",
        "topLevelName": "Magistrates' Courts",
        "secondLevelName": "London",
        "thirdLevelName": "Croydon",
        "bottomLevelName": "",
        "thirdLevelPsaCode": "2576",
    }
    police = {**levels, "topLevelCode": "", "thirdLevelName": "A police station"}
    tables["organisation-unit"] = [levels, police]
    source = tmp_path / "data"
    source.mkdir(exist_ok=True)
    for name, rows in tables.items():
        (source / f"{name}.json").write_text(json.dumps(rows))
    return source


def test_the_refresh_script_rebuilds_compact_tables_from_the_upstream_json(tmp_path):
    target = tmp_path / "out"
    target.mkdir()

    written = refresh.refresh(_upstream(tmp_path), target)
    again = {name: (target / name).read_bytes() for name in written}
    refresh.refresh(_upstream(tmp_path), target)

    assert (target / "plea-status.csv").read_text() == "spi_code,cjs_code,description\n1,G,Guilty\n"
    assert (target / "result-code.csv").read_text().splitlines()[1] == '1015,Fine,F,"A,B"'
    assert {name: (target / name).read_bytes() for name in written} == again  # same input, same bytes
    courts = gzip.decompress((target / "courts.csv.gz").read_bytes()).decode().splitlines()
    assert courts == ["ou_code,court_type,area,name,unit,psa_code", "B01EF00,Magistrates' Courts,London,Croydon,,2576"]

"""Forces join a format by mapping file alone; mapping files are checked as data."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from adapters import get_adapter
from adapters.fixed_width.inbound import encode_record, load_layout
from broker.errors import ConfigError

FIXTURES = Path(__file__).resolve().parents[2] / "adapters" / "fixed_width" / "fixtures"


def _comparable(record: dict) -> dict:
    """A record without what legitimately differs between forces (origin, ids, markings)."""
    data = yaml.safe_load(yaml.safe_dump(record["data"]).replace("FA/", "X/").replace("FB/", "X/"))
    return {"type": record["type"], "data": data, "subjects": record.get("subjects")}


def test_two_forces_on_the_same_mainframe_format_join_by_mapping_files_alone():
    adapter = get_adapter("fixed-width")

    force_a = list(adapter.translate(FIXTURES / "force-a.ebc", "force-a"))
    force_b = list(adapter.translate(FIXTURES / "force-b.txt", "force-b"))

    assert [_comparable(r) for r in force_a] == [_comparable(r) for r in force_b]
    assert {r["origin"]["agency"] for r in force_a} == {"43"}
    assert {r["origin"]["agency"] for r in force_b} == {"53"}
    assert force_a[0]["classification"]["sensitive"] is True
    assert force_b[0]["classification"]["sensitive"] is False
    assert force_a[0]["data"]["offences"][0]["cjs_code"] == force_b[0]["data"]["offences"][0]["cjs_code"] == "TH68001"
    assert force_a[0]["data"]["persons"][0]["gender"] == force_b[0]["data"]["persons"][0]["gender"] == "female"


def test_a_third_force_joins_with_a_new_mapping_file_and_no_code(tmp_path):
    mapping = yaml.safe_load((FIXTURES.parent / "mappings" / "force-b.yaml").read_text())
    mapping.update(name="force-c", agency="62", classification={"tier": "OFFICIAL", "sensitive": True})
    mapping["codes"]["offence"] = {"T-1": "TH68001"}
    mapping["codes"]["offence_category"] = {"T-1": "other-theft"}
    (tmp_path / "force-c.yaml").write_text(yaml.safe_dump(mapping))
    layout = load_layout("rms-mainframe-v1")
    lines = [
        encode_record(layout, "CR", {"crime_ref": "FC/1/26", "recorded_date": "20260201"}),
        encode_record(layout, "OF", {"crime_ref": "FC/1/26", "offence_seq": 1, "offence_code": "T-1"}),
    ]
    body = "\n".join(lines).encode("ascii")

    (record,) = get_adapter("fixed-width").translate(body, tmp_path / "force-c.yaml")

    assert record["origin"] == {"agency": "62", "system": "rms-mainframe"}
    assert record["data"]["offences"][0]["cjs_code"] == "TH68001"
    assert record["data"]["category"] == "other-theft"


def test_a_mapping_can_extend_another_and_override_only_what_differs(tmp_path):
    folder = tmp_path / "adapter"
    (folder / "mappings").mkdir(parents=True)
    source = Path(get_adapter("police-uk-csv").folder)
    (folder / "mapping.schema.json").write_text((source / "mapping.schema.json").read_text())
    (folder / "mappings" / "base.yaml").write_text((source / "mappings" / "city-of-london.yaml").read_text())
    (folder / "mappings" / "btp.yaml").write_text(
        "name: btp\nextends: base\nagency: '93'\ncodes: {outcome: {Suspect charged: charged}}\n"
    )
    from adapters.mapping import load_mapping

    mapping = load_mapping(folder, "btp")

    assert mapping.agency == "93"
    assert mapping.code("crime_type", "burglary", fold_case=True) == "burglary"


@pytest.mark.parametrize(
    ("change", "key"),
    [
        ({"agency": "Force A!"}, "agency"),
        ({"encoding": "klingon"}, "encoding"),
        ({"unknown_key": 1}, ""),
        ({"classification": {"tier": "SECRET"}}, "classification.tier"),
    ],
)
def test_a_wrong_mapping_is_a_config_error_naming_file_and_key(tmp_path, change, key):
    mapping = yaml.safe_load((FIXTURES.parent / "mappings" / "force-b.yaml").read_text())
    mapping.update(change)
    path = tmp_path / "broken.yaml"
    path.write_text(yaml.safe_dump(mapping))

    with pytest.raises(ConfigError) as caught:
        get_adapter("fixed-width").load_mapping(path)

    assert caught.value.file == str(path)
    assert caught.value.key == key


def test_an_unknown_mapping_name_lists_the_shipped_ones():
    with pytest.raises(ConfigError, match="force-a, force-b"):
        get_adapter("fixed-width").load_mapping("force-z")


def test_ebcdic_zoned_numbers_and_dates_decode_through_the_layout():
    from adapters.fixed_width.inbound import decode_field, zoned

    assert zoned("00A") == 1
    assert zoned("12}") == -120
    assert zoned("0000125") == 125
    assert decode_field("date", "00000000") is None
    assert decode_field("date", "20260112") == "2026-01-12"
    with pytest.raises(ValueError):
        zoned("1X3")

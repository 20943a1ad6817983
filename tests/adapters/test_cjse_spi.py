"""cjse-spi against the national standing data: every code of every table it uses maps or is refused."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from spi_messages import offence, result, spi_message

from adapters import get_adapter, standing_data
from broker.routing.validation import Validator

VALIDATOR = Validator()


def translate(message: bytes, adapter=None) -> list:
    return list((adapter or get_adapter("cjse-spi")).translate(message, "libra-spi"))


def one_record(message: bytes) -> dict:
    (record,) = translate(message)
    assert isinstance(record, dict), [e.as_dict() for e in record.errors]
    assert VALIDATOR.validate(record) == []
    return record


def refusal_codes(message: bytes) -> list[tuple[str, str, str]]:
    (error,) = translate(message)
    assert not isinstance(error, dict)
    return [(e.code, e.path, e.message) for e in error.errors]


def first_result(record: dict) -> dict:
    return record["data"]["offences"][0]["results"][0]


def _slug(table: str, code: str) -> str:
    return standing_data.slug(standing_data.table(table)[code].description)


@pytest.mark.parametrize("code", sorted(standing_data.table("plea-status")))
def test_every_national_plea_code_maps_to_its_meaning(code):
    record = one_record(spi_message([offence(plea=code)]))

    assert record["data"]["offences"][0]["plea"] == _slug("plea-status", code)


def test_plea_1_is_guilty_and_plea_2_is_not_guilty():
    pleas = [one_record(spi_message([offence(plea=c)]))["data"]["offences"][0]["plea"] for c in "12345678"]

    assert pleas == ["guilty", "not-guilty", "no-plea", "consents", "opposed", "guilty", "admits", "denies"]


@pytest.mark.parametrize("code", sorted(standing_data.table("verdict")))
def test_every_national_finding_maps_to_its_meaning(code):
    record = one_record(spi_message([offence(finding=code)]))

    assert record["data"]["offences"][0]["verdict"] == _slug("verdict", code)


@pytest.mark.parametrize("code", sorted(standing_data.table("duration-unit")))
def test_every_national_duration_unit_maps_including_life_and_sessions(code):
    value = None if code == "L" else "6"
    record = one_record(spi_message([offence(results=[result("1002", duration=(value, code))])]))

    assert first_result(record)["duration"]["unit"] == _slug("duration-unit", code)
    assert first_result(record)["duration"].get("value") == (None if value is None else 6)


@pytest.mark.parametrize("code", sorted(standing_data.table("remand-status")))
def test_every_national_bail_status_maps_for_the_defendant_and_the_next_hearing(code):
    hearing = {"CourtHearingLocation": "B01EF00", "DateOfHearing": "2011-10-01", "TimeOfHearing": "10:00", "bail": code}
    record = one_record(spi_message([offence(results=[result("4012", next_hearing=hearing)])], bail=code))
    row = standing_data.table("remand-status")[code]

    assert record["data"]["bail"] == {"code": row.cjs_code, "status": _slug("remand-status", code)}
    assert first_result(record)["next_hearing"]["bail"] == record["data"]["bail"]


@pytest.mark.parametrize("code", sorted(standing_data.table("mode-of-trial-reason")))
def test_every_national_mode_of_trial_maps(code):
    record = one_record(spi_message([offence(mode=code)]))

    assert record["data"]["offences"][0]["mode_of_trial"]["reason"] == _slug("mode-of-trial-reason", code)


@pytest.mark.parametrize("code", sorted(standing_data.table("gender")))
def test_every_national_gender_code_maps(code):
    record = one_record(spi_message(gender=code))

    assert record["data"]["persons"][0]["gender"] == _slug("gender", code)


def _chunks(table: str, size: int) -> list[list[str]]:
    codes = sorted(standing_data.table(table))
    return [codes[i : i + size] for i in range(0, len(codes), size)]


@pytest.mark.parametrize("codes", _chunks("result-code", 50), ids=lambda c: f"{c[0]}-{c[-1]}")
def test_every_national_result_code_maps_with_its_description(codes):
    record = one_record(spi_message([offence(results=[result(c) for c in codes])]))
    results = record["data"]["offences"][0]["results"]

    assert [(r["code"], r["description"]) for r in results] == [
        (int(c), standing_data.table("result-code")[c].description) for c in codes
    ]


@pytest.mark.parametrize("codes", _chunks("result-qualifier-code", 10), ids=lambda c: f"{c[0]}-{c[-1]}")
def test_every_national_result_qualifier_maps_with_its_description(codes):
    record = one_record(spi_message([offence(results=[result("1002", duration=("6", "M"), qualifiers=tuple(codes))])]))

    assert first_result(record)["qualifiers"] == [
        {"code": c, "description": standing_data.table("result-qualifier-code")[c].description} for c in codes
    ]


@pytest.mark.parametrize("codes", _chunks("cjs-offences", 200), ids=lambda c: f"{c[0]}-{c[-1]}")
def test_every_national_offence_code_is_accepted_with_its_title(codes):
    offences = [offence(c, sequence=i + 1) for i, c in enumerate(codes)]
    record = one_record(spi_message(offences))

    assert [(o["cjs_code"], o["title"]) for o in record["data"]["offences"]] == [
        (c, standing_data.table("cjs-offences")[c].title) for c in codes
    ]


@pytest.mark.parametrize("ou", sorted(standing_data.table("courts")))
def test_every_national_court_gets_its_name(ou):
    record = one_record(spi_message(court=ou))
    row = standing_data.table("courts")[ou]

    assert record["data"]["court"]["ou_code"] == ou
    assert record["data"]["court"]["name"].startswith(row.name)
    assert record["data"]["court"]["name"].endswith(f"({row.court_type})")


def test_common_law_murder_is_accepted():
    record = one_record(spi_message([offence("COML025")]))

    assert record["data"]["offences"][0]["cjs_code"] == "COML025"


@pytest.mark.parametrize(
    ("message", "code", "named"),
    [
        (spi_message([offence("ZZ99999")]), "offence_code_unknown", "'ZZ99999'"),
        (spi_message([offence(plea="9")]), "plea_code_unknown", "'9'"),
        (spi_message([offence(finding="D")]), "verdict_code_unknown", "'D'"),
        (spi_message([offence(finding="W")]), "verdict_code_unknown", "'W'"),
        (spi_message([offence(mode="99")]), "mode_of_trial_unknown", "'99'"),
        (spi_message([offence(results=[result("1002", duration=("6", "Q"))])]), "duration_unit_unknown", "'Q'"),
        (spi_message([offence(results=[result("0999")])]), "result_code_unknown", "'0999'"),
        (spi_message([offence(results=[result("1002", qualifiers=("QQQ",))])]), "result_qualifier_unknown", "'QQQ'"),
        (spi_message(court="B99ZZ01"), "court_unknown", "'B99ZZ01'"),
        (spi_message(bail="X"), "bail_status_unknown", "'X'"),
        (spi_message(gender="7"), "gender_code_unknown", "'7'"),
        (spi_message(pnc="2015/0123457A"), "pnc_invalid", ""),
        (spi_message([offence(results=[result("1002", duration=("six", "M"))])]), "duration_invalid", "'six'"),
    ],
)
def test_unknown_codes_are_a_coded_refusal_naming_the_code(message, code, named):
    (found,) = [e for e in refusal_codes(message) if e[0] == code]

    assert named in found[2]


def test_a_result_without_a_code_is_the_national_uncoded_text_result():
    record = one_record(spi_message([offence(results=[result(None, "Adjourned for reports")])]))

    assert first_result(record)["code"] == 1000
    assert first_result(record)["description"] == "Uncoded text result"
    assert first_result(record)["text"] == "Adjourned for reports"


def test_next_hearing_bail_conditions_pnc_id_penalty_points_and_offence_facts_are_mapped():
    hearing = {"CourtHearingLocation": "C01CY00", "DateOfHearing": "2011-10-01", "TimeOfHearing": "10:30", "bail": "B"}
    message = spi_message(
        [offence(conviction="2011-09-25", results=[result("4012", "Remanded", points="3", next_hearing=hearing)])],
        bail="B",
        pnc="2015/0123457V",
        conditions="Curfew 19:00 to 07:00",
    )
    data = one_record(message)["data"]
    first = data["offences"][0]

    assert data["bail"] == {"code": "CB", "status": "conditional-bail", "conditions": "Curfew 19:00 to 07:00"}
    assert {"scheme": "pnc", "value": "2015/0123457V"} in data["persons"][0]["identifiers"]
    assert (first["arrest_date"], first["charge_date"]) == ("2010-12-01", "2010-12-02")
    assert first["conviction_date"] == "2011-09-25"
    assert first["location_text"] == "Kingston High Street"
    assert first["mode_of_trial"] == {"code": "SUM", "reason": "summary-only"}
    assert first["results"][0]["penalty_points"] == 3
    assert first["results"][0]["next_hearing"] == {
        "court": {"ou_code": "C01CY00", "name": "Croydon (Crown Courts)", "psa_code": "0418"},
        "date": "2011-10-01",
        "time": "10:30",
        "reason": standing_data.table("result-code")["4012"].description,
        "bail": {"code": "CB", "status": "conditional-bail"},
    }


def test_an_amended_resend_is_a_new_record_that_supersedes_the_earlier_one():
    adapter = get_adapter("cjse-spi")
    original = spi_message([offence(results=[result("1015", "Fined 45.", amount="45.00")])])
    amended = spi_message([offence(results=[result("1015", "Fined 60.", amount="60.00")])])

    (first,) = translate(original, adapter)
    (second,) = translate(amended, adapter)
    (again,) = translate(amended, adapter)

    assert "supersedes" not in first
    assert second["id"] != first["id"]
    assert second["supersedes"] == {"id": first["id"], "kind": "correction"}
    assert again == second
    assert VALIDATOR.validate(second) == []


def test_the_same_version_gets_the_same_id_in_a_fresh_run():
    assert translate(spi_message())[0]["id"] == translate(spi_message())[0]["id"]


@pytest.mark.parametrize(
    ("date", "time", "expected"),
    [
        ("2026-06-15", "10:00:00", "2026-06-15T09:00:00Z"),  # summer time: 10:00 BST is 09:00Z
        ("2026-12-15", "10:00:00", "2026-12-15T10:00:00Z"),  # winter: GMT
        ("2026-03-29", "00:30:00", "2026-03-29T00:30:00Z"),  # before the March change
        ("2026-03-29", "01:30:00", "2026-03-29T01:30:00Z"),  # the skipped hour: read with the GMT offset
        ("2026-03-29", "02:30:00", "2026-03-29T01:30:00Z"),  # after the change, BST
        ("2026-10-25", "01:30:00", "2026-10-25T00:30:00Z"),  # the repeated hour: its first (BST) occurrence
        ("2026-10-25", "02:30:00", "2026-10-25T02:30:00Z"),  # after the October change, GMT
    ],
)
def test_a_hearing_time_without_offset_is_uk_local_time_around_both_dst_changes(date, time, expected):
    assert one_record(spi_message(date=date, time=time))["time"] == expected


def test_a_creation_time_with_an_offset_is_kept():
    record = one_record(spi_message(created="2026-06-15T10:00:00-05:00"))

    assert record["time"] == "2026-06-15T15:00:00Z"


def test_a_creation_time_without_an_offset_is_uk_local_time():
    assert one_record(spi_message(created="2026-06-15T10:00:00"))["time"] == "2026-06-15T09:00:00Z"


# ------------------------------------------------------------------ interchange translate


def _translate_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "broker", "translate", *args], capture_output=True, text=True, timeout=120
    )


def test_translate_on_generated_messages_with_every_plea_finding_unit_and_an_uncoded_result(tmp_path, public):
    pleas = [offence(plea=c, sequence=i + 1) for i, c in enumerate(sorted(standing_data.table("plea-status")))]
    findings = [offence(finding=c) for c in sorted(standing_data.table("verdict"))]
    unit_codes = sorted(standing_data.table("duration-unit"))
    units = [result("1002", duration=(None if c == "L" else "4", c)) for c in unit_codes]
    files = {
        "pleas.xml": spi_message(pleas),
        "findings.xml": spi_message(findings, date="2011-09-26"),
        "units.xml": spi_message([offence(results=units)], date="2011-09-27"),
        "uncoded.xml": spi_message([offence(results=[result(None, "Warrant issued")])], date="2011-09-28"),
        "bad.xml": spi_message([offence("ZZ99999")], date="2011-09-29"),
    }
    for name, body in files.items():
        (tmp_path / name).write_bytes(body)
    paths = [str(tmp_path / n) for n in files] + [str(public / "cjse-spi-results-034a-valid-asn-format.xml")]

    run = _translate_cli("cjse-spi", *paths, "--mapping", "libra-spi", "--out", str(tmp_path / "out"))

    assert run.returncode == 0, run.stderr
    assert "5 valid records, 1 rejected, 0 schema-invalid" in run.stderr
    assert "offence_code_unknown: 1" in run.stderr
    assert len((tmp_path / "out" / "records.ndjson").read_text().splitlines()) == 5
    assert '"code":"offence_code_unknown"' in (tmp_path / "out" / "rejects.ndjson").read_text()


def test_translate_exits_1_when_an_emitted_record_fails_the_schema(tmp_path):
    mapping = tmp_path / "too-long-name.yaml"
    mapping.write_text(
        "name: too-long-name\nagency: hmcts\nsystem: libra\nextends: libra-spi\n"
        f"codes:\n  court:\n    B01EF01: {'x' * 300}\n"
    )
    (tmp_path / "m.xml").write_bytes(spi_message())

    run = _translate_cli("cjse-spi", str(tmp_path / "m.xml"), "--mapping", str(mapping))

    assert run.returncode == 1
    assert "1 schema-invalid" in run.stderr


def test_translate_with_a_lineage_file_links_an_amendment_sent_in_a_later_run(tmp_path):
    (tmp_path / "a.xml").write_bytes(spi_message([offence(results=[result("1015", "Fined 45.", amount="45")])]))
    (tmp_path / "b.xml").write_bytes(spi_message([offence(results=[result("1015", "Fined 60.", amount="60")])]))
    lineage = tmp_path / "lineage.jsonl"

    first = _translate_cli("cjse-spi", str(tmp_path / "a.xml"), "--mapping", "libra-spi", "--lineage", str(lineage))
    second = _translate_cli("cjse-spi", str(tmp_path / "b.xml"), "--mapping", "libra-spi", "--lineage", str(lineage))

    earlier, later = (json.loads(run.stdout) for run in (first, second))

    assert (first.returncode, second.returncode) == (0, 0)
    assert "supersedes" not in earlier
    assert later["supersedes"] == {"id": earlier["id"], "kind": "correction"}

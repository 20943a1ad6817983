"""The common schema v1, the demo records, and the Validator built on them."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path

import jsonschema
import pytest

from broker.errors import FieldError
from broker.routing.validation import IDENTIFIER_INVALID, SCHEMA_INVALID, Validator

ROOT = Path(__file__).resolve().parent.parent
SCHEMA_DIR = ROOT / "schemas"
RECORDS_DIR = ROOT / "examples" / "records"
BASE = "https://interchange.police.uk/schemas/v1/"
SCHEMA_FILES = sorted(SCHEMA_DIR.glob("*.json"))
TYPE_FILES = [f for f in SCHEMA_FILES if f.name not in ("defs.json", "envelope.json")]
RECORD_FILES = sorted(RECORDS_DIR.glob("*.json"))
INVALID_FILES = sorted((RECORDS_DIR / "invalid").glob("*.json"))
RECORD_TYPES = {
    "crime.report",
    "case.file",
    "court.result",
    "custody.record",
    "safeguarding.notification",
    "victim.referral",
    "intelligence.report",
    "stop.search",
}


@pytest.fixture(scope="module")
def validator() -> Validator:
    return Validator()


def load(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def record(name: str) -> dict:
    return load(next(RECORDS_DIR.glob(f"{name}*.json")))


def schema_examples() -> list[tuple[str, dict]]:
    return [(f"{f.name}#{i}", ex) for f in TYPE_FILES for i, ex in enumerate(load(f)["examples"])]


# --- the schema files ---------------------------------------------------------------------------------------


def test_there_is_one_schema_file_per_record_type_plus_defs_and_envelope():
    # Given the schemas directory / Then it holds defs, envelope and one file per record type
    assert {f.name for f in SCHEMA_FILES} == {"defs.json", "envelope.json"} | {f"{t}.json" for t in RECORD_TYPES}


@pytest.mark.parametrize("path", SCHEMA_FILES, ids=lambda p: p.name)
def test_every_schema_file_is_valid_json_schema_2020_12_with_a_v1_id(path):
    # Given a schema file / When checked against the 2020-12 meta-schema / Then it is valid, $id carries v1
    schema = load(path)
    jsonschema.Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["$id"] == BASE + path.name


@pytest.mark.parametrize("path", TYPE_FILES, ids=lambda p: p.name)
def test_every_record_type_schema_has_complete_examples_and_refs_the_envelope(path):
    schema = load(path)
    assert schema["$ref"] == BASE + "envelope.json"
    assert schema["examples"], "each record-type schema carries at least one complete record"
    assert schema["$defs"]["data"]["additionalProperties"] is False


def test_the_envelope_and_every_shared_object_refuse_unknown_fields():
    # Given the envelope and the object definitions in defs.json / Then each has additionalProperties false
    assert load(SCHEMA_DIR / "envelope.json")["additionalProperties"] is False
    for name, definition in load(SCHEMA_DIR / "defs.json")["$defs"].items():
        if definition.get("type") == "object" and name != "handling":
            assert definition.get("additionalProperties") is False, name


def test_every_string_in_the_schemas_has_a_length_limit_and_every_array_an_item_limit():
    # Given every schema node / Then strings have maxLength (or an enum/const) and arrays have maxItems
    def nodes(node):
        if isinstance(node, dict):
            yield node
            for key, value in node.items():
                if key not in ("examples", "properties", "$defs"):
                    yield from nodes(value)
                elif key in ("properties", "$defs"):
                    for child in value.values():
                        yield from nodes(child)
        elif isinstance(node, list):
            for child in node:
                yield from nodes(child)

    for path in SCHEMA_FILES:
        for node in nodes(load(path)):
            if node.get("type") == "string":
                assert "maxLength" in node, (path.name, node)
            if node.get("type") == "array":
                assert "maxItems" in node, (path.name, node)


@pytest.mark.parametrize(("name", "example"), schema_examples(), ids=[n for n, _ in schema_examples()])
def test_every_schema_example_validates(validator, name, example):
    # Given an example embedded in a schema / When validated / Then there are no errors
    assert validator.validate(example) == []
    assert example["type"] == name.split(".json")[0]


# --- the demo records ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", RECORD_FILES, ids=lambda p: p.name)
def test_every_demo_record_validates(validator, path):
    # Given a demo record / When validated / Then it is valid, identifiers included
    errors = validator.validate(load(path))
    assert errors == [], [str(e) for e in errors]


def test_the_demo_records_cover_every_type_three_forces_and_a_court():
    # Given the demo records / Then all seven types and forces 01, 13, 48 plus hmcts appear
    records = [load(p) for p in RECORD_FILES]
    assert len(records) >= 12
    assert {r["type"] for r in records} == RECORD_TYPES
    assert {"01", "13", "48", "hmcts"} <= {r["origin"]["agency"] for r in records}


def test_demo_record_file_names_follow_nn_type_what():
    for path in RECORD_FILES:
        number, rtype = path.name.split("-")[:2]
        assert number.isdigit() and len(number) == 2
        assert rtype == load(path)["type"]


def test_the_encompass_demo_links_a_parent_to_a_schoolchild_and_a_home_educated_child():
    # Given the Operation Encompass demo / Then an adult is parent-of a child attending school 100001, and a
    # second child is home educated
    r = record("05-safeguarding.notification-encompass")
    persons = {p["id"]: p for p in r["data"]["persons"]}
    links = {(link["from"], link["type"], link["to"]) for link in r["data"]["links"]}
    schooled = [p for p in persons.values() if p.get("school", {}).get("urn") == "100001"]
    home = [p for p in persons.values() if p.get("home_educated")]
    assert len(schooled) == 1 and len(home) == 1
    assert any(t == "parent-of" and to == schooled[0]["id"] for _, t, to in links)
    assert any(frm == schooled[0]["id"] and t == "attends-school" for frm, t, _ in links)
    assert r["data"]["scheme"] == "encompass"


def test_the_intelligence_demos_carry_p_c_and_legacy_grades():
    p = record("09-intelligence.report-3x5x2-p")["handling"]
    c = record("10-intelligence.report-3x5x2-c-force13")["handling"]
    legacy = record("11-intelligence.report-5x5x5-legacy-h4")["handling"]
    assert (p["scheme"], p["code"]) == ("3x5x2", "P")
    assert (c["code"], c["conditions"]["recipients"]) == ("C", ["force-13"])
    assert (legacy["scheme"], legacy["handling"]) == ("5x5x5", "4")


def test_the_victim_referral_demos_give_and_refuse_consent():
    assert record("07-victim.referral-consent-given")["data"]["consent"]["given"] is True
    assert record("08-victim.referral-consent-refused")["data"]["consent"]["given"] is False


def test_the_crime_map_demo_holds_no_personal_data():
    r = record("12-crime.report-open-data-crime-map")
    assert not any(r["data"].get(k) for k in ("persons", "organisations", "objects"))
    assert r["data"]["month"] == "2026-11"
    assert r["data"]["locations"][0]["kind"] == "point"


# --- invalid records ----------------------------------------------------------------------------------------

INVALID_EXPECTED = {
    "01-crime.report-bad-pnc-check-letter.json": (
        "data.persons[0].identifiers[1]",
        IDENTIFIER_INVALID,
        "check letter",
    ),
    "02-case.file-missing-urn.json": ("data.urn", SCHEMA_INVALID, "required"),
    "03-unknown-record-type.json": ("type", SCHEMA_INVALID, "not a record type"),
}


def test_every_invalid_record_has_an_expectation():
    assert {p.name for p in INVALID_FILES} == set(INVALID_EXPECTED)


@pytest.mark.parametrize("path", INVALID_FILES, ids=lambda p: p.name)
def test_every_invalid_record_is_rejected_naming_the_path_and_reason(validator, path):
    # Given an invalid record / When validated / Then exactly the expected path, code and reason are reported
    r = load(path)
    errors = validator.validate(r)
    path_, code, reason = INVALID_EXPECTED[path.name]
    assert [(e.path, e.code) for e in errors] == [(path_, code)]
    assert reason in errors[0].message
    assert errors[0].record_id == r["id"]


def test_a_wrong_pnc_check_letter_is_reported_in_the_documented_format(validator):
    # Given a record whose second identifier of the first person is PNC ID 2001/0171310S
    r = load(RECORDS_DIR / "invalid" / "01-crime.report-bad-pnc-check-letter.json")
    # When validated
    errors = validator.validate(r)
    # Then the error reads exactly as DESIGN.md section 2 documents
    assert errors == [
        FieldError(
            r["id"],
            "data.persons[0].identifiers[1]",
            "identifier_invalid",
            "PNC ID 2001/0171310S has check letter S, expected W",
        )
    ]
    assert str(errors[0]) == "data.persons[0].identifiers[1]: PNC ID 2001/0171310S has check letter S, expected W"


# --- focused behaviour --------------------------------------------------------------------------------------


def test_every_error_of_a_record_is_returned_not_just_the_first(validator):
    # Given a record with a typo'd field, a bad date, a bad NHS number and a dangling link
    r = record("01-crime.report")
    r["data"]["persons"][0]["nmae"] = "x"
    r["data"]["persons"][0]["birth_date"] = "1984-13-12"
    r["data"]["persons"][1]["identifiers"].append({"scheme": "nhs", "value": "9434765918"})
    r["data"]["links"][0]["to"] = "e9"
    # When validated / Then all four are reported with their paths
    paths = {(e.path, e.code) for e in validator.validate(r)}
    assert paths == {
        ("data.persons[0].nmae", SCHEMA_INVALID),
        ("data.persons[0].birth_date", SCHEMA_INVALID),
        ("data.persons[1].identifiers[2]", IDENTIFIER_INVALID),
        ("data.links[0].to", SCHEMA_INVALID),
    }


def test_identifiers_are_checked_even_when_the_schema_fails(validator):
    r = record("01-crime.report")
    del r["data"]["crime_ref"]
    r["data"]["persons"][1]["identifiers"][0]["value"] = "2001/0171310S"
    codes = {(e.path, e.code) for e in validator.validate(r)}
    assert ("data.persons[1].identifiers[0]", IDENTIFIER_INVALID) in codes
    assert ("data.crime_ref", SCHEMA_INVALID) in codes


def test_asn_urn_vrm_and_postcode_fields_are_checked(validator):
    # Given a court result with a bad ASN letter and URN, and a crime report with a bad postcode and VRM
    court = record("03-court.result")
    court["data"]["asn"] = court["data"]["asn"][:-1] + ("A" if court["data"]["asn"][-1] != "A" else "B")
    court["data"]["urn"] = "01ZD12345"
    crime = record("13-crime.report")
    crime["data"]["locations"][0]["address"]["postcode"] = "QX1 1AA"
    crime["data"]["objects"][0]["vrm"] = "NOTAVRM"
    # Then each is an identifier error at its own path
    assert {e.path for e in validator.validate(court) if e.code == IDENTIFIER_INVALID} == {
        "data.asn",
        "data.urn",
    }
    assert {e.path for e in validator.validate(crime) if e.code == IDENTIFIER_INVALID} == {
        "data.locations[0].address.postcode",
        "data.objects[0].vrm",
    }


def test_subjects_and_role_fields_must_name_persons_in_the_record(validator):
    r = record("02-case.file")
    r["subjects"] = ["p9"]
    r["data"]["witnesses"] = ["p1", "c1"]
    errors = {e.path: e.message for e in validator.validate(r)}
    assert errors == {
        "subjects[0]": "subject 'p9' is not the id of a person in data.persons",
        "data.witnesses[1]": "witnesses 'c1' is not the id of a person in data.persons",
    }


def test_duplicate_entity_ids_are_refused(validator):
    r = record("01-crime.report")
    r["data"]["objects"][0]["id"] = "p1"
    errors = [(e.path, e.message) for e in validator.validate(r)]
    assert ("data.objects[0].id", "entity id 'p1' is already used by data.persons[0]") in errors


def test_intelligence_without_a_grade_is_refused_and_c_needs_conditions(validator):
    ungraded = record("09-intelligence.report")
    del ungraded["handling"]
    conditional = record("10-intelligence.report")
    del conditional["handling"]["conditions"]
    assert [e.path for e in validator.validate(ungraded)] == ["handling"]
    assert [e.path for e in validator.validate(conditional)] == ["handling.conditions"]


def test_secret_is_valid_for_the_schema_because_the_core_refuses_it_separately(validator):
    r = record("12-crime.report")
    r["classification"]["tier"] = "SECRET"
    assert validator.validate(r) == []
    r["classification"]["tier"] = "RESTRICTED"
    assert [e.path for e in validator.validate(r)] == ["classification.tier"]


def test_hostile_oversized_strings_and_arrays_are_refused(validator):
    r = record("01-crime.report")
    r["data"]["summary"] = "x" * 10_001
    r["data"]["persons"][0]["name"]["family"] = "y" * 257
    r["data"]["links"] = [r["data"]["links"][0]] * 1001
    paths = {e.path for e in validator.validate(r)}
    assert {"data.summary", "data.persons[0].name.family", "data.links"} <= paths
    assert all(len(e.message) <= 300 for e in validator.validate(r))


# --- the two engines agree ----------------------------------------------------------------------------------


def _set(path: list, value) -> Callable[[dict], None]:
    def apply(r: dict) -> None:
        node = r
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value

    return apply


def _delete(path: list) -> Callable[[dict], None]:
    def apply(r: dict) -> None:
        node = r
        for key in path[:-1]:
            node = node[key]
        del node[path[-1]]

    return apply


MUTATIONS: list[tuple[str, str, Callable[[dict], None]]] = [
    ("01-crime", "time not a date-time", _set(["time"], "yesterday")),
    ("01-crime", "time on 30 February", _set(["time"], "2026-02-30T09:00:00Z")),
    ("01-crime", "time without an offset", _set(["time"], "2026-11-26T09:00:00")),
    ("01-crime", "time in lower case", _set(["time"], "2026-11-26t09:00:00z")),
    ("01-crime", "time with a fraction and offset", _set(["time"], "2026-11-26T09:00:00.250+01:00")),
    ("01-crime", "time on a real leap second", _set(["time"], "2016-12-31T23:59:60Z")),
    ("01-crime", "time on a false leap second", _set(["time"], "2026-11-26T09:00:60Z")),
    ("01-crime", "birth date month 13", _set(["data", "persons", 0, "birth_date"], "1984-13-12")),
    ("01-crime", "birth date in 2024 leap year", _set(["data", "persons", 0, "birth_date"], "2024-02-29")),
    ("01-crime", "birth date 29 Feb 2023", _set(["data", "persons", 0, "birth_date"], "2023-02-29")),
    ("01-crime", "unknown tier", _set(["classification", "tier"], "RESTRICTED")),
    ("01-crime", "TOP SECRET tier", _set(["classification", "tier"], "TOP SECRET")),
    ("01-crime", "typo in a person", _set(["data", "persons", 0, "nmae"], "x")),
    ("01-crime", "extra top-level field", _set(["extra"], 1)),
    ("01-crime", "family name too long", _set(["data", "persons", 0, "name", "family"], "f" * 257)),
    (
        "01-crime",
        "unknown identifier scheme",
        _set(["data", "persons", 1, "identifiers", 0, "scheme"], "passport"),
    ),
    ("01-crime", "unknown link type", _set(["data", "links", 0, "type"], "knows")),
    ("01-crime", "data not an object", _set(["data"], [])),
    ("01-crime", "category not a police.uk slug", _set(["data", "category"], "murder")),
    ("01-crime", "month 13", _set(["data", "month"], "2026-13")),
    ("01-crime", "cjs code lower case", _set(["data", "offences", 0, "cjs_code"], "th68010")),
    ("01-crime", "record id with spaces", _set(["id"], "01 niche 123")),
    ("01-crime", "specversion 2.0", _set(["specversion"], "2.0")),
    ("01-crime", "dataschema of another type", _set(["dataschema"], BASE + "case.file.json")),
    ("01-crime", "agency with spaces", _set(["origin", "agency"], "Met Police")),
    (
        "01-crime",
        "valid supersedes",
        _set(["supersedes"], {"id": "01-niche-CR-2026-000100", "kind": "correction"}),
    ),
    ("01-crime", "supersedes of unknown kind", _set(["supersedes"], {"id": "x", "kind": "undo"})),
    ("01-crime", "missing classification", _delete(["classification"])),
    ("01-crime", "missing origin system", _delete(["origin", "system"])),
    ("01-crime", "point location without its point", _set(["data", "locations", 0, "kind"], "point")),
    ("12-crime", "latitude beyond 90", _set(["data", "locations", 0, "point", "lat"], 91)),
    ("12-crime", "latitude as a string", _set(["data", "locations", 0, "point", "lat"], "51.5")),
    ("03-court", "result code as a string", _set(["data", "offences", 0, "results", 0, "code"], "1116")),
    ("03-court", "bad court OU code", _set(["data", "court", "ou_code"], "court")),
    ("03-court", "hearing time 25:00", _set(["data", "hearing", "time"], "25:00")),
    ("03-court", "no offences", _set(["data", "offences"], [])),
    ("07-victim", "consent given as text", _set(["data", "consent", "given"], "yes")),
    ("07-victim", "email without a domain", _set(["data", "contact", "email"], "harriet@")),
    ("09-intel", "ungraded intelligence", _delete(["handling"])),
    ("09-intel", "grade scheme 4x4", _set(["handling", "scheme"], "4x4")),
    ("09-intel", "3x5x2 source 4", _set(["handling", "source"], "4")),
    ("10-intel", "code C without conditions", _delete(["handling", "conditions"])),
    ("10-intel", "empty conditions", _set(["handling", "conditions"], {})),
    ("11-intel", "5x5x5 handling 6", _set(["handling", "handling"], "6")),
    ("11-intel", "5x5x5 grade with a 3x5x2 code", _set(["handling", "code"], "P")),
    ("05-safeguarding", "risk PURPLE", _set(["data", "risk"], "PURPLE")),
    ("05-safeguarding", "school URN of letters", _set(["data", "persons", 2, "school", "urn"], "ABCDEF")),
    ("04-custody", "release outcome unknown", _set(["data", "released", "outcome"], "escaped")),
    ("02-case", "anticipated plea maybe", _set(["data", "anticipated_plea"], "MAYBE")),
    ("02-case", "no defendants", _set(["data", "defendants"], [])),
]


def _mutated() -> list[tuple[str, dict]]:
    out = []
    for prefix, label, mutate in MUTATIONS:
        r = copy.deepcopy(
            record(
                prefix.split("-")[0]
                + "-"
                + {
                    "crime": "crime.report",
                    "court": "court.result",
                    "victim": "victim.referral",
                    "intel": "intelligence.report",
                    "safeguarding": "safeguarding.notification",
                    "custody": "custody.record",
                    "case": "case.file",
                }[prefix.split("-")[1]]
            )
        )
        mutate(r)
        out.append((label, r))
    # and systematically: every data field of every demo record removed, or replaced by an over-long string
    for path in RECORD_FILES:
        for key in load(path)["data"]:
            removed = load(path)
            del removed["data"][key]
            out.append((f"{path.stem} without data.{key}", removed))
            long = load(path)
            long["data"][key] = "z" * 10_001
            out.append((f"{path.stem} with data.{key} over-long", long))
    return out


def _agreement_cases() -> list[tuple[str, object]]:
    cases: list[tuple[str, object]] = [(p.name, load(p)) for p in RECORD_FILES + INVALID_FILES]
    cases += schema_examples()
    cases += _mutated()
    return cases


def test_the_agreement_corpus_has_more_than_thirty_mutated_variants():
    assert len(MUTATIONS) >= 30
    assert len(_mutated()) > 100


@pytest.mark.parametrize(("label", "case"), _agreement_cases(), ids=[label for label, _ in _agreement_cases()])
def test_jsonschema_rs_and_the_reference_validator_agree(validator, label, case):
    # Given a record (valid, invalid or mutated) / When both engines validate it
    fast = validator.validate(case)
    reference = validator.reference_errors(case)
    # Then they give the same verdict and report problems at the same paths
    assert bool(fast) == bool(reference), (label, [str(e) for e in fast], [str(e) for e in reference])
    assert {(e.path, e.code) for e in fast} == {(e.path, e.code) for e in reference}


# --- junk never raises --------------------------------------------------------------------------------------


def _deep_dict(depth: int) -> dict:
    root: dict = {}
    node = root
    for _ in range(depth):
        node["a"] = {}
        node = node["a"]
    return root


def _deep_record(depth: int) -> dict:
    r = record("12-crime.report")
    nested: list = []
    node = nested
    for _ in range(depth):
        node.append([])
        node = node[0]
    r["data"]["persons"] = nested
    return r


JUNK = [
    ("a list", [1, 2, 3]),
    ("a string", "crime.report"),
    ("None", None),
    ("a number", 42),
    ("a float", 1.5),
    ("True", True),
    ("an empty object", {}),
    ("type is a list", {"type": ["crime.report"]}),
    ("type is an object", {"type": {"a": 1}}),
    ("deeply nested dicts", _deep_dict(5000)),
    ("a deeply nested record", _deep_record(5000)),
    ("non-string keys", {"type": "crime.report", 1: 2}),
    ("bytes inside", {"type": "crime.report", "id": b"x", "data": {"persons": [b"\x00"]}}),
    ("a set inside", {"type": "intelligence.report", "data": {"about": {"p1"}}}),
    (
        "NaN",
        {
            "type": "crime.report",
            "data": {"locations": [{"id": "l", "kind": "point", "point": {"lat": float("nan"), "lon": 0}}]},
        },
    ),
    (
        "identifiers of junk",
        {
            "type": "crime.report",
            "data": {"persons": [{"identifiers": [None, 1, {"scheme": "pnc"}, {"scheme": "pnc", "value": 7}]}]},
        },
    ),
    ("links of junk", {"type": "crime.report", "subjects": [1, None], "data": {"links": [1, {"from": []}]}}),
]


@pytest.mark.parametrize(("label", "junk"), JUNK, ids=[label for label, _ in JUNK])
def test_validation_never_raises_on_junk(validator, label, junk):
    # Given junk / When validated by either engine / Then errors are returned, never raised
    fast = validator.validate(junk)
    reference = validator.reference_errors(junk)
    assert fast and reference
    assert all(isinstance(e, FieldError) for e in fast + reference)

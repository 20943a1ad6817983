"""The compiled routing step decides and validates exactly as the generic code it replaces."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from collections import OrderedDict

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from broker.config import agreement_from_doc
from broker.routing import validation
from broker.routing.paths import leaf_paths
from broker.routing.rules import Deliver, Rulebook, Withhold
from tests.support import EXAMPLES

NOW = dt.datetime(2026, 11, 26, 12, 0, tzinfo=dt.UTC)
RECORDS = [json.loads(path.read_text()) for path in sorted(EXAMPLES.glob("*.json"))]


def agreement(**changes):
    doc = {
        "id": "ISA-TEST",
        "title": "test",
        "controller": "01",
        "providers": ["01"],
        "recipient": "cps",
        "record_types": ["case.file"],
        "purposes": ["prosecution"],
        "lawful_basis": "DPA 2018 s.35",
        "max_classification": "OFFICIAL-SENSITIVE",
        "fields": {"case.file": ["data.urn", "data.charges"]},
        "valid_from": "2024-01-01",
        "valid_until": "2027-12-31",
        "review_by": "2027-06-30",
        "status": "active",
    }
    doc.update(changes)
    return agreement_from_doc(doc)


def case_file() -> dict:
    return json.loads(next(EXAMPLES.glob("02-case.file*.json")).read_text())


# ------------------------------------------------------------------ identifier and reference checks in one pass


def two_passes(record: dict) -> tuple[list, list]:
    return list(validation._reference_problems(record)), list(validation._identifier_problems(record, True))


def test_one_pass_finds_what_the_two_passes_find_in_every_example():
    for record in RECORDS:
        assert validation._entity_problems(record) == two_passes(record), record["id"]


IDS = st.sampled_from(["p1", "p2", "l1", "o1", "x9"])
SCHEMES = st.sampled_from(["pnc", "cro", "asn", "nhs", "nino", "urn", "postcode", "vrm", "force", "unknown"])
VALUES = st.sampled_from(
    [
        "2001/0171310W",
        "2001/0171310S",
        "1101ZD0100000100000E",
        "1101ZD0100000100000A",
        "SW1A 1AA",
        "ZZ9",
        "",
        "01ZD0000000",
    ]
)
IDENTIFIER = st.fixed_dictionaries({"scheme": SCHEMES, "value": VALUES | st.integers(0, 9)})
ENTITY = st.fixed_dictionaries(
    {"id": IDS},
    optional={
        "identifiers": st.lists(IDENTIFIER | st.just("not an object"), max_size=3),
        "vrm": VALUES,
        "address": st.fixed_dictionaries({"postcode": VALUES}),
        "addresses": st.lists(IDS, max_size=2),
    },
)
DATA = st.fixed_dictionaries(
    {},
    optional={
        "persons": st.lists(ENTITY | st.just(7), max_size=3),
        "organisations": st.lists(ENTITY, max_size=2),
        "objects": st.lists(ENTITY, max_size=2),
        "locations": st.lists(ENTITY, max_size=2),
        "offences": st.lists(ENTITY, max_size=2),
        "asn": VALUES,
        "urn": VALUES,
        "victim": IDS,
        "children": st.lists(IDS, max_size=2),
        "about": st.lists(IDS, max_size=2),
        "links": st.lists(st.fixed_dictionaries({"from": IDS, "to": IDS, "type": st.just("resides-at")}), max_size=2),
        "arrest": st.fixed_dictionaries({"location": IDS}),
    },
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=DATA, subjects=st.lists(IDS, max_size=3))
def test_one_pass_finds_what_the_two_passes_find_in_any_entity_layout(data, subjects):
    record = {"id": "r1", "type": "crime.report", "subjects": subjects, "data": data}
    assert validation._entity_problems(record) == two_passes(record)


def test_an_identifier_given_twice_in_a_record_is_reported_at_both_places():
    record = {
        "data": {
            "asn": "1101ZD0100000100000A",
            "persons": [{"id": "p1", "identifiers": [{"scheme": "asn", "value": "1101ZD0100000100000A"}]}],
        }
    }
    _references, problems = validation._entity_problems(record)
    assert [path for path, _message in problems] == ["data.persons[0].identifiers[0]", "data.asn"]


# ------------------------------------------------------------------ agreements compiled per (provider, record type)


def test_candidates_are_compiled_once_per_provider_and_record_type(registry):
    book = Rulebook([agreement(), agreement(id="ISA-TWO", recipient="mash")], registry.recipients, registry.agencies)
    first = book.candidates("01", "case.file")
    assert [recipient for recipient, _agreements in first] == ["cps", "mash"]
    assert book.candidates("01", "case.file") is first
    assert book.candidates("48", "case.file") == ()


def test_a_recipient_replaced_after_compiling_is_judged_by_its_new_ceiling(registry):
    recipients = dict(registry.recipients)
    book = Rulebook([agreement()], recipients, registry.agencies)
    record = case_file()
    record["classification"]["sensitive"] = True  # OFFICIAL-SENSITIVE
    assert isinstance(book.decide(record, NOW)[0], Deliver)
    recipients["cps"] = dataclasses.replace(recipients["cps"], max_classification="OFFICIAL")
    [decision] = book.decide(record, NOW)
    assert isinstance(decision, Withhold) and decision.reason == "classification_above_ceiling"


def test_leaf_paths_treat_mapping_and_list_subclasses_as_json_objects_and_arrays():
    plain = {"a": [{"b": 1}, {"c": [1, 2]}], "d": {"e": None}, "f": []}
    odd = OrderedDict(a=[OrderedDict(b=1), {"c": [1, 2]}], d=OrderedDict(e=None), f=[])
    assert leaf_paths(odd, "data") == leaf_paths(plain, "data")
    assert leaf_paths(plain, "data") == ["data.a[].b", "data.a[].c", "data.d.e", "data.f"]


def test_a_provider_re_registered_after_compiling_is_judged_by_its_new_groups(registry):
    agencies = dict(registry.agencies)
    book = Rulebook([agreement(providers=["group:territorial-forces"])], registry.recipients, agencies)
    assert isinstance(book.decide(case_file(), NOW)[0], Deliver)
    agencies["01"] = dataclasses.replace(agencies["01"], groups=())
    assert book.decide(case_file(), NOW) == [Withhold(None, None, "no_agreement")]

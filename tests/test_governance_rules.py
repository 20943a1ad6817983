"""Governance rules as data: every agreement test in deploy/agreements/tests runs here; entity scoping."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from adapters.registry import adapter_class
from broker.config import ConfigError, check_against_schema, load_settings
from broker.routing import agreement_tests as ruletests
from broker.routing import scope
from tests.support import EXAMPLES

TESTS = Path(__file__).resolve().parent.parent / "deploy" / "agreements" / "tests"


@pytest.fixture(scope="module")
def deciding():
    return ruletests.Deciding.load(load_settings(environ={}), adapter_class)


@pytest.mark.parametrize("case", sorted(TESTS.glob("*.yaml")), ids=lambda p: p.stem)
def test_each_agreement_test_case_holds(case, deciding):
    # Given one rule test as data / When the record is decided at its time / Then every expectation holds
    result = ruletests.run_file(case, deciding)
    assert result.passed, "\n".join(result.problems)


def _encompass() -> dict:
    return json.loads((EXAMPLES / "05-safeguarding.notification-encompass.json").read_text())


SCHOOL = {"id": "school-100001", "class": "school", "attributes": {"school_urn": "100001"}}
PUPILS_LINKED_TO_ADULTS = {
    "all": [
        {"listed_at": "data.children"},
        {"linked": {"types": ["parent-of"], "listed_at": "data.adults"}},
        {"attribute_equals": {"path": "school.urn", "attribute": "school_urn"}},
    ]
}


def test_scoping_keeps_only_the_schools_pupil_and_drops_every_reference_to_the_others():
    # Given an Encompass notification naming two adults and two children
    record = _encompass()
    # When it is scoped for school 100001
    view, kept = scope.apply({"persons": PUPILS_LINKED_TO_ADULTS}, record, SCHOOL)
    # Then only the pupil remains, and no list or link points at a removed person
    assert kept == 1 and [p["id"] for p in view["data"]["persons"]] == ["p3"]
    assert view["data"]["children"] == ["p3"] and view["data"]["adults"] == []
    assert view["subjects"] == ["p3"]
    assert all({"p1", "p2", "p4"}.isdisjoint({link["from"], link["to"]}) for link in view["data"]["links"])
    assert record["data"]["children"] == ["p3", "p4"], "the original record is not changed"


def test_scoping_without_a_persons_scope_returns_the_record_unchanged():
    # Given a record / When no scope applies / Then the same object comes back and nothing is counted
    record = _encompass()
    assert scope.apply(None, record, SCHOOL) == (record, -1)


def test_an_element_condition_outside_the_closed_set_is_refused_when_the_agreement_loads():
    # Given an agreement whose scope uses an operator that does not exist
    doc = {
        "id": "ISA-X",
        "title": "t",
        "controller": "c",
        "providers": ["13"],
        "recipient": "school-100001",
        "record_types": ["safeguarding.notification"],
        "purposes": ["p"],
        "lawful_basis": "b",
        "max_classification": "OFFICIAL",
        "fields": {"safeguarding.notification": ["data.scheme"]},
        "valid_from": "2025-01-01",
        "valid_until": "2026-01-01",
        "review_by": "2025-06-01",
        "status": "active",
        "scope": {"safeguarding.notification": {"persons": {"python": "__import__('os')"}}},
    }
    # When it is checked / Then loading stops with a configuration error naming the scope
    with pytest.raises(ConfigError, match="scope"):
        check_against_schema("agreement", doc, "ISA-X.yaml")

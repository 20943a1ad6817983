"""Deciding is deny by default and a pure function of (record, agreements, time)."""

from __future__ import annotations

import copy
import datetime as dt
import json

import pytest

from broker.config import agreement_from_doc
from broker.routing.rules import Deliver, Rulebook, Withhold
from tests.support import EXAMPLES

NOW = dt.datetime(2026, 11, 26, 12, 0, tzinfo=dt.UTC)


def example(name: str) -> dict:
    return json.loads(next(EXAMPLES.glob(f"{name}*.json")).read_text())


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


@pytest.fixture
def book(registry):
    def make(*agreements):
        return Rulebook(list(agreements), registry.recipients, registry.agencies)

    return make


def test_records_without_agreement_are_withheld(book):
    decisions = book().decide(example("02-case.file"), NOW)
    assert decisions == [Withhold(None, None, "no_agreement")]


def test_an_agreement_for_another_provider_does_not_cover_the_record(book):
    decisions = book(agreement(providers=["48"])).decide(example("02-case.file"), NOW)
    assert decisions == [Withhold(None, None, "no_agreement")]


def test_provider_groups_cover_their_member_agencies(book):
    [decision] = book(agreement(providers=["group:territorial-forces"])).decide(example("02-case.file"), NOW)
    assert isinstance(decision, Deliver)


@pytest.mark.parametrize(
    "changes, reason",
    [
        ({"status": "suspended"}, "agreement_suspended"),
        ({"valid_from": "2027-01-01"}, "agreement_not_yet_valid"),
        ({"valid_until": "2026-11-25", "valid_from": "2024-01-01"}, "agreement_expired"),
    ],
)
def test_agreements_outside_their_life_deliver_nothing(book, changes, reason):
    [decision] = book(agreement(**changes)).decide(example("02-case.file"), NOW)
    assert isinstance(decision, Withhold) and decision.reason == reason


def test_an_agreement_is_in_force_on_its_last_day(book):
    [decision] = book(agreement(valid_until="2026-11-26")).decide(example("02-case.file"), NOW)
    assert isinstance(decision, Deliver)


def test_in_summer_an_agreement_has_expired_at_half_past_midnight_uk_time_after_its_last_day(book):
    # Given an agreement whose last day is 30 June 2026 / When a record arrives at 00:30 BST on 1 July
    # (23:30 UTC on 30 June) / Then the UK day is 1 July and the agreement has expired
    moment = dt.datetime(2026, 6, 30, 23, 30, tzinfo=dt.UTC)
    [decision] = book(agreement(valid_until="2026-06-30")).decide(example("02-case.file"), moment)
    assert isinstance(decision, Withhold) and decision.reason == "agreement_expired"


def test_in_summer_an_agreement_starts_at_midnight_uk_time_on_its_first_day(book):
    # Given an agreement valid from 1 July 2026 / When a record arrives at 00:30 BST on 1 July / Then it delivers
    moment = dt.datetime(2026, 6, 30, 23, 30, tzinfo=dt.UTC)
    [decision] = book(agreement(valid_from="2026-07-01")).decide(example("02-case.file"), moment)
    assert isinstance(decision, Deliver)


def test_in_winter_the_uk_day_is_the_utc_day(book):
    moment = dt.datetime(2026, 12, 31, 23, 59, tzinfo=dt.UTC)
    [decision] = book(agreement(valid_until="2026-12-31")).decide(example("02-case.file"), moment)
    assert isinstance(decision, Deliver)


def test_only_the_listed_fields_are_delivered_and_the_rest_are_named_as_withheld(book):
    record = example("02-case.file")
    [decision] = book(agreement()).decide(record, NOW)
    view = decision.projection.record
    assert set(view["data"]) == {"urn", "charges"}
    assert view["id"] == record["id"] and view["classification"] == record["classification"]
    assert "data.persons[].name.family" in decision.projection.withheld
    assert "data.urn" in decision.projection.disclosed
    assert "persons" in record["data"], "the original record is not changed"


def test_a_sensitive_record_is_withheld_from_a_recipient_whose_ceiling_is_official(book):
    record = example("12-crime.report")
    record["classification"]["sensitive"] = True
    crime_map = agreement(
        recipient="crime-map",
        record_types=["crime.report"],
        providers=["48"],
        fields={"crime.report": ["data.category"]},
        max_classification="OFFICIAL-SENSITIVE",
    )
    [decision] = book(crime_map).decide(record, NOW)
    assert (decision.reason, decision.detail) == ("classification_above_ceiling", "OFFICIAL-SENSITIVE")


def test_c_coded_intelligence_reaches_a_recipient_named_by_class(book, registry):
    record = example("10-intelligence.report")
    record["handling"]["conditions"] = {"recipient_classes": ["police"], "text": "police only"}
    intel = agreement(
        recipient="force-48",
        record_types=["intelligence.report"],
        providers=["01"],
        fields={"intelligence.report": ["data.summary"]},
        handling={"permitted_codes": ["P", "C"]},
    )
    [decision] = book(intel).decide(record, NOW)
    assert isinstance(decision, Deliver)


def test_c_coded_intelligence_is_withheld_where_the_agreement_permits_only_p(book):
    record = example("10-intelligence.report")
    intel = agreement(
        recipient="force-13",
        record_types=["intelligence.report"],
        providers=["01"],
        fields={"intelligence.report": ["data.summary"]},
    )
    [decision] = book(intel).decide(record, NOW)
    assert decision.reason == "handling_code_not_permitted"


def test_conditions_that_do_not_hold_withhold_with_the_condition_name(book):
    record = example("07-victim.referral")
    victims = agreement(
        recipient="victim-support-london",
        record_types=["victim.referral"],
        providers=["48"],
        fields={"victim.referral": ["data.crime_ref"]},
        conditions=[{"name": "consent", "equals": {"path": "data.consent.given", "value": True}}],
    )
    assert isinstance(book(victims).decide(record, NOW)[0], Deliver)
    refused = copy.deepcopy(record)
    refused["data"]["consent"]["given"] = False
    [decision] = book(victims).decide(refused, NOW)
    assert (decision.reason, decision.detail) == ("condition_not_met", "consent")


def test_a_refusal_by_one_agreement_does_not_stop_another_that_allows(book):
    suspended = agreement(id="ISA-A", status="suspended")
    active = agreement(id="ISA-B")
    [decision] = book(suspended, active).decide(example("02-case.file"), NOW)
    assert isinstance(decision, Deliver) and decision.agreement.id == "ISA-B"


def test_deciding_is_pure(book):
    record = example("05-safeguarding")
    before = copy.deepcopy(record)
    rules = book(
        agreement(
            record_types=["safeguarding.notification"],
            providers=["13"],
            fields={"safeguarding.notification": ["data.scheme"]},
        )
    )
    first, second = rules.decide(record, NOW), rules.decide(record, NOW)
    assert first == second and record == before

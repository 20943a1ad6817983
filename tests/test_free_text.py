"""Free text is a field like any other: `handling.conditions.text` reaches a recipient only where its
agreement lists it, counts in the disclosed or withheld fields, and the audit keeps its hash and length.
Audit entries of rejected records hold bounded, hashed values only, and no audit entry exceeds its cap."""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json

import orjson
import pytest

from broker.audit import entries as audit
from broker.config import Registry, load_settings
from broker.message import Message
from broker.router import Context, route
from broker.routing.projection import HANDLING_TEXT, Projector
from broker.routing.validation import Validator
from tests.support import EXAMPLES

NOW = dt.datetime(2026, 11, 26, 12, 0, tzinfo=dt.UTC)
TEXT = "Victim Jane Example, 14 Acacia Row, is a protected witness"


def example(name: str) -> dict:
    return json.loads(next(EXAMPLES.glob(f"{name}*.json")).read_text())


def intelligence_with_text() -> dict:
    record = example("10-intelligence")
    record["handling"]["conditions"]["text"] = TEXT
    return record


def context(registry: Registry) -> Context:
    return Context.build(load_settings(environ={}), registry, Validator(), clock=lambda: NOW)


def with_text_allowed(registry: Registry) -> Registry:
    """The registry with force 13's intelligence agreement also listing the handling text."""
    agreements = []
    for agreement in registry.agreements:
        if agreement.id == "ISA-INTEL-FORCE-13":
            paths = [*agreement.fields["intelligence.report"].allowed, HANDLING_TEXT]
            agreement = dataclasses.replace(agreement, fields={"intelligence.report": Projector(paths)})
        agreements.append(agreement)
    return dataclasses.replace(registry, agreements=agreements)


def test_handling_text_is_withheld_from_a_recipient_whose_agreement_does_not_list_it(registry):
    # Given intelligence with free text in its handling conditions, for force 13 (whose agreement omits it)
    plan = route(Message(orjson.dumps(intelligence_with_text()), "application/json"), context(registry))
    [delivery] = plan.outputs
    # Then neither the body nor any header carries the text, but the marking still travels
    assert TEXT not in delivery.body.decode() and TEXT not in orjson.dumps(delivery.headers).decode()
    assert orjson.loads(delivery.headers["x-handling"])["conditions"] == {"recipients": ["force-13"]}
    assert orjson.loads(delivery.body)["handling"]["code"] == "C"
    # And the audit counts it as withheld
    [entry] = [e for e in plan.audit_entries if e["operation"] == "disclose"]
    assert HANDLING_TEXT in entry["fields_withheld"] and HANDLING_TEXT not in entry["fields_disclosed"]


def test_handling_text_reaches_a_recipient_whose_agreement_lists_it_and_is_counted_as_disclosed(registry):
    plan = route(
        Message(orjson.dumps(intelligence_with_text()), "application/json"), context(with_text_allowed(registry))
    )
    [delivery] = plan.outputs
    assert orjson.loads(delivery.body)["handling"]["conditions"]["text"] == TEXT
    assert TEXT not in delivery.headers["x-handling"]
    [entry] = [e for e in plan.audit_entries if e["operation"] == "disclose"]
    assert HANDLING_TEXT in entry["fields_disclosed"]


def test_every_audit_entry_keeps_the_hash_and_length_of_the_text_never_the_text(registry):
    plan = route(Message(orjson.dumps(intelligence_with_text()), "application/json"), context(registry))
    assert plan.audit_entries
    for entry in plan.audit_entries:
        assert TEXT not in orjson.dumps(entry).decode()
        assert entry["handling"]["conditions"]["text"] == {
            "sha256": hashlib.sha256(TEXT.encode()).hexdigest(),
            "length": len(TEXT),
        }


def test_a_rejected_record_audits_bounded_hashed_values_only(registry):
    # Given a 200 kB record that is refused, naming a victim and an address in every unchecked field
    record = intelligence_with_text()
    record["origin"]["system"] = TEXT
    record["supersedes"] = {"id": TEXT, "kind": TEXT, "note": TEXT * 100}
    record["correlation_id"] = TEXT
    record["data"]["summary"] = TEXT * 3000
    record["data"][TEXT.replace(" ", "_").replace(",", "").lower()] = 1  # a key that is personal data
    record["classification"]["tier"] = ["not", "a", "tier"]
    plan = route(Message(orjson.dumps(record), "application/json"), context(registry))
    assert plan.outcome == "rejected"
    [entry] = plan.audit_entries
    text = orjson.dumps(entry).decode()
    # Then the entry is small and holds none of the text, in any spelling
    assert len(text) <= audit.MAX_ENTRY_BYTES
    for fragment in ("Jane", "jane", "Acacia", "acacia"):
        assert fragment not in text
    assert entry["record_id"] == record["id"] and entry["source"] == "01"
    assert entry["supersedes"]["id"].startswith("sha256:")


@pytest.mark.parametrize("size", [10, 5000])
def test_no_audit_entry_exceeds_the_cap(size):
    entry = {
        "entry_id": "e1",
        "subject_keys": [f"{i:032x}" for i in range(size)],
        "fields_withheld": [f"data.f{i}" for i in range(size)],
        "detail": "x" * 40_000,
    }
    capped = audit.capped(entry)
    assert len(orjson.dumps(capped)) <= audit.MAX_ENTRY_BYTES
    assert capped["entry_id"] == "e1"

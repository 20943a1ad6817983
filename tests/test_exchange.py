"""route() turns one inbound message into a plan: audit entries, deliveries or a dead letter."""

from __future__ import annotations

import copy
import datetime as dt
import json

import orjson
import pytest

from broker import topology
from broker.config import load_settings
from broker.message import Message
from broker.router import Context, route
from broker.routing.validation import Validator
from tests.support import EXAMPLES

NOW = dt.datetime(2026, 11, 26, 12, 0, tzinfo=dt.UTC)


@pytest.fixture(scope="module")
def ctx(registry):
    settings = load_settings(environ={})
    return Context.build(settings, registry, Validator(), clock=lambda: NOW)


def example(name: str) -> dict:
    return json.loads(next(EXAMPLES.glob(f"{name}*.json")).read_text())


def message(record, **props) -> Message:
    body = record if isinstance(record, bytes) else orjson.dumps(record)
    return Message(body, props.pop("content_type", "application/json"), **props)


def audit_entries(plan) -> list[dict]:
    assert orjson.loads(plan.audit.body)["entries"] == plan.audit_entries
    return plan.audit_entries


def test_a_routed_record_plans_one_audit_message_and_one_delivery_per_entitled_recipient(ctx):
    plan = route(message(example("05-safeguarding")), ctx)
    assert plan.outcome == "routed"
    targets = {o.target for o in plan.outputs}
    assert {"la-mash-leeds", "school-100001"} <= targets
    delivered = {e["recipient"] for e in audit_entries(plan) if e["outcome"] == "delivered"}
    assert delivered == targets
    for out in plan.outputs:
        assert out.message_id == plan.record_id and out.exchange == topology.DELIVER_EXCHANGE
        assert out.headers["x-agreement"].startswith("ISA-") and out.headers["x-lawful-basis"]


def test_the_audit_entry_names_fields_disclosed_and_withheld_and_the_body_hash(ctx):
    plan = route(message(example("07-victim.referral")), ctx)
    [entry] = audit_entries(plan)
    [delivery] = plan.outputs
    import hashlib

    assert entry["body_sha256"] == hashlib.sha256(delivery.body).hexdigest()
    assert "data.persons[].birth_date" in entry["fields_withheld"]
    assert "data.consent.given" in entry["fields_disclosed"]
    assert entry["agreement"] == "ISA-VICTIMS-LONDON" and entry["lawful_basis"]
    assert entry["subject_keys"] and entry["operation"] == "disclose"


def test_the_audit_entry_holds_no_personal_data(ctx):
    record = example("02-case.file")
    text = route(message(record), ctx).audit.body.decode()
    assert text.count("entry_id") >= 1
    for person in record["data"]["persons"]:
        assert person["name"]["family"] not in text and person["birth_date"] not in text
        for ident in person.get("identifiers", []):
            assert ident["value"] not in text


def test_an_identifier_with_a_wrong_check_character_is_refused_with_its_path(ctx):
    record = example("02-case.file")
    record["data"]["persons"][1]["identifiers"][0]["value"] = "2015/0123457A"
    plan = route(message(record), ctx)
    assert (plan.outcome, plan.reason) == ("rejected", "identifier_invalid")
    [dead] = plan.outputs
    errors = json.loads(dead.headers["x-interchange-errors"])
    assert errors[0]["path"] == "data.persons[1].identifiers[0]"
    assert "check" in errors[0]["message"] and errors[0]["record_id"] == record["id"]
    assert dead.exchange == topology.DLX and dead.body == orjson.dumps(record)
    [entry] = audit_entries(plan)
    assert entry["outcome"] == "rejected" and entry["errors"] == [
        {"path": "data.persons[1].identifiers[0]", "code": "identifier_invalid"}
    ]


@pytest.mark.parametrize(
    "body, content_type, reason",
    [
        (b"{nope", "application/json", "malformed_json"),
        (b"[1, 2]", "application/json", "schema_invalid"),
        (b"<xml/>", "application/xml", "unsupported_content_type"),
        (b"{}", "application/json", "schema_invalid"),
    ],
)
def test_bad_bodies_are_refused_with_a_reason_from_the_fixed_list(ctx, body, content_type, reason):
    plan = route(Message(body, content_type, message_id="m-1"), ctx)
    assert (plan.outcome, plan.reason) == ("rejected", reason)
    assert plan.outputs[0].headers["x-interchange-reason"] == reason


def test_a_body_over_the_limit_is_refused_before_parsing(ctx):
    small = copy.copy(ctx)
    small.settings = ctx.settings.with_overrides(max_body_bytes=1024)
    plan = route(Message(b" " * 2048, "application/json", message_id="big"), small)
    assert plan.reason == "body_too_large"


def test_an_unregistered_origin_agency_is_dead_lettered_for_replay(ctx):
    record = example("02-case.file")
    record["origin"]["agency"] = "99"
    plan = route(message(record), ctx)
    assert plan.reason == "unknown_agency"
    assert json.loads(plan.outputs[0].headers["x-interchange-errors"])[0]["path"] == "origin.agency"


def test_secret_material_never_enters_the_exchange(ctx):
    record = example("09-intelligence")
    record["classification"]["tier"] = "SECRET"
    assert route(message(record), ctx).reason == "classification_not_permitted"


def test_a_publisher_may_publish_only_as_its_own_agency(ctx):
    record = example("02-case.file")  # origin 01
    assert route(message(record, user_id="force-01"), ctx).outcome == "routed"
    plan = route(message(record, user_id="force-48"), ctx)
    assert plan.reason == "publisher_not_origin"
    assert audit_entries(plan)[0]["actor"]["publisher"] == "force-48"


def test_a_record_already_routed_by_this_worker_is_dropped_as_a_duplicate(ctx):
    record = example("02-case.file")
    seen = copy.copy(ctx)
    from broker.router import dedup_key

    seen.seen = {dedup_key(record["id"], orjson.dumps(record))}.__contains__
    assert route(message(record), seen).outcome == "duplicate"
    # another record that reuses the id is not a duplicate: it is decided (and validated) on its own
    changed = dict(record, correlation_id="another-case")
    assert route(message(changed), seen).outcome == "routed"


def test_a_recipient_gets_its_own_format_and_a_record_its_format_cannot_carry_is_withheld(registry):
    import dataclasses

    from broker.config import Registry
    from broker.runner import load_renderers

    recipients = dict(registry.recipients, cps=dataclasses.replace(registry.recipients["cps"], format="cps-xml"))
    custom = Registry(registry.agencies, recipients, registry.agreements)
    ctx = Context.build(
        load_settings(environ={}), custom, Validator(), renderers=load_renderers(custom), clock=lambda: NOW
    )
    # Given the CPS takes MG5-style XML: a case file is rendered and validated against the XSD
    case_file = route(message(example("02-case.file")), ctx)
    [delivery] = case_file.outputs
    assert delivery.content_type.endswith("xml") and delivery.body.startswith(b"<?xml")
    # And a custody record (which the CPS XML format cannot carry) is withheld, audited with the reason
    custody = route(message(example("04-custody")), ctx)
    assert custody.withheld.get("cps") == "recipient_format_error"
    [entry] = [e for e in audit_entries(custody) if e["recipient"] == "cps"]
    assert entry["outcome"] == "withheld" and entry["reason"] == "recipient_format_error"

"""The core exchange end to end on the real RabbitMQ: publish, decide, audit, deliver, dead-letter."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import orjson
import pytest

from broker import topology
from broker.audit.log import LOG_NAME, AuditWriter, read_entries, verify
from broker.ingress.publisher import publish_all, record_message
from tests.support import EXAMPLES, worker_thread
from tests.support import wait_until as _wait

pytestmark = pytest.mark.rabbitmq


def _examples() -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(EXAMPLES.glob("*.json"))]


def _route_all(broker, records, extra_messages=()):
    with worker_thread(broker.settings, broker.registry) as worker:
        report = publish_all(broker.settings, [record_message(r) for r in records] + list(extra_messages))
        assert report.published == len(records) + len(extra_messages)
        _wait(lambda: worker.routed >= report.published)
    AuditWriter(broker.settings).run(stop_when_idle=True)
    return list(read_entries(Path(broker.settings.audit_dir) / LOG_NAME))


def test_each_recipient_receives_exactly_what_its_agreements_allow(broker):
    # Given the example records and the sample agreements
    records = _examples()
    # When they flow through the exchange
    entries = _route_all(broker, records)
    # Then each recipient's inbox holds exactly the delivered decisions, with headers naming the agreement
    delivered = {(e["recipient"], e["record_id"]): e for e in entries if e["outcome"] == "delivered"}
    received = {}
    for recipient in broker.registry.recipients:
        for props, body in broker.inbox(recipient):
            if broker.registry.recipients[recipient].public:  # open data: no record id travels; match the body
                digest = hashlib.sha256(body).hexdigest()
                [key] = [k for k, e in delivered.items() if k[0] == recipient and e["body_sha256"] == digest]
                received[key] = (props, {})
            else:
                received[(recipient, props.message_id)] = (props, orjson.loads(body))
    assert set(received) == set(delivered)
    for key, (props, body) in received.items():
        entry = delivered[key]
        assert props.headers["x-agreement"] == entry["agreement"]
        assert props.headers["x-lawful-basis"] == entry["lawful_basis"]
        assert props.delivery_mode == 2
        assert props.correlation_id == body.get("correlation_id")
        assert entry["body_sha256"]


def test_the_school_sees_only_the_minimal_encompass_fields(broker):
    encompass = json.loads((EXAMPLES / "05-safeguarding.notification-encompass.json").read_text())
    _route_all(broker, [encompass])
    [(props, raw)] = broker.inbox("school-100001")
    body = orjson.loads(raw)
    assert set(body["data"]) == {"scheme", "incident", "child_present", "children", "persons"}
    assert set(body["data"]["incident"]) == {"time"} and "summary" not in body["data"]
    [child] = body["data"]["persons"]  # only the school's own pupil: not the sibling, not the adults
    assert set(child) == {"id", "name", "birth_date", "school"} and body["data"]["children"] == [child["id"]]


def test_invalid_records_are_dead_lettered_with_reason_and_field_errors(broker):
    bad = json.loads((EXAMPLES / "invalid").glob("*.json").__next__().read_text())
    entries = _route_all(broker, [bad])
    [(props, body)] = broker.drain(broker.settings.core_vhost, topology.DEAD_QUEUE)
    assert props.headers["x-interchange-reason"] in ("schema_invalid", "identifier_invalid")
    errors = json.loads(props.headers["x-interchange-errors"])
    assert errors and all(e["path"] is not None and e["message"] for e in errors)
    assert body == orjson.dumps(bad)
    [entry] = entries
    assert entry["outcome"] == "rejected" and entry["reason"] == props.headers["x-interchange-reason"]


def test_junk_bytes_are_dead_lettered_and_do_not_stop_the_records_around_them(broker):
    records = _examples()[:3]
    junk = record_message(b"{not json", routing_key="crime.report", message_id="junk-1")
    entries = _route_all(broker, records, [junk])
    outcomes = {e["record_id"]: e["outcome"] for e in entries}
    assert outcomes["junk-1"] == "rejected"
    assert all(r["id"] in outcomes for r in records)


def test_a_record_no_agreement_covers_is_audited_as_withheld(broker):
    record = json.loads((EXAMPLES / "02-case.file-to-cps.json").read_text())
    record["origin"]["agency"] = "hmcts"  # courts have no agreement to send case files to anyone
    record["id"] = "hmcts-case-file-1"
    [entry] = _route_all(broker, [record])
    assert (entry["outcome"], entry["reason"], entry["recipient"]) == ("withheld", "no_agreement", None)


def test_the_audit_log_of_a_run_verifies_and_holds_no_payloads(broker):
    records = _examples()
    entries = _route_all(broker, records)
    assert {e["record_id"] for e in entries} == {r["id"] for r in records}
    assert verify(Path(broker.settings.audit_dir) / LOG_NAME).ok
    text = (Path(broker.settings.audit_dir) / LOG_NAME).read_text()
    for record in records:
        for person in record["data"].get("persons", []):
            assert person["name"]["family"] not in text
            for ident in person.get("identifiers", []):
                assert ident["value"] not in text

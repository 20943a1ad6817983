"""A failure of one record, or of one delivery, never stops the worker nor charges another record, and the
audit says which disclosures did not take place."""

from __future__ import annotations

import datetime as dt
import json

import orjson
import pytest

from broker import topology
from broker.config import load_settings
from broker.ops.metrics import Metrics
from broker.router import Context
from broker.routing.validation import Validator
from broker.transports.memory import MemoryTransport
from broker.worker import Worker
from tests.support import EXAMPLES

NOW = dt.datetime(2026, 11, 26, 12, 0, tzinfo=dt.UTC)


@pytest.fixture
def setup(registry):
    ctx = Context.build(load_settings(environ={}), registry, Validator(), clock=lambda: NOW)
    transport = MemoryTransport()
    worker = Worker(ctx, transport, Metrics())
    worker.start()
    return worker, transport


def publish(transport, name, **changes):
    record = json.loads(next(EXAMPLES.glob(f"{name}*.json")).read_text()) | changes
    transport.put("core", topology.ROUTE_QUEUE, orjson.dumps(record), message_id=record["id"])
    return record


def audit_entries(transport) -> list[dict]:
    return [
        e
        for o in transport.published
        if o.target == "core" and o.routing_key == topology.AUDIT_QUEUE
        for e in orjson.loads(o.body)["entries"]
    ]


def test_a_failed_delivery_is_followed_by_an_undelivered_entry_cancelling_its_disclose_entry(setup):
    # Given a safeguarding notification for the Leeds MASH and a school, and the school's publish returned
    worker, transport = setup
    record = publish(transport, "05-safeguarding")
    transport.fail_next("school-100001", "unroutable (312 NO_ROUTE)")
    # When the worker runs until idle
    transport.run()
    entries = audit_entries(transport)
    school = [e for e in entries if e.get("recipient") == "school-100001"]
    # Then the first disclose entry to the school is cancelled by an undelivered entry naming it
    first, undelivered, second = school
    assert first["operation"] == "disclose" and second["operation"] == "disclose"
    assert undelivered == undelivered | {
        "operation": "undelivered",
        "outcome": "not_delivered",
        "reason": "returned",
        "record_id": record["id"],
        "origin": record["origin"]["agency"],
        "recipient": "school-100001",
        "agreement": first["agreement"],
        "cancels": first["entry_id"],
    }
    # And the MASH, whose delivery was confirmed the first time, has one disclose entry and one copy
    mash = [e for e in entries if e.get("recipient") == "la-mash-leeds"]
    assert [e["operation"] for e in mash] == ["disclose"]
    assert len(transport.messages("la-mash-leeds", topology.INBOX_QUEUE)) == 1
    assert len(transport.messages("school-100001", topology.INBOX_QUEUE)) == 1
    m = worker.metrics.registry.get_sample_value
    assert m("interchange_undelivered_total", {"recipient": "school-100001", "reason": "returned"}) == 1
    # And the record's decisions are counted once, when it was finally delivered
    assert m("interchange_deliveries_confirmed_total", {"recipient": "la-mash-leeds"}) == 1
    assert m("interchange_deliveries_confirmed_total", {"recipient": "school-100001"}) == 1


def test_an_undelivered_entry_not_confirmed_is_written_again(setup):
    # Given a delivery that fails and an audit that refuses the first message of undelivered entries
    worker, transport = setup
    real_publish, refused = transport.publish, []

    def refuse_first_undelivered(out, callback):
        if out.target == "core" and b'"undelivered"' in out.body and not refused:
            refused.append(out)
            callback(False, "nacked by broker")
            return
        real_publish(out, callback)

    transport.publish = refuse_first_undelivered
    publish(transport, "02-case.file")
    transport.fail_next("cps", "nacked by broker")
    # When the worker runs
    transport.run()
    # Then the undelivered entry was refused once and reached the audit on the next attempt
    assert len(refused) == 1
    assert [e["reason"] for e in audit_entries(transport) if e["operation"] == "undelivered"] == ["nacked"]


def test_a_refused_audit_batch_is_retried_record_by_record_and_requeues_no_record(setup):
    # Given two records decided in one turn and an audit batch the broker nacks once
    worker, transport = setup
    publish(transport, "02-case.file")
    publish(transport, "07-victim.referral")
    transport.fail_next("core", "nacked by broker")
    # When the worker runs
    transport.run()
    # Then each record's entries were published alone, and neither record was requeued
    assert transport.rejected == [] and sorted(transport.acked) == [1, 2]
    assert worker.metrics.requeued._value.get() == 0


def test_a_publish_that_raises_is_a_failed_publish_and_the_worker_goes_on(setup):
    # Given a transport whose publish to cps raises once (a value the client cannot encode)
    worker, transport = setup
    real_publish, raised = transport.publish, []

    def publish_or_raise(out, callback):
        if out.target == "cps" and not raised:
            raised.append(out)
            raise ValueError("cannot encode")
        real_publish(out, callback)

    transport.publish = publish_or_raise
    publish(transport, "02-case.file")
    publish(transport, "07-victim.referral")
    # When the worker runs
    transport.run()
    # Then the case file was requeued and delivered on its retry, and the victim referral went through once
    assert transport.rejected == [1] and sorted(transport.acked) == [2, 3]
    assert len(transport.messages("cps", topology.INBOX_QUEUE)) == 1
    undelivered = [e for e in audit_entries(transport) if e["operation"] == "undelivered"]
    assert [(e["recipient"], e["reason"]) for e in undelivered] == [("cps", "publish_error")]


def test_a_record_the_core_fails_on_is_dead_lettered_as_internal_error_and_the_next_is_routed(setup):
    # Given a lookup of a correction's original that fails, a correction, then a valid record
    worker, transport = setup

    def broken(_origin, _record_id):
        raise KeyError("boom")

    worker.ctx.original = broken
    publish(transport, "01-crime.report", supersedes={"id": "01-CR-OLD", "kind": "correction"})
    publish(transport, "02-case.file")
    # When the worker runs
    transport.run()
    # Then the correction is a dead letter with reason internal_error, counted by exception type
    [dead] = transport.messages("core", topology.DEAD_QUEUE)
    assert dead.properties.headers["x-interchange-reason"] == "internal_error"
    assert dead.properties.headers["x-interchange-error-type"] == "KeyError"
    m = worker.metrics.registry.get_sample_value
    assert m("interchange_route_internal_errors_total", {"exception": "KeyError"}) == 1
    # And the valid record behind it was delivered; both inputs acked, none requeued
    assert len(transport.messages("cps", topology.INBOX_QUEUE)) == 1
    assert sorted(transport.acked) == [1, 2] and transport.rejected == []

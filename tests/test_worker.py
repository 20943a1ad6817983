"""The worker carries plans out in order: audit confirmed, then deliveries confirmed, then ack."""

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


def publish(transport, name):
    record = json.loads(next(EXAMPLES.glob(f"{name}*.json")).read_text())
    transport.put("core", topology.ROUTE_QUEUE, orjson.dumps(record), message_id=record["id"])
    return record


def test_the_audit_message_is_published_before_any_delivery(setup):
    worker, transport = setup
    publish(transport, "05-safeguarding")
    transport.run()
    order = [o.target for o in transport.published]
    assert order[0] == "core" and "core" not in order[1:]
    assert {"la-mash-leeds", "school-100001"} <= set(order[1:])
    assert transport.acked == [1]


def test_when_the_audit_publish_fails_nothing_is_delivered_and_the_record_is_requeued(setup):
    worker, transport = setup
    publish(transport, "05-safeguarding")
    transport.fail_next("core", "no confirm within 30s")
    transport.run()
    # the first attempt published nothing; the redelivered record is audited, then delivered once
    assert transport.rejected == [1] and transport.acked == [2]
    assert transport.published[0].target == "core"
    assert [o.target for o in transport.published].count("school-100001") == 1


def test_a_failed_delivery_requeues_the_record_and_the_retry_delivers_with_the_same_message_id(setup):
    worker, transport = setup
    record = publish(transport, "05-safeguarding")
    transport.fail_next("school-100001", "unroutable (312 NO_ROUTE)")
    transport.run()
    assert transport.rejected == [1] and transport.acked == [2]
    school = transport.messages("school-100001", topology.INBOX_QUEUE)
    assert [m.properties.message_id for m in school] == [record["id"]]
    assert worker.metrics.requeued._value.get() == 1


def test_invalid_records_are_acked_only_after_the_dead_letter_is_confirmed(setup):
    worker, transport = setup
    transport.put("core", topology.ROUTE_QUEUE, b"{broken", message_id="m-1")
    transport.run()
    [dead] = transport.messages("core", topology.DEAD_QUEUE)
    assert dead.properties.headers["x-interchange-reason"] == "malformed_json"
    assert transport.acked == [1]
    assert worker.metrics.rejected.labels("malformed_json")._value.get() == 1


def test_a_duplicate_record_is_acked_without_a_second_delivery(setup):
    worker, transport = setup
    publish(transport, "02-case.file")
    publish(transport, "02-case.file")
    transport.run()
    assert len(transport.messages("cps", topology.INBOX_QUEUE)) == 1
    assert sorted(transport.acked) == [1, 2]


def test_metrics_count_decisions_by_recipient_agreement_and_outcome(setup):
    worker, transport = setup
    publish(transport, "10-intelligence")
    transport.run()
    m = worker.metrics.registry.get_sample_value
    assert (
        m(
            "interchange_decisions_total",
            {"recipient": "force-13", "agreement": "ISA-INTEL-FORCE-13", "outcome": "delivered", "reason": ""},
        )
        == 1
    )
    assert (
        m(
            "interchange_decisions_total",
            {
                "recipient": "force-01",
                "agreement": "ISA-INTEL-FORCE-01",
                "outcome": "withheld",
                "reason": "handling_conditions_exclude_recipient",
            },
        )
        == 1
    )


def test_records_decided_together_share_one_audit_message_confirmed_before_any_of_their_deliveries(setup):
    worker, transport = setup
    first, second = publish(transport, "02-case.file"), publish(transport, "07-victim.referral")
    transport.run()
    audits = [o for o in transport.published if o.target == "core"]
    assert len(audits) == 1
    entries = orjson.loads(audits[0].body)["entries"]
    assert {e["record_id"] for e in entries} == {first["id"], second["id"]}
    assert transport.published[0] is audits[0]
    assert sorted(transport.acked) == [1, 2]

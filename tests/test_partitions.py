"""Scale-out by partitions (docs/SCALING.md): several workers share the work, one case stays in order."""

from __future__ import annotations

import copy
import time

import pytest

from broker import topology
from broker.ingress.publisher import publish_all, record_message
from tests.flowkit import _TEMPLATE, write_flow_agreements, write_flow_recipients
from tests.support import TestBroker, worker_thread

pytestmark = pytest.mark.rabbitmq

CASES, PER_CASE = 40, 25


def _case_records() -> list[dict]:
    """Records of 40 cases, interleaved: case c, sequence s has id part-c-s."""
    records = []
    for seq in range(PER_CASE):
        for case in range(CASES):
            record = copy.copy(_TEMPLATE)
            record["id"], record["correlation_id"] = f"part-{case}-{seq}", f"case-part-{case}"
            records.append(record)
    return records


def test_each_worker_owns_its_share_of_partitions_and_subscribes_to_the_rest_as_standby():
    assert topology.partition_preference(4, 0, 2) == (
        ["interchange.route.0", "interchange.route.2"],
        ["interchange.route.1", "interchange.route.3"],
    )
    assert topology.partition_preference(1, 0, 1) == (["interchange.route"], [])


def test_partition_queues_have_a_single_active_consumer_and_hash_on_the_correlation_id():
    spec = topology.core_spec(partitions=4)
    routes = [q for q in spec["queues"] if q["name"].startswith("interchange.route.")]
    assert [q["name"] for q in routes] == topology.route_queues(4)
    assert all(q["arguments"]["x-single-active-consumer"] for q in routes)
    [hashing] = [e for e in spec["exchanges"] if e["type"] == "x-consistent-hash"]
    assert hashing["arguments"]["hash-property"] == "correlation_id"
    assert topology.core_spec(1) == topology.core_spec()


def test_two_workers_share_four_partitions_and_each_case_arrives_in_order(rabbitmq, tmp_path):
    # Given four partitions and two workers, each owning two of them
    broker = TestBroker.create(
        tmp_path / "audit",
        write_flow_agreements(tmp_path / "agreements"),
        recipients_file=write_flow_recipients(tmp_path / "recipients.yaml"),  # a plain crime-map: ids to compare
        partitions=4,
        standby_delay_seconds=1.0,
    )
    try:
        records = _case_records()
        first = broker.settings.with_overrides(worker_index=0, workers=2)
        second = broker.settings.with_overrides(worker_index=1, workers=2)
        with worker_thread(first, broker.registry) as w1, worker_thread(second, broker.registry) as w2:
            time.sleep(1.5)
            # When 1,000 records of 40 cases are published interleaved
            report = publish_all(broker.settings, [record_message(r) for r in records])
            assert report.published == len(records)
            deadline = time.monotonic() + 60
            while w1.routed + w2.routed < len(records) and time.monotonic() < deadline:
                time.sleep(0.1)
        # Then both workers did part of the work
        print(f"\n[partitions] worker-0 routed {w1.routed}, worker-1 routed {w2.routed}")
        assert w1.routed > 0 and w2.routed > 0 and w1.routed + w2.routed == len(records)
        # And each recipient received every case's records in the order they were published
        for recipient in ("force-13", "crime-map"):
            received = [props.message_id for props, _ in broker.inbox(recipient)]
            assert len(set(received)) == len(records)
            for case in range(CASES):
                sequence = [int(m.rsplit("-", 1)[1]) for m in received if m.startswith(f"part-{case}-")]
                assert sequence == sorted(sequence), f"case {case} out of order: {sequence}"
    finally:
        broker.close()

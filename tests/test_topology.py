"""The topology in code and deploy/rabbitmq/definitions.json stay equal; declaring is idempotent."""

from __future__ import annotations

import re
import subprocess
import sys

import orjson
import pytest

from broker import topology
from broker.config import PROJECT_ROOT
from broker.ops import provision


def test_definitions_json_is_what_topology_export_prints():
    exported = subprocess.run(
        [sys.executable, "-m", "broker", "topology", "export"], capture_output=True, check=True, cwd=PROJECT_ROOT
    ).stdout
    committed = (PROJECT_ROOT / "deploy" / "rabbitmq" / "definitions.json").read_bytes()
    assert orjson.loads(exported) == orjson.loads(committed), (
        "run `interchange topology export --output deploy/rabbitmq/definitions.json`"
    )


def test_every_recipient_has_its_own_vhost_holding_only_its_queues(registry):
    from broker.config import load_settings

    definitions = topology.definitions("interchange", provision.recipient_vhosts(load_settings(environ={}), registry))
    for recipient in registry.recipients:
        vhost = f"interchange.{recipient}"
        queues = {q["name"] for q in definitions["queues"] if q["vhost"] == vhost}
        assert topology.INBOX_QUEUE in queues and topology.ROUTE_QUEUE not in queues


def test_record_queues_are_quorum_queues_and_dead_lettering_is_set_by_policy():
    spec = topology.core_spec()
    records = [q for q in spec["queues"] if q["name"] != topology.ANCHOR_QUEUE]
    assert all(q["arguments"]["x-queue-type"] == "quorum" for q in records)
    assert all("x-dead-letter-exchange" not in q["arguments"] for q in spec["queues"])
    [policy] = [p for p in spec["policies"] if p["name"] == "interchange-core"]
    assert policy["definition"]["dead-letter-strategy"] == "at-least-once"
    assert policy["definition"]["delivery-limit"] > 0


def test_the_checkpoint_anchor_is_a_stream_no_policy_touches():
    # Given the core topology / Then the anchor is an append-only stream fed by its own exchange, and no
    # policy (dead-lettering, delivery limit, overflow) applies to it
    spec = topology.core_spec()
    [anchor] = [q for q in spec["queues"] if q["name"] == topology.ANCHOR_QUEUE]
    assert anchor["arguments"] == {"x-queue-type": "stream"}
    assert {"source": topology.ANCHOR_EXCHANGE, "destination": topology.ANCHOR_QUEUE, "routing_key": ""} in spec[
        "bindings"
    ]
    assert not any(re.search(p["pattern"], topology.ANCHOR_QUEUE) for p in spec["policies"])


@pytest.mark.rabbitmq
def test_applying_the_topology_twice_changes_nothing(broker):
    before = broker.vhosts
    assert provision.apply(broker.settings, broker.registry) == before


def test_the_audit_queue_has_its_own_policy_without_delivery_limit_or_dead_lettering():
    spec = topology.core_spec()
    governing = [p for p in spec["policies"] if re.fullmatch(p["pattern"], topology.AUDIT_QUEUE)]
    assert [p["name"] for p in governing] == ["interchange-audit"]
    assert "delivery-limit" not in governing[0]["definition"]
    assert "dead-letter-exchange" not in governing[0]["definition"]


@pytest.mark.rabbitmq
def test_an_audit_batch_returned_more_often_than_the_core_delivery_limit_is_still_queued(broker):
    """A failing writer that hands a batch back again and again never sends it to interchange.dead."""
    from broker.transports.amqp import blocking_channel

    connection, channel = blocking_channel(broker.settings.amqp_url, broker.settings.core_vhost, "test-audit-limit")
    try:
        channel.basic_publish("", topology.AUDIT_QUEUE, b'{"batch": "b1", "entries": []}')
        returned = 0
        for method, _props, _body in channel.consume(topology.AUDIT_QUEUE, inactivity_timeout=2.0):
            assert method is not None, f"the audit batch left the audit queue after {returned} returns"
            channel.basic_nack(method.delivery_tag, requeue=True)
            returned += 1
            if returned > topology.DELIVERY_LIMIT + 10:
                break
        channel.cancel()
        connection.sleep(0.2)
        assert channel.queue_declare(topology.DEAD_QUEUE, passive=True).method.message_count == 0
        assert channel.queue_declare(topology.AUDIT_QUEUE, passive=True).method.message_count == 1
    finally:
        connection.close()

"""On the real RabbitMQ: a spoof dead-lettered as publisher_not_origin stays refused when it is replayed."""

from __future__ import annotations

import json
import time
from pathlib import Path

import orjson
import pika
import pytest
import structlog

from broker import topology
from broker.audit.log import LOG_NAME, AuditWriter, read_entries
from broker.cli.main import main
from broker.transports.amqp import blocking_channel
from tests.support import EXAMPLES, worker_thread
from tests.support import wait_until as _wait

pytestmark = pytest.mark.rabbitmq

RECORD_OF_13 = json.loads((EXAMPLES / "09-intelligence.report-3x5x2-p.json").read_text())


def _publish_with_user_id(settings, record: dict) -> str:
    """Publish as the test's login with user_id set to it (RabbitMQ checks user_id against the login)."""
    login = pika.URLParameters(settings.amqp_url).credentials.username
    connection, channel = blocking_channel(settings.amqp_url, settings.core_vhost, "t-spoof", settings.tls)
    try:
        channel.confirm_delivery()
        channel.basic_publish(
            topology.INGRESS_EXCHANGE,
            record["type"],
            orjson.dumps(record),
            pika.BasicProperties(
                message_id=record["id"], user_id=login, delivery_mode=2, content_type="application/json"
            ),
            mandatory=True,
        )
    finally:
        connection.close()
    return login


def test_a_spoof_dead_lettered_as_publisher_not_origin_is_not_routed_by_replay(broker, capsys):
    settings = broker.settings  # development settings: a record without a user_id is not refused
    # Given a record claiming origin 13 from a login that is not one of 13's publishers, dead-lettered
    with worker_thread(settings, broker.registry) as worker:
        login = _publish_with_user_id(settings, RECORD_OF_13)
        _wait(lambda: worker.routed >= 1)
        # When an operator replays the publisher_not_origin dead letters
        try:
            code = main([*settings.cli_args(), "dlq", "replay", "--reason", "publisher_not_origin"])
        finally:
            structlog.reset_defaults()
        time.sleep(1.0)
        routed_after = worker.routed
    # Then the replay is refused and says why; the letter is still dead-lettered; nothing was delivered
    printed = capsys.readouterr()
    assert code != 0 and "publisher_not_origin" in printed.out + printed.err
    [(props, _body)] = broker.drain(settings.core_vhost, topology.DEAD_QUEUE)
    assert props.headers["x-original-user-id"] == login and routed_after == 1
    AuditWriter(settings).run(stop_when_idle=True)
    entries = [e for e in read_entries(Path(settings.audit_dir) / LOG_NAME) if e["record_id"] == RECORD_OF_13["id"]]
    assert [e["outcome"] for e in entries] == ["rejected"]
    for recipient in broker.registry.recipients:
        assert broker.inbox(recipient, idle=0.1) == []

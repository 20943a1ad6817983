"""On the real RabbitMQ: no byte of what the crime map receives names the crime, the place or the victim."""

from __future__ import annotations

import orjson
import pytest

from broker.ingress.publisher import publish_all, record_message
from tests.support import wait_until, worker_thread
from tests.test_open_data import SECRETS, exact_point_record

pytestmark = pytest.mark.rabbitmq


def test_every_byte_the_crime_map_receives_is_free_of_the_exact_point_and_the_reference(broker):
    # Given a crime at a victim's exact point, with a known reference, published to the exchange
    record = exact_point_record()
    with worker_thread(broker.settings, broker.registry) as worker:
        report = publish_all(broker.settings, [record_message(record)])
        wait_until(lambda: worker.routed >= report.published)
    # When the crime map reads its inbox
    [(props, body)] = broker.inbox("crime-map")
    # Then its body and every AMQP property are searched: none holds the point, the reference or the victim
    properties = {
        name: getattr(props, name)
        for name in (
            "content_type",
            "content_encoding",
            "headers",
            "delivery_mode",
            "priority",
            "correlation_id",
            "reply_to",
            "expiration",
            "message_id",
            "timestamp",
            "type",
            "user_id",
            "app_id",
            "cluster_id",
        )
    }
    delivered = body + orjson.dumps(properties, default=str)
    assert [s for s in SECRETS if s.encode() in delivered] == []
    assert body.decode().splitlines()[1].split(",")[1] == "2026-11"

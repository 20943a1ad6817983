"""A wire tap that feeds a force's enquiry index from the records it publishes through Interchange.

The tap's queue `interchange.enquiry.tap.<force>` in the core vhost (quorum, bound to the ingress exchange
for every record type) receives a copy of every record published; the tap keeps those whose origin is the
force, that pass the same validation as the routing core and, when RabbitMQ names the publisher
(`user_id`), whose publisher may publish as that force.  Everything else is acknowledged and skipped.
Each record is acknowledged only once it is in the index (a crash means it is indexed again: idempotent).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import orjson
import structlog

from broker import topology
from broker.routing.validation import Validator
from broker.transports.amqp import blocking_channel

log = structlog.get_logger("interchange.enquiry.tap")


def tap_queue(force: str) -> str:
    """The core-vhost queue feeding `force`'s enquiry index (its name is in broker.ops.access too)."""
    from broker.ops.access import tap_queue as name

    return name(force)


def keep(
    force: str, record: Any, user_id: str | None, publishers: tuple[str, ...], valid: Callable[[Any], bool]
) -> bool:
    """Whether a tapped record belongs in the force's index (pure)."""
    if not isinstance(record, dict) or not isinstance(record.get("origin"), dict):
        return False
    if record["origin"].get("agency") != force:
        return False
    if user_id and user_id not in publishers:
        return False
    return valid(record)


class Tap:
    """Consumes the force's tap queue into `index` (a callable taking one record); `stop()` ends `run()`."""

    def __init__(
        self, settings: Any, force: str, index: Callable[[dict[str, Any]], Any], publishers: tuple[str, ...]
    ) -> None:
        self.settings, self.force, self.index, self.publishers = settings, force, index, publishers
        self.validator = Validator()
        self.indexed = self.skipped = 0
        self._stop = threading.Event()
        self.ready = threading.Event()

    def stop(self) -> None:
        """Ask the tap to stop."""
        self._stop.set()

    def run(self) -> None:
        """Index the force's published records until stopped."""
        connection, channel = blocking_channel(
            self.settings.amqp_url, self.settings.core_vhost, f"interchange-enquiry-tap-{self.force}", self.settings.tls
        )
        try:
            queue = tap_queue(self.force)
            channel.queue_declare(queue, durable=True, arguments=dict(topology.QUORUM))
            channel.queue_bind(queue, topology.INGRESS_EXCHANGE, "#")
            channel.basic_qos(prefetch_count=100)
            channel.basic_consume(queue, self._on_message)
            self.ready.set()
            while not self._stop.is_set():
                connection.process_data_events(time_limit=0.1)
        finally:
            if connection.is_open:
                connection.close()

    def _on_message(self, channel: Any, method: Any, properties: Any, body: bytes) -> None:
        try:
            record = orjson.loads(body)
        except orjson.JSONDecodeError:
            record = None
        if keep(self.force, record, properties.user_id, self.publishers, self.validator.is_valid):
            self.index(record)
            self.indexed += 1
        else:
            self.skipped += 1
        channel.basic_ack(method.delivery_tag)

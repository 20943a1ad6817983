"""The reference responder: answers one force's enquiries from its PostgreSQL index.

Contract (docs/ENQUIRY.md; a force with its own system answers the same): a request on queue
`interchange.enquiry` in the force's vhost carries `reply_to`, `correlation_id`, an `expiration` and the
header `x-deadline-ms` (epoch milliseconds).  Step `hits` answers counts per record type and nothing else; step
`details` answers the matching records of the chosen types, each cut to the fields of the enquiry agreement
the request names (the responder checks that agreement itself: deny by default on both sides).  A request
past its deadline is dropped unanswered.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections.abc import Callable
from typing import Any

import orjson
import structlog

from broker.enquiry.agreements import EnquiryAgreement, project_details
from broker.topology import ENQUIRY_EXCHANGE, ENQUIRY_QUEUE, ENQUIRY_QUEUE_SPEC
from broker.transports.amqp import blocking_channel

QUEUE_ARGUMENTS = ENQUIRY_QUEUE_SPEC["arguments"]
log = structlog.get_logger("interchange.enquiry.responder")

Finder = Callable[[list[tuple[str, str]], list[str]], list[dict[str, Any]]]


def answer(
    force: str, request: dict[str, Any], find: Finder, agreements: list[EnquiryAgreement], today: dt.date
) -> dict[str, Any]:
    """The reply to one request (pure but for `find`, the index lookup)."""
    keys = [(str(k), str(v)) for k, v in request.get("subject_keys") or []]
    reply: dict[str, Any] = {"enquiry_id": request.get("enquiry_id"), "force": force, "step": request.get("step")}
    if request.get("step") == "hits":
        counts: dict[str, int] = {}
        for record in find(keys, list(request.get("record_types") or [])):
            counts[record["type"]] = counts.get(record["type"], 0) + 1
        reply["hits"] = counts
        return reply
    by_id = {a.id: a for a in agreements if a.responder == force and a.in_force(today)}
    allowed = {
        t: by_id[a] for t, a in (request.get("agreements") or {}).items() if a in by_id and t in by_id[a].record_types
    }
    records, disclosed = [], {}
    for record in find(keys, sorted(allowed)):
        view, paths = project_details(record, allowed[record["type"]])
        records.append(view)
        disclosed[record["id"]] = paths
    reply.update(
        records=records,
        fields_disclosed=disclosed,
        refused_types=sorted(set(request.get("agreements") or {}) - set(allowed)),
    )
    return reply


class Responder:
    """Consumes the force's enquiry queue and replies; `stop()` ends `run()`."""

    def __init__(
        self, settings: Any, force: str, find: Finder, agreements: list[EnquiryAgreement], prefetch: int = 32
    ) -> None:
        self.settings, self.force, self.find, self.agreements = settings, force, find, agreements
        self.prefetch, self.answered, self.dropped = prefetch, 0, 0
        self._stop = threading.Event()
        self.ready = threading.Event()

    @property
    def vhost(self) -> str:
        """The force's vhost, where its enquiry queue lives."""
        return self.settings.recipient_vhost(f"force-{self.force}")

    def stop(self) -> None:
        """Ask the responder to stop."""
        self._stop.set()

    def run(self) -> None:
        """Answer enquiries from the index until stopped."""
        connection, channel = blocking_channel(
            self.settings.amqp_url, self.vhost, f"interchange-enquiry-responder-{self.force}", self.settings.tls
        )
        try:
            channel.exchange_declare(ENQUIRY_EXCHANGE, "direct", durable=True)
            channel.queue_declare(ENQUIRY_QUEUE, durable=True, arguments=QUEUE_ARGUMENTS)
            channel.queue_bind(ENQUIRY_QUEUE, ENQUIRY_EXCHANGE, ENQUIRY_QUEUE)
            channel.basic_qos(prefetch_count=self.prefetch)
            channel.basic_consume(ENQUIRY_QUEUE, self._on_message)
            self.ready.set()
            while not self._stop.is_set():
                connection.process_data_events(time_limit=0.1)
        finally:
            if connection.is_open:
                connection.close()

    def _on_message(self, channel: Any, method: Any, properties: Any, body: bytes) -> None:
        import pika

        deadline = int((properties.headers or {}).get("x-deadline-ms") or 0) / 1000
        if deadline and time.time() > deadline:
            self.dropped += 1
            log.info("enquiry_request_expired", force=self.force, correlation_id=properties.correlation_id)
            channel.basic_ack(method.delivery_tag)
            return
        try:
            request = orjson.loads(body)
            reply = answer(self.force, request, self.find, self.agreements, dt.datetime.now(dt.UTC).date())
        except Exception as exc:  # a bad request gets an error answer, never stops the responder
            reply = {"force": self.force, "error": type(exc).__name__}
            log.warning(
                "enquiry_request_failed",
                force=self.force,
                error=type(exc).__name__,
                correlation_id=properties.correlation_id,
            )
        if properties.reply_to:
            channel.basic_publish(
                "",
                properties.reply_to,
                orjson.dumps(reply),
                pika.BasicProperties(correlation_id=properties.correlation_id, content_type="application/json"),
            )
        channel.basic_ack(method.delivery_tag)
        self.answered += 1

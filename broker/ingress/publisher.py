"""Publishing records into the exchange with a window of asynchronous publisher confirms.

`publish_all(settings, records)` streams any number of records to `interchange.ingress`, keeps at most
`window` unconfirmed, resends what was nacked, returned or lost in a reconnect (same message_id), and
reports a record as published only once RabbitMQ has confirmed it.  Used by `interchange publish`,
`interchange ingest`, the demo and the benchmark.
"""

from __future__ import annotations

import collections
import functools
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import orjson

from broker import topology
from broker.config import Settings
from broker.message import Outgoing
from broker.transports.amqp import AmqpTransport


@dataclass
class PublishReport:
    """What a publish run did: published (confirmed), failed, resent, failures and time."""

    published: int = 0
    failed: int = 0
    resent: int = 0
    failures: list[tuple[str, str]] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def rate(self) -> float:
        """Confirmed records per second."""
        return self.published / self.seconds if self.seconds else 0.0


def record_message(
    record: dict[str, Any] | bytes,
    routing_key: str | None = None,
    message_id: str | None = None,
    target: str = "core",
    exchange: str = topology.INGRESS_EXCHANGE,
    headers: dict[str, Any] | None = None,
) -> Outgoing:
    """An ingress publish for one common-schema record (or its already serialised bytes), with optional headers."""
    if isinstance(record, dict):
        body = orjson.dumps(record)
        message_id = message_id or str(record.get("id", ""))
        routing_key = routing_key or str(record.get("type", "unknown"))
        correlation_id = record.get("correlation_id")
    else:
        body, correlation_id = record, None
    return Outgoing(
        target,
        exchange,
        routing_key or "unknown",
        body,
        message_id or "",
        correlation_id,
        headers if headers is not None else {},
    )


class StreamPublisher:
    """Pumps an iterator of Outgoing messages through one AmqpTransport with a confirm window."""

    def __init__(
        self,
        transport: AmqpTransport,
        messages: Iterable[Outgoing],
        window: int = 1000,
        max_attempts: int = 10,
        on_confirmed: Any = None,
    ) -> None:
        self.transport, self.window, self.max_attempts = transport, window, max_attempts
        self.source: Iterator[Outgoing] = iter(messages)
        self.retry: collections.deque[tuple[Outgoing, int]] = collections.deque()
        self.outstanding = 0
        self.exhausted = False
        self.report = PublishReport()
        self.on_confirmed = on_confirmed
        self._pumping = False

    def run(self) -> PublishReport:
        """Publish every message, waiting for the confirms; the report."""
        started = time.perf_counter()
        self.transport.start(on_ready=self.pump)
        self.transport.run()
        self.report.seconds = time.perf_counter() - started
        return self.report

    def pump(self) -> None:
        """Publish until the window of unconfirmed messages is full or nothing is left."""
        if self._pumping or not self.transport.ready:
            return
        self._pumping = True
        try:
            while self.outstanding < self.window and self.transport.ready:
                item = self._next()
                if item is None:
                    break
                message, attempt = item
                self.outstanding += 1
                self.transport.publish(message, functools.partial(self._confirmed, message, attempt))
        finally:
            self._pumping = False
        if self.exhausted and not self.retry and self.outstanding == 0:
            self.transport.stop()

    def _next(self) -> tuple[Outgoing, int] | None:
        if self.retry:
            return self.retry.popleft()
        if self.exhausted:
            return None
        try:
            return next(self.source), 1
        except StopIteration:
            self.exhausted = True
            return None

    def _confirmed(self, message: Outgoing, attempt: int, ok: bool, why: str) -> None:
        self.outstanding -= 1
        if ok:
            self.report.published += 1
            if self.on_confirmed:
                self.on_confirmed(message)
        elif attempt < self.max_attempts and "unroutable" not in why:
            self.report.resent += 1
            self.retry.append((message, attempt + 1))
        else:
            self.report.failed += 1
            self.report.failures.append((message.message_id, why))
        if self.transport.ready:
            self.transport.call_later(0, self.pump)


def publish_all(settings: Settings, messages: Iterable[Outgoing], window: int = 1000, **kwargs: Any) -> PublishReport:
    """Publish messages to the core vhost with a window of confirms; the report."""
    transport = AmqpTransport(
        settings.amqp_url,
        {"core": settings.core_vhost},
        confirm_timeout=settings.confirm_timeout_seconds,
        name="interchange-publisher",
        tls=settings.tls,
    )
    return StreamPublisher(transport, messages, window, **kwargs).run()

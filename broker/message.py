"""The nouns every part of Interchange passes around: what arrives, what is decided, what is sent.

- `Message`: one inbound AMQP message as the routing core sees it;
- `Plan`: what `broker.router.route()` decided must happen for it (audit entries, deliveries, dead letter);
- `Inbound`: one consumed message as a transport hands it over (ack/reject it by this);
- `Outgoing`: one publish the worker (or any runner) makes, to the core vhost or a recipient's;
- `Transport`: what the worker needs of a transport (`broker.transports.amqp`, `broker.transports.memory`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol

import orjson

from broker import topology


@dataclass(frozen=True, slots=True)
class Message:
    """An inbound AMQP message as the routing core sees it."""

    body: bytes
    content_type: str | None = None
    message_id: str | None = None
    correlation_id: str | None = None
    user_id: str | None = None
    headers: dict[str, Any] = field(default_factory=dict)
    redelivered: bool = False
    attempt: int = 0  # how many times a correction waiting for its original was decided before


@dataclass(slots=True)
class Inbound:
    """A consumed message as a transport hands it over, and where it came from (for ack/nack)."""

    target: str
    delivery_tag: int
    generation: int
    body: bytes
    properties: Any
    redelivered: bool


@dataclass(frozen=True, slots=True)
class Outgoing:
    """One publish: `target` is 'core' or a recipient id (which vhost it goes to)."""

    target: str
    exchange: str
    routing_key: str
    body: bytes
    message_id: str
    correlation_id: str | None
    headers: dict[str, Any]
    content_type: str = "application/json"


class Outcome(StrEnum):
    """What route() decided for one message."""

    ROUTED = "routed"  # decided: deliveries and withholdings, each audited
    REJECTED = "rejected"  # refused at ingress: a dead letter and a rejection entry
    DUPLICATE = "duplicate"  # this worker routed the same record (id and bytes) already: dropped
    WAITING = "waiting"  # a correction whose original is not audited yet: decided again later


@dataclass(slots=True)
class Plan:
    """What route() decided must happen for one message: audit entries, publishes, and the outcome."""

    outcome: Outcome
    record_id: str | None
    correlation_id: str | None
    audit_entries: list[dict[str, Any]] = field(default_factory=list)
    outputs: list[Outgoing] = field(default_factory=list)
    delivered: list[str] = field(default_factory=list)
    withheld: dict[str, str] = field(default_factory=dict)
    agreements: dict[str, str] = field(default_factory=dict)  # recipient -> agreement it was decided under
    reason: str | None = None
    source: str | None = None
    record_type: str | None = None
    record_time: str | None = None
    timings: dict[str, float] = field(default_factory=dict)
    dedup: str = ""  # record id + body fingerprint: the key for dropping duplicates
    error_type: str | None = None  # the exception's type when reason is internal_error

    @property
    def audit(self) -> Outgoing | None:
        """The plan's audit entries as one message (the worker batches several plans' entries instead)."""
        return audit_message(self.audit_entries) if self.audit_entries else None


def audit_message(entries: list[dict[str, Any]]) -> Outgoing:
    """One message to the audit queue holding the entries of one record or of a batch of records.

    Its batch id is the first entry's id, so the audit writer recognises a redelivered batch.
    """
    batch_id = entries[0]["entry_id"]
    first = entries[0]
    record_ids = {e.get("record_id") for e in entries}
    return Outgoing(
        "core",
        "",
        topology.AUDIT_QUEUE,
        orjson.dumps({"batch": batch_id, "entries": entries}),
        f"audit-{batch_id}",
        first.get("correlation_id") if len(record_ids) == 1 else None,
        {"x-record-id": (first.get("record_id") or "") if len(record_ids) == 1 else "", "x-entries": len(entries)},
    )


class Transport(Protocol):
    """Publish with confirms, consume with manual acks, timers: what the worker needs of a transport."""

    ready: bool

    def start(self, on_ready: Callable[[], None], on_lost: Callable[[str], None] | None = None) -> None:
        """Connect; call `on_ready` once every link is up and `on_lost` when one drops."""

    def consume(self, target: str, queue: str, prefetch: int, on_message: Callable[[Inbound], None]) -> None:
        """Consume `queue` on `target`'s vhost with manual acks and this prefetch."""

    def publish(self, out: Outgoing, callback: Callable[[bool, str], None]) -> None:
        """Publish with a confirm; `callback(ok, why)` runs when the broker confirms or refuses it."""

    def ack(self, inbound: Inbound, multiple: bool = False) -> None:
        """Acknowledge a delivery (and every earlier one on its channel when `multiple`)."""

    def reject(self, inbound: Inbound, requeue: bool = True) -> None:
        """Reject a delivery, back to its queue or (not requeued) to the dead-letter exchange."""

    def call_later(self, delay: float, callback: Callable[[], None]) -> None:
        """Run `callback` on the transport's own loop after `delay` seconds."""

    def run(self) -> None:
        """Run the loop until stop() is called."""

    def stop(self) -> None:
        """Stop the loop and close every link."""

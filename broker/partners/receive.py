"""The reference subscriber: how a partner system should consume its deliveries.

It consumes the recipient's inbox with manual acks, drops duplicates by `message_id` (at-least-once
delivery means a record can arrive twice, always with the same id), writes each delivery as one NDJSON
line with its headers (to stdout or a folder), and acks only after the line is written.  A correction or
retraction (header `x-supersedes`) is acknowledged on the vhost's `interchange.receipts` exchange.
"""

from __future__ import annotations

import base64
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import orjson

from broker import topology
from broker.config import Settings
from broker.transports.amqp import blocking_channel


@dataclass
class Delivery:
    """One delivery as a partner receives it."""

    message_id: str
    correlation_id: str | None
    content_type: str | None
    headers: dict[str, Any]
    body: bytes
    redelivered: bool

    def as_json(self) -> dict[str, Any]:
        """The delivery as one JSON object (the body parsed when it is JSON)."""
        if (self.content_type or "").endswith("json"):
            body: Any = orjson.loads(self.body)
        else:
            try:
                body = self.body.decode("utf-8")
            except UnicodeDecodeError:
                body = {"base64": base64.b64encode(self.body).decode()}
        return {
            "message_id": self.message_id,
            "correlation_id": self.correlation_id,
            "content_type": self.content_type,
            "headers": self.headers,
            "body": body,
        }


class SeenIds:
    """Message ids already written, persisted beside the output so a restart still drops duplicates."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.ids: set[str] = set()
        if path and path.exists():
            self.ids = set(path.read_text().split())
        self._fh = path.open("a") if path else None

    def add(self, message_id: str) -> bool:
        """Remember a message id; False when it was seen before (a duplicate)."""
        if message_id in self.ids:
            return False
        self.ids.add(message_id)
        if self._fh:
            self._fh.write(message_id + "\n")
            self._fh.flush()
        return True

    def close(self) -> None:
        """Close the file of seen ids."""
        if self._fh:
            self._fh.close()


def deliveries(
    settings: Settings,
    recipient: str,
    idle_seconds: float | None = 2.0,
    limit: int | None = None,
    url: str | None = None,
) -> Iterator[tuple[Delivery, Any, Any]]:
    """Consume a recipient's inbox; yields (delivery, channel, method) so the caller acks after writing."""
    connection, channel = blocking_channel(
        url or settings.amqp_url, settings.recipient_vhost(recipient), f"interchange-receive:{recipient}", settings.tls
    )
    channel.basic_qos(prefetch_count=200)
    count = 0
    try:
        for method, props, body in channel.consume(topology.INBOX_QUEUE, inactivity_timeout=idle_seconds):
            if method is None:
                break
            count += 1
            yield (
                Delivery(
                    props.message_id or "",
                    props.correlation_id,
                    props.content_type,
                    props.headers or {},
                    body,
                    method.redelivered,
                ),
                channel,
                method,
            )
            if limit is not None and count >= limit:
                break
    finally:
        if connection.is_open:
            channel.cancel()
            connection.close()


def acknowledge(channel: Any, delivery: Delivery, recipient: str) -> None:
    """Acknowledge a correction or retraction on the vhost's receipts exchange (after it is written)."""
    import datetime as dt

    import pika

    receipt = {
        "message_id": delivery.message_id,
        "recipient": recipient,
        "supersedes": delivery.headers.get("x-supersedes"),
        "received_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
    }
    channel.basic_publish(
        topology.RECEIPTS_EXCHANGE,
        "",
        orjson.dumps(receipt),
        pika.BasicProperties(
            content_type="application/json", delivery_mode=2, message_id=f"receipt-{delivery.message_id}"
        ),
    )


def receive(
    settings: Settings,
    recipient: str,
    out_dir: Path | None = None,
    stream: IO[str] | None = None,
    idle_seconds: float | None = 2.0,
    limit: int | None = None,
    url: str | None = None,
) -> dict[str, int]:
    """Write every new delivery as NDJSON, drop duplicates, ack each after writing. Returns counts."""
    counts = {"received": 0, "written": 0, "duplicates": 0}
    seen = SeenIds(out_dir / f"{recipient}.seen" if out_dir else None)
    if out_dir:
        out_dir.mkdir(parents=True, exist_ok=True)
    sink = (out_dir / f"{recipient}.ndjson").open("ab") if out_dir else None
    try:
        for delivery, channel, method in deliveries(settings, recipient, idle_seconds, limit, url):
            counts["received"] += 1
            if seen.add(delivery.message_id):
                line = orjson.dumps(delivery.as_json()) + b"\n"
                if sink:
                    sink.write(line)
                    sink.flush()
                    os.fsync(sink.fileno())
                else:
                    (stream or sys.stdout).write(line.decode())
                counts["written"] += 1
            else:
                counts["duplicates"] += 1
            if delivery.headers.get("x-supersedes"):
                acknowledge(channel, delivery, recipient)  # a correction: tell the exchange we have it
                counts["acknowledged"] = counts.get("acknowledged", 0) + 1
            channel.basic_ack(method.delivery_tag)
    finally:
        seen.close()
        if sink:
            sink.close()
    return counts

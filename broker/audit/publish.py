"""Governance operations audited like any disclosure: consult, hold, release, acknowledge.

The audit writer is the only process that appends to the log, so these entries are published to the
`interchange.audit` queue (confirmed, mandatory) exactly as the routing core publishes its entries.  When
RabbitMQ cannot take them, the operation is refused (TransportError): nobody reads the audit log, places a
hold or releases one without it being logged.
"""

from __future__ import annotations

import datetime as dt
import getpass
import os
import uuid
from typing import Any

import orjson

from broker import topology
from broker.config import Settings
from broker.errors import TransportError
from broker.transports.amqp import blocking_channel


def now_iso() -> str:
    """The current UTC time in ISO 8601 with microseconds and `Z`."""
    return dt.datetime.now(dt.UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def actor_of(name: str | None) -> dict[str, Any]:
    """Who is acting: --actor, else the login name; plus the host process for context."""
    user = name or os.environ.get("USER") or _login()
    return {"person": user, "tool": "interchange-cli"}


def _login() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no login name in a bare container
        return "unknown"


OUTCOMES = {"consult": "consulted", "hold": "held", "release": "released", "acknowledge": "acknowledged"}


def entry(operation: str, actor: dict[str, Any], justification: str, **fields: Any) -> dict[str, Any]:
    """A governance audit entry (consult, hold, release, acknowledge) by an actor, with its justification."""
    base: dict[str, Any] = {
        "entry_id": uuid.uuid4().hex,
        "time": now_iso(),
        "operation": operation,
        "outcome": OUTCOMES[operation],
        "reason": None,
        "actor": actor,
        "justification": justification,
        "record_id": None,
        "recipient": None,
        "agreement": None,
        "subject_keys": [],
        "purposes": [],
    }
    return base | fields


def publish_entries(settings: Settings, entries: list[dict[str, Any]]) -> None:
    """Publish one audit batch and wait for RabbitMQ's confirm; raises TransportError when it cannot."""
    import pika
    import pika.exceptions

    body = orjson.dumps({"batch": entries[0]["entry_id"], "entries": entries})
    try:
        connection, channel = blocking_channel(
            settings.amqp_url, settings.core_vhost, "interchange-governance", settings.tls
        )
    except Exception as exc:
        raise TransportError(f"cannot reach RabbitMQ to audit this operation, so it is refused: {exc}") from exc
    try:
        channel.confirm_delivery()
        channel.basic_publish(
            "",
            topology.AUDIT_QUEUE,
            body,
            pika.BasicProperties(
                content_type="application/json", delivery_mode=2, message_id=f"audit-{entries[0]['entry_id']}"
            ),
            mandatory=True,
        )
    except (pika.exceptions.AMQPError, OSError) as exc:
        raise TransportError(f"the audit entry was not confirmed, so the operation is refused: {exc!r}") from exc
    finally:
        if connection.is_open:
            connection.close()

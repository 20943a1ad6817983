"""Governance helpers behind the CLI: the agreements register and collecting correction receipts."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from typing import Any

import orjson

from broker import topology
from broker.audit import publish as auditpublish
from broker.config import Agreement, Registry, Settings
from broker.ops import logs
from broker.routing import corrections
from broker.transports.amqp import blocking_channel


def agreement_rows(
    agreements: Iterable[Agreement], today: dt.date, traffic: dict[str, dict[str, int]]
) -> list[dict[str, Any]]:
    """One row per agreement: status today, days to review and to expiry, delivered/withheld counts."""
    rows = []
    for a in agreements:
        counts = traffic.get(a.id, {})
        rows.append(
            {
                "agreement": a.id,
                "recipient": a.recipient,
                "status": a.status_on(today),
                "valid_from": a.valid_from.isoformat(),
                "valid_until": a.valid_until.isoformat(),
                "review_by": a.review_by.isoformat(),
                "days_to_review": (a.review_by - today).days,
                "days_to_expiry": (a.valid_until - today).days,
                "delivered": counts.get("delivered", 0),
                "withheld": counts.get("withheld", 0),
            }
        )
    return rows


def render_agreements(rows: list[dict[str, Any]]) -> str:
    """The agreements register as an aligned text table."""
    columns = (
        "agreement",
        "recipient",
        "status",
        "days_to_review",
        "days_to_expiry",
        "delivered",
        "withheld",
    )
    cells = [[_flag(c, r) for c in columns] for r in rows]
    widths = [max([len(c)] + [len(x[i]) for x in cells]) for i, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(x, widths, strict=True)) for x in cells]
    return "\n".join(lines)


def _flag(column: str, row: dict[str, Any]) -> str:
    value = row[column]
    if column in ("days_to_review", "days_to_expiry") and isinstance(value, int):
        return f"{value}{' OVERDUE' if value < 0 and column == 'days_to_review' else ''}" + (
            " (<30)" if 0 <= value < 30 else ""
        )
    return str(value)


def age(seconds: float) -> str:
    """A duration in seconds as days, hours or minutes (e.g. `2.5d`)."""
    if seconds >= 86400:
        return f"{seconds / 86400:.1f}d"
    if seconds >= 3600:
        return f"{seconds / 3600:.1f}h"
    return f"{seconds / 60:.0f}m"


def collect_receipts(settings: Settings, registry: Registry, limit: int = 10_000) -> list[tuple[str, str]]:
    """Read every recipient's receipts queue, audit each receipt as `acknowledge`, then ack it.

    The recipient is the vhost the receipt came from (a partner can only write in its own vhost), never
    what the body claims.  Returns (message id, recipient) for each receipt audited.
    """
    import pika.exceptions

    collected: list[tuple[str, str]] = []
    actor = {"system": "interchange", "role": "corrections-receipts"}
    for recipient in sorted(registry.recipients):
        connection, channel = blocking_channel(
            settings.amqp_url, settings.recipient_vhost(recipient), "interchange-receipts", settings.tls
        )
        try:
            tags: list[int] = []
            entries: list[dict[str, Any]] = []
            while len(entries) < limit:
                method, _props, body = channel.basic_get(topology.RECEIPTS_QUEUE)
                if method is None:
                    break
                tags.append(method.delivery_tag)
                try:
                    receipt = orjson.loads(body)
                except orjson.JSONDecodeError:
                    receipt = None
                if isinstance(receipt, dict) and receipt.get("message_id"):
                    entries.append(corrections.acknowledgement_entry(receipt, recipient, auditpublish.now_iso(), actor))
            if entries:
                auditpublish.publish_entries(settings, entries)
                collected += [(e["record_id"], recipient) for e in entries]
            if tags:
                channel.basic_ack(tags[-1], multiple=True)
        except pika.exceptions.ChannelClosedByBroker as exc:  # no receipts queue yet: topology not re-applied
            logs.get("interchange.corrections").warning("receipts_queue_missing", recipient=recipient, error=str(exc))
        finally:
            if connection.is_open:
                connection.close()
    return collected

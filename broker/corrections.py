"""Corrections and retractions reach every past recipient, and recipients acknowledge them.

A record with `supersedes: {id, kind: correction|retraction}` goes to every recipient that received the
earlier record, even when today's agreements would no longer route it (an expired or suspended agreement,
a condition no longer met): DPA 2018 s.38 says recipients of inaccurate data must be told.  It is projected
with the field list (and entity scope) of the agreement the original went under, and audited as `disclose`
with reason `correction_to_past_recipient`.  The recipient's own classification ceiling still applies.

`reach_past_recipients()` is pure; the routing core gets "who received record X" from
`Context.past_recipients` (by default the audit index, see `broker.runner`).  Recipients acknowledge on the
`interchange.receipts` exchange of their vhost with `{"message_id", "recipient"}`;
`governance.collect_receipts()` turns those into audited `acknowledge` entries, and `pending()` lists the
corrections not yet acknowledged.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from broker import scope
from broker.config import CLASSIFICATION_LEVELS, Agreement, Recipient
from broker.rules import Deliver, Withhold, _deliver, classification_level

REASON = "correction_to_past_recipient"
RECEIPTS_QUEUE = "interchange.receipts"


def reach_past_recipients(
    record: dict[str, Any],
    decisions: list[Deliver | Withhold],
    past: Iterable[Any],
    agreements: dict[str, Agreement],
    recipients: dict[str, Recipient],
) -> list[Deliver | Withhold]:
    """Decisions with a delivery added (or a withholding overturned) for every past recipient."""
    delivered = {d.recipient for d in decisions if isinstance(d, Deliver)}
    extra: dict[str, Deliver | Withhold] = {}
    for earlier in past:
        if earlier.recipient in delivered or earlier.recipient in extra:
            continue
        decision = _to_past_recipient(record, earlier, agreements, recipients)
        if decision is not None:
            extra[earlier.recipient] = decision
    if not extra:
        return decisions
    kept = [d for d in decisions if d.recipient not in extra and d.recipient is not None]
    return sorted(kept + list(extra.values()), key=lambda d: d.recipient or "")


def _to_past_recipient(
    record: dict[str, Any], earlier: Any, agreements: dict[str, Agreement], recipients: dict[str, Recipient]
) -> Deliver | Withhold | None:
    agreement, recipient = agreements.get(earlier.agreement or ""), recipients.get(earlier.recipient)
    if agreement is None or recipient is None or record.get("type") not in agreement.fields:
        return None  # the agreement or recipient was removed from configuration: nothing to project with
    if classification_level(record) > CLASSIFICATION_LEVELS[recipient.max_classification]:
        return Withhold(recipient.id, agreement, "classification_above_ceiling", "correction")
    view, _kept = scope.apply(agreement.scope.get(record["type"]), record, recipient.as_condition_subject())
    decision = _deliver(record, view, recipient.id, agreement)
    return Deliver(decision.recipient, agreement, decision.projection, decision.scoped, REASON)


# ---------------------------------------------------------------- acknowledgements


@dataclass(frozen=True)
class Pending:
    record_id: str
    supersedes: str
    kind: str
    recipient: str
    delivered_at: str
    waiting_seconds: float


def acknowledgement_entry(
    receipt: dict[str, Any], recipient: str, now: str, actor: dict[str, Any]
) -> dict[str, Any]:
    """The audit entry for one receipt (the vhost it arrived in names the recipient, not the body)."""
    import uuid

    return {
        "entry_id": uuid.uuid4().hex,
        "time": now,
        "operation": "acknowledge",
        "outcome": "acknowledged",
        "reason": None,
        "actor": actor,
        "record_id": str(receipt.get("message_id", ""))[:128],
        "recipient": recipient,
        "agreement": None,
        "subject_keys": [],
        "purposes": [],
        "received_at": str(receipt.get("received_at", ""))[:40] or None,
    }


def pending(index: Any, now: dt.datetime, acknowledged: Iterable[tuple[str, str]] = ()) -> list[Pending]:
    """Corrections delivered and not yet acknowledged by their recipient, oldest first."""
    from broker.auditindex import Query

    acked = set(acknowledged) | {
        (e["record_id"], e["recipient"]) for e in index.query(Query(operation="acknowledge"))
    }
    out = []
    for entry in index.query(Query(operation="disclose")):
        supersedes = entry.get("supersedes") or {}
        key = (entry["record_id"], entry["recipient"])
        if not supersedes or entry.get("outcome") != "delivered" or key in acked:
            continue
        acked.add(key)  # one line per correction and recipient
        then = dt.datetime.fromisoformat(entry["time"].replace("Z", "+00:00"))
        out.append(
            Pending(
                entry["record_id"],
                supersedes.get("id", ""),
                supersedes.get("kind", "correction"),
                entry["recipient"],
                entry["time"],
                max(0.0, (now - then).total_seconds()),
            )
        )
    return out

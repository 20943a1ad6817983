"""Corrections and retractions: only the origin supersedes its record, and past recipients get only what
today's checks allow.

A record with `supersedes: {id, kind: correction|retraction}` supersedes the record `id` published by the
*same origin agency* (lineage is keyed by (origin, id); ids are unique per origin only).  Before it is
decided, the routing core asks the audit index what became of that original (`Context.original`,
`broker.audit.index.Original`):

- not known yet (published moments before and not yet audited, or a delivery of it failed and it waits to
  be decided again): the correction waits (`broker.worker` re-decides it a bounded number of times), and is
  then dead-lettered `supersedes_unknown`, `supersedes_original_pending` or, if only other origins have a
  record with that id, `supersedes_foreign_record` (audited; `dlq replay` routes it once the original is known);
- known: today's agreements decide it like any new record, and every recipient that holds the original
  and is not sent it by today's agreements is decided under the agreement the original went under, with
  every check a new record takes except the agreement's lifecycle (DPA 2018 s.38: recipients of inaccurate
  data must be told, even after the agreement expired): provider, record type, classification ceiling,
  handling code, conditions, entity scope.  Passed: the correction, projected under that agreement, audited
  `disclose` with reason `correction_to_past_recipient`.  Failed: a **retraction notice** instead
  (`retraction_notice()`: record id, origin, superseded id, kind, reason code, no data), audited `disclose`
  with reason `retraction_notice`, no fields and no subject keys, and `withheld_reason` saying why the
  correction itself was withheld.

Recipients acknowledge corrections and notices alike on the `interchange.receipts` exchange of their vhost
with `{"message_id", "recipient"}`; `governance.collect_receipts()` turns those into audited `acknowledge`
entries, and `pending()` lists those not yet acknowledged.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import orjson

from broker import topology
from broker.audit.index import RETRACTION_NOTICE, Original, Query
from broker.config import Agreement
from broker.errors import FieldError, RejectReason, WithholdReason
from broker.routing import scope
from broker.routing.rules import Deliver, Rulebook, Withhold, _deliver

REASON = "correction_to_past_recipient"
RECEIPTS_QUEUE = "interchange.receipts"
NOTICE_EXCHANGE, NOTICE_ROUTING_KEY = topology.DELIVER_EXCHANGE, "interchange.retraction"
# the dead-letter reason of a correction whose original never became known, by the original's state
UNRESOLVED = {
    "unknown": RejectReason.SUPERSEDES_UNKNOWN,
    "foreign": RejectReason.SUPERSEDES_FOREIGN_RECORD,
    "pending": RejectReason.SUPERSEDES_ORIGINAL_PENDING,
}


@dataclass(frozen=True, slots=True)
class Retract:
    """A past recipient that the correction may not reach today: it is sent a retraction notice instead."""

    recipient: str
    agreement: Agreement | None
    agreement_id: str  # the agreement the original went under (it may be gone from configuration)
    reason: str  # why the correction itself is withheld from this recipient
    detail: str = ""

    outcome = "delivered"


def supersedes_id(record: dict[str, Any]) -> str | None:
    """The id of the record this one supersedes, if it supersedes one."""
    supersedes = record.get("supersedes")
    if isinstance(supersedes, dict) and isinstance(supersedes.get("id"), str) and supersedes["id"]:
        return supersedes["id"]
    return None


def unresolved(record: dict[str, Any], original: Original) -> tuple[str, list[FieldError]]:
    """The refusal of a correction whose original is still not known after the wait."""
    code = UNRESOLVED[original.state]
    text = {
        RejectReason.SUPERSEDES_UNKNOWN: "agency {origin} never had a record {id} decided by this exchange",
        RejectReason.SUPERSEDES_FOREIGN_RECORD: "record {id} was published by another agency; only its origin may "
        "supersede it and {origin} has no record {id}",
        RejectReason.SUPERSEDES_ORIGINAL_PENDING: "a delivery of record {id} from {origin} failed and it has not been "
        "delivered since; the correction may not overtake it",
    }[code].format(origin=record["origin"]["agency"], id=supersedes_id(record))
    return code, [FieldError(record["id"], "supersedes.id", code, text)]


def reach_past_recipients(
    record: dict[str, Any], decisions: list[Deliver | Withhold], original: Original, rulebook: Rulebook
) -> list[Deliver | Withhold | Retract]:
    """Today's decisions, with one for every holder of the original that today's agreements do not send
    the correction to: the correction under the original's agreement if it passes that agreement's checks,
    else a retraction notice."""
    delivered = {d.recipient for d in decisions if isinstance(d, Deliver)}
    agreements = {a.id: a for a in rulebook.agreements}
    extra: dict[str, Deliver | Retract] = {}
    for earlier in original.recipients:
        if earlier.recipient in delivered or earlier.recipient in extra:
            continue
        recipient = rulebook.recipients.get(earlier.recipient)
        if recipient is None:
            continue  # removed from configuration: it has no inbox any more to tell
        agreement = agreements.get(earlier.agreement or "")
        if agreement is None:
            extra[recipient.id] = Retract(recipient.id, None, earlier.agreement or "", WithholdReason.AGREEMENT_REMOVED)
            continue
        refusal = rulebook.refusal_to_past_recipient(record, recipient, agreement)
        if refusal is not None:
            extra[recipient.id] = Retract(recipient.id, agreement, agreement.id, refusal.reason, refusal.detail)
            continue
        view, _kept = scope.apply(agreement.scope.get(record["type"]), record, recipient.as_condition_subject())
        decision = _deliver(record, view, recipient.id, agreement)
        extra[recipient.id] = Deliver(decision.recipient, agreement, decision.projection, decision.scoped, REASON)
    if not extra:
        return list(decisions)
    kept: list[Deliver | Withhold | Retract] = [
        d for d in decisions if d.recipient not in extra and d.recipient is not None
    ]
    return sorted(kept + list(extra.values()), key=lambda d: d.recipient or "")


def retraction_notice(record: dict[str, Any], retract: Retract) -> tuple[bytes, dict[str, Any]]:
    """The body and headers of the notice sent instead of a correction: no data field of the record."""
    supersedes = record["supersedes"]
    body = {
        "notice": "retraction",
        "record_id": record["id"],
        "origin": record["origin"]["agency"],
        "supersedes": supersedes["id"],
        "kind": supersedes.get("kind", "correction"),
        "reason": retract.reason,
    }
    headers: dict[str, Any] = {
        "x-notice": "retraction",
        "x-agreement": retract.agreement_id,
        "x-origin-agency": record["origin"]["agency"],
        "x-record-type": record["type"],
        "x-supersedes": supersedes["id"],
        "x-supersedes-kind": supersedes.get("kind", "correction"),
        "x-retraction-reason": retract.reason,
        "x-classification": "OFFICIAL",
    }
    if retract.agreement is not None:
        headers["x-lawful-basis"] = retract.agreement.lawful_basis
        headers["x-purposes"] = ",".join(retract.agreement.purposes)
    return orjson.dumps(body), headers


def as_retraction_entry(entry: dict[str, Any], retract: Retract, body_sha256: str | None) -> dict[str, Any]:
    """The audit entry of a notice, from the one the decision builder made for it: a disclosure of no
    fields and of nobody, saying why the correction itself was withheld."""
    entry = dict(entry)
    entry.pop("detail", None)
    entry.update(
        operation="disclose",
        outcome="delivered",
        reason=RETRACTION_NOTICE,
        agreement=retract.agreement_id,
        withheld_reason=retract.reason,
        withheld_detail=retract.detail,
        fields_disclosed=[],
        fields_withheld=[],
        subject_keys=[],
        body_sha256=body_sha256,
    )
    return entry


# ---------------------------------------------------------------- acknowledgements


@dataclass(frozen=True)
class Pending:
    """A correction or retraction delivered to a recipient and not yet acknowledged."""

    record_id: str
    supersedes: str
    kind: str
    recipient: str
    delivered_at: str
    waiting_seconds: float


def acknowledgement_entry(receipt: dict[str, Any], recipient: str, now: str, actor: dict[str, Any]) -> dict[str, Any]:
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
    acked = set(acknowledged) | {(e["record_id"], e["recipient"]) for e in index.query(Query(operation="acknowledge"))}
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

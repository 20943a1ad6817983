"""The flow of one record, from the bytes a force published to the plan of what must be sent.

    route(message, context) -> Plan

1. refuse what is too big or not JSON;            -> dead letter + audit `rejected`
2. validate against the common schema and check identifiers;
3. check the origin agency, the classification and the publisher's identity;
4. decide, for each recipient an agreement covers, deliver or withhold (broker.routing.rules);
5. render each recipient's view and build one audit message holding every decision.

Everything here is pure: no I/O, no clock except `context.now`.  `broker.worker` carries a Plan out:
audit first (confirmed), then deliveries or the dead letter (confirmed), then the input is acked.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import hmac
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeGuard

import orjson

from broker import topology
from broker.audit import entries as audit
from broker.audit.index import Original
from broker.config import CLASSIFICATION_LEVELS, Registry, Settings
from broker.errors import INTERNAL_ERROR, DataError, FieldError, RejectReason, WithholdReason
from broker.message import Message, Outcome, Outgoing, Plan
from broker.routing import corrections, jsonsafe
from broker.routing.projection import without_handling_text
from broker.routing.rules import Deliver, Rulebook, Withhold
from broker.routing.views import DATASCHEMA_HEADER, notice_id, view_id

ACCEPTED_CONTENT_TYPES = (None, "", "application/json", "application/cloudevents+json")
PUBLISHER_HEADER = "x-interchange-publisher"  # set by `dlq replay`: the publisher a record first came from

Renderer = Callable[[dict[str, Any]], tuple[bytes, str]]


def dedup_key(record_id: str, body: bytes) -> str:
    """Copies of one record (same id, same bytes) share this key; another record reusing the id does not."""
    return f"{record_id}\x00{hash(body) & 0xFFFFFFFFFFFF:x}"


def common_json(record: dict[str, Any]) -> tuple[bytes, str]:
    """The common schema JSON rendering: a recipient with no outbound format receives the record as is."""
    return orjson.dumps(record), "application/json"


@dataclass
class Context:
    """What route() needs, built once at start-up."""

    settings: Settings
    registry: Registry
    validator: Any
    rulebook: Rulebook
    renderers: dict[str, Renderer] = field(default_factory=dict)
    actor: dict[str, Any] = field(default_factory=dict)
    seen: Callable[[str], bool] = lambda _record_id: False
    clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC)
    # what became of record (origin, id), the one a correction supersedes (broker.routing.corrections); the runner
    # gives workers the audit index, tests a dict
    original: Callable[[str, str], Original] = lambda _origin, _record_id: Original("unknown")

    @classmethod
    def build(cls, settings: Settings, registry: Registry, validator: Any, **kwargs: Any) -> Context:
        """A context with its Rulebook compiled from the registry."""
        rulebook = Rulebook(registry.agreements, registry.recipients, registry.agencies)
        return cls(settings, registry, validator, rulebook, **kwargs)


def route(message: Message, ctx: Context) -> Plan:
    """Decide what must be published for one inbound message: a Plan for every input, never an exception.

    Anything unexpected becomes a dead letter with reason `internal_error` naming the exception's type.
    """
    now = ctx.clock()
    try:
        return _route(message, ctx, now)
    except Exception as exc:  # noqa: BLE001 - one record must never stop the records behind it
        return internal_error(message, exc, ctx, now)


def internal_error(message: Message, exc: BaseException, ctx: Context, now: dt.datetime) -> Plan:
    """The plan for a record the routing core failed on: dead letter and audit entry name only the
    exception's type (never its text, which may quote the payload)."""
    error_type = type(exc).__name__
    error = FieldError(
        None,
        "",
        INTERNAL_ERROR,
        f"the exchange failed on this record ({error_type}); it is kept in the dead-letter queue for an operator",
    )
    plan = _reject(message, None, (INTERNAL_ERROR, [error]), ctx, now, {})
    plan.audit_entries[0]["error_type"] = error_type
    plan.outputs[0].headers["x-interchange-error-type"] = error_type
    plan.error_type = error_type
    return plan


def _route(message: Message, ctx: Context, now: dt.datetime) -> Plan:
    started = time.perf_counter()
    timings: dict[str, float] = {}
    record, refusal = _parse(message, ctx)
    timings["parse"] = time.perf_counter() - started
    if refusal is not None:
        return _reject(message, record, refusal, ctx, now, timings)
    assert record is not None
    key = dedup_key(record["id"], message.body)
    if ctx.seen(key):
        return Plan(Outcome.DUPLICATE, record["id"], record.get("correlation_id"), timings=timings, dedup=key)

    mark = time.perf_counter()
    refusal = _admit(record, message, ctx)
    timings["validate"] = time.perf_counter() - mark
    if refusal is not None:
        return _reject(message, record, refusal, ctx, now, timings)

    mark = time.perf_counter()
    original = None
    supersedes = corrections.supersedes_id(record)
    if supersedes is not None:  # a correction is never decided before its original (broker.routing.corrections)
        original = ctx.original(record["origin"]["agency"], supersedes)
        if original.state != "known":
            if message.attempt < ctx.settings.correction_wait_attempts:
                return Plan(
                    Outcome.WAITING,
                    record["id"],
                    record.get("correlation_id"),
                    reason=original.state,
                    source=record["origin"]["agency"],
                    record_type=record["type"],
                    timings=timings,
                )
            return _reject(message, record, corrections.unresolved(record, original), ctx, now, timings)
    decisions: list[Any] = ctx.rulebook.decide(record, now)
    if original is not None:
        decisions = corrections.reach_past_recipients(record, decisions, original, ctx.rulebook)
    timings["decide"] = time.perf_counter() - mark
    plan = _deliver(record, message, decisions, ctx, now, timings)
    plan.dedup = key
    return plan


# ------------------------------------------------------------------ steps

Refusal = tuple[str, list[FieldError]]


def _parse(message: Message, ctx: Context) -> tuple[dict[str, Any] | None, Refusal | None]:
    def refuse(reason: str, path: str, text: str) -> tuple[None, Refusal]:
        return None, (reason, [FieldError(message.message_id, path, reason, text)])

    if len(message.body) > ctx.settings.max_body_bytes:
        return refuse(
            RejectReason.BODY_TOO_LARGE,
            "",
            f"body of {len(message.body)} bytes exceeds the limit of {ctx.settings.max_body_bytes}",
        )
    content_type = (message.content_type or "").split(";")[0].strip().lower()
    if content_type not in ACCEPTED_CONTENT_TYPES:
        return refuse(
            RejectReason.UNSUPPORTED_CONTENT_TYPE,
            "",
            f"content type {message.content_type!r} is not accepted; publish common-schema JSON (application/json)",
        )
    try:
        record = orjson.loads(message.body)
    except orjson.JSONDecodeError as exc:
        return refuse(RejectReason.MALFORMED_JSON, "", f"not valid JSON: {exc}")
    duplicate = jsonsafe.duplicate_key(message.body, record)
    if duplicate is not None:
        return refuse(RejectReason.MALFORMED_JSON, duplicate, f"key {duplicate!r} appears twice in one object")
    if not isinstance(record, dict):
        return refuse(RejectReason.SCHEMA_INVALID, "", f"a record must be a JSON object, not {type(record).__name__}")
    if not isinstance(record.get("id"), str) or not record["id"]:
        return record, (
            RejectReason.SCHEMA_INVALID,
            [FieldError(message.message_id, "id", RejectReason.SCHEMA_INVALID, "every record needs a string id")],
        )
    return record, None


def _admit(record: dict[str, Any], message: Message, ctx: Context) -> Refusal | None:
    errors = ctx.validator.validate(record)
    if errors:
        codes = {e.code for e in errors}
        return (
            RejectReason.IDENTIFIER_INVALID
            if codes == {RejectReason.IDENTIFIER_INVALID}
            else RejectReason.SCHEMA_INVALID
        ), list(errors)
    record_id = record["id"]
    agency_code = record["origin"]["agency"]
    agency = ctx.registry.agencies.get(agency_code)
    if agency is None:
        return RejectReason.UNKNOWN_AGENCY, [
            FieldError(
                record_id,
                "origin.agency",
                RejectReason.UNKNOWN_AGENCY,
                f"agency {agency_code!r} is not registered with this exchange",
            )
        ]
    tier = record["classification"]["tier"]
    if CLASSIFICATION_LEVELS.get(tier, 4) >= CLASSIFICATION_LEVELS["SECRET"]:
        return RejectReason.CLASSIFICATION_NOT_PERMITTED, [
            FieldError(
                record_id,
                "classification.tier",
                RejectReason.CLASSIFICATION_NOT_PERMITTED,
                f"{tier} material must never enter the exchange",
            )
        ]
    # a replayed record names the publisher it first came from (broker.ops.dlq): that one is checked too
    first = message.headers.get(PUBLISHER_HEADER) if isinstance(message.headers, dict) else None
    first = first.decode(errors="replace") if isinstance(first, bytes) else first
    for publisher, required in ((message.user_id, ctx.settings.require_publisher), (first, False)):
        if (publisher or required) and publisher not in agency.publishers:
            return RejectReason.PUBLISHER_NOT_ORIGIN, [
                FieldError(
                    record_id,
                    "origin.agency",
                    RejectReason.PUBLISHER_NOT_ORIGIN,
                    f"publisher {publisher or '(none)'!r} may not publish as agency {agency_code!r}",
                )
            ]
    return None


def _deliver(
    record: dict[str, Any],
    message: Message,
    decisions: list[Any],
    ctx: Context,
    now: dt.datetime,
    timings: dict[str, float],
) -> Plan:
    mark = time.perf_counter()
    record_id, correlation_id = record["id"], record.get("correlation_id")
    plan = Plan(
        Outcome.ROUTED,
        record_id,
        correlation_id,
        source=record["origin"]["agency"],
        record_type=record["type"],
        record_time=record.get("time"),
        timings=timings,
    )
    hashes: dict[str, str] = {}
    sizes: dict[str, int] = {}
    record_headers = _record_headers(record)
    decisions = list(decisions)
    for i, decision in enumerate(decisions):
        if decision.recipient and decision.agreement:
            plan.agreements[decision.recipient] = decision.agreement.id
        if isinstance(decision, corrections.Retract):  # a past recipient told to stop relying on the original
            if ctx.registry.recipients[decision.recipient].public:  # open data: only the opaque Crime ID
                body, headers = _public_retraction(record, decision, ctx)
                message_id = _public_message_id(record, body, ctx)
                headers[DATASCHEMA_HEADER] = notice_id(public=True)
            else:
                body, headers = corrections.retraction_notice(record, decision)
                message_id = record_id
                headers[DATASCHEMA_HEADER] = notice_id()
            hashes[decision.recipient] = hashlib.sha256(body).hexdigest()
            plan.agreements[decision.recipient] = decision.agreement_id
            plan.outputs.append(
                Outgoing(
                    decision.recipient,
                    corrections.NOTICE_EXCHANGE,
                    corrections.NOTICE_ROUTING_KEY,
                    body,
                    message_id,
                    None,
                    headers,
                )
            )
            plan.delivered.append(decision.recipient)
        elif isinstance(decision, Deliver):
            recipient = ctx.registry.recipients[decision.recipient]
            render = ctx.renderers.get(recipient.format, common_json)
            dataschema = view_id(recipient.id, decision.agreement.id, record["type"], recipient.format)
            view = decision.projection.record
            if recipient.format in (None, "", "common-json"):  # the body names the view schema it is valid against
                view = {**view, "dataschema": dataschema}
            try:
                body, content_type = render(view)
            except DataError as exc:  # the recipient's format cannot carry this record: withhold, audited
                code = exc.errors[0].code if exc.errors else exc.reason
                decisions[i] = Withhold(
                    decision.recipient, decision.agreement, WithholdReason.RECIPIENT_FORMAT_ERROR, code
                )
                plan.withheld[decision.recipient] = WithholdReason.RECIPIENT_FORMAT_ERROR
                continue
            hashes[decision.recipient] = hashlib.sha256(body).hexdigest()
            sizes[decision.recipient] = len(body)
            if recipient.public:  # open data: the properties must not name the record either
                plan.outputs.append(
                    Outgoing(
                        decision.recipient,
                        topology.DELIVER_EXCHANGE,
                        record["type"],
                        body,
                        _public_message_id(record, body, ctx),
                        None,
                        _public_headers(decision) | {DATASCHEMA_HEADER: dataschema},
                        content_type,
                    )
                )
            else:
                plan.outputs.append(
                    Outgoing(
                        decision.recipient,
                        topology.DELIVER_EXCHANGE,
                        record["type"],
                        body,
                        record_id,
                        correlation_id,
                        _delivery_headers(record_headers, decision) | {DATASCHEMA_HEADER: dataschema},
                        content_type,
                    )
                )
            plan.delivered.append(decision.recipient)
        else:
            plan.withheld[decision.recipient or "none"] = decision.reason
    timings["render"] = time.perf_counter() - mark
    mark = time.perf_counter()
    entries = audit.decision_entries(record, decisions, _context_of(message, ctx), _iso(now), hashes, sizes)
    retracts = {d.recipient: d for d in decisions if isinstance(d, corrections.Retract)}
    if retracts:
        entries = [
            corrections.as_retraction_entry(e, retracts[e["recipient"]], hashes.get(e["recipient"]))
            if e.get("recipient") in retracts
            else e
            for e in entries
        ]
    plan.audit_entries = entries
    timings["audit"] = time.perf_counter() - mark
    return plan


def _reject(
    message: Message,
    record: dict[str, Any] | None,
    refusal: Refusal,
    ctx: Context,
    now: dt.datetime,
    timings: dict[str, float],
) -> Plan:
    reason, errors = refusal
    record_id = record.get("id") if isinstance(record, dict) and isinstance(record.get("id"), str) else None
    record_id = record_id or message.message_id
    correlation_id = (record.get("correlation_id") if isinstance(record, dict) else None) or message.correlation_id
    # a refused record's id and correlation id are unchecked: AMQP short strings hold at most 255 bytes
    correlation_id = correlation_id if _short_string(correlation_id) else message.correlation_id
    error_paths = [{"path": e.path, "code": e.code} for e in errors[:100]]
    entry = audit.rejection_entry(record, reason, error_paths, _context_of(message, ctx), _iso(now))
    headers = {
        "x-interchange-reason": reason,
        "x-interchange-errors": orjson.dumps([e.as_dict() | {"record_id": record_id} for e in errors[:100]]).decode(),
        "x-interchange-rejected-at": _iso(now),
        "x-original-user-id": message.user_id or "",
        "x-original-content-type": message.content_type or "",
    }
    dead_id = record_id if _short_string(record_id) else entry["entry_id"]
    dead = Outgoing(
        "core",
        topology.DLX,
        reason,
        message.body,
        dead_id,
        correlation_id,
        headers,
        message.content_type or "application/octet-stream",
    )
    source = (
        (record.get("origin") or {}).get("agency")
        if isinstance(record, dict) and isinstance(record.get("origin"), dict)
        else None
    )
    return Plan(
        Outcome.REJECTED,
        record_id,
        correlation_id,
        audit_entries=[entry],
        outputs=[dead],
        reason=reason,
        source=source,
        record_type=record.get("type") if isinstance(record, dict) else None,
        timings=timings,
    )


# ------------------------------------------------------------------ helpers


def _record_headers(record: dict[str, Any]) -> dict[str, Any]:
    """The headers every delivery of one record carries (computed once per record)."""
    headers: dict[str, Any] = {
        "x-classification": audit.classification_label(record),
        "x-record-type": record["type"],
        "x-origin-agency": record["origin"]["agency"],
    }
    handling = record.get("handling")
    if handling:  # the marking only: free text travels in the body, where an agreement lists it
        if isinstance(handling.get("conditions"), dict) and "text" in handling["conditions"]:
            handling = without_handling_text(handling)
        headers["x-handling"] = orjson.dumps(handling).decode()
    supersedes = record.get("supersedes")
    if supersedes:
        headers["x-supersedes"] = supersedes.get("id", "")
        headers["x-supersedes-kind"] = supersedes.get("kind", "correction")
    return headers


@functools.lru_cache(maxsize=1024)
def _agreement_headers(agreement_id: str, lawful_basis: str, purposes: tuple[str, ...]) -> tuple[tuple[str, str], ...]:
    return (("x-agreement", agreement_id), ("x-lawful-basis", lawful_basis), ("x-purposes", ",".join(purposes)))


def _delivery_headers(record_headers: dict[str, Any], decision: Deliver) -> dict[str, Any]:
    agreement = decision.agreement
    headers = dict(_agreement_headers(agreement.id, agreement.lawful_basis, agreement.purposes))
    headers.update(record_headers)
    return headers


def _public_message_id(record: dict[str, Any], body: bytes, ctx: Context) -> str:
    """A public delivery's message id: HMAC-SHA256 of (origin, record id) under the open-data key, so a
    redelivered record keeps its id (the partner drops the copy), two records never share one (two ASB rows
    can be byte-identical), and nobody without the key can test a guessed force reference against it."""
    key = ctx.settings.open_data_key_or_dev().encode()
    if not key:  # no anonymising renderer renders without the key; a keyless one gets the body's hash
        return hashlib.sha256(body).hexdigest()
    message = f"message-id\x00{record['origin']['agency']}\x00{record['id']}".encode()
    return hmac.new(key, message, hashlib.sha256).hexdigest()


def public_crime_id(origin: str, lineage_id: str, key: str) -> str:
    """The open-data Crime ID of a crime (its original record id): HMAC-SHA256 under the open-data key, as
    the crime-map-csv renderer computes it, so a retraction names the row it withdraws and nothing else."""
    return hmac.new(key.encode(), f"{origin}\x00{lineage_id}".encode(), hashlib.sha256).hexdigest()


def _public_retraction(record: dict[str, Any], retract: Any, ctx: Context) -> tuple[bytes, dict[str, Any]]:
    """A retraction to a public recipient: the withdrawn row's Crime ID only; no record id, origin or reason."""
    body = {
        "notice": "retraction",
        "crime_id": public_crime_id(
            record["origin"]["agency"], record["supersedes"]["id"], ctx.settings.open_data_key_or_dev()
        ),
    }
    headers = {
        "x-notice": "retraction",
        "x-agreement": retract.agreement_id,
        "x-record-type": record["type"],
        "x-supersedes-kind": record["supersedes"].get("kind", "correction"),
    }
    return orjson.dumps(body), headers


def _public_headers(decision: Deliver) -> dict[str, Any]:
    """A public recipient's headers: the agreement, the record type and whether it corrects or retracts an
    earlier row (whose opaque id its body repeats), nothing that names the record: no handling text,
    superseded id, origin or classification."""
    view = decision.projection.record
    headers = dict(
        _agreement_headers(decision.agreement.id, decision.agreement.lawful_basis, decision.agreement.purposes)
    ) | {"x-record-type": view["type"]}
    if isinstance(view.get("supersedes"), dict):
        headers["x-supersedes-kind"] = str(view["supersedes"].get("kind", "correction"))
    return headers


def _context_of(message: Message, ctx: Context) -> dict[str, Any]:
    actor = dict(ctx.actor)
    if message.user_id:
        actor["publisher"] = message.user_id
    return {"actor": actor, "message_id": message.message_id, "correlation_id": message.correlation_id}


def _short_string(value: Any) -> TypeGuard[str]:
    return isinstance(value, str) and 0 < len(value.encode("utf-8", "surrogatepass")) <= 255


def _iso(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


iso = _iso  # an audit timestamp: UTC, microseconds, `Z`

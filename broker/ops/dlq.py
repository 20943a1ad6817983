"""Dead-letter triage and replay: browse `interchange.dead`, show a redacted view, replay, purge.

Browsing takes every message with basic.get and holds it unacknowledged on one channel, so the view is a
consistent snapshot and two operators never act on the same dead letter at once; closing the channel
returns whatever was not acted on to the queue, unchanged.

Replay, for each chosen dead letter, in this order:
  1. skip it if the audit log already shows its record routed after it was dead-lettered (a replay that
     crashed between republishing and removing it): it is removed, never sent twice;
  2. re-check the original publisher (the AMQP user_id the record first arrived with) against its origin
     agency as the worker does; a letter that fails stays dead-lettered, so a refused spoof stays refused;
  3. publish a `replay` audit entry and wait for the confirm (nothing leaves unaudited);
  4. republish the original bytes to where the record died (the ingress, or the audit queue for an audit
     batch) with the SAME message_id and the original publisher in `x-interchange-publisher` (the worker
     refuses a record whose header names a publisher its origin does not have), and wait for the confirm;
  5. only then ack (remove) the dead letter.
The routing worker decides the record again under the agreements and agencies it has loaded now; every
delivery carries the record id as message_id, so even a duplicate that slipped through is dropped by the
partner.  Purge removes dead letters older than an age, each removal audited.
"""

from __future__ import annotations

import datetime as dt
import getpass
import hashlib
import os
import re
import socket
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pika

from broker import topology
from broker.audit import entries as audit
from broker.audit.log import LOG_NAME, read_entries
from broker.config import Agency, Settings, load_agencies
from broker.errors import TransportError
from broker.ops import logs
from broker.transports.amqp import blocking_channel

REPLAY_HEADER = "x-interchange-replay"
PUBLISHER_HEADER = "x-interchange-publisher"  # the publisher a replayed record first arrived with


@dataclass
class DeadLetter:
    """One message on interchange.dead, as the operator sees it (the body is never printed raw)."""

    delivery_tag: int
    message_id: str
    reason: str
    source: str
    record_type: str
    correlation_id: str | None
    rejected_at: dt.datetime | None
    died_in: str
    headers: dict[str, Any]
    body: bytes
    content_type: str | None
    record: dict[str, Any] | None = field(default=None, repr=False)
    publisher: str = ""  # the AMQP user_id the record first arrived with ("" when it had none)

    @property
    def age_seconds(self) -> float | None:
        """Seconds since the record was dead-lettered, when known."""
        if self.rejected_at is None:
            return None
        return (dt.datetime.now(dt.UTC) - self.rejected_at).total_seconds()


def dead_letter(tag: int, props: Any, body: bytes) -> DeadLetter:
    """Read reason, source and time from the headers the worker (or RabbitMQ's x-death) set. Pure."""
    headers = dict(props.headers or {})
    record = _json_object(body)
    death = (headers.get("x-death") or [{}])[0]
    reason = _text(headers.get("x-interchange-reason")) or f"rabbitmq_{_text(death.get('reason')) or 'unknown'}"
    given = record.get("origin") if record else None
    origin: dict[str, Any] = given if isinstance(given, dict) else {}
    rejected = _time(_text(headers.get("x-interchange-rejected-at"))) or _death_time(death) or _amqp_time(props)
    return DeadLetter(
        tag,
        props.message_id or "",
        reason,
        str(origin.get("agency") or "unknown"),
        str((record or {}).get("type") or "unknown"),
        props.correlation_id,
        rejected,
        _text(headers.get("x-first-death-queue")) or topology.ROUTE_QUEUE,
        headers,
        body,
        _text(headers.get("x-original-content-type")) or props.content_type,
        record,
        # the worker's dead letter names it in a header; one RabbitMQ dead-lettered kept its own user_id
        _text(headers.get("x-original-user-id"))
        or _text(headers.get(PUBLISHER_HEADER))
        or _text(getattr(props, "user_id", None)),
    )


# ---------------------------------------------------------------- browsing


class DeadLetterQueue:
    """A browse session on the core vhost's interchange.dead (use as a context manager)."""

    def __init__(self, settings: Settings, limit: int = 100_000) -> None:
        self.settings = settings
        self.limit = limit
        self.connection, self.channel = blocking_channel(
            settings.amqp_url, settings.core_vhost, "interchange-dlq", settings.tls
        )
        self.publisher = self.connection.channel()
        self.publisher.confirm_delivery()
        self.letters: list[DeadLetter] = []

    def __enter__(self) -> DeadLetterQueue:
        return self

    def __exit__(self, *_exc: Any) -> None:
        if self.connection.is_open:
            self.connection.close()  # whatever was not acked goes back to the queue

    def browse(self) -> list[DeadLetter]:
        """Fetch dead letters (unacknowledged, so they stay) up to the limit."""
        while len(self.letters) < self.limit:
            method, props, body = self.channel.basic_get(topology.DEAD_QUEUE, auto_ack=False)
            if method is None:
                break
            self.letters.append(dead_letter(method.delivery_tag, props, body))
        return self.letters

    def remove(self, letter: DeadLetter) -> None:
        """Remove a dead letter from the queue."""
        self.channel.basic_ack(letter.delivery_tag)

    def publish(self, exchange: str, routing_key: str, body: bytes, properties: pika.BasicProperties) -> None:
        """Publish mandatory and persistent; raises TransportError unless RabbitMQ confirms it."""
        try:
            self.publisher.basic_publish(exchange, routing_key, body, properties, mandatory=True)
        except (pika.exceptions.UnroutableError, pika.exceptions.NackError) as exc:
            raise TransportError(f"publish to {exchange or routing_key!r} not confirmed: {exc!r}") from exc


@contextmanager
def opened(settings: Settings) -> Iterator[DeadLetterQueue]:
    """The dead-letter queue, browsed, for the duration of the `with` block."""
    queue = DeadLetterQueue(settings)
    with queue:
        queue.browse()
        yield queue


# ---------------------------------------------------------------- triage views (pure)


def summary(letters: list[DeadLetter]) -> dict[str, Any]:
    """Counts by reason and by (reason, source), and the oldest age per reason."""
    by_reason = Counter(letter.reason for letter in letters)
    by_source = Counter((letter.reason, letter.source) for letter in letters)
    oldest: dict[str, float] = {}
    for letter in letters:
        if letter.age_seconds is not None:
            oldest[letter.reason] = max(oldest.get(letter.reason, 0.0), letter.age_seconds)
    return {
        "total": len(letters),
        "by_reason": dict(by_reason.most_common()),
        "by_reason_and_source": [{"reason": r, "source": s, "count": n} for (r, s), n in by_source.most_common()],
        "oldest_seconds": {r: round(s) for r, s in oldest.items()},
    }


SAFE_ENVELOPE = (
    "specversion",
    "id",
    "source",
    "type",
    "time",
    "dataschema",
    "origin",
    "classification",
    "supersedes",
)


def redacted(letter: DeadLetter) -> dict[str, Any]:
    """What `dlq show` prints: headers, errors and the body's shape, with no names, dates or identifiers."""
    secrets = _leaf_strings(letter.record.get("data")) if letter.record else set()
    errors = _json_list(letter.headers.get("x-interchange-errors"))
    view: dict[str, Any] = {
        "message_id": letter.message_id,
        "reason": letter.reason,
        "source": letter.source,
        "record_type": letter.record_type,
        "correlation_id": letter.correlation_id,
        "rejected_at": letter.rejected_at.isoformat() if letter.rejected_at else None,
        "died_in": letter.died_in,
        "errors": [
            {
                "path": e.get("path"),
                "code": e.get("code"),
                "message": _scrub(str(e.get("message", "")), secrets),
            }
            for e in errors
            if isinstance(e, dict)
        ],
        "headers": {
            k: _text(v)
            for k, v in letter.headers.items()
            if k.startswith("x-") and k not in ("x-interchange-errors", "x-death")
        },
        "body": {
            "bytes": len(letter.body),
            "sha256": hashlib.sha256(letter.body).hexdigest(),
            "content_type": letter.content_type,
        },
    }
    if letter.record is not None:
        record = letter.record
        view["body"]["envelope"] = {k: record[k] for k in SAFE_ENVELOPE if k in record}
        view["body"]["data"] = shape(record.get("data"))
    return view


def shape(value: Any) -> Any:
    """The structure of a value with every leaf replaced by its type (and a string's length)."""
    if isinstance(value, dict):
        return {str(k): shape(v) for k, v in value.items()}
    if isinstance(value, list):
        return [shape(v) for v in value]
    if isinstance(value, str):
        return f"<string, {len(value)} chars>"
    if isinstance(value, bool) or value is None:
        return value
    return f"<{type(value).__name__}>"


def select(
    letters: list[DeadLetter],
    reason: str | None = None,
    ids: list[str] | None = None,
    older_than: dt.timedelta | None = None,
) -> list[DeadLetter]:
    """The dead letters matching a reason, ids and a minimum age."""
    chosen = letters
    if reason:
        chosen = [x for x in chosen if x.reason == reason]
    if ids:
        chosen = [x for x in chosen if x.message_id in set(ids)]
    if older_than is not None:
        chosen = [x for x in chosen if x.age_seconds is not None and x.age_seconds > older_than.total_seconds()]
    return chosen


def parse_age(text: str) -> dt.timedelta:
    """'7d', '12h', '30m', '45s' -> timedelta; ValueError otherwise."""
    units = {"d": 86400, "h": 3600, "m": 60, "s": 1}
    text = text.strip().lower()
    if len(text) < 2 or text[-1] not in units or not text[:-1].isdigit():
        raise ValueError(f"{text!r} is not an age like 7d, 12h, 30m or 45s")
    return dt.timedelta(seconds=int(text[:-1]) * units[text[-1]])


# ---------------------------------------------------------------- acting


@dataclass
class Outcome:
    """What a replay or purge did: done, skipped (with why) and failed (with why)."""

    done: list[str] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)


def replay(queue: DeadLetterQueue, letters: list[DeadLetter], operator: dict[str, Any]) -> Outcome:
    """Replay each letter (audit, republish, then remove); see the module docstring for why this order."""
    outcome, log = Outcome(), logs.get("interchange.dlq")
    routed = routed_since(Path(queue.settings.audit_dir))
    agencies = load_agencies(queue.settings.agencies_file)
    for letter in letters:
        with logs.record_context(letter.message_id, letter.correlation_id):
            if _already_routed(letter, routed):
                queue.remove(letter)
                outcome.skipped.append((letter.message_id, "already routed after it was dead-lettered; removed"))
                log.info("dlq_replay_skipped", reason=letter.reason, why="already_routed")
                continue
            refusal = publisher_refusal(letter, agencies, queue.settings.require_publisher)
            if refusal is not None:
                outcome.failed.append((letter.message_id, refusal))
                log.warning("dlq_replay_refused", reason=letter.reason, why="publisher_not_origin")
                continue
            try:
                _audit(queue, letter, "replay", "replayed", operator)
                exchange, routing_key = _destination(letter)
                queue.publish(exchange, routing_key, letter.body, _replay_properties(letter))
            except TransportError as exc:
                outcome.failed.append((letter.message_id, str(exc)))
                log.warning("dlq_replay_failed", reason=letter.reason, error=str(exc))
                continue
            queue.remove(letter)
            outcome.done.append(letter.message_id)
            log.info("dlq_replayed", reason=letter.reason, source=letter.source, to=exchange or routing_key)
    return outcome


def purge(queue: DeadLetterQueue, letters: list[DeadLetter], operator: dict[str, Any]) -> Outcome:
    """Remove each letter after its `purge` audit entry is confirmed."""
    outcome, log = Outcome(), logs.get("interchange.dlq")
    for letter in letters:
        with logs.record_context(letter.message_id, letter.correlation_id):
            try:
                _audit(queue, letter, "purge", "purged", operator)
            except TransportError as exc:
                outcome.failed.append((letter.message_id, str(exc)))
                continue
            queue.remove(letter)
            outcome.done.append(letter.message_id)
            log.info("dlq_purged", reason=letter.reason, source=letter.source)
    return outcome


def operator_actor() -> dict[str, Any]:
    """The operator running the command, as an audit actor."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return {
        "system": "interchange-cli",
        "operator": os.environ.get("INTERCHANGE_OPERATOR", user),
        "host": socket.gethostname(),
    }


def routed_since(audit_dir: Path) -> dict[str, str]:
    """record id -> time of its latest decision (delivered or withheld) in the audit log."""
    path = audit_dir / LOG_NAME
    latest: dict[str, str] = {}
    if path.exists():
        for entry in read_entries(path):
            if entry.get("outcome") in ("delivered", "withheld") and entry.get("record_id"):
                latest[entry["record_id"]] = max(latest.get(entry["record_id"], ""), entry.get("time", ""))
    return latest


def _already_routed(letter: DeadLetter, routed: dict[str, str]) -> bool:
    decided = _time(routed.get(letter.message_id))
    return decided is not None and (letter.rejected_at is None or decided > letter.rejected_at)


def _audit(queue: DeadLetterQueue, letter: DeadLetter, operation: str, outcome: str, operator: dict[str, Any]) -> None:
    now = dt.datetime.now(dt.UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")
    context = {"actor": operator, "message_id": letter.message_id, "correlation_id": letter.correlation_id}
    entry = audit.rejection_entry(letter.record, letter.reason, [], context, now)
    entry.pop("errors", None)
    entry.update(
        operation=operation,
        outcome=outcome,
        record_id=entry["record_id"] or letter.message_id,
        detail=f"dead letter from {letter.died_in}, rejected at "
        f"{letter.rejected_at.isoformat() if letter.rejected_at else 'unknown'}",
    )
    batch = uuid.uuid4().hex
    body = orjson.dumps({"batch": batch, "entries": [entry]})
    queue.publish(
        "",
        topology.AUDIT_QUEUE,
        body,
        pika.BasicProperties(
            content_type="application/json",
            delivery_mode=2,
            message_id=f"audit-{batch}",
            correlation_id=letter.correlation_id,
            headers={"x-record-id": letter.message_id},
        ),
    )


def publisher_refusal(letter: DeadLetter, agencies: dict[str, Agency], require_publisher: bool) -> str | None:
    """Why a dead letter may not be replayed under its original publisher, or None.  Pure.

    The worker's own rule (broker.router): a record whose origin agency is registered must have come
    from one of that agency's publishers, or from no publisher at all only where publishers are not required.
    """
    if letter.died_in == topology.AUDIT_QUEUE or not letter.record:
        return None
    origin = letter.record.get("origin")
    code = origin.get("agency") if isinstance(origin, dict) else None
    agency = agencies.get(code) if isinstance(code, str) else None
    if agency is None:
        return None  # an unknown agency is the worker's refusal to make again
    if letter.publisher in agency.publishers or (not letter.publisher and not require_publisher):
        return None
    return (
        f"publisher_not_origin: the record first arrived from {letter.publisher or '(no publisher)'!r}, "
        f"which may not publish as agency {agency.code!r}; it stays dead-lettered"
    )


def _destination(letter: DeadLetter) -> tuple[str, str]:
    if letter.died_in == topology.AUDIT_QUEUE:
        return "", topology.AUDIT_QUEUE
    return topology.INGRESS_EXCHANGE, letter.record_type


def _replay_properties(letter: DeadLetter) -> pika.BasicProperties:
    keep = {
        k: v
        for k, v in letter.headers.items()
        if not k.startswith("x-interchange-")
        and k != "x-death"
        and not k.startswith("x-first-death")
        and not k.startswith("x-last-death")
        and not k.startswith("x-original")
    }
    keep[REPLAY_HEADER] = letter.reason
    if letter.publisher:
        keep[PUBLISHER_HEADER] = letter.publisher
    return pika.BasicProperties(
        content_type=letter.content_type or None,
        delivery_mode=2,
        message_id=letter.message_id or None,
        correlation_id=letter.correlation_id,
        headers=keep,
    )


# ---------------------------------------------------------------- small helpers


def _json_object(body: bytes) -> dict[str, Any] | None:
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    return value if isinstance(value, dict) else None


def _json_list(value: Any) -> list[Any]:
    try:
        parsed = orjson.loads(_text(value) or "[]")
    except orjson.JSONDecodeError:
        return []
    return parsed if isinstance(parsed, list) else []


def _text(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    return "" if value is None else str(value)


def _time(text: str | None) -> dt.datetime | None:
    if not text:
        return None
    try:
        moment = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)


def _death_time(death: dict[str, Any]) -> dt.datetime | None:
    moment = death.get("time")
    if isinstance(moment, dt.datetime):
        return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)
    return None


def _amqp_time(props: Any) -> dt.datetime | None:
    stamp = getattr(props, "timestamp", None)
    return dt.datetime.fromtimestamp(stamp, dt.UTC) if isinstance(stamp, int) else None


def _leaf_strings(value: Any) -> set[str]:
    if isinstance(value, dict):
        return set().union(*(_leaf_strings(v) for v in value.values())) if value else set()
    if isinstance(value, list):
        return set().union(*(_leaf_strings(v) for v in value)) if value else set()
    return {value} if isinstance(value, str) and len(value) >= 2 else set()


_QUOTED = re.compile(r"'[^']*'|\"[^\"]*\"")
_VALUE_LIKE = re.compile(r"[\w/.:+-]*\d[\w/.:+-]*")


def _scrub(message: str, secrets: set[str]) -> str:
    """An error message with values redacted: any string from the record's data, anything quoted, and any
    token with a digit of 6+ characters (identifiers, dates).  Check messages quote the values they check."""
    for secret in sorted(secrets, key=len, reverse=True):
        message = message.replace(secret, "<redacted>")
    message = _QUOTED.sub("<redacted>", message)
    return _VALUE_LIKE.sub(lambda m: "<redacted>" if len(m.group()) >= 6 else m.group(), message)

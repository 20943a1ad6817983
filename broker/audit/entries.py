"""Audit entries (DPA 2018 s.62): one per decision and per rejection, built by pure functions.

An entry records when, what operation, who acted, which record, about whom (keyed hashes, never the
identifiers themselves), to whom, under which agreement and lawful basis, which fields were disclosed and
which withheld, the markings, the outcome and reason, the correlation id and the hash of the delivered
body.  It never holds a payload.  Entries are chained and written by `broker.audit.log`.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import itertools
import os
import re
import unicodedata
import uuid
from collections.abc import Iterable
from typing import Any, TypeGuard

import orjson

from broker.config import DEV_AUDIT_KEY
from broker.identifiers import normalise
from broker.routing.rules import Deliver, Withhold, classification_label
from broker.routing.validation import SCHEMA_DIR

DEV_KEY = DEV_AUDIT_KEY
SUBJECT_SCHEMES = ("pnc", "cro", "nhs", "nino", "asn")


def audit_key() -> bytes:
    """The key for subject hashes; set INTERCHANGE_AUDIT_KEY in every real deployment."""
    value = os.environ.get("INTERCHANGE_AUDIT_KEY")
    return value.encode() if value else DEV_KEY


def _normalise(scheme: str, value: str) -> str:
    try:
        return normalise(scheme, value)
    except Exception:  # an unparseable identifier still gets a stable key
        return "".join(value.split()).upper()


def subject_key(kind: str, value: str, key: bytes | None = None) -> str:
    """Keyed hash of one subject reference, e.g. ('pnc', '2001/0171310W') or ('name', 'SMITH|JOHN|1980-01-31')."""
    canonical = f"{kind}:{_normalise(kind, value) if kind in SUBJECT_SCHEMES else value.upper()}"
    return hmac.new(key or audit_key(), canonical.encode(), hashlib.sha256).hexdigest()[:32]


def fold_name(text: str) -> str:
    """A name as it is matched: Unicode NFC, case-folded, runs of white space as one space."""
    folded = unicodedata.normalize("NFC", unicodedata.normalize("NFC", text).casefold())
    return " ".join(folded.split())


def name_reference(family: str, given: str, birth_date: str) -> str:
    """`family|first given name|birth date`, folded, the same whether given names are stored apart or
    together ("Mary Ann" as one element or two): only the first given name counts."""
    first = (given.split() or [""])[0]
    return f"{fold_name(family)}|{fold_name(first)}|{birth_date.strip()}"


def subject_keys(record: dict[str, Any], key: bytes | None = None) -> list[str]:
    """Keys for every person in the record: one per strong identifier, one for name with date of birth.

    Values of the wrong JSON type (in a record being rejected) give no key instead of failing.
    """
    key = key or audit_key()
    data = record.get("data")
    persons = data.get("persons", []) if isinstance(data, dict) else []
    keys: list[str] = []
    for person in persons if isinstance(persons, list) else []:
        if not isinstance(person, dict):
            continue
        identifiers = person.get("identifiers")
        for ident in identifiers if isinstance(identifiers, list) else []:
            if isinstance(ident, dict) and ident.get("scheme") in SUBJECT_SCHEMES and _text(ident.get("value")):
                keys.append(subject_key(ident["scheme"], str(ident["value"]), key))
        name = person.get("name")
        name = name if isinstance(name, dict) else {}
        given = name.get("given")
        first = given[0] if isinstance(given, list) and given else ""
        family, birth_date = name.get("family"), person.get("birth_date")
        if _text(family) and _text(first) and _text(birth_date):
            keys.append(subject_key("name", name_reference(family, first, birth_date), key))
    return sorted(set(keys))


def _text(value: Any) -> TypeGuard[str]:
    return isinstance(value, str) and bool(value.strip())


def text_digest(text: str) -> dict[str, Any]:
    """What the audit keeps of free text: its SHA-256 and its length in characters, never the text."""
    return {"sha256": hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest(), "length": len(text)}


def _handling_summary(record: dict[str, Any]) -> dict[str, Any] | None:
    """The handling marking; the free text of its conditions as a digest only."""
    handling = record.get("handling")
    if not isinstance(handling, dict):
        return None
    summary = {
        k: bounded(handling[k]) for k in ("scheme", "source", "intelligence", "code", "handling") if k in handling
    }
    conditions = handling.get("conditions")
    if isinstance(conditions, dict) and conditions:
        kept: dict[str, Any] = {}
        for name in ("recipients", "recipient_classes"):
            if isinstance(conditions.get(name), list):
                kept[name] = [bounded(v) for v in conditions[name][:MAX_LIST_ITEMS]]
        if "text" in conditions:
            text = conditions["text"]
            kept["text"] = text_digest(text) if isinstance(text, str) else bounded(text)
        summary["conditions"] = kept
    elif conditions:
        summary["conditions"] = bounded(conditions)
    return summary


# A rejected record is unchecked: its values reach the audit only when short and plainly an identifier
# or code; anything else is kept as a digest.  No audit entry exceeds MAX_ENTRY_BYTES.
MAX_ENTRY_BYTES = 16 * 1024
MAX_LIST_ITEMS = 50
MAX_SUBJECT_KEYS = 200
_PLAIN = re.compile(r"[A-Za-z0-9._:/@+#-]{1,128}")


def bounded(value: Any) -> Any:
    """`value` if it is null, a boolean, a number or a short plain token; otherwise its digest."""
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, str):
        return value if _PLAIN.fullmatch(value) else text_digest(value)
    return text_digest(
        orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode() if _serialisable(value) else repr(type(value))
    )


def bounded_token(value: Any) -> str | None:
    """A string field (record id, agency, ...) of an unchecked record: as it is if it is a short plain
    token, else `sha256:` and its digest, so it stays a string that indexes and queries can hold."""
    if value is None:
        return None
    if isinstance(value, str) and _PLAIN.fullmatch(value):
        return value
    return "sha256:" + text_digest(value if isinstance(value, str) else orjson.dumps(value).decode())["sha256"]


def _serialisable(value: Any) -> bool:
    try:
        orjson.dumps(value)
    except (TypeError, orjson.JSONEncodeError):
        return False
    return True


def capped(entry: dict[str, Any]) -> dict[str, Any]:
    """The entry, with its longest lists cut (and counted in `truncated`) until it fits MAX_ENTRY_BYTES."""
    if len(orjson.dumps(entry)) <= MAX_ENTRY_BYTES:
        return entry
    entry = dict(entry)
    truncated: dict[str, int] = {}
    for name in ("fields_withheld", "fields_disclosed", "errors", "subject_keys", "purposes"):
        items = entry.get(name)
        if isinstance(items, list) and len(items) > 10:
            truncated[name] = len(items)
            entry[name] = items[:10]
        entry["truncated"] = truncated
        if len(orjson.dumps(entry)) <= MAX_ENTRY_BYTES:
            return entry
    for name, value in list(entry.items()):  # still too big: digest every large value except the id
        if name not in ("entry_id", "truncated") and len(orjson.dumps(value)) > 512:
            entry[name] = bounded(value) if not isinstance(value, str) else text_digest(value)
            truncated[name] = -1
    return entry


_ENTRY_PREFIX = uuid.uuid4().hex[:16]  # unique per process; a counter makes each entry id unique in it
_entry_numbers = itertools.count(1)


def _new_prefix() -> None:
    global _ENTRY_PREFIX, _entry_numbers
    _ENTRY_PREFIX, _entry_numbers = uuid.uuid4().hex[:16], itertools.count(1)


os.register_at_fork(after_in_child=_new_prefix)  # a forked worker must not repeat its parent's ids


def new_entry_id() -> str:
    """A unique audit entry id, without a system call per entry (this runs for every decision)."""
    return f"{_ENTRY_PREFIX}{next(_entry_numbers):012x}"


def _base(record: dict[str, Any], context: dict[str, Any], now: str) -> dict[str, Any]:
    given = record.get("origin")
    origin: dict[str, Any] = given if isinstance(given, dict) else {}
    return {
        "entry_id": new_entry_id(),
        "time": now,
        "actor": context.get("actor", {}),
        "record_id": record.get("id") if isinstance(record.get("id"), str) else context.get("message_id"),
        "record_type": record.get("type") if isinstance(record.get("type"), str) else None,
        "source": origin.get("agency"),
        "source_system": origin.get("system"),
        "correlation_id": record.get("correlation_id") or context.get("correlation_id"),
        "supersedes": record.get("supersedes"),
        "classification": classification_label(record),
        "handling": _handling_summary(record),
        "subject_keys": subject_keys(record),
    }


def decision_entries(
    record: dict[str, Any],
    decisions: Iterable[Deliver | Withhold],
    context: dict[str, Any],
    now: str,
    body_hashes: dict[str, str],
    body_sizes: dict[str, int] | None = None,
) -> list[dict[str, Any]]:
    """One entry per decision. `body_hashes` (`body_sizes`) map recipient -> SHA-256 (bytes) of its body."""
    base = _base(record, context, now)
    base["record_time"] = record.get("time")  # a valid record's own time (the usage report's latency)
    entries = []
    for decision in decisions:
        agreement = decision.agreement
        entry = dict(
            base,
            entry_id=new_entry_id(),
            operation="disclose" if isinstance(decision, Deliver) else "withhold",
            outcome=decision.outcome,
            reason=decision.reason,
            recipient=decision.recipient,
            agreement=agreement.id if agreement else None,
            lawful_basis=agreement.lawful_basis if agreement else None,
            purposes=list(agreement.purposes) if agreement else [],
        )
        if isinstance(decision, Deliver):
            if decision.scoped is not None:  # only the people in the recipient's scope were disclosed
                entry["subject_keys"] = subject_keys(decision.scoped)
            entry["fields_disclosed"] = list(decision.projection.disclosed)
            entry["fields_withheld"] = list(decision.projection.withheld)
            entry["body_sha256"] = body_hashes.get(decision.recipient)
            entry["body_bytes"] = (body_sizes or {}).get(decision.recipient)
        else:
            entry["detail"] = decision.detail
        entries.append(capped(entry))
    return entries


def rejection_entry(
    record: dict[str, Any] | None, reason: str, error_paths: list[dict[str, str]], context: dict[str, Any], now: str
) -> dict[str, Any]:
    """The entry for a record refused at ingress: paths and codes of its errors, never their values.

    The record is unchecked, so each of its values is bounded (short plain tokens, else a digest).
    """
    record = record if isinstance(record, dict) else {}
    entry = _base(record, context, now)
    for name in ("record_type", "source", "source_system"):
        entry[name] = bounded_token(entry[name])
    # the record's own id and correlation id are unchecked; the AMQP properties standing in for them are
    # short strings the publisher set
    if isinstance(record.get("id"), str):
        entry["record_id"] = bounded_token(record["id"])
    if record.get("correlation_id"):
        entry["correlation_id"] = bounded_token(record["correlation_id"])
    supersedes = entry["supersedes"]
    entry["supersedes"] = (
        {k: bounded_token(supersedes[k]) for k in ("id", "kind") if k in supersedes}
        if isinstance(supersedes, dict)
        else bounded(supersedes)
    )
    entry["subject_keys"] = entry["subject_keys"][:MAX_SUBJECT_KEYS]
    errors = [
        {"path": bounded_path(e.get("path", "")), "code": bounded(e.get("code"))} for e in error_paths[:MAX_LIST_ITEMS]
    ]
    entry.update(
        operation="reject",
        outcome="rejected",
        reason=reason,
        recipient=None,
        agreement=None,
        lawful_basis=None,
        purposes=[],
        errors=errors,
    )
    return capped(entry)


UNDELIVERED_REASONS = ("returned", "nacked", "confirm_timeout", "connection_lost", "publish_error", "publish_failed")


def undelivered_entry(disclosed: dict[str, Any], reason: str, actor: dict[str, Any], now: str) -> dict[str, Any]:
    """The entry saying the delivery a `disclose` entry announced did not happen; it cancels that entry."""
    return {
        "entry_id": new_entry_id(),
        "time": now,
        "actor": actor,
        "operation": "undelivered",
        "outcome": "not_delivered",
        "reason": reason,
        "record_id": disclosed.get("record_id"),
        "record_type": disclosed.get("record_type"),
        "origin": disclosed.get("source"),
        "source": disclosed.get("source"),
        "correlation_id": disclosed.get("correlation_id"),
        "recipient": disclosed.get("recipient"),
        "agreement": disclosed.get("agreement"),
        "cancels": disclosed.get("entry_id"),
    }


_STEP = re.compile(r"([^.\[\]]+)|\[(\d+|\*|)\]")


@functools.cache
def _schema_names() -> frozenset[str]:
    """Every property name the common schemas define: the only names a path in an audit entry may spell."""
    names: set[str] = set()

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            properties = node.get("properties")
            if isinstance(properties, dict):
                names.update(properties)
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    for path in SCHEMA_DIR.glob("*.json"):
        walk(orjson.loads(path.read_bytes()))
    return frozenset(names)


def bounded_path(path: Any) -> Any:
    """A field path as it is if every name in it is one the schemas define; otherwise its digest
    (a path into an unchecked record can carry a key that is personal data)."""
    if not isinstance(path, str):
        return bounded(path)
    if not path:
        return path
    names = _schema_names()
    steps = _STEP.findall(path) if len(path) <= 256 else None
    if steps and all(not name or name in names for name, _index in steps) and _rebuilt(steps) == path:
        return path
    return "sha256:" + text_digest(path)["sha256"]


def _rebuilt(steps: list[tuple[str, str]]) -> str:
    out = ""
    for name, index in steps:
        out += (("." if out else "") + name) if name else f"[{index}]"
    return out

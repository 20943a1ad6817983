"""Audit entries (DPA 2018 s.62): one per decision and per rejection, built by pure functions.

An entry records when, what operation, who acted, which record, about whom (keyed hashes, never the
identifiers themselves), to whom, under which agreement and lawful basis, which fields were disclosed and
which withheld, the markings, the outcome and reason, the correlation id and the hash of the delivered
body.  It never holds a payload.  Entries are chained and written by `broker.auditlog`.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import os
import unicodedata
import uuid
from collections.abc import Iterable
from typing import Any

from broker.rules import Deliver, Withhold, classification_label

DEV_KEY = b"interchange-development-key-not-for-production"
SUBJECT_SCHEMES = ("pnc", "cro", "nhs", "nino", "asn")


def audit_key() -> bytes:
    """The key for subject hashes; set INTERCHANGE_AUDIT_KEY in every real deployment."""
    value = os.environ.get("INTERCHANGE_AUDIT_KEY")
    return value.encode() if value else DEV_KEY


def _normalise(scheme: str, value: str) -> str:
    try:
        from broker.identifiers import normalise
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
    """Keys for every person in the record: one per strong identifier, one for name with date of birth."""
    key = key or audit_key()
    data = record.get("data")
    persons = data.get("persons", []) if isinstance(data, dict) else []
    keys: list[str] = []
    for person in persons if isinstance(persons, list) else []:
        if not isinstance(person, dict):
            continue
        for ident in person.get("identifiers", []) or []:
            if isinstance(ident, dict) and ident.get("scheme") in SUBJECT_SCHEMES and ident.get("value"):
                keys.append(subject_key(ident["scheme"], str(ident["value"]), key))
        name = person.get("name") or {}
        given = (name.get("given") or [""])[0] if isinstance(name, dict) else ""
        if isinstance(name, dict) and name.get("family") and given and person.get("birth_date"):
            keys.append(subject_key("name", name_reference(name["family"], given, person["birth_date"]), key))
    return sorted(set(keys))


def _handling_summary(record: dict[str, Any]) -> dict[str, Any] | None:
    handling = record.get("handling")
    if not isinstance(handling, dict):
        return None
    summary = {k: handling[k] for k in ("scheme", "source", "intelligence", "code", "handling") if k in handling}
    conditions = handling.get("conditions")
    if conditions:
        summary["conditions"] = conditions
    return summary


_ENTRY_PREFIX = uuid.uuid4().hex[:16]   # unique per process; a counter makes each entry id unique in it
_entry_numbers = itertools.count(1)


def _new_prefix() -> None:
    global _ENTRY_PREFIX, _entry_numbers
    _ENTRY_PREFIX, _entry_numbers = uuid.uuid4().hex[:16], itertools.count(1)


os.register_at_fork(after_in_child=_new_prefix)   # a forked worker must not repeat its parent's ids


def new_entry_id() -> str:
    """A unique audit entry id, without a system call per entry (this runs for every decision)."""
    return f"{_ENTRY_PREFIX}{next(_entry_numbers):012x}"


def _base(record: dict[str, Any], context: dict[str, Any], now: str) -> dict[str, Any]:
    origin = record.get("origin") if isinstance(record.get("origin"), dict) else {}
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
        "classification": classification_label(record) if isinstance(record.get("classification"), dict) else None,
        "handling": _handling_summary(record),
        "subject_keys": subject_keys(record),
    }


def decision_entries(record: dict[str, Any], decisions: Iterable[Deliver | Withhold], context: dict[str, Any],
                     now: str, body_hashes: dict[str, str], body_sizes: dict[str, int] | None = None
                     ) -> list[dict[str, Any]]:
    """One entry per decision. `body_hashes` (`body_sizes`) map recipient -> SHA-256 (bytes) of its body."""
    base = _base(record, context, now)
    base["record_time"] = record.get("time")   # a valid record's own time (the usage report's latency)
    entries = []
    for decision in decisions:
        agreement = decision.agreement
        entry = dict(base, entry_id=new_entry_id(), operation="disclose" if isinstance(decision, Deliver)
                     else "withhold", outcome=decision.outcome, reason=decision.reason,
                     recipient=decision.recipient,
                     agreement=agreement.id if agreement else None,
                     lawful_basis=agreement.lawful_basis if agreement else None,
                     purposes=list(agreement.purposes) if agreement else [])
        if isinstance(decision, Deliver):
            if decision.scoped is not None:   # only the people in the recipient's scope were disclosed
                entry["subject_keys"] = subject_keys(decision.scoped)
            entry["fields_disclosed"] = list(decision.projection.disclosed)
            entry["fields_withheld"] = list(decision.projection.withheld)
            entry["body_sha256"] = body_hashes.get(decision.recipient)
            entry["body_bytes"] = (body_sizes or {}).get(decision.recipient)
        else:
            entry["detail"] = decision.detail
        entries.append(entry)
    return entries


def rejection_entry(record: dict[str, Any] | None, reason: str, error_paths: list[dict[str, str]],
                    context: dict[str, Any], now: str) -> dict[str, Any]:
    """The entry for a record refused at ingress: paths and codes of its errors, never their values."""
    entry = _base(record if isinstance(record, dict) else {}, context, now)
    entry.update(operation="reject", outcome="rejected", reason=reason, recipient=None, agreement=None,
                 lawful_basis=None, purposes=[], errors=error_paths)
    return entry

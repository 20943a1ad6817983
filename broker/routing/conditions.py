"""Agreement conditions: a small closed set of operators, evaluated on a record for one recipient.

A condition in an agreement is data::

    - name: consent_recorded
      equals: {path: data.consent.given, value: true}

Operators: `equals`, `exists`, `in`, `prefix`, `recipient_attribute_in`, and the combinators `not`, `any`, `all`.
Anything else is refused when the agreement is loaded (by the agreement schema), so no agreement can
run code.  `failed(conditions, record, recipient)` returns the name of the first unmet condition.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from broker.routing.paths import values_at

Recipient = Mapping[str, Any]


def _equals(spec: Mapping[str, Any], record: Mapping[str, Any], recipient: Recipient) -> bool:
    return any(value == spec["value"] for value in values_at(record, spec["path"]))


def _exists(spec: str, record: Mapping[str, Any], recipient: Recipient) -> bool:
    return any(value not in (None, "", [], {}) for value in values_at(record, spec))


def _in(spec: Mapping[str, Any], record: Mapping[str, Any], recipient: Recipient) -> bool:
    allowed = spec["values"]
    return any(value in allowed for value in values_at(record, spec["path"]))


def _prefix(spec: Mapping[str, Any], record: Mapping[str, Any], recipient: Recipient) -> bool:
    return any(isinstance(value, str) and value.startswith(spec["value"]) for value in values_at(record, spec["path"]))


def _recipient_attribute_in(spec: Mapping[str, Any], record: Mapping[str, Any], recipient: Recipient) -> bool:
    mine = (recipient.get("attributes") or {}).get(spec["attribute"])
    return mine is not None and any(str(value) == mine for value in values_at(record, spec["path"]))


def _not(spec: Mapping[str, Any], record: Mapping[str, Any], recipient: Recipient) -> bool:
    return not holds(spec, record, recipient)


def _any(spec: list[Mapping[str, Any]], record: Mapping[str, Any], recipient: Recipient) -> bool:
    return any(holds(body, record, recipient) for body in spec)


def _all(spec: list[Mapping[str, Any]], record: Mapping[str, Any], recipient: Recipient) -> bool:
    return all(holds(body, record, recipient) for body in spec)


OPERATORS: dict[str, Callable[[Any, Mapping[str, Any], Recipient], bool]] = {
    "equals": _equals,
    "exists": _exists,
    "in": _in,
    "prefix": _prefix,
    "recipient_attribute_in": _recipient_attribute_in,
    "not": _not,
    "any": _any,
    "all": _all,
}


def holds(condition: Mapping[str, Any], record: Mapping[str, Any], recipient: Recipient) -> bool:
    """True when every operator in `condition` holds (a condition normally has exactly one)."""
    return all(OPERATORS[op](spec, record, recipient) for op, spec in condition.items() if op in OPERATORS)


def failed(conditions: list[Mapping[str, Any]], record: Mapping[str, Any], recipient: Recipient) -> str | None:
    """Name of the first condition that does not hold, or None when all hold."""
    for condition in conditions:
        if not holds(condition, record, recipient):
            return str(condition.get("name", "unnamed"))
    return None

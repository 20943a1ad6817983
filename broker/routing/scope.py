"""Per-recipient entity scoping: which people in a record a recipient may see at all.

An agreement may carry a `scope` per record type that keeps only the `data.persons` entries matching an
*element condition*, before the field allow-list is applied::

    scope:
      safeguarding.notification:
        persons:
          all:
            - listed_at: data.children                       # the person's id is listed at a record path
            - linked: {types: [parent-of, child-of], listed_at: data.adults}
            - attribute_equals: {path: school.urn, attribute: school_urn}

Element operators (a closed set, checked by the agreement schema): `listed_at`, `linked`,
`attribute_equals` (element path equals a recipient attribute), `equals` ({path, value} on the element),
`exists` (element path), and the combinators `all`, `any`, `not`.  Every reference to a removed person is
dropped too: links that touch them, their ids in id lists (`data.children`, `subjects`, ...) and single
references (`data.victim`, ...).  Pure functions; no agreement can run code.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from typing import Any

from broker.routing.paths import values_at

Element = Mapping[str, Any]
Recipient = Mapping[str, Any]

# Where records refer to a person by id (DESIGN.md section 2).
ID_LISTS = ("children", "adults", "defendants", "witnesses", "about")
ID_SCALARS = ("victim", "detained_person", "defendant")


def _listed_at(spec: str, element: Element, record: Mapping[str, Any], recipient: Recipient) -> bool:
    return element.get("id") in _ids_at(record, spec)


def _linked(spec: Mapping[str, Any], element: Element, record: Mapping[str, Any], recipient: Recipient) -> bool:
    me, others, types = element.get("id"), _ids_at(record, spec["listed_at"]), set(spec["types"])
    for link in values_at(record, "data.links[]"):
        if isinstance(link, dict) and link.get("type") in types:
            ends = (link.get("from"), link.get("to"))
            if me in ends and any(end in others for end in ends if end != me):
                return True
    return False


def _attribute_equals(
    spec: Mapping[str, Any], element: Element, record: Mapping[str, Any], recipient: Recipient
) -> bool:
    mine = (recipient.get("attributes") or {}).get(spec["attribute"])
    return mine is not None and any(str(v) == str(mine) for v in values_at(element, spec["path"]))


def _equals(spec: Mapping[str, Any], element: Element, record: Mapping[str, Any], recipient: Recipient) -> bool:
    return any(v == spec["value"] for v in values_at(element, spec["path"]))


def _exists(spec: str, element: Element, record: Mapping[str, Any], recipient: Recipient) -> bool:
    return any(v not in (None, "", [], {}, False) for v in values_at(element, spec))


def _all(spec: list[Any], element: Element, record: Mapping[str, Any], recipient: Recipient) -> bool:
    return all(matches(body, element, record, recipient) for body in spec)


def _any(spec: list[Any], element: Element, record: Mapping[str, Any], recipient: Recipient) -> bool:
    return any(matches(body, element, record, recipient) for body in spec)


def _not(spec: Mapping[str, Any], element: Element, record: Mapping[str, Any], recipient: Recipient) -> bool:
    return not matches(spec, element, record, recipient)


OPERATORS: dict[str, Callable[[Any, Element, Mapping[str, Any], Recipient], bool]] = {
    "listed_at": _listed_at,
    "linked": _linked,
    "attribute_equals": _attribute_equals,
    "equals": _equals,
    "exists": _exists,
    "all": _all,
    "any": _any,
    "not": _not,
}


def matches(condition: Mapping[str, Any], element: Element, record: Mapping[str, Any], recipient: Recipient) -> bool:
    """True when every operator in the element condition holds for this element."""
    return all(OPERATORS[op](spec, element, record, recipient) for op, spec in condition.items() if op in OPERATORS)


def _ids_at(record: Mapping[str, Any], path: str) -> set[Any]:
    found: set[Any] = set()
    for value in values_at(record, path):
        if isinstance(value, list):
            found.update(v for v in value if isinstance(v, str))
        elif isinstance(value, str):
            found.add(value)
    return found


def apply(scope: Mapping[str, Any] | None, record: dict[str, Any], recipient: Recipient) -> tuple[dict[str, Any], int]:
    """(the record with out-of-scope persons and every reference to them removed, persons kept).

    Without a `persons` scope the record is returned unchanged and the count is -1 (no scoping).
    """
    condition = (scope or {}).get("persons")
    data = record.get("data")
    if condition is None or not isinstance(data, dict):
        return record, -1
    persons = [p for p in data.get("persons") or [] if isinstance(p, dict)]
    kept = [p for p in persons if matches(condition, p, record, recipient)]
    removed = {p.get("id") for p in persons} - {p.get("id") for p in kept}
    out = dict(record)
    out["data"] = _without(data, removed)
    out["data"]["persons"] = copy.deepcopy(kept)
    if isinstance(record.get("subjects"), list):
        out["subjects"] = [s for s in record["subjects"] if s not in removed]
    return out, len(kept)


def _without(data: dict[str, Any], removed: set[Any]) -> dict[str, Any]:
    out = copy.deepcopy(data)
    for key in ID_LISTS:
        if isinstance(out.get(key), list):
            out[key] = [i for i in out[key] if i not in removed]
    for key in ID_SCALARS:
        if out.get(key) in removed:
            del out[key]
    if isinstance(out.get("links"), list):
        out["links"] = [
            link
            for link in out["links"]
            if not isinstance(link, dict) or (link.get("from") not in removed and link.get("to") not in removed)
        ]
    return out

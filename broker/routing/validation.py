"""Validate a record against the common schema (v1); check its identifiers and internal references.

``Validator()`` is built once at start-up: it loads every file in ``schemas/``, builds one
``referencing.Registry`` (and the matching ``jsonschema_rs.Registry``) so cross-file ``$ref``s resolve by
``$id``, and compiles one validator per record type.  ``validate(record)`` returns every problem as a
``FieldError`` and never raises for bad data:

1. ``type`` picks the record-type schema; an unknown or missing type is one error at path ``type``.
2. The schema check runs on ``jsonschema_rs`` (Rust, formats on).  ``reference_errors`` runs the same
   checks on the pure-Python ``jsonschema`` ``Draft202012Validator`` with a format checker, so a test can
   prove that both engines give the same verdict (and report the same paths).
3. Whatever the schema said, every ``identifiers`` array, ``data.asn``, ``data.urn``, object ``vrm``s and
   address postcodes go through ``broker.identifiers.check`` (code ``identifier_invalid``); ``subjects``,
   links and role fields must name entities that exist in the record (code ``schema_invalid``).

Paths read ``data.persons[0].identifiers[1]``; a printed error reads
``data.persons[0].identifiers[1]: PNC ID 2001/0171310S has check letter S, expected W``.  A missing field is
reported at its own path (``data.urn: required field is missing``), an unknown field likewise.

Speed, measured on the 13 records of ``examples/records`` (Python 3.11.7, one core of a Xeon VM, best of 3):
57 µs per ``validate`` (jsonschema_rs), 2,600 µs per ``reference_errors`` (pure-Python jsonschema).
"""

from __future__ import annotations

import datetime as _dt
import json
import re
from collections.abc import Collection, Iterable, Iterator
from pathlib import Path
from typing import Any

import jsonschema
import jsonschema_rs
import referencing
from referencing.jsonschema import DRAFT202012

from broker import identifiers
from broker.errors import FieldError

SCHEMA_DIR = Path(__file__).resolve().parent.parent.parent / "schemas"
SCHEMA_BASE = "https://interchange.police.uk/schemas/v1/"
SHARED_FILES = ("defs.json", "envelope.json")
MAX_DEPTH = 32  # a legitimate record is at most about 8 levels deep; the identifier walk stops here
MAX_MESSAGE = 300

SCHEMA_INVALID = "schema_invalid"
IDENTIFIER_INVALID = "identifier_invalid"

ENTITY_LISTS = ("persons", "organisations", "objects", "locations", "events", "offences", "charges")
# role fields of data that must name a person, and those that may name any entity
PERSON_REFS = ("defendants", "witnesses", "children", "adults", "victim", "defendant", "detained_person")
ANY_REFS = ("about",)

Json = Any


class Validator:
    """Schema and identifier validation of common-schema records, compiled once."""

    def __init__(self, schema_dir: Path = SCHEMA_DIR) -> None:
        schemas = _load_schemas(schema_dir)
        self.registry: referencing.Registry = referencing.Registry().with_resources(
            (uri, DRAFT202012.create_resource(schema)) for uri, schema in schemas.items()
        )
        rs_registry = jsonschema_rs.Registry(list(schemas.items()))
        checker = _format_checker()
        self.schemas = {
            schema["properties"]["type"]["const"]: schema
            for uri, schema in schemas.items()
            if not uri.endswith(SHARED_FILES)
        }
        self.record_types = tuple(sorted(self.schemas))
        self._fast = {
            t: jsonschema_rs.Draft202012Validator(s, registry=rs_registry, validate_formats=True)
            for t, s in self.schemas.items()
        }
        self._reference = {
            t: jsonschema.Draft202012Validator(s, registry=self.registry, format_checker=checker)
            for t, s in self.schemas.items()
        }

    def validate(self, record: Json) -> list[FieldError]:
        """Every problem with ``record`` (empty when it is valid), using the fast engine."""
        return self._errors(record, self._fast_schema_errors)

    def reference_errors(self, record: Json) -> list[FieldError]:
        """Every problem with ``record``, with pure-Python jsonschema for the schema step (slow; tests)."""
        return self._errors(record, self._reference_schema_errors)

    def is_valid(self, record: Json) -> bool:
        """Whether the record has no error."""
        return not self.validate(record)

    # -- pipeline --------------------------------------------------------------------------------------------

    def _errors(self, record: Json, schema_step: Any) -> list[FieldError]:
        rid = _record_id(record)
        if not isinstance(record, dict):
            return [FieldError(None, "", SCHEMA_INVALID, f"a record must be a JSON object, not {_kind(record)}")]
        rtype = record.get("type")
        if not isinstance(rtype, str) or rtype not in self.schemas:
            shown = "missing" if rtype is None else f"{_short(rtype)} is not a record type"
            expected = ", ".join(self.record_types)
            return [FieldError(rid, "type", SCHEMA_INVALID, f"record type {shown}; expected one of {expected}")]
        try:
            found = list(schema_step(rtype, record))
        except Exception as exc:  # both engines give up on absurd nesting or data that is not JSON
            if _too_deep(record):
                return [FieldError(rid, "", SCHEMA_INVALID, f"record is nested more than {MAX_DEPTH} levels deep")]
            found = [("", f"record is not JSON data: {type(exc).__name__}")]
        if found:
            found += _reference_problems(record)
            identifier_problems = list(_identifier_problems(record, False))
        else:  # a record the schema accepts: references and identifiers in one pass over its entities
            references, identifier_problems = _entity_problems(record)
            found += references
        errors = [FieldError(rid, path, SCHEMA_INVALID, _clip(msg)) for path, msg in found]
        errors += [FieldError(rid, path, IDENTIFIER_INVALID, _clip(msg)) for path, msg in identifier_problems]
        return _unique(errors) if len(errors) > 1 else errors

    def _fast_schema_errors(self, rtype: str, record: dict) -> Iterator[tuple[str, str]]:
        for error in self._fast[rtype].iter_errors(record):
            path = list(error.instance_path)
            kind = error.kind
            if isinstance(kind, jsonschema_rs.ValidationErrorKind.Required):
                yield _path([*path, kind.property]), "required field is missing"
            elif isinstance(kind, jsonschema_rs.ValidationErrorKind.AdditionalProperties):
                for name in kind.unexpected:
                    yield _path([*path, name]), "is not a field of this record type (additional property)"
            else:
                yield _path(path), error.message

    def _reference_schema_errors(self, rtype: str, record: dict) -> Iterator[tuple[str, str]]:
        for error in self._reference[rtype].iter_errors(record):
            path = list(error.absolute_path)
            if error.validator == "required" and (m := _REQUIRED.fullmatch(error.message)):
                yield _path([*path, m.group(1)]), "required field is missing"
            elif error.validator == "additionalProperties":
                known = error.schema.get("properties", {})
                for name in [k for k in error.instance if k not in known]:
                    yield _path([*path, name]), "is not a field of this record type (additional property)"
            else:
                yield _path(path), error.message


# -- loading -------------------------------------------------------------------------------------------------


def _load_schemas(schema_dir: Path) -> dict[str, dict]:
    """``$id`` -> schema for every ``*.json`` file in the directory."""
    schemas = {}
    for file in sorted(schema_dir.glob("*.json")):
        schema = json.loads(file.read_text(encoding="utf-8"))
        schemas[schema["$id"]] = schema
    return schemas


_REQUIRED = re.compile(r"'(.*)' is a required property", re.DOTALL)
_RFC3339 = re.compile(r"(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(\.\d+)?([Zz]|[+-]\d{2}:\d{2})", re.ASCII)


def _is_date_time(value: object) -> bool:
    """RFC 3339 date-time, as jsonschema_rs checks it (leap second only at 23:59:60 UTC)."""
    if not isinstance(value, str):
        return True
    m = _RFC3339.fullmatch(value)
    if not m:
        return False
    leap = m.group(6) == "60"
    text = (value[:17] + "59" + value[19:] if leap else value).upper()
    try:
        moment = _dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return False
    if leap:
        utc = moment.astimezone(_dt.UTC)
        return (utc.hour, utc.minute) == (23, 59)
    return True


def _format_checker() -> jsonschema.FormatChecker:
    """jsonschema's own checkers plus ``date-time`` (it needs an extra package we do not depend on)."""
    checker = jsonschema.FormatChecker()
    checker.checks("date-time")(_is_date_time)
    return checker


# -- identifiers and references ------------------------------------------------------------------------------


def _identifier_problems(record: dict, schema_ok: bool) -> Iterator[tuple[str, str]]:
    """(path, message) for each identifier in the record that fails ``identifiers.check``.

    When the schema passed, identifiers can only sit on persons, organisations and objects, so only those are
    visited (fast path); otherwise every ``identifiers`` array anywhere in the record is checked.
    """
    data = record.get("data")
    holders: Iterable[tuple[list[str | int], Json]]
    if schema_ok:
        holders = (
            (["data", name, i], entity)
            for name in ("persons", "organisations", "objects")
            for i, entity in _items(data, name)
        )
    else:
        holders = ((path, node) for path, node in _walk(record) if isinstance(node, dict))
    for where, node in holders:
        items = node.get("identifiers")
        if isinstance(items, list):
            for i, item in enumerate(items):
                if isinstance(item, dict) and item.get("scheme") in identifiers.SCHEMES and "value" in item:
                    if message := identifiers.check(item["scheme"], item["value"]):
                        yield _path([*where, "identifiers", i]), message
    if not isinstance(data, dict):
        return
    for key in ("asn", "urn"):
        if isinstance(data.get(key), str) and (message := identifiers.check(key, data[key])):
            yield f"data.{key}", message
    for i, obj in _items(data, "objects"):
        if isinstance(obj.get("vrm"), str) and (message := identifiers.check("vrm", obj["vrm"])):
            yield f"data.objects[{i}].vrm", message
    for i, loc in _items(data, "locations"):
        address = loc.get("address")
        if isinstance(address, dict) and isinstance(address.get("postcode"), str):
            if message := identifiers.check("postcode", address["postcode"]):
                yield f"data.locations[{i}].address.postcode", message


def _entity_problems(record: dict) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """(reference problems, identifier problems) of a record the schema accepted, in one pass over its
    entity lists; the same problems, in the same order, as ``_reference_problems`` and
    ``_identifier_problems(record, True)``."""
    data = record.get("data")
    data = data if isinstance(data, dict) else {}
    references: list[tuple[str, str]] = []
    by_holder: dict[str, list[tuple[str, str]]] = {"persons": [], "organisations": [], "objects": []}
    vrms: list[tuple[str, str]] = []
    postcodes: list[tuple[str, str]] = []
    checked: dict[tuple[str, str], str | None] = {}  # the same identifier twice in a record is checked once

    def check(scheme: str, value: Any) -> str | None:
        if not isinstance(value, str):
            return identifiers.check(scheme, value)
        key = (scheme, value)
        if key not in checked:
            checked[key] = identifiers.check(scheme, value)
        return checked[key]

    entities: dict[str, str] = {}  # id -> path of the entity that declared it
    persons: set[str] = set()
    locations: set[str] = set()
    for name in ENTITY_LISTS:
        items = data.get(name)
        if not isinstance(items, list):
            continue
        problems = by_holder.get(name)
        for i, entity in enumerate(items):
            if not isinstance(entity, dict):
                continue
            eid = entity.get("id")
            if isinstance(eid, str):
                if eid in entities:
                    references.append(
                        (f"data.{name}[{i}].id", f"entity id {_short(eid)} is already used by {entities[eid]}")
                    )
                else:
                    entities[eid] = f"data.{name}[{i}]"
                    if name == "persons":
                        persons.add(eid)
                    elif name == "locations":
                        locations.add(eid)
            if problems is not None:
                ids = entity.get("identifiers")
                if isinstance(ids, list):
                    for j, item in enumerate(ids):
                        if isinstance(item, dict) and item.get("scheme") in identifiers.SCHEMES and "value" in item:
                            if message := check(item["scheme"], item["value"]):
                                problems.append((f"data.{name}[{i}].identifiers[{j}]", message))
                if name == "objects" and isinstance(entity.get("vrm"), str):
                    if message := check("vrm", entity["vrm"]):
                        vrms.append((f"data.objects[{i}].vrm", message))
            elif name == "locations":
                address = entity.get("address")
                if isinstance(address, dict) and isinstance(address.get("postcode"), str):
                    if message := check("postcode", address["postcode"]):
                        postcodes.append((f"data.locations[{i}].address.postcode", message))
    references += _references(record, data, entities, persons, locations)
    found = by_holder["persons"] + by_holder["organisations"] + by_holder["objects"]
    if isinstance(record.get("data"), dict):
        for key in ("asn", "urn"):
            if isinstance(data.get(key), str) and (message := check(key, data[key])):
                found.append((f"data.{key}", message))
        found += vrms + postcodes
    return references, found


def _reference_problems(record: dict) -> Iterator[tuple[str, str]]:
    """(path, message) for duplicate entity ids and for references to entities the record does not hold."""
    data = record.get("data")
    data = data if isinstance(data, dict) else {}
    entities: dict[str, str] = {}  # id -> path of the entity that declared it
    for name in ENTITY_LISTS:
        for i, entity in _items(data, name):
            eid = entity.get("id")
            if not isinstance(eid, str):
                continue
            if eid in entities:
                yield f"data.{name}[{i}].id", f"entity id {_short(eid)} is already used by {entities[eid]}"
            else:
                entities[eid] = f"data.{name}[{i}]"
    persons = {e for e, where in entities.items() if where.startswith("data.persons[")}
    locations = {e for e, where in entities.items() if where.startswith("data.locations[")}
    yield from _references(record, data, entities, persons, locations)


def _references(
    record: dict, data: dict, entities: dict[str, str], persons: set[str], locations: set[str]
) -> Iterator[tuple[str, str]]:
    """(path, message) for each reference (subjects, role fields, links, addresses, locations) to an entity
    the record does not hold."""
    every = entities.keys()
    person = "a person in data.persons"
    yield from _missing(record, "subjects", "", persons, "subject", person)
    for field in PERSON_REFS:
        yield from _missing(data, field, "data.", persons, field.replace("_", " "), person)
    for field in ANY_REFS:
        yield from _missing(data, field, "data.", every, field, "an entity in this record")
    for i, link in _items(data, "links"):
        for end in ("from", "to"):
            value = link.get(end)
            if isinstance(value, str) and value not in every:
                yield f"data.links[{i}].{end}", f"link {end} {_short(value)} is not the id of an entity in this record"
    for i, entry in _items(data, "persons"):
        if entry.get("addresses"):
            yield from _missing(
                entry, "addresses", f"data.persons[{i}].", locations, "address", "a location in data.locations"
            )
    for outer in ("arrest", "incident"):
        if isinstance(data.get(outer), dict):
            yield from _missing(
                data[outer],
                "location",
                f"data.{outer}.",
                locations,
                f"{outer} location",
                "a location in data.locations",
            )


def _missing(
    container: dict, field: str, prefix: str, known: Collection[str], what: str, target: str
) -> Iterator[tuple[str, str]]:
    """(path, message) for each id in `container[field]` (one id or a list) that is not in `known`.

    Paths are built only for the ids that are missing: this runs for every record on the hot path.
    """
    value = container.get(field)
    if isinstance(value, list):
        for i, item in enumerate(value):
            if isinstance(item, str) and item not in known:
                yield f"{prefix}{field}[{i}]", f"{what} {_short(item)} is not the id of {target}"
    elif isinstance(value, str) and value not in known:
        yield f"{prefix}{field}", f"{what} {_short(value)} is not the id of {target}"


def _items(container: object, field: str) -> Iterator[tuple[int, dict]]:
    value = container.get(field) if isinstance(container, dict) else None
    if isinstance(value, list):
        yield from ((i, v) for i, v in enumerate(value) if isinstance(v, dict))


def _walk(root: Json) -> Iterator[tuple[list[str | int], Json]]:
    """Every node of a JSON tree with its path, iteratively (no recursion limit to hit)."""
    stack: list[tuple[list[str | int], Json]] = [([], root)]
    while stack:
        path, node = stack.pop()
        yield path, node
        if len(path) >= MAX_DEPTH:
            continue
        if isinstance(node, dict):
            stack.extend(([*path, k], v) for k, v in node.items() if isinstance(k, str))
        elif isinstance(node, list):
            stack.extend(([*path, i], v) for i, v in enumerate(node))


def _too_deep(root: Json) -> bool:
    stack = [(0, root)]
    while stack:
        depth, node = stack.pop()
        if depth > MAX_DEPTH:
            return True
        if isinstance(node, dict):
            stack.extend((depth + 1, v) for v in node.values())
        elif isinstance(node, list):
            stack.extend((depth + 1, v) for v in node)
    return False


# -- small helpers -------------------------------------------------------------------------------------------


def _path(parts: Iterable[str | int]) -> str:
    """``["data", "persons", 0, "name"]`` -> ``data.persons[0].name``."""
    out = ""
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _record_id(record: Json) -> str | None:
    rid = record.get("id") if isinstance(record, dict) else None
    return rid if isinstance(rid, str) and 0 < len(rid) <= 128 else None


def _kind(value: object) -> str:
    names = {
        list: "an array",
        str: "a string",
        type(None): "null",
        bool: "a boolean",
        int: "a number",
        float: "a number",
    }
    return names.get(type(value), f"a {type(value).__name__}")


def _short(value: object) -> str:
    text = repr(value) if not isinstance(value, str) else f"'{value}'"
    return text if len(text) <= 60 else text[:57] + "..."


def _clip(message: str) -> str:
    return message if len(message) <= MAX_MESSAGE else message[: MAX_MESSAGE - 3] + "..."


def _unique(errors: list[FieldError]) -> list[FieldError]:
    seen: set[tuple[str, str]] = set()
    out = []
    for e in errors:
        if (e.path, e.message) not in seen:
            seen.add((e.path, e.message))
            out.append(e)
    return out

"""A force's enquiry index in PostgreSQL: its own records, found by normalised subject keys.

Fed by the records the force publishes through Interchange (`index_record`, from a wire tap on the ingress
exchange or from files); searched by the responder.  Keys are `(kind, value)` pairs as
`broker.enquiry.model.Subject.lookup_keys()` makes them: PNC IDs in canonical form, names NFC/case-folded
with date of birth, VRMs, postcode + house.  A correction replaces the record it supersedes; a retraction
removes it.  Tables live in a schema of their own (default `enquiry`), created by `create_schema`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from typing import Any

import orjson
import psycopg
from psycopg import sql

from broker.enquiry.model import address_key, name_key
from broker.identifiers import normalise

DEFAULT_SCHEMA = "enquiry"
_SCHEMA_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")

_DDL = """
CREATE SCHEMA IF NOT EXISTS {schema};
CREATE TABLE IF NOT EXISTS {schema}.records (
  force text NOT NULL, origin text NOT NULL, record_id text NOT NULL, record_type text NOT NULL,
  time text, record jsonb NOT NULL, PRIMARY KEY (force, origin, record_id));
CREATE TABLE IF NOT EXISTS {schema}.subject_keys (
  force text NOT NULL, kind text NOT NULL, value text NOT NULL, origin text NOT NULL, record_id text NOT NULL,
  PRIMARY KEY (force, kind, value, origin, record_id),
  FOREIGN KEY (force, origin, record_id) REFERENCES {schema}.records ON DELETE CASCADE);
"""


def connect(dsn: str) -> psycopg.Connection:
    """An autocommit connection (each index change is one statement block in its own transaction)."""
    return psycopg.connect(dsn, autocommit=True)


def _schema(name: str) -> sql.Identifier:
    if not _SCHEMA_NAME.fullmatch(name):
        raise ValueError(f"not a plain PostgreSQL schema name: {name!r}")
    return sql.Identifier(name)


def create_schema(conn: psycopg.Connection, schema: str = DEFAULT_SCHEMA) -> None:
    """Create the index tables (idempotent)."""
    conn.execute(sql.SQL(_DDL).format(schema=_schema(schema)))


def record_keys(record: dict[str, Any]) -> set[tuple[str, str]]:
    """Every subject key a record can be found by."""
    data: dict[str, Any] = record["data"] if isinstance(record.get("data"), dict) else {}
    keys: set[tuple[str, str]] = set()
    for person in _dicts(data.get("persons")):
        for ident in _dicts(person.get("identifiers")):
            if ident.get("scheme") in ("pnc", "vrm") and ident.get("value"):
                keys.add((ident["scheme"], normalise(ident["scheme"], str(ident["value"]))))
        name: dict[str, Any] = person["name"] if isinstance(person.get("name"), dict) else {}
        given = (name.get("given") or [""])[0] if isinstance(name.get("given"), list) else ""
        if name.get("family") and given and person.get("birth_date"):
            keys.add(("name", name_key(str(name["family"]), str(given), str(person["birth_date"]))))
    for thing in _dicts(data.get("objects")):
        vrms = [thing.get("vrm")]
        vrms += [i.get("value") for i in _dicts(thing.get("identifiers")) if i.get("scheme") == "vrm"]
        keys.update(("vrm", normalise("vrm", str(v))) for v in vrms if v)
    for place in _dicts(data.get("locations")):
        address: dict[str, Any] = place["address"] if isinstance(place.get("address"), dict) else {}
        lines = address.get("lines") if isinstance(address.get("lines"), list) else []
        if address.get("postcode") and lines:
            keys.add(("address", address_key(str(address["postcode"]), str(lines[0]))))
    return keys


def _dicts(value: Any) -> Iterator[dict[str, Any]]:
    return (v for v in (value if isinstance(value, list) else []) if isinstance(v, dict))


def index_record(conn: psycopg.Connection, force: str, record: dict[str, Any], schema: str = DEFAULT_SCHEMA) -> bool:
    """Add (or replace) one of the force's own records; False when it is not the force's record."""
    origin = (record.get("origin") or {}).get("agency") if isinstance(record.get("origin"), dict) else None
    if origin != force or not isinstance(record.get("id"), str) or not isinstance(record.get("type"), str):
        return False
    s = _schema(schema)
    with conn.transaction():
        supersedes = record.get("supersedes") if isinstance(record.get("supersedes"), dict) else None
        if supersedes and supersedes.get("id"):
            conn.execute(
                sql.SQL("DELETE FROM {}.records WHERE force=%s AND origin=%s AND record_id=%s").format(s),
                (force, origin, supersedes["id"]),
            )
            if supersedes.get("kind") == "retraction":
                return True
        conn.execute(
            sql.SQL("DELETE FROM {}.records WHERE force=%s AND origin=%s AND record_id=%s").format(s),
            (force, origin, record["id"]),
        )
        conn.execute(
            sql.SQL("INSERT INTO {}.records VALUES (%s,%s,%s,%s,%s,%s)").format(s),
            (force, origin, record["id"], record["type"], record.get("time"), orjson.dumps(record).decode()),
        )
        with conn.cursor() as cur:
            cur.executemany(
                sql.SQL("INSERT INTO {}.subject_keys VALUES (%s,%s,%s,%s,%s)").format(s),
                [(force, kind, value, origin, record["id"]) for kind, value in sorted(record_keys(record))],
            )
    return True


def index_records(
    conn: psycopg.Connection, force: str, records: Iterable[dict[str, Any]], schema: str = DEFAULT_SCHEMA
) -> int:
    """Add a force's records to its index; how many were indexed."""
    return sum(index_record(conn, force, r, schema) for r in records)


def find(
    conn: psycopg.Connection,
    force: str,
    keys: list[tuple[str, str]],
    record_types: Iterable[str],
    schema: str = DEFAULT_SCHEMA,
) -> list[dict[str, Any]]:
    """The force's records matching any of the keys, of the given types, oldest first."""
    types = list(record_types)
    if not keys or not types:
        return []
    s = _schema(schema)
    query = sql.SQL(
        "SELECT DISTINCT r.record, r.time, r.record_id FROM {s}.subject_keys k JOIN {s}.records r "
        "ON r.force=k.force AND r.origin=k.origin AND r.record_id=k.record_id "
        "WHERE k.force=%s AND (k.kind, k.value) IN (SELECT * FROM unnest(%s::text[], %s::text[])) "
        "AND r.record_type = ANY(%s) ORDER BY r.time, r.record_id"
    ).format(s=s)
    rows = conn.execute(query, (force, [k for k, _ in keys], [v for _, v in keys], types)).fetchall()
    return [row[0] for row in rows]

"""Lineage of re-sent source records: the same version keeps its id; a changed one supersedes the one before.

    lineage = Lineage()                      # in memory (tests, one batch)
    lineage = SqliteLineage(path)            # on disk: lineage across files and runs of the same mapping
    lineage = Stateless()                    # the default: version ids only, memory stays flat
    record = lineage.stamp(record, "crime-CR123")

A *version* is the SHA-256 of the record without `id`, `time` and `supersedes` (canonical JSON).  Its id is
the adapter's base id plus `-v` and the first 12 hex digits of that digest, so the same version always has
the same id and two versions never share one, with or without a store.  The store remembers, per source
key, the latest version's id and what that version superseded: a changed re-send then carries
`supersedes: {id: <latest id>, kind: correction}`, and translating the same input again gives identical
records (the same id and the same `supersedes`).  Without a store (`Stateless`, what adapters use when
given none) ids are still per version, but only a source that names what it replaces (a NIBRS Replace or
Delete) gets `supersedes`.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
from collections import OrderedDict
from typing import Any

from adapters.base import Record, make_id

IGNORED = ("id", "time", "supersedes")


def version(record: Record) -> str:
    """The digest of what the record says (everything but its id, time and supersedes), 64 hex digits."""
    content = {k: v for k, v in record.items() if k not in IGNORED}
    canonical = json.dumps(content, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def version_id(base_id: str, record: Record) -> str:
    """`<base id>-v<12 hex of the version>`: stable for one version, different between versions."""
    return make_id(base_id, "v" + version(record)[:12])


class Lineage:
    """In-memory store: source key -> (latest id, the id that version superseded), the latest `max_keys` keys."""

    def __init__(self, max_keys: int = 100_000) -> None:
        self._latest: OrderedDict[str, tuple[str, str | None]] = OrderedDict()
        self._max_keys = max_keys

    def get(self, key: str) -> tuple[str, str | None] | None:
        return self._latest.get(key)

    def put(self, key: str, record_id: str, superseded: str | None) -> None:
        self._latest[key] = (record_id, superseded)
        self._latest.move_to_end(key)
        if len(self._latest) > self._max_keys:  # a long-running ingest worker stays in bounded memory
            self._latest.popitem(last=False)

    def stamp(
        self,
        record: Record,
        key: str,
        *,
        record_id: str | None = None,
        original: str | None = None,
        kind: str = "correction",
    ) -> Record:
        """Give `record` its version id (or `record_id`) and, when it replaces another, `supersedes`.

        `original` is the id the source says this record replaces when the store has not seen the key
        (a NIBRS Replace names its incident, whose Initial report has the plain id).
        """
        new_id = record_id or version_id(record["id"], record)
        seen = self.get(key)
        if seen is not None and seen[0] == new_id:
            superseded = seen[1]
        else:
            superseded = seen[0] if seen is not None else original
            if superseded == new_id:
                superseded = None
            self.put(key, new_id, superseded)
        stamped = {**record, "id": new_id}
        if superseded:
            stamped["supersedes"] = {"id": superseded, "kind": kind}
        return _envelope_order(stamped)


class Stateless(Lineage):
    """Remembers nothing: version ids, and `supersedes` only where the source names what it replaces."""

    def get(self, key: str) -> tuple[str, str | None] | None:
        return None

    def put(self, key: str, record_id: str, superseded: str | None) -> None:
        return None


class SqliteLineage(Lineage):
    """The same store in an SQLite file, so a re-send in next week's file supersedes last week's record."""

    def __init__(self, path: str | os.PathLike) -> None:
        super().__init__()
        self._db = sqlite3.connect(os.fspath(path))
        self._db.execute("CREATE TABLE IF NOT EXISTS lineage (key TEXT PRIMARY KEY, id TEXT NOT NULL, superseded TEXT)")

    def get(self, key: str) -> tuple[str, str | None] | None:
        row = self._db.execute("SELECT id, superseded FROM lineage WHERE key = ?", (key,)).fetchone()
        return (row[0], row[1]) if row else None

    def put(self, key: str, record_id: str, superseded: str | None) -> None:
        with self._db:
            self._db.execute("INSERT OR REPLACE INTO lineage VALUES (?, ?, ?)", (key, record_id, superseded))

    def close(self) -> None:
        self._db.close()


_ORDER = ("specversion", "id", "source", "type", "time", "dataschema", "origin", "correlation_id", "supersedes")


def _envelope_order(record: dict[str, Any]) -> dict[str, Any]:
    """Envelope keys in the documented order (supersedes after correlation_id), the rest as they came."""
    head = {k: record[k] for k in _ORDER if k in record}
    return {**head, **{k: v for k, v in record.items() if k not in head}}

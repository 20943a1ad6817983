"""A SQLite index beside the audit log, so subject reports and correction routing need no full scan.

The index is derived data: the log (`audit.jsonl`) is the record, and `rebuild()` recreates the index from
it (`interchange audit reindex`).  The audit writer adds every entry it appends (`add`) and commits with its
fsync; readers (the CLI, the routing workers looking up past recipients) open it read-only.  WAL mode lets
them read while the writer writes.  If the index falls behind the log (a crash between the two, a restored
log), `catch_up()` adds the missing tail.

Tables: `entries` (seq -> the entry as JSON plus the columns queries filter on), `subjects` (subject key ->
seq), `holds` (covert holds placed and released), `disclosures` (entry id of each `disclose` entry -> seq)
and `undelivered` (the entry id each `undelivered` entry cancels): a disclosure counts only if no
`undelivered` entry cancels it.

A record's lineage is keyed by (origin agency, record id): `original()` answers, for a correction, what
became of the record it supersedes from that origin (who holds it, under which agreement), counting a
disclosure only if no `undelivered` entry cancels it.  A covert hold covers the whole lineage of the record
it is placed on (`live_holds()`).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from broker.audit.reading import LOG_NAME, read_entries

INDEX_NAME = "audit.index.sqlite"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS entries (
  seq INTEGER PRIMARY KEY, time TEXT, operation TEXT, outcome TEXT, reason TEXT, record_id TEXT,
  recipient TEXT, agreement TEXT, supersedes TEXT, entry BLOB NOT NULL);
CREATE INDEX IF NOT EXISTS entries_record ON entries (record_id);
CREATE INDEX IF NOT EXISTS entries_recipient ON entries (recipient);
CREATE INDEX IF NOT EXISTS entries_agreement ON entries (agreement);
CREATE INDEX IF NOT EXISTS entries_time ON entries (time);
CREATE TABLE IF NOT EXISTS subjects (key TEXT NOT NULL, seq INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS subjects_key ON subjects (key);
CREATE TABLE IF NOT EXISTS holds (
  hold_id TEXT PRIMARY KEY, record_id TEXT NOT NULL, reason TEXT, placed_at TEXT, placed_by TEXT,
  released_at TEXT, released_by TEXT);
CREATE INDEX IF NOT EXISTS holds_record ON holds (record_id);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT);
CREATE TABLE IF NOT EXISTS disclosures (entry_id TEXT PRIMARY KEY, seq INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS undelivered (cancels TEXT NOT NULL, seq INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS undelivered_cancels ON undelivered (cancels);
"""

# The seq of every `disclose` entry that an `undelivered` entry cancels (its delivery did not take place).
CANCELLED = "SELECT d.seq FROM disclosures d JOIN undelivered u ON u.cancels = d.entry_id"


@dataclass(frozen=True, slots=True)
class PastDelivery:
    """One earlier delivery of a record: who got it, under which agreement, when."""

    recipient: str
    agreement: str | None
    time: str
    seq: int


# decisions about a record that make its fate known (an `undelivered` entry cancels a `disclose`)
DECISION_OPERATIONS = ("disclose", "withhold", "reject", "undelivered")
RETRACTION_NOTICE = "retraction_notice"  # a disclose entry of a notice with no data (broker.routing.corrections)


@dataclass(frozen=True, slots=True)
class Original:
    """What the audit knows of record (origin, id), the one a correction supersedes.

    state: `known` (decided; `recipients` hold it), `pending` (a delivery of it failed and it has not been
    decided again yet), `unknown` (its origin never had it decided, as far as the index knows) or `foreign`
    (only other origins have a record with that id).
    """

    state: str
    recipients: tuple[PastDelivery, ...] = ()


@dataclass(frozen=True)
class Query:
    """Filters of an audit query: subject keys, recipient, agreement, record, operation and time window."""

    subject_keys: tuple[str, ...] = ()
    recipient: str | None = None
    agreement: str | None = None
    record_id: str | None = None
    operation: str | None = None
    since: str | None = None
    until: str | None = None


def held_key(origin: str, record_id: str) -> str:
    """The key of `live_holds()` for a record held through its lineage (origin and id)."""
    return f"{origin}\x00{record_id}"


class AuditIndex:
    """The SQLite index of the audit log: written by the audit writer, read by reports and corrections."""

    def __init__(self, path: Path, readonly: bool = False) -> None:
        self.path = path
        if readonly:
            self.db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, check_same_thread=False)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            self.db = sqlite3.connect(path, check_same_thread=False)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.executescript(_SCHEMA)
        self.db.execute("PRAGMA busy_timeout=5000")

    @classmethod
    def beside(cls, audit_dir: Path | str, readonly: bool = False) -> AuditIndex:
        """The index file in an audit directory."""
        return cls(Path(audit_dir) / INDEX_NAME, readonly)

    # ------------------------------------------------------------ writing (the audit writer only)
    def last_seq(self) -> int:
        """The highest audit seq the index holds (0 when empty)."""
        row = self.db.execute("SELECT max(seq) FROM entries").fetchone()
        return int(row[0] or 0)

    def add(self, entries: Iterable[dict[str, Any]]) -> None:
        """Index audit entries (entries, subject keys, deliveries, holds); committed by `commit`."""
        for entry in entries:
            seq = entry["seq"]
            given = entry.get("supersedes")
            supersedes: dict[str, Any] = given if isinstance(given, dict) else {}
            self.db.execute(
                "INSERT OR REPLACE INTO entries VALUES (?,?,?,?,?,?,?,?,?,?)",
                (
                    seq,
                    entry.get("time"),
                    entry.get("operation"),
                    entry.get("outcome"),
                    entry.get("reason"),
                    entry.get("record_id"),
                    entry.get("recipient"),
                    entry.get("agreement"),
                    supersedes.get("id"),
                    orjson.dumps(entry),
                ),
            )
            self.db.executemany(
                "INSERT INTO subjects VALUES (?,?)", [(k, seq) for k in entry.get("subject_keys") or ()]
            )
            self._hold_change(entry)
            self._delivery_change(entry)

    def _delivery_change(self, entry: dict[str, Any]) -> None:
        if entry.get("operation") == "disclose" and entry.get("entry_id"):
            self.db.execute("INSERT OR REPLACE INTO disclosures VALUES (?,?)", (entry["entry_id"], entry["seq"]))
        elif entry.get("operation") == "undelivered" and entry.get("cancels"):
            self.db.execute("INSERT INTO undelivered VALUES (?,?)", (entry["cancels"], entry["seq"]))

    def _hold_change(self, entry: dict[str, Any]) -> None:
        hold = entry.get("hold") or {}
        actor = orjson.dumps(entry.get("actor") or {}).decode()
        if entry.get("operation") == "hold" and hold.get("id"):
            self.db.execute(
                "INSERT OR IGNORE INTO holds VALUES (?,?,?,?,?,NULL,NULL)",
                (hold["id"], entry.get("record_id"), entry.get("justification"), entry.get("time"), actor),
            )
        elif entry.get("operation") == "release" and hold.get("id"):
            self.db.execute(
                "UPDATE holds SET released_at=?, released_by=? WHERE hold_id=? AND released_at IS NULL",
                (entry.get("time"), actor, hold["id"]),
            )

    def commit(self) -> None:
        """Commit what was added since the last commit."""
        self.db.commit()

    def catch_up(self, log_path: Path) -> int:
        """Add log entries the index does not have yet; returns how many."""
        if not log_path.exists():
            return 0
        last, added, batch = self.last_seq(), 0, []
        for entry in read_entries(log_path):
            if isinstance(entry.get("seq"), int) and entry["seq"] > last:
                batch.append(entry)
                if len(batch) >= 5000:
                    self.add(batch)
                    added, batch = added + len(batch), []
        self.add(batch)
        self.commit()
        return added + len(batch)

    def close(self) -> None:
        """Close the database."""
        self.db.close()

    # ------------------------------------------------------------ reading
    def original(self, origin: str, record_id: str) -> Original:
        """What became of record `record_id` published by agency `origin` (see `Original`)."""
        own: list[tuple[int, dict[str, Any]]] = []
        foreign = False
        for seq, blob in self.db.execute(
            f"SELECT seq, entry FROM entries WHERE record_id=? AND operation IN "
            f"({','.join('?' * len(DECISION_OPERATIONS))}) ORDER BY seq",
            (record_id, *DECISION_OPERATIONS),
        ):
            entry = orjson.loads(blob)
            if (entry.get("source") or entry.get("origin")) == origin:
                own.append((seq, entry))
            else:
                foreign = True
        if not own:
            return Original("foreign" if foreign else "unknown")
        # per recipient, the latest word: delivered (with its entry id), cancelled, or withheld
        latest: dict[str, tuple[str, str | None, PastDelivery | None]] = {}
        for seq, entry in own:
            recipient, operation = entry.get("recipient"), entry.get("operation")
            if not isinstance(recipient, str):
                continue
            if operation == "disclose" and entry.get("outcome") == "delivered":
                if entry.get("reason") == RETRACTION_NOTICE:
                    latest[recipient] = ("retracted", entry.get("entry_id"), None)
                else:
                    delivery = PastDelivery(recipient, entry.get("agreement"), entry.get("time") or "", seq)
                    latest[recipient] = ("delivered", entry.get("entry_id"), delivery)
            elif operation == "undelivered":
                if recipient in latest and latest[recipient][1] == entry.get("cancels"):
                    latest[recipient] = ("cancelled", None, None)
            elif operation == "withhold" and latest.get(recipient, ("cancelled",))[0] == "cancelled":
                latest[recipient] = ("withheld", None, None)  # a withholding never undoes a delivery
        holders = tuple(d for _, (_word, _, d) in sorted(latest.items()) if d is not None)
        if any(word == "cancelled" for word, _, _ in latest.values()):
            return Original("pending", holders)  # a correction waits; the holders so far still hold it
        return Original("known", holders)

    def recipients_of(self, origin: str, record_id: str) -> list[PastDelivery]:
        """Every recipient that holds record (origin, id): its latest delivery to each, none cancelled."""
        return list(self.original(origin, record_id).recipients)

    def query(self, q: Query) -> Iterator[dict[str, Any]]:
        """Entries matching every given filter, oldest first; a `disclose` entry whose delivery did not take
        place carries `cancelled_by` (the reason of the `undelivered` entry)."""
        sql = ["SELECT DISTINCT e.entry FROM entries e"]
        args: list[Any] = []
        where = []
        if q.subject_keys:
            sql.append("JOIN subjects s ON s.seq = e.seq")
            where.append(f"s.key IN ({','.join('?' * len(q.subject_keys))})")
            args.extend(q.subject_keys)
        for column, value in (
            ("recipient", q.recipient),
            ("agreement", q.agreement),
            ("record_id", q.record_id),
            ("operation", q.operation),
        ):
            if value is not None:
                where.append(f"e.{column} = ?")
                args.append(value)
        if q.since:
            where.append("e.time >= ?")
            args.append(q.since)
        if q.until:
            where.append("e.time <= ?")
            args.append(q.until)
        if where:
            sql.append("WHERE " + " AND ".join(where))
        sql.append("ORDER BY e.seq")
        cancelled = self.cancelled()
        for (blob,) in self.db.execute(" ".join(sql), args):
            entry = orjson.loads(blob)
            if entry.get("entry_id") in cancelled and entry.get("operation") == "disclose":
                entry["cancelled_by"] = cancelled[entry["entry_id"]]
            yield entry

    def cancelled(self) -> dict[str, str]:
        """disclose entry id -> the reason its delivery did not take place, for every cancelled disclosure."""
        rows = self.db.execute(
            "SELECT u.cancels, e.reason FROM undelivered u JOIN entries e ON e.seq = u.seq"
        ).fetchall()
        return {cancels: reason or "undelivered" for cancels, reason in rows}

    def live_holds(self) -> dict[str, list[str]]:
        """Record -> ids of the holds that are not released on it or on any record of its lineage.

        A hold names a record id and covers every record with that id; a hold placed on an original covers
        its corrections (and theirs), and a hold placed on a correction covers the record it supersedes:
        they are one record's history.  Lineage is keyed by origin and id (ids are unique per origin only),
        so a record reached through lineage is keyed `held_key(origin, id)` and another origin's record
        that reuses the id is not held by it.
        """
        holds: dict[str, set[str]] = {}
        for hold_id, record_id in self.db.execute("SELECT hold_id, record_id FROM holds WHERE released_at IS NULL"):
            holds.setdefault(record_id, set()).add(hold_id)
        if not holds:
            return {}
        linked: dict[tuple[str, str], set[tuple[str, str]]] = {}
        origins: dict[str, set[str]] = {}
        for record_id, supersedes, blob in self.db.execute(
            "SELECT DISTINCT record_id, supersedes, entry FROM entries WHERE supersedes IS NOT NULL "
            "AND operation IN ('disclose', 'withhold')"
        ):
            entry = orjson.loads(blob)
            origin = str(entry.get("source") or entry.get("origin") or "")
            mine, theirs = (origin, record_id), (origin, supersedes)
            linked.setdefault(mine, set()).add(theirs)
            linked.setdefault(theirs, set()).add(mine)
            origins.setdefault(record_id, set()).add(origin)
            origins.setdefault(supersedes, set()).add(origin)
        out: dict[str, set[str]] = {record_id: set(ids) for record_id, ids in holds.items()}
        for start, hold_ids in holds.items():
            frontier = [(origin, start) for origin in origins.get(start, ())]
            seen = set(frontier)
            while frontier:
                for other in linked.get(frontier.pop(), ()):
                    if other not in seen:
                        seen.add(other)
                        frontier.append(other)
            for origin, record_id in seen:
                out.setdefault(held_key(origin, record_id), set()).update(hold_ids)
        return {key: sorted(ids) for key, ids in out.items()}

    def holds(self) -> list[dict[str, Any]]:
        """Every covert hold, live and released, oldest first."""
        cols = ("hold_id", "record_id", "reason", "placed_at", "placed_by", "released_at", "released_by")
        return [
            dict(zip(cols, row, strict=True))
            for row in self.db.execute(f"SELECT {', '.join(cols)} FROM holds ORDER BY placed_at")
        ]

    def traffic(self) -> dict[str, dict[str, int]]:
        """agreement id -> {"delivered": n, "withheld": n} over the whole log."""
        out: dict[str, dict[str, int]] = {}
        for agreement, outcome, n in self.db.execute(
            "SELECT agreement, outcome, count(*) FROM entries WHERE agreement IS NOT NULL "
            f"AND outcome IN ('delivered', 'withheld') AND seq NOT IN ({CANCELLED}) GROUP BY agreement, outcome"
        ):
            out.setdefault(agreement, {"delivered": 0, "withheld": 0})[outcome] = n
        return out


def rebuild(audit_dir: Path | str) -> int:
    """Recreate the index from the log; returns the number of entries indexed."""
    path = Path(audit_dir) / INDEX_NAME
    for stale in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        stale.unlink(missing_ok=True)
    index = AuditIndex(path)
    try:
        return index.catch_up(Path(audit_dir) / LOG_NAME)
    finally:
        index.close()


def open_for_reading(audit_dir: Path | str) -> AuditIndex:
    """The index, brought up to date with the log first (created if it is missing)."""
    index = AuditIndex.beside(audit_dir)
    index.catch_up(Path(audit_dir) / LOG_NAME)
    return index


class Originals:
    """`Context.original` for workers: what became of record (origin, id), read from the index (lazily opened).

    The index may be missing (a fresh deployment) or unreadable for a moment (the writer restarting); then
    the original is `unknown` and the correction waits rather than being routed blind.
    """

    def __init__(self, audit_dir: Path | str) -> None:
        self.path = Path(audit_dir) / INDEX_NAME
        self._index: AuditIndex | None = None

    def __call__(self, origin: str, record_id: str) -> Original:
        """What became of record `record_id` published by `origin`; `unknown` when the index cannot tell yet."""
        try:
            if self._index is None:
                if not self.path.exists():
                    return Original("unknown")
                self._index = AuditIndex(self.path, readonly=True)
            return self._index.original(origin, record_id)
        except sqlite3.Error:
            self._index = None
            return Original("unknown")

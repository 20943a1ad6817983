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
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

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


@dataclass(frozen=True)
class Query:
    subject_keys: tuple[str, ...] = ()
    recipient: str | None = None
    agreement: str | None = None
    record_id: str | None = None
    operation: str | None = None
    since: str | None = None
    until: str | None = None


class AuditIndex:
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
        return cls(Path(audit_dir) / INDEX_NAME, readonly)

    # ------------------------------------------------------------ writing (the audit writer only)
    def last_seq(self) -> int:
        row = self.db.execute("SELECT max(seq) FROM entries").fetchone()
        return int(row[0] or 0)

    def add(self, entries: Iterable[dict[str, Any]]) -> None:
        for entry in entries:
            seq = entry["seq"]
            supersedes = entry.get("supersedes") if isinstance(entry.get("supersedes"), dict) else {}
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
        self.db.commit()

    def catch_up(self, log_path: Path) -> int:
        """Add log entries the index does not have yet; returns how many."""
        from broker.auditlog import read_entries

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
        self.db.close()

    # ------------------------------------------------------------ reading
    def recipients_of(self, record_id: str) -> list[PastDelivery]:
        """Every recipient a record was delivered to (the latest delivery per recipient)."""
        rows = self.db.execute(
            "SELECT recipient, agreement, time, max(seq) FROM entries WHERE record_id=? "
            f"AND operation='disclose' AND outcome='delivered' AND seq NOT IN ({CANCELLED}) "
            "GROUP BY recipient ORDER BY recipient",
            (record_id,),
        ).fetchall()
        return [PastDelivery(r[0], r[1], r[2], r[3]) for r in rows]

    def query(self, q: Query) -> Iterator[dict[str, Any]]:
        """Entries matching every given filter, oldest first; a `disclose` entry whose delivery did not take
        place carries `cancelled_by` (the reason of the `undelivered` entry)."""
        sql, args = ["SELECT DISTINCT e.entry FROM entries e"], []
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
            "SELECT u.cancels, e.reason FROM undelivered u JOIN entries e ON e.seq = u.seq").fetchall()
        return {cancels: reason or "undelivered" for cancels, reason in rows}

    def live_holds(self) -> dict[str, list[str]]:
        """record id -> ids of the holds on it that are not released."""
        holds: dict[str, list[str]] = {}
        for hold_id, record_id in self.db.execute(
            "SELECT hold_id, record_id FROM holds WHERE released_at IS NULL"
        ):
            holds.setdefault(record_id, []).append(hold_id)
        return holds

    def holds(self) -> list[dict[str, Any]]:
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
    from broker.auditlog import LOG_NAME

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
    from broker.auditlog import LOG_NAME

    index = AuditIndex.beside(audit_dir)
    index.catch_up(Path(audit_dir) / LOG_NAME)
    return index


class PastRecipients:
    """`Context.past_recipients` for workers: who received a record, read from the index (lazily opened).

    The index may be missing (a fresh deployment) or on the writer's side of a restart; then nobody is
    known to have received the record and the correction goes where today's agreements send it.
    """

    def __init__(self, audit_dir: Path | str) -> None:
        self.path = Path(audit_dir) / INDEX_NAME
        self._index: AuditIndex | None = None

    def __call__(self, record_id: str) -> list[PastDelivery]:
        try:
            if self._index is None:
                if not self.path.exists():
                    return []
                self._index = AuditIndex(self.path, readonly=True)
            return self._index.recipients_of(record_id)
        except sqlite3.Error:
            self._index = None
            return []

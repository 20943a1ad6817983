"""The audit log on disk: one JSON line per entry, hash-chained, appended by a single writer.

Each line holds the entry plus `seq` (1, 2, 3 …), `prev` (the previous line's hash) and `hash` =
SHA-256 of `prev` and the canonical JSON of the entry without `hash`.  Editing, deleting, inserting or
reordering any line breaks the chain at that line; `verify()` names the first bad one, and refuses a line
with a duplicated JSON key (the hash covers what orjson kept, another reader may keep the other value).

The writer (`AuditWriter`) consumes `interchange.audit`, appends a batch, fsyncs, then acks the batch:
an entry the routing core saw confirmed is in RabbitMQ until it is on disk here.  Redelivered batches
already on disk are recognised by their batch id and not written twice.
"""

from __future__ import annotations

import base64
import datetime as dt
import errno
import hashlib
import os
import random
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from broker import topology
from broker.audit.reading import LOG_NAME
from broker.audit.reading import read_entries as read_entries  # re-exported: the log is where readers look
from broker.audit.sidecar import Sidecar
from broker.ops import logs
from broker.routing.jsonsafe import duplicate_key
from broker.transports.amqp import blocking_channel

QUARANTINE_NAME = "audit.quarantine.jsonl"  # partial lines cut from the log on start, with where and why
REPAIR_OPERATION = "audit_repair"
_REPAIR_MARK = b'"audit_repair"'
GENESIS = "0" * 64
_SORT = orjson.OPT_SORT_KEYS


def entry_hash(prev: str, entry: dict[str, Any]) -> str:
    """The chain hash of an entry: SHA-256 of the previous hash and the entry's canonical JSON without `hash`."""
    body = {k: v for k, v in entry.items() if k != "hash"}
    return hashlib.sha256(prev.encode() + orjson.dumps(body, option=_SORT)).hexdigest()


class AuditWriteError(Exception):
    """The log could not be appended to or fsynced; the log is rolled back to its last fsynced entry."""

    def __init__(self, path: Path, operation: str, cause: OSError) -> None:
        self.path, self.operation, self.errno = path, operation, cause.errno
        self.reason = cause.strerror or repr(cause)
        super().__init__(f"{path}: {operation} failed: {self.reason}")

    @property
    def disk_full(self) -> bool:
        """Whether the write failed because the disk or the quota is full."""
        return self.errno in (errno.ENOSPC, errno.EDQUOT)


class AuditLog:
    """Append-only, hash-chained JSONL file. Only one process may write it at a time.

    `append()` writes straight to the file; `sync()` fsyncs and only then counts the entries as written
    (batches remembered, index and checkpoints told).  If either fails, the file is cut back to the last
    fsynced entry and `AuditWriteError` is raised: nothing half-written stays, nothing unsynced is signed.
    On open, a partial last line (a write cut short by a crash or a full disk) is moved to the quarantine
    file and an `audit_repair` entry records it in the chain.
    """

    def __init__(self, directory: Path, remember_batches: int = 100_000, sidecar: Any = None) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.path = directory / LOG_NAME
        self.quarantine_path = directory / QUARANTINE_NAME
        self.seq, self.head = 0, GENESIS
        self._batches: deque[str] = deque(maxlen=remember_batches)
        self._batch_set: set[str] = set()
        self._partial: dict[str, int] = {}  # batch -> its entries on disk, when not all of them are
        self._pending: list[dict[str, Any]] = []  # appended, not yet fsynced
        self._recorded_repairs: set[tuple[int, str]] = set()
        self.repairs: list[dict[str, Any]] = []  # quarantined fragments not yet recorded in the chain
        self._recover()
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
        self._synced = (os.fstat(self._fd).st_size, self.seq, self.head)
        # index and signed checkpoints (broker.audit.sidecar); best effort, never blocks an append
        self.sidecar = sidecar
        if sidecar is not None:
            sidecar.opened(self.path)
        try:
            self.record_repairs()
        except AuditWriteError as exc:  # the writer records them before its next batch
            logs.get("interchange.audit").error("audit_repair_not_recorded_yet", error=str(exc))

    # ------------------------------------------------------------ opening
    def _recover(self) -> None:
        if not self.path.exists():
            return
        good_end, fragment = 0, b""
        last_batch, last_count, last_total = "", 0, 0
        with self.path.open("rb") as fh:
            for line in fh:
                if not line.endswith(b"\n"):
                    fragment = line
                    break
                good_end += len(line)
                if not line.strip():
                    continue
                try:
                    entry = orjson.loads(line)
                except orjson.JSONDecodeError:
                    continue  # not ours to repair: `audit verify` names it
                if not isinstance(entry, dict):
                    continue
                self.seq, self.head = entry.get("seq", self.seq), entry.get("hash", self.head)
                batch = entry.get("batch", "")
                if batch != last_batch:
                    self._close_batch(last_batch, last_count, last_total)
                    last_batch, last_count = batch, 0
                last_count, last_total = last_count + 1, entry.get("batch_entries", 0)
                if entry.get("operation") == REPAIR_OPERATION:
                    self._recorded_repairs.add((entry.get("offset", -1), entry.get("sha256", "")))
        if fragment and self._completes_chain(fragment):
            with self.path.open("ab") as fh:  # a whole entry that only lacks its newline
                fh.write(b"\n")
                os.fsync(fh.fileno())
            entry = orjson.loads(fragment)
            self.seq, self.head = entry["seq"], entry["hash"]
            if entry.get("batch", "") != last_batch:
                self._close_batch(last_batch, last_count, last_total)
                last_batch, last_count = entry.get("batch", ""), 0
            last_count, last_total = last_count + 1, entry.get("batch_entries", 0)
        elif fragment:
            self._quarantine(fragment, good_end)
        self._close_batch(last_batch, last_count, last_total)
        self._pending_repairs()

    def _close_batch(self, batch: str, count: int, total: int) -> None:
        if total and count < total:
            self._partial[batch] = count
        else:
            self._remember(batch)

    def _completes_chain(self, fragment: bytes) -> bool:
        problem, _seq, _head = _check_line(fragment, self.head, self.seq + 1)
        return not problem

    def _quarantine(self, fragment: bytes, offset: int) -> None:
        """Move a partial last line to the quarantine file (fsynced), then cut it from the log."""
        record = {
            "time": _now(),
            "log": LOG_NAME,
            "offset": offset,
            "bytes": len(fragment),
            "sha256": hashlib.sha256(fragment).hexdigest(),
            "after_seq": self.seq,
            "content": base64.b64encode(fragment).decode(),
        }
        try:
            with self.quarantine_path.open("ab") as fh:
                fh.write(orjson.dumps(record, option=_SORT) + b"\n")
                fh.flush()
                os.fsync(fh.fileno())
            os.truncate(self.path, offset)
            with self.path.open("ab") as fh:
                os.fsync(fh.fileno())
        except OSError as exc:
            raise AuditWriteError(self.quarantine_path, "quarantining a partial line", exc) from exc
        logs.get("interchange.audit").warning(
            "audit_partial_line_quarantined",
            path=str(self.path),
            offset=offset,
            bytes=len(fragment),
            quarantine=str(self.quarantine_path),
            after_seq=self.seq,
        )

    def _pending_repairs(self) -> None:
        """Quarantined fragments whose `audit_repair` entry is not in the chain yet."""
        if not self.quarantine_path.exists():
            return
        for raw in self.quarantine_path.read_bytes().splitlines():
            try:
                record = orjson.loads(raw)
            except orjson.JSONDecodeError:
                continue
            if isinstance(record, dict) and (record.get("offset"), record.get("sha256")) not in self._recorded_repairs:
                self.repairs.append(record)

    def record_repairs(self) -> None:
        """Append and fsync an `audit_repair` entry for each quarantined fragment (raises AuditWriteError)."""
        if not self.repairs:
            return
        entries = [
            {
                "operation": REPAIR_OPERATION,
                "outcome": "quarantined",
                "time": _now(),
                "entry_id": f"repair-{r['sha256'][:16]}-{r['offset']}",
                "quarantine": QUARANTINE_NAME,
                "offset": r["offset"],
                "bytes": r.get("bytes"),
                "sha256": r["sha256"],
                "quarantined_at": r.get("time"),
                "actor": {"system": "interchange", "process": "audit-writer"},
            }
            for r in self.repairs
        ]
        self.append(entries, batch=entries[0]["entry_id"])
        self.sync()
        self._recorded_repairs.update((r["offset"], r["sha256"]) for r in self.repairs)
        self.repairs = []

    # ------------------------------------------------------------ batches
    def _remember(self, batch: str) -> None:
        self._partial.pop(batch, None)
        if not batch or batch in self._batch_set:
            return
        if len(self._batches) == self._batches.maxlen:
            self._batch_set.discard(self._batches[0])
        self._batches.append(batch)
        self._batch_set.add(batch)

    def has_batch(self, batch: str) -> bool:
        """True when every entry of the batch is on disk and fsynced."""
        return batch in self._batch_set

    def on_disk(self, batch: str, total: int) -> int:
        """How many of the batch's `total` entries are already fsynced (a crash can cut a batch short)."""
        if batch in self._batch_set:
            return total
        return self._partial.get(batch, 0)

    # ------------------------------------------------------------ writing
    def append(self, entries: list[dict[str, Any]], batch: str = "", total: int | None = None) -> None:
        """Write entries (of a batch of `total`, default all of them); durable only after `sync()`."""
        total = len(entries) if total is None else total
        lines = []
        seq, head = self.seq, self.head
        chained = []
        for entry in entries:
            seq += 1
            entry = dict(entry, seq=seq, prev=head, batch=batch, batch_entries=total)
            entry["hash"] = head = entry_hash(head, entry)
            lines.append(orjson.dumps(entry, option=_SORT))
            chained.append(entry)
        data = b"\n".join(lines) + b"\n"
        try:
            written = 0
            while written < len(data):
                written += os.write(self._fd, data[written:])
        except OSError as exc:
            self.rollback()
            raise AuditWriteError(self.path, "append", exc) from exc
        self.seq, self.head = seq, head
        self._pending.extend(chained)

    def sync(self) -> None:
        """fsync; then the appended entries count as written (batches, index, checkpoints)."""
        try:
            os.fsync(self._fd)
        except OSError as exc:
            self.rollback()
            raise AuditWriteError(self.path, "fsync", exc) from exc
        self._synced = (os.fstat(self._fd).st_size, self.seq, self.head)
        pending, self._pending = self._pending, []
        counts: dict[str, tuple[int, int]] = {}
        for entry in pending:
            done, _total = counts.get(entry["batch"], (self._partial.get(entry["batch"], 0), 0))
            counts[entry["batch"]] = (done + 1, entry["batch_entries"])
        for batch, (done, total) in counts.items():
            self._close_batch(batch, done, total)
        if self.sidecar is not None:
            if pending:
                self.sidecar.appended(pending)
            self.sidecar.synced(self.seq, self.head)

    def rollback(self) -> None:
        """Cut the file back to the last fsynced entry and forget what was appended since."""
        size, self.seq, self.head = self._synced
        self._pending = []
        try:
            os.ftruncate(self._fd, size)
        except OSError as exc:
            logs.get("interchange.audit").error(
                "audit_rollback_failed",
                path=str(self.path),
                error=repr(exc),
                note="the writer reopens the log; a partial line is quarantined",
            )
            raise AuditWriteError(self.path, "rollback", exc) from exc

    @property
    def closed(self) -> bool:
        """Whether the log file is closed."""
        return self._fd < 0

    def close(self) -> None:
        """fsync what is appended (rolled back if that fails), close; the final checkpoint covers only synced."""
        if self.closed:
            return
        try:
            self.sync()
        finally:
            os.close(self._fd)
            self._fd = -1
            if self.sidecar is not None:
                _size, seq, head = self._synced
                self.sidecar.closed(seq, head)


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class Verdict:
    """The outcome of verifying the chain: entries checked and, when broken, the first bad line and why."""

    ok: bool
    entries: int
    first_bad_line: int | None = None
    first_bad_seq: int | None = None
    problem: str = ""
    repairs: tuple[int, ...] = ()  # seq of each audit_repair entry (a partial line quarantined on start)

    def __str__(self) -> str:
        if self.ok:
            repaired = (
                (
                    f"; {len(self.repairs)} partial line(s) quarantined on start and recorded at seq "
                    f"{', '.join(map(str, self.repairs))} (see {QUARANTINE_NAME})"
                )
                if self.repairs
                else ""
            )
            return f"audit log intact: {self.entries} entries, chain verified{repaired}"
        return f"audit log BROKEN at line {self.first_bad_line} (entry seq {self.first_bad_seq}): {self.problem}"


def verify(path: Path) -> Verdict:
    """Recompute the chain; the first line whose seq, prev or hash does not follow is reported."""
    if not path.exists():
        return Verdict(True, 0)
    prev, expected_seq, line_no = GENESIS, 1, 0
    repairs: list[int] = []
    with path.open("rb") as fh:
        for line_no, line in enumerate(fh, start=1):
            problem, seq, head = _check_line(line, prev, expected_seq)
            if problem:
                return Verdict(False, line_no - 1, line_no, seq, problem, tuple(repairs))
            if _REPAIR_MARK in line and orjson.loads(line).get("operation") == REPAIR_OPERATION:
                repairs.append(seq or 0)
            prev, expected_seq = head, (seq or 0) + 1
    return Verdict(True, line_no, repairs=tuple(repairs))


def _check_line(line: bytes, prev: str, expected_seq: int) -> tuple[str, int | None, str]:
    """(problem or "", seq, the line's hash); parses the line once (verification is a hot loop)."""
    try:
        entry = orjson.loads(line)
    except orjson.JSONDecodeError:
        return "line is not valid JSON (edited or truncated)", None, ""
    if not isinstance(entry, dict) or not isinstance(entry.get("hash"), str):
        return "line is not an audit entry", None, ""
    seq = entry.get("seq")
    claimed = entry.pop("hash")
    body = orjson.dumps(entry, option=_SORT)
    # strict parse: orjson keeps the last of two equal keys, a first-key-wins reader the other value.  A line
    # exactly as the writer spells it (canonical JSON) cannot hold a duplicate; any other is checked in full
    if line.rstrip(b"\r\n") != orjson.dumps(dict(entry, hash=claimed), option=_SORT):
        duplicated = duplicate_key(line, dict(entry, hash=claimed))
        if duplicated is not None:
            return (
                f"duplicate JSON key {duplicated!r}: readers disagree on this entry (strict parse)",
                seq if isinstance(seq, int) else None,
                "",
            )
    if seq != expected_seq:
        if isinstance(seq, int) and seq > expected_seq:
            return f"seq {seq} where {expected_seq} was expected: entries deleted or reordered", seq, ""
        return f"seq {seq} where {expected_seq} was expected: entries inserted or reordered", seq, ""
    if entry.get("prev") != prev:
        return "prev does not match the hash of the entry before it (entry inserted, deleted or reordered)", seq, ""
    if hashlib.sha256(prev.encode() + body).hexdigest() != claimed:
        return "hash does not match the entry's content (entry edited)", seq, ""
    return "", seq, claimed


class Backoff:
    """Exponential back-off with jitter: each wait is drawn from [delay/2, delay], delay doubling to `cap`."""

    def __init__(self, first: float = 0.5, cap: float = 30.0, rng: random.Random | None = None) -> None:
        self.first, self.cap, self.rng = first, cap, rng or random.Random()
        self.delay = first

    def next(self) -> float:
        """The next wait (jittered), doubling the delay up to the cap."""
        wait = self.rng.uniform(self.delay / 2, self.delay)
        self.delay = min(self.cap, self.delay * 2)
        return wait

    def reset(self) -> None:
        """Start again from the first delay."""
        self.delay = self.first


class AuditWriter:
    """Consumes the audit queue and appends to the log in fsynced batches (one per process, SAC queue).

    A batch is acked only once every entry of it is appended and fsynced.  When the disk fails (full, or an
    I/O error) the writer keeps the batch, says what it waits for, and retries with back-off; the batch never
    goes back to the queue, so no delivery limit can count it.  When the writer stops for any reason it closes
    its connection first, so the unacked batches go at once to a replacement.
    """

    def __init__(
        self,
        settings: Any,
        batch_size: int | None = None,
        idle_seconds: float = 0.05,
        metrics: Any = None,
        backoff: Backoff | None = None,
        log: Any = None,
    ) -> None:
        """`log`: where entries go (an `AuditLog` or its twin `broker.audit.memory.MemoryAuditLog`); by default
        the file log in `settings.audit_dir`, with its index and signed checkpoints."""
        self.settings = settings
        self.metrics = metrics
        self.connected = False
        if log is None:
            sidecar = Sidecar.for_writer(settings.audit_dir, metrics, settings=settings)  # signing key, anchor
            log = AuditLog(Path(settings.audit_dir), sidecar=sidecar)
        self.log = log
        self.batch_size = batch_size or settings.audit_batch
        self.idle_seconds = idle_seconds
        self.backoff = backoff or Backoff()
        self.events = logs.get("interchange.audit")
        self.written = 0
        self.waiting_for = ""  # what a failing write waits for ("" while writing normally)
        self._stop = False

    def stop(self) -> None:
        """Ask the writer to stop after the current batch."""
        self._stop = True

    def run(self, stop_when_idle: bool = False) -> int:
        """Write until stopped (or, with stop_when_idle, until the queue is empty). Returns entries written."""
        connection, channel = blocking_channel(
            self.settings.amqp_url, self.settings.core_vhost, "interchange-audit-writer", self.settings.tls
        )
        try:
            channel.basic_qos(prefetch_count=self.batch_size * 2)
            self.connected = True
            self.events.info("audit_writer_started", path=str(self.log.path), seq=self.log.seq)
            batch: list[tuple[Any, Any, bytes]] = []
            for method, props, body in channel.consume(topology.AUDIT_QUEUE, inactivity_timeout=self.idle_seconds):
                if method is not None:
                    batch.append((method, props, body))
                if batch and (method is None or len(batch) >= self.batch_size):
                    if not self._write_until_done(batch, connection):
                        break  # stopping: the batch goes back with the connection, unacked
                    channel.basic_ack(batch[-1][0].delivery_tag, multiple=True)
                    batch = []
                if method is None and (self._stop or stop_when_idle):
                    break
        finally:
            self.connected = False
            try:
                if connection.is_open:
                    connection.close()
            finally:
                self._close_log()
        return self.written

    def _close_log(self) -> None:
        try:
            self.log.close()
        except AuditWriteError as exc:  # nothing unsynced was acked: the queue still holds it
            self.events.error("audit_log_close_failed", error=str(exc))

    def _write_until_done(self, batch: list[tuple[Any, Any, bytes]], connection: Any) -> bool:
        """Write the batch, retrying with back-off while the disk fails; False if told to stop meanwhile."""
        while True:
            try:
                self._write(batch)
            except AuditWriteError as exc:
                self._waiting(exc, batch, connection)
                if self._stop:
                    return False
                continue
            if self.waiting_for:
                self.events.info("audit_writer_resumed", after=self.waiting_for, entries=self.written)
            self.waiting_for = ""
            self.backoff.reset()
            self._set_lag(0.0)
            return True

    def _waiting(self, exc: AuditWriteError, batch: list[tuple[Any, Any, bytes]], connection: Any) -> None:
        self.waiting_for = "disk space" if exc.disk_full else f"the disk ({exc.reason})"
        wait = self.backoff.next()
        oldest = min((p.timestamp for _m, p, _b in batch if getattr(p, "timestamp", None)), default=None)
        lag = max(0.0, time.time() - oldest) if oldest else 0.0
        self._set_lag(lag)
        if self.metrics is not None:
            self.metrics.audit_write_failures.inc()
        self.events.warning(
            "audit_writer_waiting",
            waiting_for=self.waiting_for,
            operation=exc.operation,
            error=exc.reason,
            path=str(exc.path),
            batches_held=len(batch),
            oldest_entry_age_seconds=round(lag, 1),
            retry_in_seconds=round(wait, 2),
            note="batches stay unacked in hand; nothing is lost or dead-lettered",
        )
        deadline = time.monotonic() + wait
        while not self._stop and time.monotonic() < deadline:  # keeps the connection's heartbeats answered
            connection.sleep(min(0.2, max(0.0, deadline - time.monotonic())))

    def _set_lag(self, seconds: float) -> None:
        if self.metrics is not None:
            self.metrics.audit_lag.set(seconds)

    def _write(self, batch: list[tuple[Any, Any, bytes]]) -> None:
        before = self.written
        try:
            self.log.record_repairs()
            for _method, props, body in batch:
                entries, batch_id = _batch_of(body, props)
                done = self.log.on_disk(batch_id, len(entries))
                if done < len(entries):
                    self.log.append(entries[done:], batch_id, total=len(entries))
                    self.written += len(entries) - done
            self.log.sync()
        except AuditWriteError:
            self.written = before
            raise
        if self.metrics is not None:
            self.metrics.audit_written.inc(self.written - before)


UNREADABLE_OPERATION = "audit_message_unreadable"
_KEEP_UNREADABLE = 4096


def _batch_of(body: bytes, props: Any) -> tuple[list[dict[str, Any]], str]:
    """(entries, batch id) of an audit message; one that cannot be read is recorded as it is, never looped on.

    Without a delivery limit on the audit queue, a message the writer cannot read would come back for ever;
    instead an `audit_message_unreadable` entry keeps its digest, size and first 4 KiB in the chain.
    """
    try:
        message = orjson.loads(body)
        entries, batch_id = message["entries"], message["batch"]
        if isinstance(entries, list) and all(isinstance(e, dict) for e in entries) and isinstance(batch_id, str):
            return entries, batch_id
    except (orjson.JSONDecodeError, KeyError, TypeError):
        pass
    digest = hashlib.sha256(body).hexdigest()
    logs.get("interchange.audit").error(
        "audit_message_unreadable", sha256=digest, bytes=len(body), message_id=getattr(props, "message_id", None)
    )
    entry_id = f"unreadable-{digest[:32]}"
    entry = {
        "operation": UNREADABLE_OPERATION,
        "outcome": "recorded",
        "time": _now(),
        "entry_id": entry_id,
        "sha256": digest,
        "bytes": len(body),
        "message_id": getattr(props, "message_id", None),
        "content": base64.b64encode(body[:_KEEP_UNREADABLE]).decode(),
        "actor": {"system": "interchange", "process": "audit-writer"},
    }
    return [entry], entry_id

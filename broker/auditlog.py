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

import hashlib
import os
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from broker import logs, topology
from broker.jsonsafe import duplicate_key

LOG_NAME = "audit.jsonl"
GENESIS = "0" * 64
_SORT = orjson.OPT_SORT_KEYS


def entry_hash(prev: str, entry: dict[str, Any]) -> str:
    body = {k: v for k, v in entry.items() if k != "hash"}
    return hashlib.sha256(prev.encode() + orjson.dumps(body, option=_SORT)).hexdigest()


class AuditLog:
    """Append-only, hash-chained JSONL file. Only one process may write it at a time."""

    def __init__(self, directory: Path, remember_batches: int = 100_000, sidecar: Any = None) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.path = directory / LOG_NAME
        self.seq, self.head = 0, GENESIS
        self._batches: deque[str] = deque(maxlen=remember_batches)
        self._batch_set: set[str] = set()
        self._recover()
        self._fh = self.path.open("ab")
        # index and signed checkpoints (broker.auditsidecar); best effort, never blocks an append
        self.sidecar = sidecar
        if sidecar is not None:
            sidecar.opened(self.path)

    def _recover(self) -> None:
        if not self.path.exists():
            return
        for entry in read_entries(self.path):
            self.seq, self.head = entry.get("seq", self.seq), entry.get("hash", self.head)
            self._remember(entry.get("batch", ""))

    def _remember(self, batch: str) -> None:
        if not batch or batch in self._batch_set:
            return
        if len(self._batches) == self._batches.maxlen:
            self._batch_set.discard(self._batches[0])
        self._batches.append(batch)
        self._batch_set.add(batch)

    def has_batch(self, batch: str) -> bool:
        return batch in self._batch_set

    def append(self, entries: list[dict[str, Any]], batch: str = "") -> None:
        lines, chained = [], []
        for entry in entries:
            self.seq += 1
            entry = dict(entry, seq=self.seq, prev=self.head, batch=batch)
            entry["hash"] = self.head = entry_hash(self.head, entry)
            lines.append(orjson.dumps(entry, option=_SORT))
            chained.append(entry)
        self._fh.write(b"\n".join(lines) + b"\n")
        self._remember(batch)
        if self.sidecar is not None:
            self.sidecar.appended(chained)

    def sync(self) -> None:
        self._fh.flush()
        os.fsync(self._fh.fileno())
        if self.sidecar is not None:
            self.sidecar.synced(self.seq, self.head)

    def close(self) -> None:
        self.sync()
        self._fh.close()
        if self.sidecar is not None:
            self.sidecar.closed(self.seq, self.head)


def read_entries(path: Path) -> Iterator[dict[str, Any]]:
    with path.open("rb") as fh:
        for line in fh:
            if line.strip():
                try:
                    yield orjson.loads(line)
                except orjson.JSONDecodeError:
                    yield {"_unreadable": line[:80].decode(errors="replace")}


@dataclass(frozen=True)
class Verdict:
    ok: bool
    entries: int
    first_bad_line: int | None = None
    first_bad_seq: int | None = None
    problem: str = ""

    def __str__(self) -> str:
        if self.ok:
            return f"audit log intact: {self.entries} entries, chain verified"
        return f"audit log BROKEN at line {self.first_bad_line} (entry seq {self.first_bad_seq}): {self.problem}"


def verify(path: Path) -> Verdict:
    """Recompute the chain; the first line whose seq, prev or hash does not follow is reported."""
    if not path.exists():
        return Verdict(True, 0)
    prev, expected_seq, line_no = GENESIS, 1, 0
    with path.open("rb") as fh:
        for line_no, line in enumerate(fh, start=1):
            problem, seq, head = _check_line(line, prev, expected_seq)
            if problem:
                return Verdict(False, line_no - 1, line_no, seq, problem)
            prev, expected_seq = head, (seq or 0) + 1
    return Verdict(True, line_no)


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
            return f"duplicate JSON key {duplicated!r}: readers disagree on this entry (strict parse)", \
                seq if isinstance(seq, int) else None, ""
    if seq != expected_seq:
        if isinstance(seq, int) and seq > expected_seq:
            return f"seq {seq} where {expected_seq} was expected: entries deleted or reordered", seq, ""
        return f"seq {seq} where {expected_seq} was expected: entries inserted or reordered", seq, ""
    if entry.get("prev") != prev:
        return "prev does not match the hash of the entry before it (entry inserted, deleted or reordered)", seq, ""
    if hashlib.sha256(prev.encode() + body).hexdigest() != claimed:
        return "hash does not match the entry's content (entry edited)", seq, ""
    return "", seq, claimed


class AuditWriter:
    """Consumes the audit queue and appends to the log in fsynced batches (one per process, SAC queue)."""

    def __init__(self, settings: Any, batch_size: int | None = None, idle_seconds: float = 0.05,
                 metrics: Any = None) -> None:
        self.settings = settings
        self.metrics = metrics
        self.connected = False
        from broker.auditsidecar import Sidecar
        sidecar = Sidecar.for_writer(settings.audit_dir, metrics, settings=settings)   # signing key, anchor
        self.log = AuditLog(Path(settings.audit_dir), sidecar=sidecar)
        self.batch_size = batch_size or settings.audit_batch
        self.idle_seconds = idle_seconds
        self.events = logs.get("interchange.audit")
        self.written = 0
        self._stop = False

    def stop(self) -> None:
        self._stop = True

    def run(self, stop_when_idle: bool = False) -> int:
        """Write until stopped (or, with stop_when_idle, until the queue is empty). Returns entries written."""
        from broker.transport import blocking_channel

        connection, channel = blocking_channel(self.settings.amqp_url, self.settings.core_vhost,
                                               "interchange-audit-writer", self.settings.tls)
        channel.basic_qos(prefetch_count=self.batch_size * 2)
        self.connected = True
        self.events.info("audit_writer_started", path=str(self.log.path), seq=self.log.seq)
        try:
            batch: list[tuple[Any, bytes]] = []
            for method, _props, body in channel.consume(topology.AUDIT_QUEUE, inactivity_timeout=self.idle_seconds):
                if method is not None:
                    batch.append((method, body))
                if batch and (method is None or len(batch) >= self.batch_size):
                    self._write(batch)
                    channel.basic_ack(batch[-1][0].delivery_tag, multiple=True)
                    batch = []
                if method is None and (self._stop or stop_when_idle):
                    break
        finally:
            self.connected = False
            self.log.close()
            if connection.is_open:
                connection.close()
        return self.written

    def _write(self, batch: list[tuple[Any, bytes]]) -> None:
        before = self.written
        for _method, body in batch:
            message = orjson.loads(body)
            if self.log.has_batch(message["batch"]):
                continue
            self.log.append(message["entries"], message["batch"])
            self.written += len(message["entries"])
        self.log.sync()
        if self.metrics is not None:
            self.metrics.audit_written.inc(self.written - before)

"""The in-memory twin of `broker.audit.log.AuditLog`: the same hash chain, batches and append/sync/rollback
contract, held in a list, so a test (or a dry run) can run the audit writer's logic without a disk.

Entries count as written only after `sync()`; `rollback()` forgets what was appended since; a failure can be
injected (`fail_next("append" | "fsync")`), raised as `AuditWriteError` with the log rolled back, as the file
log does.  `lines()` gives the log as the file would hold it (one sorted-key JSON object a line), so
`broker.audit.log.verify` can check the chain.  `tests/test_audit_log_contract.py` runs the same cases on both.
"""

from __future__ import annotations

import collections
import errno
import os
from collections import deque
from pathlib import Path
from typing import Any

import orjson

from broker.audit.log import GENESIS, AuditWriteError, entry_hash
from broker.audit.reading import LOG_NAME


class MemoryAuditLog:
    """Append-only, hash-chained audit entries in memory, durable (counted) only after `sync()`."""

    def __init__(self, remember_batches: int = 100_000) -> None:
        self.path = Path("memory") / LOG_NAME  # named in errors as the file log names its path
        self.seq, self.head = 0, GENESIS
        self.entries: list[dict[str, Any]] = []  # synced
        self.repairs: list[dict[str, Any]] = []  # nothing is ever partial in memory
        self._pending: list[dict[str, Any]] = []
        self._synced = (0, self.seq, self.head)
        self._batches: deque[str] = deque(maxlen=remember_batches)
        self._batch_set: set[str] = set()
        self._partial: dict[str, int] = {}
        self._failures: collections.deque[str] = collections.deque()
        self._closed = False

    def fail_next(self, operation: str, times: int = 1) -> None:
        """The next `times` appends or fsyncs (`operation` "append" or "fsync") fail as a full disk would."""
        self._failures.extend([operation] * times)

    def _fail_if_told(self, operation: str) -> None:
        if self._failures and self._failures[0] == operation:
            self._failures.popleft()
            self.rollback()
            raise AuditWriteError(self.path, operation, OSError(errno.ENOSPC, os.strerror(errno.ENOSPC)))

    def record_repairs(self) -> None:
        """Nothing to record: an in-memory log never holds a partial line."""

    def has_batch(self, batch: str) -> bool:
        """True when every entry of the batch is synced."""
        return batch in self._batch_set

    def on_disk(self, batch: str, total: int) -> int:
        """How many of the batch's `total` entries are already synced."""
        return total if batch in self._batch_set else self._partial.get(batch, 0)

    def append(self, entries: list[dict[str, Any]], batch: str = "", total: int | None = None) -> None:
        """Chain entries (of a batch of `total`, default all of them); written only after `sync()`."""
        self._fail_if_told("append")
        total = len(entries) if total is None else total
        seq, head = self.seq, self.head
        for entry in entries:
            seq += 1
            entry = dict(entry, seq=seq, prev=head, batch=batch, batch_entries=total)
            entry["hash"] = head = entry_hash(head, entry)
            self._pending.append(entry)
        self.seq, self.head = seq, head

    def sync(self) -> None:
        """The appended entries count as written (batches complete or partial)."""
        self._fail_if_told("fsync")
        pending, self._pending = self._pending, []
        self.entries.extend(pending)
        self._synced = (len(self.entries), self.seq, self.head)
        counts: dict[str, tuple[int, int]] = {}
        for entry in pending:
            done, _total = counts.get(entry["batch"], (self._partial.get(entry["batch"], 0), 0))
            counts[entry["batch"]] = (done + 1, entry["batch_entries"])
        for batch, (done, total) in counts.items():
            if total and done < total:
                self._partial[batch] = done
            else:
                self._remember(batch)

    def _remember(self, batch: str) -> None:
        self._partial.pop(batch, None)
        if not batch or batch in self._batch_set:
            return
        if len(self._batches) == self._batches.maxlen:
            self._batch_set.discard(self._batches[0])
        self._batches.append(batch)
        self._batch_set.add(batch)

    def rollback(self) -> None:
        """Forget what was appended since the last sync."""
        _count, self.seq, self.head = self._synced
        self._pending = []

    @property
    def closed(self) -> bool:
        """Whether the log was closed."""
        return self._closed

    def close(self) -> None:
        """Sync what is appended (rolled back if that fails), then close."""
        if not self._closed:
            try:
                self.sync()
            finally:
                self._closed = True

    def lines(self) -> bytes:
        """The synced entries as the file log holds them: one sorted-key JSON object a line."""
        return b"".join(orjson.dumps(e, option=orjson.OPT_SORT_KEYS) + b"\n" for e in self.entries)

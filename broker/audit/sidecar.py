"""What the audit writer keeps beside the log: the SQLite index and the signed checkpoints.

Both are best effort: an index that cannot be written is logged and dropped, then reopened and caught up
from the log by itself (at most every `INDEX_RETRY_SECONDS`, after a later fsync succeeds); a checkpoint
that cannot be written or anchored is logged and counted.  Neither ever stops an append, so deliveries never wait on
them.  Both only ever hear of entries that are fsynced.
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path
from typing import Any

from broker.audit.anchor import Anchor
from broker.audit.checkpoints import Checkpointer, checkpoints_path, signing_key
from broker.audit.index import AuditIndex
from broker.ops import logs

INDEX_RETRY_SECONDS = 5.0


class Sidecar:
    """The index and checkpoints kept beside the audit log; their failures never stop the log."""

    def __init__(
        self, index: AuditIndex | None, checkpointer: Checkpointer | None, audit_dir: Path | str | None = None
    ) -> None:
        self.index, self.checkpointer = index, checkpointer
        self.audit_dir = audit_dir  # where to reopen a dropped index (None: never)
        self.log_path: Path | None = None
        self._retry_at = time.monotonic() + INDEX_RETRY_SECONDS
        self.log = logs.get("interchange.audit")

    @classmethod
    def for_writer(
        cls,
        audit_dir: Path | str,
        metrics: Any = None,
        every_entries: int = 1000,
        every_seconds: float = 60.0,
        settings: Any = None,
    ) -> Sidecar:
        """With `settings` (the running writer): its signing key (ConfigError when checkpoints are required
        and none is set) and the anchor in its core vhost; without: the development key, no anchor."""
        on_failure = metrics.audit_checkpoint_failures.inc if metrics is not None else None
        anchor = None
        if settings is not None:
            anchor = Anchor(settings)
        checkpointer = Checkpointer(
            checkpoints_path(audit_dir),
            signing_key(settings) if settings is not None else None,
            every_entries=every_entries,
            every_seconds=every_seconds,
            on_failure=on_failure,
            anchor=anchor,
        )
        try:
            index: AuditIndex | None = AuditIndex.beside(audit_dir)
        except sqlite3.Error as exc:
            logs.get("interchange.audit").error("audit_index_unavailable", error=repr(exc))
            index = None
        return cls(index, checkpointer, audit_dir)

    def opened(self, log_path: Path) -> None:
        """The log was opened: bring the index up to date with it."""
        self.log_path = log_path
        self._guard(lambda index: index.catch_up(log_path))

    def appended(self, entries: list[dict[str, Any]]) -> None:
        """Entries were appended: add them to the index."""
        self._guard(lambda index: index.add(entries))

    def synced(self, seq: int, head: str) -> None:
        """The log was fsynced up to (seq, head): commit the index and checkpoint when due."""
        if self.index is None:
            self._reopen()
            return
        self._guard(lambda index: index.commit())
        if self.checkpointer is not None and seq:
            self.checkpointer.maybe(seq, head)

    def closed(self, seq: int, head: str) -> None:
        """The log was closed at (seq, head): write a final checkpoint and close the index."""
        if self.checkpointer is not None and seq:
            self.checkpointer.maybe(seq, head, force=True)
        self._guard(lambda index: index.close())
        self.index = None

    def _guard(self, action: Any) -> None:
        if self.index is None:
            return
        try:
            action(self.index)
        except sqlite3.Error as exc:
            self.log.error(
                "audit_index_failed",
                error=repr(exc),
                note=f"reopened and caught up from the log within {INDEX_RETRY_SECONDS:.0f}s of a "
                "later successful write",
            )
            self._drop()

    def _drop(self) -> None:
        if self.index is not None:
            try:
                self.index.close()
            except sqlite3.Error:
                pass
        self.index = None
        self._retry_at = time.monotonic() + INDEX_RETRY_SECONDS

    def _reopen(self) -> None:
        """Reopen a dropped index and add what the log holds beyond it (the log is fsynced up to here)."""
        if self.audit_dir is None or self.log_path is None or time.monotonic() < self._retry_at:
            return
        try:
            index = AuditIndex.beside(self.audit_dir)
            added = index.catch_up(self.log_path)
        except sqlite3.Error as exc:
            self.log.warning("audit_index_still_unavailable", error=repr(exc))
            self._retry_at = time.monotonic() + INDEX_RETRY_SECONDS
            return
        self.index = index
        self.log.info("audit_index_caught_up", added=added)

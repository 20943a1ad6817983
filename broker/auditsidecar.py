"""What the audit writer keeps beside the log: the SQLite index and the signed checkpoints.

Both are best effort: an index that cannot be written is logged and dropped until `interchange audit
reindex` rebuilds it; a checkpoint that cannot be written or anchored is logged and counted.  Neither ever stops an
append, so deliveries never wait on them.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from broker import logs
from broker.auditindex import AuditIndex
from broker.checkpoints import Checkpointer, checkpoints_path, signing_key


class Sidecar:
    def __init__(self, index: AuditIndex | None, checkpointer: Checkpointer | None) -> None:
        self.index, self.checkpointer = index, checkpointer
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
            from broker.anchor import Anchor

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
        return cls(index, checkpointer)

    def opened(self, log_path: Path) -> None:
        self._guard(lambda index: index.catch_up(log_path))

    def appended(self, entries: list[dict[str, Any]]) -> None:
        self._guard(lambda index: index.add(entries))

    def synced(self, seq: int, head: str) -> None:
        self._guard(lambda index: index.commit())
        if self.checkpointer is not None and seq:
            self.checkpointer.maybe(seq, head)

    def closed(self, seq: int, head: str) -> None:
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
            self.log.error("audit_index_failed", error=repr(exc), note="run `interchange audit reindex`")
            self.index = None

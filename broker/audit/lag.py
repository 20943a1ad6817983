"""How far the audit log is behind what this worker has released, and the bound that pauses the worker.

The worker knows when each of its audit messages was confirmed on `interchange.audit`; RabbitMQ knows how
many audit messages are still in that queue (ready or held unacked by the writer: the writer acks only
what is fsynced).  The queue is first in, first out and the writer acks in order, so the messages still
queued are the newest ones published; of this worker's confirmed audit messages, at most the newest
`queued` can be among them.  The age of this worker's `queued`-th newest confirmed audit message is thus
an upper bound on the age of its oldest audit entry not yet on disk (exact with one worker; with several,
other workers' messages make it larger, so a worker pauses early rather than late).

RabbitMQ's management API refreshes queue counts every statistics interval (5 s by default), so a
worker notices a stalled writer up to that interval plus one poll late; the documented bound includes it.
"""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from broker import topology
from broker.ops import logs

KEEP = 100_000  # confirmed audit publishes remembered (far more than the queue holds in any healthy state)


def lag_seconds(published: Sequence[float], queued: int, now: float) -> float:
    """Upper bound on the age of the oldest of `published` (confirm times, oldest first) still queued."""
    if queued <= 0 or not published:
        return 0.0
    return max(0.0, now - published[-min(queued, len(published))])


class AuditLag:
    """Confirm times of this worker's audit messages and the audit queue depth last seen; `seconds()`."""

    def __init__(self, bound_seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.bound = bound_seconds
        self.clock = clock
        self.queued: int | None = None  # None until the queue has been read once
        self._published: collections.deque[float] = collections.deque(maxlen=KEEP)

    def published(self) -> None:
        """Note that an audit message was just confirmed into the audit queue."""
        self._published.append(self.clock())

    def seconds(self) -> float:
        """How far, in seconds, the audit log is behind what this worker has published."""
        return lag_seconds(self._published, self.queued or 0, self.clock())

    def over_bound(self, seconds: float) -> bool:
        """Whether a lag of `seconds` is beyond the bound (the worker then takes no new records)."""
        return seconds > self.bound


class QueueDepthPoller:
    """Reads the audit queue's message count (ready + unacked) from the management API every `interval`."""

    def __init__(self, admin: Any, vhost: str, lag: AuditLag, interval: float = 1.0) -> None:
        self.admin, self.vhost, self.lag, self.interval = admin, vhost, lag, interval
        self._stop = threading.Event()
        self.log = logs.get("interchange.worker")
        self._failing = False

    def start(self) -> QueueDepthPoller:
        """Start polling in a daemon thread."""
        threading.Thread(target=self._run, name="interchange-audit-lag", daemon=True).start()
        return self

    def stop(self) -> None:
        """Stop polling."""
        self._stop.set()

    def poll_once(self) -> None:
        """Read the audit queue's depth once; on failure keep the last count and log once."""
        try:
            info = self.admin.queue(self.vhost, topology.AUDIT_QUEUE)
        except Exception as exc:  # keep the last count: the confirm times still age
            if not self._failing:
                self.log.warning(
                    "audit_queue_depth_unavailable",
                    error=repr(exc),
                    note="the audit lag is estimated from the last count read",
                )
            self._failing = True
            return
        self._failing = False
        self.lag.queued = int(info.get("messages") or 0)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.poll_once()
            self._stop.wait(self.interval)

"""The gateway's audit path: consultation entries to `interchange.audit`, confirmed, on one connection.

Concurrent enquiries hand their entries to one thread that publishes everything waiting as one audit batch
(the shape the audit writer reads: `{"batch": id, "entries": [...]}`, persistent, mandatory) and waits for
RabbitMQ's confirm; each enquiry's `write()` returns only then, or raises TransportError, so no answer is
shown unaudited.  A lost connection fails the batch in flight and is opened again for the next one.
"""

from __future__ import annotations

import concurrent.futures
import queue
import threading
from typing import Any

import orjson

from broker import topology
from broker.errors import TransportError
from broker.transports.amqp import blocking_channel

MAX_BATCH = 500


class AuditSink:
    """`write(entries)` blocks until the entries are confirmed on the audit queue (thread-safe)."""

    def __init__(self, settings: Any, timeout: float = 10.0) -> None:
        self.settings, self.timeout = settings, timeout
        self._queue: queue.SimpleQueue[tuple[list[dict[str, Any]], concurrent.futures.Future[None]] | None] = (
            queue.SimpleQueue()
        )
        self._thread = threading.Thread(target=self._run, name="enquiry-audit", daemon=True)
        self._thread.start()

    def submit(self, entries: list[dict[str, Any]]) -> concurrent.futures.Future[None]:
        """Queue entries for the next batch; the future resolves once confirmed (or raises TransportError)."""
        future: concurrent.futures.Future[None] = concurrent.futures.Future()
        self._queue.put((entries, future))
        return future

    def write(self, entries: list[dict[str, Any]]) -> None:
        """Publish entries and wait for the confirm; TransportError when not confirmed in time."""
        try:
            self.submit(entries).result(timeout=self.timeout)
        except concurrent.futures.TimeoutError as exc:
            raise TransportError("the audit entry was not confirmed in time, so the answer is withheld") from exc

    __call__ = write

    def close(self) -> None:
        """Stop the sink's thread and close its connection."""
        self._queue.put(None)
        self._thread.join(timeout=5)

    def _run(self) -> None:
        connection = channel = None
        while True:
            first = self._queue.get()
            if first is None:
                break
            batch = [first]
            while len(batch) < MAX_BATCH:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    self._queue.put(None)
                    break
                batch.append(item)
            try:
                if channel is None or not channel.is_open:
                    connection, channel = self._open()
                self._publish(channel, [e for entries, _ in batch for e in entries])
            except Exception as exc:  # every waiter learns the entries were not confirmed
                error = (
                    exc
                    if isinstance(exc, TransportError)
                    else TransportError(f"the audit entry was not confirmed, so the answer is withheld: {exc!r}")
                )
                for _, future in batch:
                    future.set_exception(error)
                if connection is not None and connection.is_open:
                    connection.close()
                connection = channel = None
                continue
            for _, future in batch:
                future.set_result(None)
        if connection is not None and connection.is_open:
            connection.close()

    def _open(self) -> tuple[Any, Any]:
        connection, channel = blocking_channel(
            self.settings.amqp_url, self.settings.core_vhost, "interchange-enquiry-audit", self.settings.tls
        )
        channel.confirm_delivery()
        return connection, channel

    def _publish(self, channel: Any, entries: list[dict[str, Any]]) -> None:
        import pika

        body = orjson.dumps({"batch": entries[0]["entry_id"], "entries": entries})
        channel.basic_publish(
            "",
            topology.AUDIT_QUEUE,
            body,
            pika.BasicProperties(
                content_type="application/json", delivery_mode=2, message_id=f"audit-{entries[0]['entry_id']}"
            ),
            mandatory=True,
        )

"""Request/reply over RabbitMQ for the gateway: one connection per responding force's vhost.

Each link publishes requests to `interchange.enquiry` in its force's vhost (mandatory, with the deadline as
the message's expiration and `x-deadline-ms` header) and receives replies on RabbitMQ's direct reply-to
(`amq.rabbitmq.reply-to`), so no reply queue is ever left behind.  Replies are matched by correlation id;
a reply whose enquiry has stopped waiting (late) is dropped and logged.  A request that no queue takes
(returned) or a force whose vhost cannot be reached resolves at once as unavailable.
"""

from __future__ import annotations

import concurrent.futures
import queue
import threading
import time
import uuid
from typing import Any

import orjson
import structlog

from broker.enquiry.responder import ENQUIRY_QUEUE
from broker.topology import ENQUIRY_EXCHANGE
from broker.transports.amqp import blocking_channel

REPLY_TO = "amq.rabbitmq.reply-to"
log = structlog.get_logger("interchange.enquiry.transport")


class Unavailable(Exception):
    """The force could not be asked (its vhost unreachable, or no enquiry queue took the request)."""


class ForceLink:
    """One thread, one connection to one force's vhost; `ask` is safe from any thread."""

    def __init__(self, settings: Any, force: str, on_late: Any = None) -> None:
        self.settings, self.force, self.on_late = settings, force, on_late
        self._pending: dict[str, concurrent.futures.Future[dict[str, Any]]] = {}
        self._lock = threading.Lock()
        self._outbox: queue.SimpleQueue[tuple[str, bytes, float] | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name=f"enquiry-link-{force}", daemon=True)
        self._stopped = threading.Event()
        self._connection: Any = None
        self._channel: Any = None
        self._thread.start()

    @property
    def vhost(self) -> str:
        """The force's vhost, where its enquiry queue lives."""
        return self.settings.recipient_vhost(f"force-{self.force}")

    def ask(self, body: bytes, deadline: float) -> tuple[str, concurrent.futures.Future[dict[str, Any]]]:
        """Send one request; the future resolves with the reply or raises Unavailable."""
        correlation = uuid.uuid4().hex
        future: concurrent.futures.Future[dict[str, Any]] = concurrent.futures.Future()
        with self._lock:
            self._pending[correlation] = future
        self._outbox.put((correlation, body, deadline))
        connection = self._connection
        if connection is not None:
            try:
                connection.add_callback_threadsafe(self._send_waiting)  # wakes the link's loop
            except Exception:  # closing: the loop fails what waits
                pass
        return correlation, future

    def forget(self, correlation: str) -> None:
        """Stop waiting for a reply (the deadline passed): a reply arriving later is dropped as late."""
        with self._lock:
            self._pending.pop(correlation, None)

    def close(self) -> None:
        """Stop the link's thread and close its connection."""
        self._stopped.set()
        self._outbox.put(None)
        self._thread.join(timeout=5)

    # ---- the link's own thread
    def _resolve(self, correlation: str | None, reply: dict[str, Any] | None, error: Exception | None) -> None:
        with self._lock:
            future = self._pending.pop(correlation or "", None)
        if future is None:
            log.info("enquiry_late_answer_dropped", force=self.force, correlation_id=correlation)
            if self.on_late:
                self.on_late(self.force)
            return
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(reply or {})

    def _run(self) -> None:
        while not self._stopped.is_set():
            try:
                self._serve()
            except Exception as exc:  # the vhost is unreachable or the connection dropped: fail what waits
                log.warning("enquiry_link_down", force=self.force, error=repr(exc)[:200])
                self._fail_all(Unavailable(f"force {self.force} unreachable: {type(exc).__name__}"))
                self._stopped.wait(0.5)

    def _fail_all(self, error: Exception) -> None:
        with self._lock:
            pending, self._pending = self._pending, {}
        for future in pending.values():
            if not future.done():
                future.set_exception(error)
        while True:  # requests queued while down are failed too, so nobody waits for a dead link
            try:
                item = self._outbox.get_nowait()
            except queue.Empty:
                return
            if item is None:
                self._stopped.set()
                return

    def _serve(self) -> None:
        connection, channel = blocking_channel(
            self.settings.amqp_url, self.vhost, f"interchange-enquiry-gateway-{self.force}", self.settings.tls
        )
        try:
            # a vhost without the enquiry exchange answers nothing: fail fast (unavailable), as for no vhost
            channel.exchange_declare(ENQUIRY_EXCHANGE, passive=True)
            channel.basic_consume(REPLY_TO, self._on_reply, auto_ack=True)
            channel.add_on_return_callback(self._on_return)
            self._channel, self._connection = channel, connection
            while not self._stopped.is_set():
                self._send_waiting()
                connection.process_data_events(time_limit=0.2)
        finally:
            self._connection = self._channel = None
            if connection.is_open:
                connection.close()

    def _send_waiting(self) -> None:
        import pika

        channel = self._channel
        while channel is not None:
            try:
                item = self._outbox.get_nowait()
            except queue.Empty:
                return
            if item is None:
                return
            correlation, body, deadline = item
            expiration = max(1, int((deadline - time.time()) * 1000))
            channel.basic_publish(
                ENQUIRY_EXCHANGE,
                ENQUIRY_QUEUE,
                body,
                pika.BasicProperties(
                    content_type="application/json",
                    correlation_id=correlation,
                    reply_to=REPLY_TO,
                    expiration=str(expiration),
                    headers={"x-deadline-ms": int(deadline * 1000)},
                ),
                mandatory=True,
            )

    def _on_reply(self, channel: Any, method: Any, properties: Any, body: bytes) -> None:
        try:
            reply = orjson.loads(body)
        except orjson.JSONDecodeError:
            reply = {"error": "malformed_reply"}
        self._resolve(properties.correlation_id, reply, None)

    def _on_return(self, channel: Any, method: Any, properties: Any, body: bytes) -> None:
        self._resolve(
            properties.correlation_id,
            None,
            Unavailable(f"force {self.force} has no enquiry queue ({method.reply_text})"),
        )

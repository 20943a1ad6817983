"""AMQP transport: asynchronous publisher confirms, mandatory publishes, manual acks, reconnects.

One `AmqpTransport` holds one connection per vhost it talks to (the core vhost and one per recipient),
all on a single pika IOLoop, each with a confirming channel.  Publishes are pipelined: a callback fires
when the broker confirms (ok), nacks, returns (unroutable) or fails to confirm within the confirm timeout.
When any connection is lost or a confirm is overdue, every connection is closed, every pending publish
fails, and the transport reconnects with backoff; unacked inputs are redelivered by RabbitMQ, so nothing
is lost and duplicates carry the same message_id.

pika's exceptions stop here: callers see `ok=False` with a reason, or a TransportError.
"""

from __future__ import annotations

import collections
import ssl
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pika
import pika.credentials
import pika.exceptions
from pika.adapters.select_connection import IOLoop

from broker.config import TlsOptions
from broker.errors import ConfigError, TransportError
from broker.message import Inbound, Outgoing

Confirmed = Callable[[bool, str], None]

# pika's plaintext transport sends every buffered frame with its own send() call: three per publish.  The
# routing worker writes about fifteen frames per record, so those system calls were the largest single cost
# in its profile.  This joins what is buffered (up to 256 KiB) into one send; the buffer bookkeeping is
# pika's own.  It touches a private pika API, so pyproject pins pika below 2 and the import fails loudly
# if the attributes it relies on change.
_COALESCE_BYTES = 256 * 1024


def _produce_coalesced(self: Any) -> None:
    buffers = self._tx_buffers
    while buffers:
        if len(buffers) > 1 and len(buffers[0]) < _COALESCE_BYTES:
            joined, size = [], 0
            while buffers and size < _COALESCE_BYTES:
                chunk = buffers.popleft()
                joined.append(chunk)
                size += len(chunk)
            buffers.appendleft(b"".join(joined))
        sent = self._sigint_safe_send(self._sock, buffers[0])
        chunk = buffers.popleft()
        if sent < len(chunk):
            buffers.appendleft(chunk[sent:])
        self._tx_buffered_byte_count -= sent


def _coalesce_pika_writes() -> None:
    from pika.adapters.utils import io_services_utils as io

    plaintext = io._AsyncPlaintextTransport
    assert hasattr(io._AsyncTransportBase, "_sigint_safe_send") and "_produce" not in plaintext.__dict__, (
        "pika's transport changed: review broker.transports.amqp._produce_coalesced"
    )
    plaintext._produce = _produce_coalesced


_coalesce_pika_writes()
CLOSE_WAIT_SECONDS = 1.0  # how long a reconnect waits for the old connections to finish closing
# how often a link's oldest unconfirmed publish and its last heartbeat are checked: a stalled link is
# declared lost at most this long after its confirm timeout (the check is a few comparisons per link)
WATCH_SECONDS = 0.25


@dataclass(slots=True)
class _Pending:
    callback: Confirmed
    deadline: float
    key: tuple[str, str, str]
    returned: str = ""


@dataclass
class _Link:
    target: str
    vhost: str
    connection: Any = None
    channel: Any = None
    ready: bool = False
    seq: int = 0
    pending: collections.OrderedDict[int, _Pending] = field(default_factory=collections.OrderedDict)
    heard_bytes: int = -1  # bytes received at the last check, and when that count last changed
    heard_at: float = 0.0


def split_urls(url: str) -> list[str]:
    """`amqp://a:5672/,amqp://b:5672/` -> one URL per cluster node (a single URL is a list of one)."""
    urls = [part.strip() for part in url.split(",") if part.strip()]
    return urls or [url]


def connection_parameters(
    url: str, vhost: str, heartbeat: int = 30, name: str = "interchange", tls: TlsOptions | None = None
) -> pika.URLParameters:
    """Parameters for one node; with `tls` (amqps:// only) the server is verified against the CA and
    host name, the client certificate is presented, and EXTERNAL authentication is used when the
    certificate is the login.  Raises ConfigError for an unusable TLS configuration."""
    node_url = split_urls(url)[0]
    params = pika.URLParameters(node_url)
    params.virtual_host = vhost
    params.heartbeat = heartbeat
    params.blocked_connection_timeout = 300
    params.connection_attempts = 1
    params.client_properties = {"connection_name": name}
    if tls is not None or params.ssl_options is not None:  # amqps:// alone: system CAs, host name checked
        _apply_tls(params, node_url, tls or TlsOptions())
    return params


def _apply_tls(params: pika.URLParameters, node_url: str, tls: TlsOptions) -> None:
    if params.ssl_options is None:
        raise ConfigError(
            "INTERCHANGE_AMQP_URL", "amqp.url", f"TLS files are configured but {_redact(node_url)} is not amqps://"
        )
    if tls.auth not in ("auto", "external", "plain"):
        raise ConfigError("INTERCHANGE_TLS_AUTH", "amqp.tls.auth", f"{tls.auth!r} is not auto, external or plain")
    try:
        context = ssl.create_default_context(cafile=str(tls.ca_file) if tls.ca_file else None)
        if tls.cert_file:
            context.load_cert_chain(str(tls.cert_file), str(tls.key_file) if tls.key_file else None)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(str(tls.cert_file or tls.ca_file), "amqp.tls", f"cannot load TLS files: {exc}") from exc
    context.check_hostname = True
    context.verify_mode = ssl.CERT_REQUIRED
    params.ssl_options = pika.SSLOptions(context, server_hostname=tls.server_hostname or params.host)
    no_password = urllib.parse.urlsplit(node_url).password is None
    if tls.auth == "external" or (tls.auth == "auto" and tls.cert_file and no_password):
        if not tls.cert_file:
            raise ConfigError(
                "INTERCHANGE_TLS_CERT_FILE", "amqp.tls.cert_file", "EXTERNAL authentication needs a client certificate"
            )
        params.credentials = pika.credentials.ExternalCredentials()


class AmqpTransport:
    """Connections to several vhosts on one IOLoop, with pipelined publisher confirms."""

    def __init__(
        self,
        url: str,
        vhosts: dict[str, str],
        confirm_timeout: float = 30.0,
        heartbeat: int = 30,
        name: str = "interchange",
        max_backoff: float = 10.0,
        tls: TlsOptions | None = None,
    ) -> None:
        self.url, self.confirm_timeout, self.heartbeat, self.name = url, confirm_timeout, heartbeat, name
        self.tls = tls
        self.urls = split_urls(url)  # cluster nodes: all links use one, the next after every loss
        self.node = 0
        self.ioloop = IOLoop()
        self.links = {target: _Link(target, vhost) for target, vhost in vhosts.items()}
        self.generation = 0
        self.on_ready: Callable[[], None] = lambda: None
        self.on_lost: Callable[[str], None] = lambda reason: None
        self._consumers: list[tuple[str, str, int, Callable[[Inbound], None]]] = []
        self._stopping = False
        self._backoff = 0.5
        self._max_backoff = max_backoff
        self._handled_loss = 0
        self.reconnects = 0

    # ------------------------------------------------------------ lifecycle
    def start(self, on_ready: Callable[[], None], on_lost: Callable[[str], None] | None = None) -> None:
        """Open a link to every vhost; `on_ready` once all are up, `on_lost` when one drops."""
        self.on_ready = on_ready
        if on_lost:
            self.on_lost = on_lost
        self._connect_all()
        self.ioloop.call_later(WATCH_SECONDS, self._watch_confirms)

    def run(self) -> None:
        """Run pika's I/O loop until stop() (reconnecting lost links with back-off)."""
        self.ioloop.start()

    def stop(self) -> None:
        """Close every connection cleanly and stop the loop (safe from signal handlers via call_soon)."""
        self._stopping = True
        for link in self.links.values():
            if link.connection is not None and link.connection.is_open:
                link.connection.close()
        self.ioloop.call_later(0.2, self._stop_when_closed)

    def stop_threadsafe(self) -> None:
        """stop() from another thread."""
        self.ioloop.add_callback_threadsafe(self.stop)

    def call_later(self, delay: float, callback: Callable[[], None]) -> Any:
        """Run `callback` on the I/O loop after `delay` seconds."""
        return self.ioloop.call_later(delay, callback)

    def _stop_when_closed(self) -> None:
        if all(link.connection is None or link.connection.is_closed for link in self.links.values()):
            self.ioloop.stop()
        else:
            self.ioloop.call_later(0.1, self._stop_when_closed)

    # ------------------------------------------------------------ connecting
    def _connect_all(self) -> None:
        self.generation += 1
        for link in self.links.values():
            self._connect(link, self.generation)

    def _connect(self, link: _Link, generation: int) -> None:
        params = connection_parameters(
            self.urls[self.node], link.vhost, self.heartbeat, f"{self.name}:{link.target}", self.tls
        )
        link.ready, link.seq, link.heard_bytes = False, 0, -1
        link.connection = pika.SelectConnection(
            params,
            custom_ioloop=self.ioloop,
            on_open_callback=lambda conn: conn.channel(
                on_open_callback=lambda ch: self._channel_open(link, ch, generation)
            ),
            on_open_error_callback=lambda conn, err: self._lost(
                f"cannot connect to vhost {link.vhost}: {err}", generation
            ),
            on_close_callback=lambda conn, reason: self._lost(
                f"connection to {link.vhost} closed: {reason}", generation
            ),
        )

    def _channel_open(self, link: _Link, channel: Any, generation: int) -> None:
        link.channel = channel
        channel.add_on_close_callback(
            lambda ch, reason: self._lost(f"channel on {link.vhost} closed: {reason}", generation)
        )
        channel.add_on_return_callback(lambda ch, method, props, body: self._returned(link, method, props))
        channel.confirm_delivery(
            ack_nack_callback=lambda frame: self._confirmed(link, frame),
            callback=lambda _frame: self._link_ready(link, generation),
        )

    def _link_ready(self, link: _Link, generation: int) -> None:
        if generation != self.generation:
            return
        link.ready = True
        if all(lk.ready for lk in self.links.values()):
            self._backoff = 0.5
            for target, queue, prefetch, on_message in self._consumers:
                self._start_consumer(target, queue, prefetch, on_message)
            self.on_ready()

    def _lost(self, reason: str, generation: int) -> None:
        if self._stopping or generation != self.generation or self._handled_loss == generation:
            return
        self._handled_loss = generation
        for link in self.links.values():  # before failing pending publishes: their callbacks must not ack
            link.ready = False
        self._fail_all_pending(reason)
        self.on_lost(reason)
        for link in self.links.values():
            if link.connection is not None and link.connection.is_open:
                link.connection.close()
        delay, self._backoff = self._backoff, min(self._backoff * 2, self._max_backoff)
        self.node = (self.node + 1) % len(self.urls)
        self.reconnects += 1
        self.ioloop.call_later(delay, lambda: self._reconnect(time.monotonic() + CLOSE_WAIT_SECONDS))

    def _reconnect(self, give_up_waiting: float) -> None:
        """Reconnect once the old connections are closed, or after CLOSE_WAIT_SECONDS: a connection on a
        black-holed route never completes its close handshake, and its late deliveries are ignored."""
        if self._stopping:
            return
        if (
            any(link.connection is not None and not link.connection.is_closed for link in self.links.values())
            and time.monotonic() < give_up_waiting
        ):
            self.ioloop.call_later(0.1, lambda: self._reconnect(give_up_waiting))
            return
        self._connect_all()

    # ------------------------------------------------------------ publishing
    @property
    def ready(self) -> bool:
        """Whether every link (one per vhost) is connected, with its channel open and confirms on."""
        return all(link.ready for link in self.links.values())

    def publish(self, out: Outgoing, callback: Confirmed) -> None:
        """Publish persistent and mandatory; `callback(ok, reason)` fires exactly once."""
        link = self.links.get(out.target)
        if link is None:
            callback(False, f"no connection for target {out.target!r}")
            return
        if not link.ready:
            callback(False, f"connection to {link.vhost} is not ready")
            return
        properties = pika.BasicProperties(
            content_type=out.content_type,
            delivery_mode=2,
            message_id=out.message_id,
            correlation_id=out.correlation_id,
            headers=out.headers,
            timestamp=int(time.time()),
        )
        try:
            link.channel.basic_publish(out.exchange, out.routing_key, out.body, properties, mandatory=True)
        except (pika.exceptions.AMQPError, OSError) as exc:
            callback(False, f"publish failed: {exc!r}")
            return
        link.seq += 1
        link.pending[link.seq] = _Pending(
            callback, time.monotonic() + self.confirm_timeout, (out.exchange, out.routing_key, out.message_id)
        )

    def _returned(self, link: _Link, method: Any, properties: Any) -> None:
        key = (method.exchange, method.routing_key, properties.message_id)
        for pending in link.pending.values():
            if pending.key == key and not pending.returned:
                pending.returned = f"unroutable ({method.reply_code} {method.reply_text})"
                return

    def _confirmed(self, link: _Link, frame: Any) -> None:
        method = frame.method
        ok = isinstance(method, pika.spec.Basic.Ack)
        tag, multiple = method.delivery_tag, method.multiple
        settled: list[_Pending] = []
        if multiple:
            while link.pending and next(iter(link.pending)) <= tag:
                settled.append(link.pending.popitem(last=False)[1])
        elif tag in link.pending:
            settled.append(link.pending.pop(tag))
        for pending in settled:
            if pending.returned:
                pending.callback(False, pending.returned)
            else:
                pending.callback(ok, "" if ok else "nacked by broker")

    def _fail_all_pending(self, reason: str) -> None:
        for link in self.links.values():
            pending, link.pending = link.pending, collections.OrderedDict()
            for item in pending.values():
                item.callback(False, reason)

    def _watch_confirms(self) -> None:
        if self._stopping:
            return
        now = time.monotonic()
        for link in self.links.values():
            if link.pending and next(iter(link.pending.values())).deadline < now:
                self._lost(f"no confirm from {link.vhost} within {self.confirm_timeout}s", self.generation)
                break
            if self._silent(link, now):
                self._lost(f"nothing heard from {link.vhost} for {1.5 * self.heartbeat:g}s", self.generation)
                break
        self.ioloop.call_later(WATCH_SECONDS, self._watch_confirms)

    def _silent(self, link: _Link, now: float) -> bool:
        """A ready link that received nothing for 1.5 heartbeats is dead (RabbitMQ sends a heartbeat every
        half heartbeat): caught well within two heartbeats, where pika's own check takes up to 2 x (hb + 5) s."""
        if not self.heartbeat or not link.ready or link.connection is None:
            return False
        received = link.connection.bytes_received
        if received != link.heard_bytes:
            link.heard_bytes, link.heard_at = received, now
            return False
        return now - link.heard_at > 1.5 * self.heartbeat

    def pending_count(self) -> int:
        """Publishes sent and not yet confirmed, over every link."""
        return sum(len(link.pending) for link in self.links.values())

    # ------------------------------------------------------------ consuming
    def consume(self, target: str, queue: str, prefetch: int, on_message: Callable[[Inbound], None]) -> None:
        """Consume `queue` on `target`; resumes by itself after every reconnect."""
        self._consumers.append((target, queue, prefetch, on_message))
        if self.ready:
            self._start_consumer(target, queue, prefetch, on_message)

    def _start_consumer(self, target: str, queue: str, prefetch: int, on_message: Callable[[Inbound], None]) -> None:
        link, generation = self.links[target], self.generation

        def deliver(channel: Any, method: Any, properties: Any, body: bytes) -> None:
            if generation != self.generation:  # from an abandoned connection: RabbitMQ will redeliver it
                return
            on_message(Inbound(target, method.delivery_tag, generation, body, properties, method.redelivered))

        link.channel.basic_qos(prefetch_count=prefetch)
        link.channel.basic_consume(queue, deliver, auto_ack=False)

    def ack(self, inbound: Inbound, multiple: bool = False) -> None:
        """Ack on the channel it came from; after a reconnect there is nothing to ack (it comes back)."""
        if inbound.generation == self.generation and self.links[inbound.target].ready:
            try:
                self.links[inbound.target].channel.basic_ack(inbound.delivery_tag, multiple=multiple)
            except pika.exceptions.AMQPError:  # channel just closed: RabbitMQ redelivers
                pass

    def reject(self, inbound: Inbound, requeue: bool = True) -> None:
        """Reject a delivery: back to its queue, or to the dead-letter exchange when not requeued."""
        if inbound.generation == self.generation and self.links[inbound.target].ready:
            try:
                self.links[inbound.target].channel.basic_nack(inbound.delivery_tag, multiple=False, requeue=requeue)
            except pika.exceptions.AMQPError:
                pass


def blocking_channel(
    url: str, vhost: str, name: str = "interchange-cli", tls: TlsOptions | None = None
) -> tuple[Any, Any]:
    """A blocking connection and channel for short CLI work, trying each node of a URL list in turn;
    raises TransportError with advice."""
    urls = split_urls(url)
    for node_url in urls[:-1]:
        try:
            connection = pika.BlockingConnection(connection_parameters(node_url, vhost, 30, name, tls))
            return connection, connection.channel()
        except (pika.exceptions.AMQPConnectionError, OSError):  # ssl.SSLError is an OSError
            continue
    try:
        connection = pika.BlockingConnection(connection_parameters(urls[-1], vhost, 30, name, tls))
    except (pika.exceptions.ProbableAuthenticationError, pika.exceptions.AuthenticationError) as exc:
        raise TransportError(f"RabbitMQ refused the credentials in {_redact(url)}: {exc}") from exc
    except pika.exceptions.ProbableAccessDeniedError as exc:
        raise TransportError(
            f"RabbitMQ refused the login or vhost {vhost!r} at {_redact(url)} "
            f"(with TLS: is the certificate's CN a user with permissions?): {exc}"
        ) from exc
    except ssl.SSLError as exc:  # pika re-raises the client's own verification failure as is
        raise TransportError(f"cannot connect to RabbitMQ at {_redact(url)}: TLS refused: {exc}") from exc
    except pika.exceptions.AMQPConnectionError as exc:
        tls_advice = (
            "  Over TLS, the server also refuses a client certificate that is missing, expired or "
            "issued by a CA it does not trust."
            if "amqps://" in _redact(url)
            else ""
        )
        raise TransportError(
            f"cannot connect to RabbitMQ at {_redact(url)} vhost {vhost!r}: {exc!r}. "
            "Is it running (rabbitmq-server -detached) and does the vhost exist "
            "(interchange topology apply)?" + tls_advice
        ) from exc
    return connection, connection.channel()


def _redact(url: str) -> str:
    """The scheme, host and port of each node, without credentials."""
    shown = []
    for node_url in split_urls(url):
        params = pika.URLParameters(node_url)
        shown.append(f"{'amqps' if params.ssl_options else 'amqp'}://{params.host}:{params.port}")
    return ",".join(shown)

"""The checkpoint anchor: a RabbitMQ stream outside the audit disk holding a copy of every checkpoint line.

The audit writer publishes each checkpoint it writes to the `interchange.anchor` exchange, bound to the
stream queue `interchange.anchor` (declared by the topology).  A stream is append-only: nothing short of
deleting the queue (configure permission, which no generated user holds) removes a message, and no
consumer's acknowledgement does.  `audit verify` reads the whole stream back and compares it with the
checkpoint file and the log (`broker.audit.checkpoints.judge`).
"""

from __future__ import annotations

from typing import Any

from broker import topology
from broker.errors import TransportError
from broker.transports.amqp import blocking_channel, connection_parameters, split_urls


class Anchor:
    """Publishes one checkpoint line per call, with a publisher confirm, on a short-lived connection
    (checkpoints are minutes apart; an idle connection would be closed by missed heartbeats)."""

    def __init__(self, settings: Any, timeout: float = 5.0) -> None:
        self.settings, self.timeout = settings, timeout

    def _connect(self) -> Any:
        """A connection that gives up within `timeout` (a blocked or unreachable broker never holds the
        audit writer for long: the checkpoint is on disk already)."""
        import pika
        import pika.exceptions

        failure: Exception | None = None
        for url in split_urls(self.settings.amqp_url):
            params = connection_parameters(
                url, self.settings.core_vhost, 30, "interchange-audit-anchor", self.settings.tls
            )
            params.socket_timeout = params.stack_timeout = params.blocked_connection_timeout = self.timeout
            try:
                return pika.BlockingConnection(params)
            except (pika.exceptions.AMQPError, OSError) as exc:
                failure = exc
        raise TransportError(f"cannot reach RabbitMQ for the checkpoint anchor: {failure!r}")

    def __call__(self, line: bytes) -> None:
        """Publish one checkpoint line to the anchor stream; TransportError unless RabbitMQ confirms it."""
        import pika
        import pika.exceptions

        connection = self._connect()
        try:
            channel = connection.channel()
            channel.confirm_delivery()
            channel.basic_publish(
                topology.ANCHOR_EXCHANGE,
                "",
                line,
                pika.BasicProperties(content_type="application/json", delivery_mode=2),
                mandatory=True,
            )
        except (pika.exceptions.AMQPError, OSError) as exc:
            raise TransportError(f"the checkpoint was not confirmed by the anchor: {exc!r}") from exc
        finally:
            if connection.is_open:
                connection.close()


def read_anchor(settings: Any, idle_seconds: float = 1.0) -> list[bytes]:
    """Every line in the anchor stream, oldest first; raises TransportError when it cannot be read."""
    import pika.exceptions

    connection, channel = blocking_channel(
        settings.amqp_url, settings.core_vhost, "interchange-audit-verify", settings.tls
    )
    lines: list[bytes] = []
    try:
        channel.basic_qos(prefetch_count=500)
        # read until the stream is quiet, acking each: pika rejects what a consumer cancelled early still
        # held, and a stream refuses rejects (the connection closes)
        for method, _props, body in channel.consume(
            topology.ANCHOR_QUEUE, arguments={"x-stream-offset": "first"}, inactivity_timeout=idle_seconds
        ):
            if method is None:
                break
            lines.append(body)
            channel.basic_ack(method.delivery_tag)
        channel.cancel()
    except (pika.exceptions.AMQPError, OSError) as exc:
        raise TransportError(f"cannot read the checkpoint anchor {topology.ANCHOR_QUEUE!r}: {exc!r}") from exc
    finally:
        if connection.is_open:
            connection.close()
    return lines

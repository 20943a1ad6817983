"""Test helpers shipped with Interchange: an in-memory transport, and helpers for real-RabbitMQ tests.

`MemoryTransport` behaves like `AmqpTransport` (publish with confirms, consume, ack, reject) on
in-memory queues following `broker.topology`, so unit tests run the real worker.  Failures can be
injected (`fail_next`).  `TestBroker` gives integration tests their own vhosts on the real RabbitMQ and
removes them afterwards; `drain` reads what a queue holds.
"""

from __future__ import annotations

import collections
import itertools
import secrets
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from broker import topology
from broker.config import PROJECT_ROOT, Registry, Settings, load_settings
from broker.message import Outgoing
from broker.ops import provision
from broker.transports.amqp import Inbound

EXAMPLES = PROJECT_ROOT / "examples" / "records"


@dataclass
class Stored:
    body: bytes
    properties: Any
    redelivered: bool = False


class MemoryTransport:
    """In-memory stand-in for AmqpTransport, run synchronously by `run()` until nothing is left to do."""

    def __init__(self, targets: list[str] | None = None) -> None:
        self.queues: dict[tuple[str, str], collections.deque[Stored]] = collections.defaultdict(collections.deque)
        self.published: list[Outgoing] = []
        self.acked: list[int] = []
        self.rejected: list[int] = []
        self._tasks: collections.deque[Callable[[], None]] = collections.deque()
        self._consumers: list[tuple[str, str, int, Callable[[Inbound], None]]] = []
        self._unacked: dict[int, tuple[tuple[str, str], Stored]] = {}
        self._tags = itertools.count(1)
        self._failures: dict[str, collections.deque[str]] = collections.defaultdict(collections.deque)
        self.generation = 1
        self.ready = True
        self.on_ready: Callable[[], None] = lambda: None

    # ---- the AmqpTransport surface
    def start(self, on_ready: Callable[[], None], on_lost: Callable[[str], None] | None = None) -> None:
        self.on_ready = on_ready
        self._tasks.append(on_ready)

    def consume(self, target: str, queue: str, prefetch: int, on_message: Callable[[Inbound], None]) -> None:
        self._consumers.append((target, queue, prefetch, on_message))

    def publish(self, out: Outgoing, callback: Callable[[bool, str], None]) -> None:
        failures = self._failures[out.target]
        if failures:
            reason = failures.popleft()
            self._tasks.append(lambda: callback(False, reason))
            return
        self.published.append(out)
        queue = self._route(out)
        props = SimpleNamespace(
            content_type=out.content_type,
            message_id=out.message_id,
            correlation_id=out.correlation_id,
            user_id=None,
            headers=dict(out.headers),
        )
        self.queues[(out.target, queue)].append(Stored(out.body, props))
        self._tasks.append(lambda: callback(True, ""))

    def ack(self, inbound: Inbound, multiple: bool = False) -> None:
        tags = [t for t in self._unacked if t <= inbound.delivery_tag] if multiple else [inbound.delivery_tag]
        for tag in tags:
            self._unacked.pop(tag, None)
            self.acked.append(tag)

    def reject(self, inbound: Inbound, requeue: bool = True) -> None:
        key, stored = self._unacked.pop(inbound.delivery_tag)
        self.rejected.append(inbound.delivery_tag)
        if requeue:
            self.queues[key].appendleft(replace(stored, redelivered=True))

    def call_later(self, delay: float, callback: Callable[[], None]) -> None:
        self._tasks.append(callback)

    def stop(self) -> None:
        self._tasks.clear()

    # ---- driving it
    def put(self, target: str, queue: str, body: bytes, **properties: Any) -> None:
        props = SimpleNamespace(
            content_type=properties.get("content_type", "application/json"),
            message_id=properties.get("message_id"),
            correlation_id=properties.get("correlation_id"),
            user_id=properties.get("user_id"),
            headers=properties.get("headers", {}),
        )
        self.queues[(target, queue)].append(Stored(body, props))

    def fail_next(self, target: str, reason: str = "nacked by broker", times: int = 1) -> None:
        self._failures[target].extend([reason] * times)

    def run(self, max_steps: int = 1_000_000) -> None:
        """Deliver and confirm until idle."""
        for _ in range(max_steps):
            if self._tasks:
                self._tasks.popleft()()
                continue
            if not self._deliver_one():
                return

    def _deliver_one(self) -> bool:
        """Deliver a burst, as one socket read does: every queued message the prefetch allows."""
        for target, queue, prefetch, on_message in self._consumers:
            pending = self.queues[(target, queue)]
            room = prefetch - sum(1 for key, _ in self._unacked.values() if key == (target, queue))
            if pending and room > 0:
                for _ in range(min(room, len(pending))):
                    stored = pending.popleft()
                    tag = next(self._tags)
                    self._unacked[tag] = ((target, queue), stored)
                    on_message(
                        Inbound(target, tag, self.generation, stored.body, stored.properties, stored.redelivered)
                    )
                return True
        return False

    @staticmethod
    def _route(out: Outgoing) -> str:
        if out.exchange == "":
            return out.routing_key
        return {
            topology.INGRESS_EXCHANGE: topology.ROUTE_QUEUE,
            topology.DLX: topology.DEAD_QUEUE,
            topology.DELIVER_EXCHANGE: topology.INBOX_QUEUE,
        }[out.exchange]

    def messages(self, target: str, queue: str) -> list[Stored]:
        return list(self.queues[(target, queue)])


# ------------------------------------------------------------------ real RabbitMQ


@dataclass
class TestBroker:
    """Its own vhosts on the real RabbitMQ for one test (or module), removed by `close()`."""

    __test__ = False  # a helper, not a test class

    settings: Settings
    registry: Registry
    vhosts: list[str] = field(default_factory=list)

    @classmethod
    def create(cls, audit_dir: Path, agreements_dir: Path | None = None, **overrides: Any) -> TestBroker:
        name = f"t-{secrets.token_hex(4)}"
        overrides.setdefault("confirm_timeout_seconds", 10.0)
        settings = load_settings(environ={}).with_overrides(
            core_vhost=name,
            recipient_vhost_prefix=f"{name}.",
            audit_dir=audit_dir,
            agreements_dir=agreements_dir,
            **overrides,
        )
        registry = Registry.load(settings)
        broker = cls(settings, registry)
        broker.vhosts = provision.apply(settings, registry)
        return broker

    def close(self) -> None:
        provision.remove(self.settings, self.registry)

    def drain(self, vhost: str, queue: str, idle: float = 0.3) -> list[tuple[Any, bytes]]:
        """Consume and ack everything in a queue: [(properties, body)]."""
        from broker.transports.amqp import blocking_channel

        connection, channel = blocking_channel(
            self.settings.amqp_url, vhost, "interchange-test-drain", self.settings.tls
        )
        out = []
        try:
            for method, props, body in channel.consume(queue, inactivity_timeout=idle):
                if method is None:
                    break
                out.append((props, body))
                channel.basic_ack(method.delivery_tag)
            channel.cancel()
        finally:
            connection.close()
        return out

    def inbox(self, recipient: str, idle: float = 0.3) -> list[tuple[Any, bytes]]:
        return self.drain(self.settings.recipient_vhost(recipient), topology.INBOX_QUEUE, idle)


def wait_until(predicate: Callable[[], Any], timeout: float = 30.0, what: str = "the condition") -> None:
    """Poll `predicate` every 50 ms until it is true; fail the test after `timeout` seconds."""
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


@contextmanager
def worker_thread(settings: Settings, registry: Registry | None = None, metrics: Any = None) -> Iterator[Any]:
    """A routing worker on the real RabbitMQ in a background thread; stopped on exit."""
    from broker.runner import make_worker

    worker = make_worker(settings, metrics, registry)
    worker.start()
    thread = threading.Thread(target=worker.transport.run, name="interchange-worker", daemon=True)
    thread.start()
    try:
        yield worker
    finally:
        worker.transport.stop_threadsafe()
        thread.join(timeout=15)

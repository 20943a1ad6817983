"""Helpers for tests on the real RabbitMQ: a test's own vhosts (`TestBroker`), a worker in a thread, polling.

`TestBroker.create()` provisions fresh vhosts (and a user per recipient) for one test or module and
`close()` removes them; `drain`/`inbox` read what a queue holds; `worker_thread` runs a routing worker
against them; `wait_until` polls a condition.  `EXAMPLES` is the folder of example records.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from broker import topology
from broker.config import PROJECT_ROOT, Registry, Settings, load_settings
from broker.ops import provision
from broker.runner import load_registry, make_worker
from broker.transports.amqp import blocking_channel

EXAMPLES = PROJECT_ROOT / "examples" / "records"


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
        registry = load_registry(settings)
        broker = cls(settings, registry)
        broker.vhosts = provision.apply(settings, registry)
        return broker

    def close(self) -> None:
        provision.remove(self.settings, self.registry)

    def drain(self, vhost: str, queue: str, idle: float = 0.3) -> list[tuple[Any, bytes]]:
        """Consume and ack everything in a queue: [(properties, body)]."""
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
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


@contextmanager
def worker_thread(settings: Settings, registry: Registry | None = None, metrics: Any = None) -> Iterator[Any]:
    """A routing worker on the real RabbitMQ in a background thread; stopped on exit."""
    worker = make_worker(settings, metrics, registry)
    worker.start()
    thread = threading.Thread(target=worker.transport.run, name="interchange-worker", daemon=True)
    thread.start()
    try:
        yield worker
    finally:
        worker.transport.stop_threadsafe()
        thread.join(timeout=15)

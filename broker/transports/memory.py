"""The in-memory twin of `broker.transports.amqp.AmqpTransport`: the `broker.message.Transport` protocol on
queues held in memory, run synchronously, so unit tests run the real worker without RabbitMQ.

It follows `broker.topology` as RabbitMQ would: the core vhost (target "core") has the core exchanges,
queues and bindings, every other target a recipient's.  A publish is mandatory and confirmed: routed
to no queue it fails as `unroutable (312 NO_ROUTE)`, refused by a full queue (`declare()` with
`x-max-length` and `x-overflow: reject-publish`) it is nacked, to an unknown exchange it fails.  A message
rejected without requeue goes to the queue's dead-letter exchange (the topology's policies), or is dropped.
Failures can also be injected (`fail_next`).  `tests/test_transport_contract.py` runs the same cases on
both transports.
"""

from __future__ import annotations

import collections
import itertools
import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from types import SimpleNamespace
from typing import Any

from broker import topology
from broker.message import Inbound, Outgoing

NO_ROUTE = "unroutable (312 NO_ROUTE)"
NACKED = "nacked by broker"


@dataclass
class Stored:
    """A message waiting in a queue."""

    body: bytes
    properties: Any
    redelivered: bool = False


@dataclass
class _Vhost:
    """One vhost's exchanges (name -> type), queues (name -> arguments), bindings and policies."""

    exchanges: dict[str, str]
    queues: dict[str, dict[str, Any]]
    bindings: list[dict[str, Any]]
    policies: list[dict[str, Any]]

    @classmethod
    def of(cls, spec: dict[str, list[dict[str, Any]]]) -> _Vhost:
        return cls(
            {e["name"]: e["type"] for e in spec["exchanges"]},
            {q["name"]: dict(q.get("arguments", {})) for q in spec["queues"]},
            list(spec["bindings"]),
            list(spec.get("policies", [])),
        )

    def destinations(self, exchange: str, routing_key: str) -> list[str]:
        """The queues a publish reaches (exchange-to-exchange bindings followed); [] when unroutable."""
        if exchange == "":
            return [routing_key] if routing_key in self.queues else []
        found: list[str] = []
        for b in self.bindings:
            if b["source"] != exchange or not _matches(self.exchanges.get(exchange, ""), b["routing_key"], routing_key):
                continue
            if b.get("destination_type") == "exchange":
                found += self.destinations(b["destination"], routing_key)
            else:
                found.append(b["destination"])
        return found

    def dead_letter_exchange(self, queue: str) -> str | None:
        """The queue's dead-letter exchange (its arguments, else the first policy whose pattern matches)."""
        if "x-dead-letter-exchange" in self.queues.get(queue, {}):
            return self.queues[queue]["x-dead-letter-exchange"]
        for policy in self.policies:
            if policy.get("apply-to") in ("queues", "all", None) and re.search(policy["pattern"], queue):
                return policy["definition"].get("dead-letter-exchange")
        return None


def _matches(kind: str, binding_key: str, routing_key: str) -> bool:
    """Fanout takes all; a topic binding "#" takes all; otherwise the keys must be equal (the twin's subset)."""
    return kind == "fanout" or binding_key == "#" or binding_key == routing_key


def _properties(out: Outgoing | None = None, **given: Any) -> SimpleNamespace:
    return SimpleNamespace(
        content_type=out.content_type if out else given.get("content_type", "application/json"),
        message_id=out.message_id if out else given.get("message_id"),
        correlation_id=out.correlation_id if out else given.get("correlation_id"),
        user_id=given.get("user_id"),
        headers=dict(out.headers) if out else given.get("headers", {}),
    )


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
        self._vhosts: dict[str, _Vhost] = {}
        self.generation = 1
        self.ready = True
        self.on_ready: Callable[[], None] = lambda: None

    # ---- the Transport protocol
    def start(self, on_ready: Callable[[], None], on_lost: Callable[[str], None] | None = None) -> None:
        """Mark the transport started and call `on_ready` at once."""
        self.on_ready = on_ready
        self._tasks.append(on_ready)

    def consume(self, target: str, queue: str, prefetch: int, on_message: Callable[[Inbound], None]) -> None:
        """Deliver messages of `queue` on `target` to `on_message`, at most `prefetch` unacknowledged."""
        self._consumers.append((target, queue, prefetch, on_message))

    def publish(self, out: Outgoing, callback: Callable[[bool, str], None]) -> None:
        """Publish persistent and mandatory; `callback(ok, reason)` fires exactly once, from `run()`."""
        failures = self._failures[out.target]
        if failures:
            reason = failures.popleft()
            self._tasks.append(lambda: callback(False, reason))
            return
        vhost = self.vhost(out.target)
        if out.exchange and out.exchange not in vhost.exchanges:
            self._tasks.append(lambda: callback(False, f"publish failed: no exchange {out.exchange!r}"))
            return
        queues = vhost.destinations(out.exchange, out.routing_key)
        if any(self._full(out.target, q) for q in queues):
            self._tasks.append(lambda: callback(False, NACKED))
            return
        self.published.append(out)
        for queue in queues:
            self.queues[(out.target, queue)].append(Stored(out.body, _properties(out)))
        self._tasks.append(lambda: callback(True, "") if queues else callback(False, NO_ROUTE))

    def ack(self, inbound: Inbound, multiple: bool = False) -> None:
        """Acknowledge a delivery (and every earlier one when `multiple`)."""
        tags = [t for t in self._unacked if t <= inbound.delivery_tag] if multiple else [inbound.delivery_tag]
        for tag in tags:
            self._unacked.pop(tag, None)
            self.acked.append(tag)

    def reject(self, inbound: Inbound, requeue: bool = True) -> None:
        """Requeue at the head (redelivered), or dead-letter through the queue's dead-letter exchange."""
        key, stored = self._unacked.pop(inbound.delivery_tag)
        self.rejected.append(inbound.delivery_tag)
        if requeue:
            self.queues[key].appendleft(replace(stored, redelivered=True))
            return
        target, queue = key
        dlx = self.vhost(target).dead_letter_exchange(queue)
        if dlx is not None:
            for dead in self.vhost(target).destinations(dlx, queue):
                self.queues[(target, dead)].append(replace(stored, redelivered=False))

    def call_later(self, delay: float, callback: Callable[[], None]) -> None:
        """Run `callback` after `delay` seconds of the transport's own clock."""
        self._tasks.append(callback)

    def stop(self) -> None:
        """Stop run() after the step in progress."""
        self._tasks.clear()

    # ---- driving it
    def vhost(self, target: str) -> _Vhost:
        """The target's vhost, as `broker.topology` declares it (core or a recipient's)."""
        if target not in self._vhosts:
            spec = topology.core_spec() if target == "core" else topology.recipient_spec()
            self._vhosts[target] = _Vhost.of(spec)
        return self._vhosts[target]

    def declare(self, target: str, queue: str, arguments: dict[str, Any] | None = None) -> None:
        """Declare a queue on the target's vhost (a publish to it by name through "" then routes)."""
        self.vhost(target).queues[queue] = dict(arguments or {})

    def _full(self, target: str, queue: str) -> bool:
        arguments = self.vhost(target).queues.get(queue, {})
        limit = arguments.get("x-max-length")
        return (
            limit is not None
            and arguments.get("x-overflow") == "reject-publish"
            and len(self.queues[(target, queue)]) >= limit
        )

    def put(self, target: str, queue: str, body: bytes, **properties: Any) -> None:
        """A message already waiting in a queue (as a publisher outside the exchange left it)."""
        self.queues[(target, queue)].append(Stored(body, _properties(**properties)))

    def fail_next(self, target: str, reason: str = NACKED, times: int = 1) -> None:
        """The next `times` publishes to `target` fail with `reason` (a nack, a lost connection...)."""
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

    def messages(self, target: str, queue: str) -> list[Stored]:
        """What the queue holds now (not consumed)."""
        return list(self.queues[(target, queue)])

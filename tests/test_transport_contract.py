"""One contract, two transports: the in-memory twin and the AMQP transport on the real RabbitMQ (the test's own
vhost) answer the same cases the same way (broker.message.Transport: publish with confirms, mandatory
returns, consume with manual acks, reject with and without requeue, a nack from a full queue)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from broker import topology
from broker.message import Inbound, Outgoing
from broker.transports.amqp import AmqpTransport, blocking_channel
from broker.transports.memory import MemoryTransport
from tests.support import TestBroker, wait_until


class MemoryTwin:
    """Drives the in-memory transport: every call runs at once, `settle` runs it until idle."""

    def __init__(self) -> None:
        self.transport = MemoryTransport()
        self.transport.start(lambda: None)
        self.transport.run()

    def call(self, action: Callable[[], None]) -> None:
        action()

    def settle(self, predicate: Callable[[], Any], what: str) -> None:
        self.transport.run()
        assert predicate(), what

    def declare(self, queue: str, arguments: dict[str, Any]) -> None:
        self.transport.declare("core", queue, arguments)

    def left_after_close(self, queue: str) -> int:
        """What the queue holds once the consumers' connection is gone (unacked messages return)."""
        unacked = sum(1 for key, _ in self.transport._unacked.values() if key == ("core", queue))
        return len(self.transport.messages("core", queue)) + unacked

    def take(self, queue: str) -> list[bytes]:
        return [stored.body for stored in self.transport.queues.pop(("core", queue), [])]

    def close(self) -> None:
        self.transport.stop()


class AmqpTwin:
    """Drives an AmqpTransport on its own IOLoop thread, against a vhost of its own on the real RabbitMQ."""

    def __init__(self, audit_dir: Path) -> None:
        self.broker = TestBroker.create(audit_dir)
        settings = self.broker.settings
        self.transport = AmqpTransport(settings.amqp_url, {"core": settings.core_vhost}, 10.0, name="contract-test")
        ready = threading.Event()
        self.transport.start(ready.set)
        self.thread = threading.Thread(target=self.transport.run, name="contract-transport", daemon=True)
        self.thread.start()
        assert ready.wait(15), "the AMQP transport did not connect"

    def call(self, action: Callable[[], None]) -> None:
        self.transport.ioloop.add_callback_threadsafe(action)

    def settle(self, predicate: Callable[[], Any], what: str) -> None:
        wait_until(predicate, timeout=15, what=what)

    def declare(self, queue: str, arguments: dict[str, Any]) -> None:
        settings = self.broker.settings
        connection, channel = blocking_channel(settings.amqp_url, settings.core_vhost, "contract-declare", settings.tls)
        try:
            channel.queue_declare(queue, durable=True, arguments=arguments)
        finally:
            connection.close()

    def left_after_close(self, queue: str) -> int:
        self.stop()
        settings = self.broker.settings
        connection, channel = blocking_channel(settings.amqp_url, settings.core_vhost, "contract-count", settings.tls)
        try:
            return channel.queue_declare(queue, passive=True).method.message_count
        finally:
            connection.close()

    def take(self, queue: str) -> list[bytes]:
        return [body for _props, body in self.broker.drain(self.broker.settings.core_vhost, queue, idle=1.0)]

    def stop(self) -> None:
        if self.thread.is_alive():
            self.transport.stop_threadsafe()
            self.thread.join(timeout=15)

    def close(self) -> None:
        self.stop()
        self.broker.close()


@pytest.fixture(params=["memory", pytest.param("amqp", marks=pytest.mark.rabbitmq)])
def twin(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[MemoryTwin | AmqpTwin]:
    if request.param == "amqp":
        request.getfixturevalue("rabbitmq")
    made = MemoryTwin() if request.param == "memory" else AmqpTwin(tmp_path / "audit")
    try:
        yield made
    finally:
        made.close()


def _record(n: int, exchange: str = topology.INGRESS_EXCHANGE, key: str = "crime.report") -> Outgoing:
    return Outgoing("core", exchange, key, b'{"n": %d}' % n, f"contract-{n}", f"corr-{n}", {"x-contract": n})


class TestTransportContract:
    def test_a_routed_publish_is_confirmed_and_consumed_with_its_properties(self, twin):
        confirms: list[tuple[bool, str]] = []
        got: list[Inbound] = []
        twin.call(lambda: twin.transport.publish(_record(1), lambda ok, why: confirms.append((ok, why))))
        twin.settle(lambda: confirms, "the confirm")
        twin.call(lambda: twin.transport.consume("core", topology.ROUTE_QUEUE, 10, got.append))
        twin.settle(lambda: got, "the delivery")
        assert confirms == [(True, "")]
        (inbound,) = got
        assert inbound.body == b'{"n": 1}' and not inbound.redelivered and inbound.target == "core"
        props = inbound.properties
        assert (props.message_id, props.correlation_id, props.content_type) == (
            "contract-1",
            "corr-1",
            "application/json",
        )
        assert props.headers["x-contract"] == 1

    def test_a_publish_no_queue_takes_fails_as_unroutable_exactly_once(self, twin):
        confirms: list[tuple[bool, str]] = []
        nowhere = _record(2, exchange="", key="interchange.nowhere")
        twin.call(lambda: twin.transport.publish(nowhere, lambda ok, why: confirms.append((ok, why))))
        twin.settle(lambda: confirms, "the refusal")
        (ok, why), *more = confirms
        assert not ok and why.startswith("unroutable") and "NO_ROUTE" in why and more == []

    def test_acked_messages_are_gone_and_unacked_ones_return(self, twin):
        confirms: list[bool] = []
        got: list[Inbound] = []
        for n in (1, 2, 3):
            twin.call(lambda n=n: twin.transport.publish(_record(n), lambda ok, why: confirms.append(ok)))
        twin.settle(lambda: len(confirms) == 3, "three confirms")
        twin.call(lambda: twin.transport.consume("core", topology.ROUTE_QUEUE, 10, got.append))
        twin.settle(lambda: len(got) == 3, "three deliveries")
        # When the first two are acked (multiple) and the third is not
        twin.call(lambda: twin.transport.ack(got[1], multiple=True))
        twin.settle(lambda: True, "the ack")
        # Then only the third is left once the consumer is gone
        assert confirms == [True, True, True]
        assert twin.left_after_close(topology.ROUTE_QUEUE) == 1

    def test_a_message_rejected_with_requeue_comes_back_redelivered(self, twin):
        got: list[Inbound] = []

        def on_message(inbound: Inbound) -> None:
            got.append(inbound)
            if len(got) == 1:
                twin.transport.reject(inbound, requeue=True)
            else:
                twin.transport.ack(inbound)

        twin.call(lambda: twin.transport.publish(_record(4), lambda ok, why: None))
        twin.call(lambda: twin.transport.consume("core", topology.ROUTE_QUEUE, 1, on_message))
        twin.settle(lambda: len(got) == 2, "the redelivery")
        assert [i.body for i in got] == [b'{"n": 4}'] * 2
        assert [i.redelivered for i in got] == [False, True]

    def test_a_message_rejected_without_requeue_is_dead_lettered(self, twin):
        got: list[Inbound] = []

        def on_message(inbound: Inbound) -> None:
            got.append(inbound)
            twin.transport.reject(inbound, requeue=False)

        twin.call(lambda: twin.transport.publish(_record(5), lambda ok, why: None))
        twin.call(lambda: twin.transport.consume("core", topology.ROUTE_QUEUE, 1, on_message))
        twin.settle(lambda: got, "the delivery")
        assert twin.take(topology.DEAD_QUEUE) == [b'{"n": 5}']

    def test_a_publish_a_full_queue_refuses_is_nacked(self, twin):
        twin.declare("contract.full", {"x-max-length": 1, "x-overflow": "reject-publish"})
        confirms: dict[int, tuple[bool, str]] = {}
        for n in (6, 7):
            out = _record(n, exchange="", key="contract.full")
            twin.call(
                lambda n=n, out=out: twin.transport.publish(out, lambda ok, why: confirms.__setitem__(n, (ok, why)))
            )
        twin.settle(lambda: len(confirms) == 2, "two confirms")
        # (RabbitMQ may confirm the refusal before the stored message: they are told apart by message)
        assert confirms == {6: (True, ""), 7: (False, "nacked by broker")}

"""Test support: helpers for tests on the real RabbitMQ (`live`); the in-memory twins ship in `broker`."""

from tests.support.live import EXAMPLES, TestBroker, wait_until, worker_thread

__all__ = ["EXAMPLES", "TestBroker", "wait_until", "worker_thread"]

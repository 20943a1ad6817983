"""Shared fixtures. Tests that need RabbitMQ fail loudly when it is down: they never skip."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from adapters.registry import adapter_class
from broker.config import Registry, load_settings
from tests.support import TestBroker


@pytest.fixture(scope="session")
def rabbitmq() -> None:
    """RabbitMQ must answer on 127.0.0.1:5672 (`make test` starts it)."""
    try:
        socket.create_connection(("127.0.0.1", 5672), timeout=3).close()
    except OSError as exc:
        pytest.fail(f"RabbitMQ is not reachable on 127.0.0.1:5672 ({exc}); run scripts/ensure-rabbitmq.sh")


@pytest.fixture
def settings(tmp_path: Path):
    return load_settings(environ={}).with_overrides(audit_dir=tmp_path / "audit")


@pytest.fixture(scope="session")
def registry():
    return Registry.load(load_settings(environ={}), adapter_class)


@pytest.fixture
def broker(rabbitmq: None, tmp_path: Path) -> Iterator[TestBroker]:
    """Fresh vhosts (core and one per recipient) on the real RabbitMQ, removed after the test."""
    test_broker = TestBroker.create(tmp_path / "audit")
    try:
        yield test_broker
    finally:
        test_broker.close()

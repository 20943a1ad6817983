"""/readyz tells the truth: not ready before connecting, after losing the connection, with a queue missing."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request

import pytest

from broker import topology
from broker.ops import health
from broker.ops.metrics import Metrics
from broker.ops.provision import admin_for
from broker.runner import make_worker
from tests.support import worker_thread

pytestmark = pytest.mark.rabbitmq


def readyz(server) -> tuple[int, dict]:
    url = f"http://127.0.0.1:{server.server_address[1]}/readyz"
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def poll(server, want: int, timeout: float = 20.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status, body = readyz(server)
        if status == want:
            return body
        time.sleep(0.01)
    raise AssertionError(f"/readyz never answered {want}")


def serve_for(worker, cache_seconds: float | None = None):
    readiness = health.worker_readiness(worker, admin_for(worker.ctx.settings))
    if cache_seconds is not None:
        readiness.checks["topology"] = health.cached(
            health.queues_present(admin_for(worker.ctx.settings), _expected(worker)), cache_seconds
        )
    return health.serve(0, worker.metrics.registry, readiness, host="127.0.0.1")


def _expected(worker):
    s = worker.ctx.settings
    return [(s.core_vhost, topology.ROUTE_QUEUE)] + [
        (s.recipient_vhost(r), topology.INBOX_QUEUE) for r in worker.ctx.registry.recipients
    ]


def test_a_worker_that_has_not_connected_is_alive_but_not_ready(broker):
    # Given a worker built but not started
    worker = make_worker(broker.settings, Metrics(), broker.registry)
    server = serve_for(worker)
    try:
        # When probed / Then it is alive, not ready, and says it is not connected
        with urllib.request.urlopen(f"http://127.0.0.1:{server.server_address[1]}/healthz", timeout=5) as r:
            assert r.status == 200
        status, body = readyz(server)
        assert status == 503 and body["status"] == "not_ready"
        assert not body["checks"]["rabbitmq"]["ok"] and body["checks"]["configuration"]["ok"]
    finally:
        server.shutdown()


def test_a_worker_that_loses_its_connection_is_not_ready_until_it_reconnects(broker):
    # Given a running, ready worker
    admin = admin_for(broker.settings)
    with worker_thread(broker.settings, broker.registry, Metrics()) as worker:
        server = serve_for(worker)
        try:
            poll(server, 200)
            # When RabbitMQ closes its connection to the core vhost
            admin.close_connection(_worker_connection(admin, broker.settings.core_vhost))
            # Then /readyz says not ready (not connected), and ready again once it has reconnected
            body = poll(server, 503)
            assert not body["checks"]["rabbitmq"]["ok"]
            poll(server, 200)
        finally:
            server.shutdown()


def _worker_connection(admin, vhost: str, timeout: float = 15.0) -> str:
    """The worker's connection to a vhost, once the management API lists it (stats lag a few seconds)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        names = [
            c["name"]
            for c in admin.connections()
            if c.get("vhost") == vhost
            and "interchange-worker" in str((c.get("client_properties") or {}).get("connection_name"))
        ]
        if names:
            return names[0]
        time.sleep(0.2)
    raise AssertionError(f"no worker connection to {vhost} listed")


def test_a_worker_whose_recipient_queue_is_missing_is_not_ready_and_names_it(broker):
    # Given a ready worker
    admin = admin_for(broker.settings)
    with worker_thread(broker.settings, broker.registry, Metrics()) as worker:
        server = serve_for(worker, cache_seconds=0.0)
        try:
            poll(server, 200)
            # When a recipient's inbox is deleted
            vhost = broker.settings.recipient_vhost("cps")
            admin.delete_queue(vhost, topology.INBOX_QUEUE)
            # Then /readyz is 503 and names the missing queue
            body = poll(server, 503)
            assert f"{vhost}/{topology.INBOX_QUEUE}" in body["checks"]["topology"]["detail"]
        finally:
            server.shutdown()


def test_metrics_are_served_on_the_same_port():
    metrics = Metrics()
    server = health.serve(0, metrics.registry, health.Readiness({"x": lambda: (True, "")}), host="127.0.0.1")
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{server.server_address[1]}/metrics", timeout=5) as r:
            text = r.read().decode()
        assert (
            "interchange_build_info" in text and 'interchange_dead_lettered_total{reason="unknown_agency"} 0.0' in text
        )
    finally:
        server.shutdown()

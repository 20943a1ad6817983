"""The audit lag bound: the lag estimate never understates, and a worker past the bound decides no new
record until the audit writer has caught up, then carries on by itself with the records it held."""

from __future__ import annotations

import datetime as dt
import json

import orjson

from broker import topology
from broker.audit.lag import AuditLag, QueueDepthPoller, lag_seconds
from broker.config import load_settings
from broker.ops.metrics import Metrics
from broker.router import Context
from broker.routing.validation import Validator
from broker.transports.memory import MemoryTransport
from broker.worker import Worker
from tests.support import EXAMPLES

NOW = dt.datetime(2026, 11, 26, 12, 0, tzinfo=dt.UTC)


def test_nothing_queued_means_no_lag():
    assert lag_seconds([1.0, 2.0, 3.0], 0, 100.0) == 0.0
    assert lag_seconds([], 5, 100.0) == 0.0


def test_the_lag_is_the_age_of_the_oldest_publish_that_can_still_be_queued():
    published = [10.0, 20.0, 30.0, 40.0]
    assert lag_seconds(published, 1, 50.0) == 10.0  # only the newest can be queued
    assert lag_seconds(published, 3, 50.0) == 30.0
    assert lag_seconds(published, 99, 50.0) == 40.0  # more queued than we know of: our oldest


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _worker(registry, lag):
    ctx = Context.build(load_settings(environ={}), registry, Validator(), clock=lambda: NOW)
    transport = MemoryTransport()
    worker = Worker(ctx, transport, Metrics(), lag=lag)
    transport.start(on_ready=worker._on_ready, on_lost=worker._on_lost)
    for queue in topology.route_queues(1):
        transport.consume("core", queue, 500, worker.on_message)
    return worker, transport


def _put(transport, name: str, record_id: str) -> None:
    record = json.loads(next(EXAMPLES.glob(f"{name}*.json")).read_text())
    record["id"] = record_id
    transport.put("core", topology.ROUTE_QUEUE, orjson.dumps(record), message_id=record_id)


def test_a_worker_past_the_bound_holds_new_records_and_resumes_by_itself(registry):
    clock = Clock()
    lag = AuditLag(bound_seconds=10.0, clock=clock)
    worker, transport = _worker(registry, lag)
    _put(transport, "05-safeguarding", "rec-1")
    transport.run()
    assert worker.routed == 1 and len(lag._published) == 1
    # the writer stalls: our audit message is still queued 11 s later
    lag.queued, clock.now = 1, clock.now + 11
    worker.apply_lag_bound()
    assert worker.paused and worker.metrics.registry.get_sample_value("interchange_audit_lag_paused") == 1
    assert worker.metrics.registry.get_sample_value("interchange_audit_lag_seconds") == 11
    published_before = len(transport.published)
    _put(transport, "05-safeguarding", "rec-2")
    transport.run()
    assert worker.routed == 1 and len(transport.published) == published_before  # held: nothing released
    assert len(worker._held) == 1 and transport.acked == [1]
    # still behind: stays paused (it resumes under half the bound, not at the bound)
    clock.now += 1
    worker.apply_lag_bound()
    assert worker.paused
    # the writer catches up
    lag.queued = 0
    worker.apply_lag_bound()
    transport.run()
    assert not worker.paused and worker.routed == 2 and transport.acked[-1] == 2
    assert worker.metrics.registry.get_sample_value("interchange_audit_lag_paused") == 0


def test_records_held_while_paused_are_forgotten_when_the_connection_is_lost(registry):
    clock = Clock()
    lag = AuditLag(bound_seconds=1.0, clock=clock)
    worker, transport = _worker(registry, lag)
    _put(transport, "05-safeguarding", "rec-1")
    transport.run()
    lag.queued, clock.now = 1, clock.now + 5
    worker.apply_lag_bound()
    _put(transport, "05-safeguarding", "rec-2")
    transport.run()
    assert len(worker._held) == 1
    worker._on_lost("test")  # RabbitMQ redelivers them; holding them would decide them twice
    assert worker._held == []


class FailingAdmin:
    def __init__(self) -> None:
        self.answers: list = [{"messages": 7}, RuntimeError("management API down")]

    def queue(self, vhost: str, name: str) -> dict:
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        assert name == topology.AUDIT_QUEUE
        return answer


def test_the_poller_keeps_the_last_count_when_the_management_api_fails():
    lag = AuditLag(5.0)
    poller = QueueDepthPoller(FailingAdmin(), "interchange", lag)
    poller.poll_once()
    assert lag.queued == 7
    poller.poll_once()
    assert lag.queued == 7

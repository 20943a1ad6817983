"""Connections slowed, reset and stalled by a fault-injecting TCP proxy (tests/faultproxy.py) between the
worker and publisher and the real RabbitMQ: both reconnect within two heartbeats, no publish waits past
its confirm timeout, and nothing confirmed is lost."""

from __future__ import annotations

import threading
import time

import pytest

from tests.faultproxy import FaultProxy
from tests.flowkit import (
    Flow,
    Reconciler,
    assert_reconciled,
    dead_lettered,
    write_flow_agreements,
    write_flow_recipients,
)
from tests.support import TestBroker, worker_thread

pytestmark = [pytest.mark.rabbitmq, pytest.mark.slow]

HEARTBEAT, CONFIRM_TIMEOUT, RECORDS = 4, 3.0, 3_000


def _wait(predicate, timeout: float, what: str) -> float:
    started = time.monotonic()
    while not predicate():
        assert time.monotonic() - started < timeout, f"timed out after {timeout}s waiting for {what}"
        time.sleep(0.05)
    return time.monotonic() - started


class OldestPending:
    """Samples the age of the oldest unconfirmed publish of a transport (its worst wait for a confirm)."""

    def __init__(self, transport_of) -> None:
        self.transport_of, self.worst, self._stop = transport_of, 0.0, threading.Event()
        threading.Thread(target=self._sample, daemon=True).start()

    def _sample(self) -> None:
        while not self._stop.wait(0.1):
            transport = self.transport_of()
            if transport is None:
                continue
            try:
                for link in list(transport.links.values()):
                    if link.pending:
                        first = next(iter(link.pending.values()))
                        age = time.monotonic() - (first.deadline - transport.confirm_timeout)
                        self.worst = max(self.worst, age)
            except (RuntimeError, StopIteration):  # the loop thread changed the dict under us: sample again
                continue

    def stop(self) -> None:
        self._stop.set()


@pytest.fixture
def flow_broker(rabbitmq, tmp_path):
    broker = TestBroker.create(
        tmp_path / "audit",
        write_flow_agreements(tmp_path / "agreements"),
        recipients_file=write_flow_recipients(tmp_path / "recipients.yaml"),
    )
    try:
        yield broker
    finally:
        broker.close()


def test_connections_slowed_reset_and_stalled_reconnect_within_two_heartbeats_and_lose_nothing(flow_broker):
    settings = flow_broker.settings
    facts: dict[str, float] = {}
    with FaultProxy() as proxy:
        via = settings.with_overrides(
            amqp_url=proxy.url(), heartbeat_seconds=HEARTBEAT, confirm_timeout_seconds=CONFIRM_TIMEOUT
        )
        with worker_thread(via, flow_broker.registry) as worker, Reconciler(settings) as inboxes:
            flow = Flow(via, RECORDS, "px", window=200).start()
            oldest = [OldestPending(lambda: flow.transport), OldestPending(lambda: worker.transport)]
            # When every connection is slowed by 50 ms per chunk for 3 s
            _wait(lambda: len(flow.confirmed) >= 500, 60, "500 confirmed")
            proxy.latency = 0.05
            time.sleep(3)
            proxy.latency = 0.0
            # And every connection is reset
            _wait(lambda: inboxes.least_received() >= 500, 60, "500 delivered")
            before = worker.transport.reconnects
            proxy.reset()
            facts["reset_recovery_s"] = _wait(
                lambda: worker.transport.reconnects > before and worker.transport.ready,
                2 * HEARTBEAT,
                "reconnect",
            )
            # And every connection is stalled mid-flow, while the worker waits for confirms: it gives up
            # on them after the confirm timeout and reconnects
            _wait(
                lambda: inboxes.least_received() >= 1200 and worker.transport.pending_count() > 0,
                60,
                "the worker busy publishing",
            )
            before = worker.transport.reconnects
            proxy.stall()
            facts["busy_stall_detect_s"] = _wait(
                lambda: worker.transport.reconnects > before,
                CONFIRM_TIMEOUT + 2,
                "the worker to time out its confirms",
            )
            proxy.release()
            # And every connection is stalled again once the flow is done and the worker is idle
            _wait(
                lambda: len(flow.confirmed) >= RECORDS and inboxes.least_received() >= RECORDS,
                120,
                "the flow",
            )
            before = worker.transport.reconnects
            proxy.stall()
            facts["idle_stall_detect_s"] = _wait(
                lambda: worker.transport.reconnects > before,
                2 * HEARTBEAT + 1,
                "the stalled connection to be noticed",
            )
            facts["stall_recovery_s"] = _wait(lambda: worker.transport.ready, 2 * HEARTBEAT, "ready again")
            proxy.release()
            report = flow.join(120)
            for sampler in oldest:
                sampler.stop()
            # Then everything confirmed arrived, and no publish waited much past its confirm timeout
            assert inboxes.wait_for(flow.confirmed, timeout=60), inboxes.missing(flow.confirmed)
            counts = inboxes.report(flow.confirmed)
    worst = max(o.worst for o in oldest)  # the confirm timeout, plus the 1 s watcher tick, plus slack
    assert worst <= CONFIRM_TIMEOUT + 2.0, f"a publish waited {worst:.1f}s for its confirm"
    assert_reconciled(
        "proxy-faults",
        counts,
        dead_lettered(settings),
        records=RECORDS,
        confirmed=len(flow.confirmed),
        heartbeat_s=HEARTBEAT,
        worst_confirm_wait_s=round(worst, 2),
        **{k: round(v, 2) for k, v in facts.items()},
        resent=report.resent,
        proxied_connections=proxy.accepted,
    )

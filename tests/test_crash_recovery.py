"""Crash recovery on the real RabbitMQ: the routing worker is SIGKILLed while 10,000 records flow.

The worker and the audit writer run as child processes (`python -m broker worker`, `audit-writer`) against
the test's own vhosts.  The worker is killed three times mid-stream and started again; at the end every
recipient entitled to a record has it, and every extra copy has the same message_id and body.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from broker.audit.log import LOG_NAME, AuditWriter, read_entries, verify
from broker.ingress.publisher import PublishReport, publish_all
from tests.flowkit import (
    FLOW_RECIPIENTS,
    Reconciler,
    Role,
    assert_reconciled,
    dead_lettered,
    flow_messages,
    write_flow_agreements,
    write_flow_recipients,
    write_settings_file,
)
from tests.support import TestBroker

pytestmark = [pytest.mark.rabbitmq, pytest.mark.slow]

RECORDS = 10_000


def _wait(predicate, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.05)


@pytest.fixture
def flow_broker(rabbitmq, tmp_path: Path):
    broker = TestBroker.create(
        tmp_path / "audit",
        write_flow_agreements(tmp_path / "agreements"),
        recipients_file=write_flow_recipients(tmp_path / "recipients.yaml"),
    )
    try:
        yield broker
    finally:
        broker.close()


def test_a_worker_sigkilled_three_times_while_10000_records_flow_loses_nothing(flow_broker, tmp_path):
    # Given a worker and the audit writer as child processes, and four recipients entitled to every record
    settings = flow_broker.settings
    config = write_settings_file(settings, tmp_path / "settings.yaml")
    writer = Role("audit-writer", config, tmp_path / "audit-writer.log").start()
    worker = Role("worker", config, tmp_path / "worker.log").start()
    confirmed: set[str] = set()
    result: list[PublishReport] = []
    try:
        with Reconciler(settings) as inboxes:
            # When 10,000 records are published and the worker is SIGKILLed at 10 %, 40 % and 70 % of them
            publisher = threading.Thread(
                target=lambda: result.append(
                    publish_all(
                        settings,
                        flow_messages(RECORDS, "crash"),
                        window=500,
                        on_confirmed=lambda m: confirmed.add(m.message_id),
                    )
                ),
                daemon=True,
            )
            publisher.start()
            for fraction in (0.1, 0.4, 0.7):
                _wait(lambda f=fraction: inboxes.least_received() >= f * RECORDS, timeout=120)
                worker.kill()
                worker.start()
            publisher.join(timeout=180)
            # Then every confirmed record reaches all four recipients
            [report] = result
            assert report.published == RECORDS and report.failed == 0
            assert inboxes.wait_for(confirmed, timeout=120), inboxes.missing(confirmed)
            counts = inboxes.report(confirmed)
    finally:
        worker.stop()
        writer.stop()
    assert_reconciled(
        "crash-recovery",
        counts,
        dead_lettered(settings),
        records=RECORDS,
        confirmed=len(confirmed),
        kills=worker.kills,
        resent=report.resent,
    )
    # And the audit log holds a delivered entry for every (recipient, record), with an unbroken chain
    AuditWriter(settings).run(stop_when_idle=True)
    log = Path(settings.audit_dir) / LOG_NAME
    assert verify(log).ok
    delivered = {(e["recipient"], e["record_id"]) for e in read_entries(log) if e["outcome"] == "delivered"}
    assert delivered >= {(r, i) for r in FLOW_RECIPIENTS for i in confirmed}

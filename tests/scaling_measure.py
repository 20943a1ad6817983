"""Measure routing throughput with 1 and with 2 worker processes (docs/SCALING.md).

    python -m tests.scaling_measure [RECORDS] [AMQP_URL MANAGEMENT_URL]

A backlog of RECORDS flow records (each to 4 recipients) is published to a fresh set of vhosts with
`partitions: 2`, then drained by N `python -m broker worker --index i --of N` processes; the rate is
records routed per second from the first worker start to the last delivery in every inbox.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

from broker.ingress.publisher import publish_all
from tests.flowkit import (
    Reconciler,
    Role,
    flow_messages,
    write_flow_agreements,
    write_flow_recipients,
    write_settings_file,
)
from tests.support import TestBroker


def measure(workers: int, records: int, overrides: dict[str, str]) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        broker = TestBroker.create(
            base / "audit",
            write_flow_agreements(base / "agreements"),
            recipients_file=write_flow_recipients(base / "recipients.yaml"),
            partitions=2,
            standby_delay_seconds=1.0,
            **overrides,
        )
        try:
            report = publish_all(broker.settings, flow_messages(records, f"m{workers}"))
            expected = {f"m{workers}-{n}" for n in range(records)}
            assert report.published == records
            config = write_settings_file(broker.settings, base / "settings.yaml")
            writer = Role("audit-writer", config, base / "writer.log").start()
            started = time.monotonic()
            roles = [
                Role("worker", config, base / f"w{i}.log", ("--index", str(i), "--of", str(workers))).start()
                for i in range(workers)
            ]
            with Reconciler(broker.settings) as inboxes:
                assert inboxes.wait_for(expected, timeout=900)
                seconds = time.monotonic() - started
            for role in roles + [writer]:
                role.stop()
            return records / seconds
        finally:
            broker.close()


def main(argv: list[str]) -> None:
    records = int(argv[0]) if argv else 5000
    overrides = {"amqp_url": argv[1], "management_url": argv[2]} if len(argv) >= 3 else {}
    for workers in (1, 2):
        rate = measure(workers, records, overrides)
        print(
            f"workers={workers} records={records} rate={rate:.0f} records/s (each to 4 recipients, start-up included)"
        )


if __name__ == "__main__":
    main(sys.argv[1:])

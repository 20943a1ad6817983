"""On the real RabbitMQ, records of the wrong JSON types interleaved with valid ones: the worker process
never stops or reconnects, each hostile record is dead-lettered once with its own reason, every valid record
is delivered, and nothing else reaches the dead-letter queue."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from broker import topology
from broker.config import PROJECT_ROOT
from broker.ingress.publisher import publish_all, record_message
from tests.support import EXAMPLES

# The shapes that raised inside route() before (issue 11 §2): (path, value)
WRONG_TYPES = [
    (("data", "persons", 0, "birth_date"), True),
    (("data", "persons", 0, "name", "given"), {}),
    (("data", "persons", 0, "name", "given"), [7]),
    (("classification", "tier"), []),
    (("data", "persons", 0, "identifiers"), 5),
]


def case_file(record_id: str) -> dict:
    record = json.loads(next(EXAMPLES.glob("02-case.file*.json")).read_text())
    return dict(record, id=record_id)


def hostile(n: int) -> dict:
    path, value = WRONG_TYPES[n % len(WRONG_TYPES)]
    record = case_file(f"hostile-{n:02d}")
    node = record
    for step in path[:-1]:
        node = node[step]
    node[path[-1]] = value
    return record


@pytest.mark.rabbitmq
def test_hostile_records_interleaved_with_valid_ones_never_stop_the_worker(broker, tmp_path):
    # Given ten records of the wrong JSON types interleaved with ten valid case files, and a worker process
    settings = broker.settings
    messages, valid_ids, hostile_ids = [], set(), set()
    for n in range(10):
        bad, good = hostile(n), case_file(f"valid-{n:02d}")
        messages += [record_message(bad), record_message(good)]
        hostile_ids.add(bad["id"])
        valid_ids.add(good["id"])
    env = dict(
        os.environ,
        INTERCHANGE_CORE_VHOST=settings.core_vhost,
        INTERCHANGE_VHOST_PREFIX=settings.recipient_vhost_prefix,
        INTERCHANGE_AUDIT_DIR=str(settings.audit_dir),
        INTERCHANGE_METRICS_PORT="0",
    )
    log_path = tmp_path / "worker.log"
    with log_path.open("wb") as log:
        worker = subprocess.Popen(
            [sys.executable, "-m", "broker", "worker"], env=env, cwd=PROJECT_ROOT, stdout=log, stderr=subprocess.STDOUT
        )
        pid = worker.pid
        try:
            # When every record is published
            assert publish_all(settings, messages).published == len(messages)
            dead, delivered = [], []
            deadline = time.monotonic() + 60
            while len(dead) < len(hostile_ids) or len(delivered) < len(valid_ids):
                assert worker.poll() is None, Path(log_path).read_text()[-2000:]
                assert time.monotonic() < deadline, f"dead {len(dead)}, delivered {len(delivered)}"
                dead += broker.drain(settings.core_vhost, topology.DEAD_QUEUE, idle=0.2)
                delivered += broker.inbox("cps", idle=0.2)
            time.sleep(1.0)  # anything late would show up now
            dead += broker.drain(settings.core_vhost, topology.DEAD_QUEUE, idle=0.2)
            delivered += broker.inbox("cps", idle=0.2)
            # Then the worker is the same process, still running
            assert worker.poll() is None and worker.pid == pid
        finally:
            worker.terminate()
            worker.wait(timeout=20)
    # And each hostile record is in the dead-letter queue once, with its own reason; nothing else is there
    assert sorted(p.message_id for p, _ in dead) == sorted(hostile_ids)
    assert {p.headers["x-interchange-reason"] for p, _ in dead} == {"schema_invalid"}
    # And every valid record was delivered, once
    assert sorted(p.message_id for p, _ in delivered) == sorted(valid_ids)
    # And no connection was lost and no record was requeued on the way
    log_text = log_path.read_text()
    assert "connection_lost" not in log_text and "record_requeued" not in log_text

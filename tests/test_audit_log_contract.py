"""One contract, two audit logs: the file log (broker.audit.log.AuditLog) and its in-memory twin
(broker.audit.memory.MemoryAuditLog) chain, batch, sync and roll back the same way; and the audit writer
runs on the twin against the real RabbitMQ."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from broker import topology
from broker.audit.log import AuditLog, AuditWriteError, AuditWriter, read_entries, verify
from broker.audit.memory import MemoryAuditLog
from broker.message import audit_message
from broker.transports.amqp import blocking_channel
from tests.support import TestBroker


def _entries(*ids: str) -> list[dict]:
    return [{"entry_id": i, "operation": "disclose", "outcome": "delivered", "record_id": f"R-{i}"} for i in ids]


@pytest.fixture(params=["file", "memory"])
def log(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[AuditLog | MemoryAuditLog]:
    made = AuditLog(tmp_path / "audit") if request.param == "file" else MemoryAuditLog()
    yield made
    made.close()


def written(log: AuditLog | MemoryAuditLog, tmp_path: Path) -> list[dict]:
    """What the log holds as written, read back as the file holds it."""
    if isinstance(log, AuditLog):
        return list(read_entries(log.path))
    path = tmp_path / "twin.jsonl"
    path.write_bytes(log.lines())
    return list(read_entries(path))


def chain_verdict(log: AuditLog | MemoryAuditLog, tmp_path: Path):
    if isinstance(log, AuditLog):
        return verify(log.path)
    path = tmp_path / "twin.jsonl"
    path.write_bytes(log.lines())
    return verify(path)


class TestAuditLogContract:
    def test_synced_entries_are_chained_in_order_and_their_batch_is_known(self, log, tmp_path):
        log.append(_entries("a", "b"), batch="batch-1")
        log.sync()
        log.append(_entries("c"), batch="batch-2")
        log.sync()
        got = written(log, tmp_path)
        assert [(e["seq"], e["entry_id"], e["batch"]) for e in got] == [
            (1, "a", "batch-1"),
            (2, "b", "batch-1"),
            (3, "c", "batch-2"),
        ]
        assert got[0]["prev"] == "0" * 64 and got[1]["prev"] == got[0]["hash"] and log.head == got[-1]["hash"]
        assert log.has_batch("batch-1") and log.has_batch("batch-2") and not log.has_batch("batch-3")
        assert chain_verdict(log, tmp_path).ok

    def test_a_batch_cut_short_counts_only_its_synced_entries(self, log, tmp_path):
        log.append(_entries("a", "b"), batch="batch-1", total=3)
        log.sync()
        assert not log.has_batch("batch-1") and log.on_disk("batch-1", 3) == 2
        log.append(_entries("c"), batch="batch-1", total=3)
        log.sync()
        assert log.has_batch("batch-1") and log.on_disk("batch-1", 3) == 3

    def test_rollback_forgets_what_was_appended_since_the_last_sync(self, log, tmp_path):
        log.append(_entries("a"), batch="batch-1")
        log.sync()
        head = log.head
        log.append(_entries("b"), batch="batch-2")
        log.rollback()
        assert (log.seq, log.head) == (1, head) and not log.has_batch("batch-2")
        log.append(_entries("c"), batch="batch-3")
        log.sync()
        assert [e["entry_id"] for e in written(log, tmp_path)] == ["a", "c"]
        assert chain_verdict(log, tmp_path).ok

    def test_close_syncs_what_was_appended(self, log, tmp_path):
        log.append(_entries("a"), batch="batch-1")
        log.close()
        assert log.closed and [e["entry_id"] for e in written(log, tmp_path)] == ["a"]


def test_the_twin_fails_as_a_full_disk_does_and_keeps_nothing_unsynced():
    twin = MemoryAuditLog()
    twin.append(_entries("a"), batch="batch-1")
    twin.sync()
    twin.fail_next("fsync")
    twin.append(_entries("b"), batch="batch-2")
    with pytest.raises(AuditWriteError) as failed:
        twin.sync()
    assert failed.value.disk_full and failed.value.operation == "fsync"
    assert twin.seq == 1 and [e["entry_id"] for e in twin.entries] == ["a"] and not twin.has_batch("batch-2")


@pytest.mark.rabbitmq
def test_the_audit_writer_writes_a_queued_batch_into_the_twin(rabbitmq, tmp_path):
    broker = TestBroker.create(tmp_path / "audit")
    try:
        settings = broker.settings
        message = audit_message(_entries("a", "b"))
        connection, channel = blocking_channel(settings.amqp_url, settings.core_vhost, "contract-audit", settings.tls)
        try:
            channel.basic_publish("", topology.AUDIT_QUEUE, message.body)
        finally:
            connection.close()
        twin = MemoryAuditLog()
        written_count = AuditWriter(settings, log=twin).run(stop_when_idle=True)
        assert written_count == 2 and [e["entry_id"] for e in twin.entries] == ["a", "b"]
        assert twin.has_batch(orjson.loads(message.body)["batch"]) and twin.closed
        assert not (tmp_path / "audit" / "audit.jsonl").exists()  # nothing went to the file log
    finally:
        broker.close()

"""The audit log survives its own disk: a full disk leaves no partial line and signs nothing unsynced, a
partial line left by a crash is quarantined and recorded, and a batch cut short is completed, not skipped."""

from __future__ import annotations

import random

import orjson
import pytest

from broker.audit.checkpoints import checkpoints_path, verify_beside
from broker.audit.log import LOG_NAME, QUARANTINE_NAME, AuditLog, AuditWriteError, Backoff, read_entries, verify
from broker.audit.sidecar import Sidecar
from tests.smalldisk import small_disk


def _entries(batch: str, n: int, size: int = 40) -> list[dict]:
    return [
        {
            "entry_id": f"{batch}-{i}",
            "record_id": f"r-{batch}-{i}",
            "outcome": "delivered",
            "recipient": "cps",
            "note": "x" * size,
        }
        for i in range(n)
    ]


def _written(path) -> list[str]:
    return [e["entry_id"] for e in read_entries(path) if "entry_id" in e and not e["entry_id"].startswith("repair")]


@pytest.fixture
def disk(tmp_path):
    with small_disk(tmp_path / "disk", "1m") as mounted:
        yield mounted


def test_a_full_disk_raises_and_leaves_no_partial_line_and_no_unsynced_entry(disk):
    log = AuditLog(disk.path / "audit")
    log.append(_entries("b1", 5), batch="b1")
    log.sync()
    size, seq = (disk.path / "audit" / LOG_NAME).stat().st_size, log.seq
    disk.fill()
    with pytest.raises(AuditWriteError) as raised:
        log.append(_entries("b2", 200, size=400), batch="b2")
        log.sync()
    assert raised.value.disk_full
    assert (disk.path / "audit" / LOG_NAME).stat().st_size == size and log.seq == seq
    assert not log.has_batch("b2") and log.on_disk("b2", 200) == 0
    disk.free()
    log.append(_entries("b2", 200, size=400), batch="b2")
    log.close()
    verdict = verify(disk.path / "audit" / LOG_NAME)
    assert verdict.ok and verdict.entries == 205 and not verdict.repairs


def test_checkpoints_cover_only_entries_that_were_fsynced(disk):
    audit_dir = disk.path / "audit"
    log = AuditLog(audit_dir, sidecar=Sidecar.for_writer(audit_dir, every_entries=1))
    log.append(_entries("b1", 3), batch="b1")
    log.sync()
    disk.fill()
    for attempt in range(3):
        with pytest.raises(AuditWriteError):
            log.append(_entries(f"f{attempt}", 100, size=400), batch=f"f{attempt}")
            log.sync()
    disk.free()
    log.close()
    signed = [orjson.loads(line)["seq"] for line in checkpoints_path(audit_dir).read_bytes().splitlines()]
    assert max(signed) <= 3, f"checkpoint signed beyond the 3 entries on disk: {signed}"
    assert verify_beside(audit_dir / LOG_NAME, checkpoints_path(audit_dir)).ok


def test_a_partial_last_line_is_quarantined_and_recorded_so_the_chain_continues(tmp_path):
    log = AuditLog(tmp_path)
    log.append(_entries("b1", 4), batch="b1")
    log.close()
    torn = orjson.dumps({"seq": 5, "prev": "abc", "entry_id": "b2-0", "note": "cut sh"})[:-9]
    with (tmp_path / LOG_NAME).open("ab") as fh:
        fh.write(torn)
    assert not verify(tmp_path / LOG_NAME).ok  # what `audit verify` saw before: "not valid JSON"
    log = AuditLog(tmp_path)
    log.append(_entries("b2", 2), batch="b2")
    log.close()
    verdict = verify(tmp_path / LOG_NAME)
    assert verdict.ok and verdict.repairs == (5,) and "quarantined" in str(verdict)
    [quarantined] = [orjson.loads(line) for line in (tmp_path / QUARANTINE_NAME).read_bytes().splitlines()]
    assert quarantined["offset"] > 0 and quarantined["bytes"] == len(torn)
    entries = list(read_entries(tmp_path / LOG_NAME))
    assert entries[4]["operation"] == "audit_repair" and entries[4]["sha256"] == quarantined["sha256"]
    assert _written(tmp_path / LOG_NAME) == [f"b1-{i}" for i in range(4)] + ["b2-0", "b2-1"]
    AuditLog(tmp_path).close()  # reopening does not record the same repair twice
    assert verify(tmp_path / LOG_NAME).repairs == (5,)


def test_a_whole_last_entry_missing_only_its_newline_is_kept(tmp_path):
    log = AuditLog(tmp_path)
    log.append(_entries("b1", 3), batch="b1")
    log.close()
    path = tmp_path / LOG_NAME
    path.write_bytes(path.read_bytes()[:-1])
    log = AuditLog(tmp_path)
    assert log.seq == 3 and log.has_batch("b1")
    log.close()
    verdict = verify(path)
    assert verdict.ok and verdict.entries == 3 and not verdict.repairs
    assert not (tmp_path / QUARANTINE_NAME).exists()


def test_a_batch_cut_short_by_a_crash_counts_only_the_entries_on_disk(tmp_path):
    log = AuditLog(tmp_path)
    log.append(_entries("b1", 2), batch="b1")
    log.append(_entries("b2", 5), batch="b2")
    log.close()
    path = tmp_path / LOG_NAME
    lines = path.read_bytes().splitlines(keepends=True)
    path.write_bytes(b"".join(lines[:4]) + lines[4][:30])  # b2: two whole lines and a fragment
    log = AuditLog(tmp_path)
    assert log.has_batch("b1") and not log.has_batch("b2") and log.on_disk("b2", 5) == 2
    batch = _entries("b2", 5)
    log.append(batch[log.on_disk("b2", 5) :], batch="b2", total=5)
    log.sync()
    assert log.has_batch("b2")
    log.close()
    assert verify(path).ok
    assert _written(path) == ["b1-0", "b1-1"] + [f"b2-{i}" for i in range(5)]


def test_back_off_doubles_with_jitter_up_to_its_cap_and_resets():
    backoff = Backoff(first=0.5, cap=4.0, rng=random.Random(7))
    waits = [backoff.next() for _ in range(6)]
    for wait, ceiling in zip(waits, [0.5, 1, 2, 4, 4, 4], strict=True):
        assert ceiling / 2 <= wait <= ceiling
    assert len({round(w, 6) for w in waits[3:]}) == 3  # jittered, not a fixed period
    backoff.reset()
    assert backoff.next() <= 0.5


def test_an_audit_message_that_cannot_be_read_is_recorded_in_the_chain_not_looped_on():
    from types import SimpleNamespace

    from broker.audit.log import _batch_of

    entries, batch = _batch_of(b'{"batch": "b1", "entries": [{"record_id": "r1"}]}', SimpleNamespace(message_id="m"))
    assert entries == [{"record_id": "r1"}] and batch == "b1"
    for junk in (b"not json", b'{"batch": 5}', b'{"batch": "b", "entries": [1]}'):
        entries, batch = _batch_of(junk, SimpleNamespace(message_id="audit-x"))
        [entry] = entries
        assert entry["operation"] == "audit_message_unreadable" and entry["bytes"] == len(junk)
        assert batch == entry["entry_id"] and entry["message_id"] == "audit-x"


@pytest.mark.rabbitmq
def test_the_writer_records_an_unreadable_audit_message_and_empties_the_queue(broker):
    from broker import topology
    from broker.audit.log import AuditWriter
    from broker.transports.amqp import blocking_channel

    connection, channel = blocking_channel(broker.settings.amqp_url, broker.settings.core_vhost, "test-junk")
    try:
        channel.basic_publish("", topology.AUDIT_QUEUE, b"\x00 not an audit batch")
    finally:
        connection.close()
    AuditWriter(broker.settings).run(stop_when_idle=True)
    log = broker.settings.audit_dir / LOG_NAME
    [entry] = list(read_entries(log))
    assert entry["operation"] == "audit_message_unreadable" and verify(log).ok
    assert broker.drain(broker.settings.core_vhost, topology.AUDIT_QUEUE) == []

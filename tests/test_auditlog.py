"""The audit log is hash-chained: any edit, deletion, insertion or reordering is caught and named."""

from __future__ import annotations

import subprocess
import sys

import orjson
import pytest

from broker.audit.log import LOG_NAME, AuditLog, verify


@pytest.fixture
def log_file(tmp_path):
    log = AuditLog(tmp_path)
    for i in range(20):
        log.append([{"record_id": f"r{i}", "outcome": "delivered", "recipient": "cps"}], batch=f"b{i}")
    log.close()
    return tmp_path / LOG_NAME


def lines(path):
    return path.read_bytes().splitlines(keepends=True)


def test_an_intact_log_verifies(log_file):
    verdict = verify(log_file)
    assert verdict.ok and verdict.entries == 20


def test_an_edited_entry_is_caught_at_its_line(log_file):
    content = lines(log_file)
    content[6] = content[6].replace(b'"cps"', b'"crime-map"')
    log_file.write_bytes(b"".join(content))
    verdict = verify(log_file)
    assert not verdict.ok and verdict.first_bad_line == 7 and "edited" in verdict.problem


def test_a_deleted_entry_is_caught_where_the_gap_is(log_file):
    content = lines(log_file)
    del content[10]
    log_file.write_bytes(b"".join(content))
    verdict = verify(log_file)
    assert not verdict.ok and verdict.first_bad_line == 11 and verdict.first_bad_seq == 12


def test_swapped_entries_are_caught(log_file):
    content = lines(log_file)
    content[3], content[4] = content[4], content[3]
    log_file.write_bytes(b"".join(content))
    verdict = verify(log_file)
    assert not verdict.ok and verdict.first_bad_line == 4


def test_an_inserted_entry_is_caught_even_with_plausible_fields(log_file):
    content = lines(log_file)
    forged = orjson.loads(content[5])
    forged["record_id"] = "forged"
    content.insert(6, orjson.dumps(forged) + b"\n")
    log_file.write_bytes(b"".join(content))
    assert not verify(log_file).ok


def test_reopening_the_log_continues_the_chain_and_remembers_batches(log_file):
    log = AuditLog(log_file.parent)
    assert log.seq == 20 and log.has_batch("b7")
    log.append([{"record_id": "r20"}], batch="b20")
    log.close()
    assert verify(log_file).ok and verify(log_file).entries == 21


def test_audit_verify_command_exits_non_zero_on_a_broken_log(log_file):
    run = [sys.executable, "-m", "broker", "--audit-dir", str(log_file.parent), "audit", "verify"]
    assert subprocess.run(run, capture_output=True).returncode == 0
    content = lines(log_file)
    content[2] = content[2].replace(b"r2", b"rX")
    log_file.write_bytes(b"".join(content))
    result = subprocess.run(run, capture_output=True, text=True)
    assert result.returncode == 1 and "line 3" in result.stdout

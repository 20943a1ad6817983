"""`interchange audit verify` is itself audited as a consultation, and never needs RabbitMQ to run."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from broker.audit.log import LOG_NAME, AuditLog, AuditWriter, read_entries, verify
from broker.cli import main as cli
from broker.errors import ExitCode
from broker.ops import logs


def _log_with(audit_dir: Path, count: int) -> Path:
    log = AuditLog(audit_dir)
    log.append([{"operation": "disclose", "record_id": f"r{i}"} for i in range(count)], batch="seed")
    log.close()
    return audit_dir / LOG_NAME


def _verify(capsys: pytest.CaptureFixture[str], *options: str) -> tuple[int, str]:
    capsys.readouterr()
    code = cli.main([*options, "audit", "verify", "--actor", "auditor-7", "--reason", "quarterly integrity check"])
    logs.configure("info", stream=sys.__stderr__)  # main() logged to the captured stderr
    return code, capsys.readouterr().out


@pytest.mark.rabbitmq
def test_audit_verify_is_recorded_as_a_consultation_with_who_why_and_the_verdict(broker, capsys) -> None:
    # Given an intact audit log of 5 entries and the routing core's vhost with its audit queue
    s = broker.settings
    log_file = _log_with(Path(s.audit_dir), 5)
    # When an auditor verifies it
    code, out = _verify(capsys, *s.cli_args())
    # Then the check passes and says the consultation was recorded
    assert code == ExitCode.OK and "audit log intact: 5 entries" in out
    assert "consultation recorded in the audit log" in out
    # And once the audit writer has run, the log holds the consult entry, still chained
    AuditWriter(s).run(stop_when_idle=True)
    consults = [e for e in read_entries(log_file) if e.get("operation") == "consult"]
    assert len(consults) == 1
    assert consults[0]["actor"]["person"] == "auditor-7"
    assert consults[0]["justification"] == "quarterly integrity check"
    assert consults[0]["query"] == {"command": "audit verify"}
    assert consults[0]["result"] == {"chain_ok": True, "checkpoints_ok": True}
    assert verify(log_file).ok and verify(log_file).entries == 6
    print(f"\naudit verify: 1 consult entry recorded by {consults[0]['actor']['person']}; log 6 entries, intact")


def test_audit_verify_runs_and_names_the_bad_line_when_rabbitmq_is_unreachable(tmp_path: Path, capsys) -> None:
    # Given an audit log with a tampered third line, and no RabbitMQ at the configured address
    log_file = _log_with(tmp_path, 5)
    lines = log_file.read_bytes().splitlines(keepends=True)
    lines[2] = lines[2].replace(b'"r2"', b'"rX"')
    log_file.write_bytes(b"".join(lines))
    unreachable = ["--amqp-url", "amqp://guest:guest@127.0.0.1:1/", "--audit-dir", str(tmp_path)]
    # When it is verified
    code, out = _verify(capsys, *unreachable)
    # Then verification still ran, named the bad line and failed, and the output says no consult was recorded
    assert code == ExitCode.FAILED and "line 3" in out
    assert "consultation NOT recorded (RabbitMQ unreachable" in out
    # And an intact log verifies with exit 0 all the same
    log_file.unlink()
    _log_with(tmp_path, 2)
    code, out = _verify(capsys, *unreachable)
    assert code == ExitCode.OK and "NOT recorded" in out

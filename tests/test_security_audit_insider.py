"""An insider with write access to the audit disk: each attack of issue 11 §6 is performed and caught.

The log is written by the real audit writer on the real RabbitMQ, with checkpoints required, an Ed25519
signing key kept outside the audit directory, and every checkpoint anchored in the `interchange.anchor`
stream.  Each attack works on a copy of the audit directory (log and checkpoint file); the anchor is the
deployment's own, which the attacker cannot rewrite.
"""

from __future__ import annotations

import json
import shutil
import socket
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from broker.audit import checkpoints
from broker.audit import publish as auditpublish
from broker.audit.anchor import Anchor, read_anchor
from broker.audit.checkpoints import (
    CHECKPOINTS_NAME,
    DEV_KEY,
    GENESIS,
    Policy,
    judge,
    make_line,
    read_chain,
    verify_beside,
    verify_for,
)
from broker.audit.log import LOG_NAME, AuditLog, AuditWriter, entry_hash, verify
from broker.cli import main as cli
from broker.config import load_settings
from broker.errors import ConfigError, ExitCode
from broker.ops import logs
from tests.support import TestBroker

BATCHES, PER_BATCH = 4, 500  # one writer run per batch: a checkpoint at 500, 1000, 1500 and 2000


def write_keys(directory: Path) -> tuple[Ed25519PrivateKey, Path, Path]:
    directory.mkdir(parents=True, exist_ok=True)
    key = Ed25519PrivateKey.generate()
    private, public = directory / "checkpoint-signing.pem", directory / "checkpoint-public.pem"
    private.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    public.write_bytes(
        key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    return key, private, public


@dataclass
class Deployment:
    broker: TestBroker
    audit_dir: Path
    public_key: Path
    scratch: Path

    def copy(self, name: str) -> Any:
        """Settings pointing at a copy of the audit directory (the attacker's playground)."""
        target = self.scratch / name
        shutil.copytree(self.audit_dir, target)
        return self.broker.settings.with_overrides(audit_dir=target)


def _entry(n: int) -> dict[str, Any]:
    return {
        "entry_id": f"e{n}",
        "time": "2026-11-26T12:00:00Z",
        "operation": "disclose",
        "outcome": "delivered",
        "record_id": f"01-niche-{n}",
        "origin": "01",
        "recipient": "cps",
        "agreement": "ISA-CPS-CASEFILES",
        "subject_keys": [f"k{n}"],
        "fields": ["data.charges"],
    }


@pytest.fixture(scope="module")
def deployment(rabbitmq: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    root = tmp_path_factory.mktemp("insider")
    _key, private, public = write_keys(root / "keys")  # never in the audit directory
    broker = TestBroker.create(
        root / "audit", checkpoints_required=True, checkpoint_signing_key=private, checkpoint_public_key=public
    )
    try:
        for b in range(BATCHES):
            auditpublish.publish_entries(broker.settings, [_entry(b * PER_BATCH + i + 1) for i in range(PER_BATCH)])
            AuditWriter(broker.settings).run(stop_when_idle=True)
        yield Deployment(broker, root / "audit", public, root / "attacks")
    finally:
        broker.close()


def _lines(path: Path) -> list[bytes]:
    return path.read_bytes().splitlines(keepends=True)


def _rechain(lines: list[bytes], change: Any) -> list[bytes]:
    """What an insider does after editing entries: recompute seq/prev/hash so the chain verifies again."""
    out, prev = [], GENESIS
    for raw in lines:
        entry = change(orjson.loads(raw))
        entry["prev"] = prev
        entry.pop("hash", None)
        entry["hash"] = prev = entry_hash(prev, entry)
        out.append(orjson.dumps(entry, option=orjson.OPT_SORT_KEYS) + b"\n")
    return out


def _cli_verify(settings: Any, public: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any) -> tuple[int, str]:
    monkeypatch.setenv("INTERCHANGE_CHECKPOINTS_REQUIRED", "true")
    monkeypatch.setenv("INTERCHANGE_CHECKPOINT_PUBLIC_KEY", str(public))
    capsys.readouterr()
    code = cli.main([*settings.cli_args(), "audit", "verify", "--actor", "test", "--reason", "insider test"])
    logs.configure("info", stream=sys.__stderr__)
    return code, capsys.readouterr().out


@pytest.mark.rabbitmq
def test_the_untouched_log_verifies_against_its_file_and_its_anchor(deployment, monkeypatch, capsys):
    # Given the log as the writer left it (2,000 entries, four writer runs)
    settings = deployment.copy("clean")
    # When verified (checkpoints required: the anchor is read)
    chain, signed = verify(Path(settings.audit_dir) / LOG_NAME), verify_for(settings)
    # Then the chain and all four chained checkpoints hold, each one anchored outside the audit disk
    assert chain.ok and chain.entries == BATCHES * PER_BATCH
    assert signed.ok and signed.checkpoints == BATCHES and signed.anchored == BATCHES, str(signed)
    assert [orjson.loads(line)["seq"] for line in read_anchor(settings)] == [500, 1000, 1500, 2000]
    # And `interchange audit verify` exits 0
    code, out = _cli_verify(settings, deployment.public_key, monkeypatch, capsys)
    assert code == ExitCode.OK, out
    assert "4 anchored outside the audit disk" in out


@pytest.mark.rabbitmq
def test_rewriting_480_entries_and_deleting_the_checkpoint_file_is_caught(deployment, monkeypatch, capsys):
    # Given 480 entries (seq 901..1380) sent to another recipient, the chain recomputed, the file deleted
    settings = deployment.copy("rewrite-480")
    log = Path(settings.audit_dir) / LOG_NAME

    def other_recipient(entry: dict[str, Any]) -> dict[str, Any]:
        return entry | {"recipient": "someone-else"} if 901 <= entry["seq"] <= 1380 else entry

    log.write_bytes(b"".join(_rechain(_lines(log), other_recipient)))
    (Path(settings.audit_dir) / CHECKPOINTS_NAME).unlink()
    # When verified: the chain alone is fooled
    assert verify(log).ok
    # Then the anchored checkpoint at seq 1000 no longer matches the log
    signed = verify_for(settings)
    assert not signed.ok and "seq 1000" in signed.problem and "rewritten" in signed.problem, str(signed)
    # And even without reading the anchor, a log with no checkpoint fails where they are required
    offline = verify_beside(
        log,
        Path(settings.audit_dir) / CHECKPOINTS_NAME,
        checkpoints.load_public_key(deployment.public_key),
        required=True,
    )
    assert not offline.ok and "has none" in offline.problem
    code, out = _cli_verify(settings, deployment.public_key, monkeypatch, capsys)
    assert code == ExitCode.FAILED and "rewritten" in out
    print(f"\ninsider: 480 entries rewritten + checkpoint file deleted: {signed.problem}")


@pytest.mark.rabbitmq
def test_cutting_the_tail_with_its_checkpoint_lines_and_re_signing_with_the_dev_key_is_caught(deployment):
    # Given the last 300 entries cut off, the checkpoint at 2000 removed, and a checkpoint at the new end
    # (1700) chained to the one before it and signed with the development key
    settings = deployment.copy("cut-tail")
    log, cps = Path(settings.audit_dir) / LOG_NAME, Path(settings.audit_dir) / CHECKPOINTS_NAME
    kept = _lines(log)[:1700]
    log.write_bytes(b"".join(kept))
    left = [line for line in _lines(cps) if orjson.loads(line)["seq"] <= 1700]
    forged = make_line(
        1700, orjson.loads(kept[-1])["hash"], "2026-11-26T13:00:00Z", checkpoints.digest(left[-1]), DEV_KEY
    )
    cps.write_bytes(b"".join(left) + forged + b"\n")
    assert verify(log).ok
    # When verified / Then the forged checkpoint is named: signed with the public development key
    signed = verify_for(settings)
    assert not signed.ok and "line 4" in signed.problem and "development key" in signed.problem, str(signed)
    # And a cut without the forged line (a valid prefix of the file) is caught by the anchor
    cps.write_bytes(b"".join(left))
    signed = verify_for(settings)
    assert not signed.ok and "seq 2000" in signed.problem and "truncated" in signed.problem, str(signed)
    # And the whole file re-signed with the development key fails at its first line
    lines, prev = [], GENESIS
    for line in _lines(Path(deployment.audit_dir) / CHECKPOINTS_NAME):
        cp = orjson.loads(line)
        lines.append(make_line(cp["seq"], cp["hash"], cp["time"], prev, DEV_KEY) + b"\n")
        prev = checkpoints.digest(lines[-1])
    cps.write_bytes(b"".join(lines))
    signed = verify_for(settings)
    assert not signed.ok and "checkpoint file line 1" in signed.problem, str(signed)
    print(f"\ninsider: tail cut + checkpoints cut + dev-key re-sign: {signed.problem}")


@pytest.mark.rabbitmq
def test_a_line_with_a_duplicated_key_is_refused_and_named(deployment, monkeypatch, capsys):
    # Given line 700 carrying a second "recipient" before the real one: the hash covers what orjson keeps
    # (the last), a first-key-wins reader sees another recipient
    settings = deployment.copy("duplicate-key")
    log = Path(settings.audit_dir) / LOG_NAME
    lines = _lines(log)
    lines[699] = b'{"recipient":"someone-else",' + lines[699][1:]
    log.write_bytes(b"".join(lines))
    assert orjson.loads(lines[699])["recipient"] == "cps"
    assert json.loads(lines[699], object_pairs_hook=lambda pairs: dict(reversed(pairs)))["recipient"] == "someone-else"
    # When verified / Then the line is refused by name
    chain = verify(log)
    assert (chain.ok, chain.first_bad_line, chain.first_bad_seq) == (False, 700, 700)
    assert "duplicate JSON key 'recipient'" in chain.problem
    code, out = _cli_verify(settings, deployment.public_key, monkeypatch, capsys)
    assert code == ExitCode.FAILED and "line 700" in out and "duplicate JSON key" in out


@pytest.mark.rabbitmq
def test_a_checkpoint_deleted_from_the_middle_of_the_file_breaks_the_checkpoint_chain(deployment):
    # Given the checkpoint at seq 1000 removed from the file
    settings = deployment.copy("middle-checkpoint")
    cps = Path(settings.audit_dir) / CHECKPOINTS_NAME
    lines = _lines(cps)
    cps.write_bytes(lines[0] + b"".join(lines[2:]))
    # When verified / Then the next checkpoint no longer follows the one before it
    signed = verify_for(settings)
    assert not signed.ok and "line 2" in signed.problem and "does not follow" in signed.problem, str(signed)


def test_checkpoints_missing_where_they_are_required_fail_verification(tmp_path):
    key = Ed25519PrivateKey.generate()
    # Given a log of 10 entries written without any checkpoint
    log = AuditLog(tmp_path)
    log.append([_entry(n) for n in range(1, 11)], batch="b1")
    log.close()
    path, cps = tmp_path / LOG_NAME, tmp_path / CHECKPOINTS_NAME
    # When verified / Then it passes in development and fails where checkpoints are required
    assert verify_beside(path, cps, key.public_key()).ok
    verdict = verify_beside(path, cps, key.public_key(), required=True)
    assert not verdict.ok and "required" in verdict.problem and "has none" in verdict.problem
    # And a checkpoint followed by more entries than the writer ever leaves unchecked fails too
    head = "a" * 64
    local = [make_line(1, head, "2026-11-26T12:00:00Z", GENESIS, key)]
    last = 1 + checkpoints.UNCOVERED_TAIL_LIMIT + 1
    verdict = judge(local, {1: head}, last, Policy(key.public_key(), required=True))
    assert not verdict.ok and "checkpoints are missing" in verdict.problem
    assert judge(local, {1: head}, last - 1, Policy(key.public_key(), required=True)).ok


def test_the_development_key_is_never_trusted_where_checkpoints_are_required():
    # Given checkpoints signed with the public development key
    head = "b" * 64
    local = [make_line(1, head, "2026-11-26T12:00:00Z", GENESIS, DEV_KEY)]
    # When verified trusting that key / Then fine in development, refused where required
    assert judge(local, {1: head}, 1, Policy(DEV_KEY.public_key())).ok
    verdict = judge(local, {1: head}, 1, Policy(DEV_KEY.public_key(), required=True))
    assert not verdict.ok and "development key" in verdict.problem


def test_the_writer_refuses_to_start_without_a_signing_key_off_the_audit_disk(tmp_path):
    base = load_settings(environ={}).with_overrides(audit_dir=tmp_path / "audit", checkpoints_required=True)
    # Given checkpoints required and no signing key / Then the writer does not start
    with pytest.raises(ConfigError, match="signing key"):
        AuditWriter(base)
    # Given the signing key inside the audit directory / Then refused too
    _key, private, _public = write_keys(tmp_path / "audit" / "keys")
    with pytest.raises(ConfigError, match="must not live in the audit directory"):
        AuditWriter(base.with_overrides(checkpoint_signing_key=private))


def test_an_anchor_line_signed_by_another_key_is_a_failure_not_ignored():
    # Given an anchor holding a line signed with a key that is not trusted (someone able to publish to the
    # anchor, e.g. through the default exchange, cannot sign)
    key, other = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    head = "c" * 64
    good = make_line(1, head, "2026-11-26T12:00:00Z", GENESIS, key)
    junk = make_line(1, head, "2026-11-26T12:00:00Z", GENESIS, other)
    # When verified / Then the foreign line is named
    verdict = judge([good], {1: head}, 1, Policy(key.public_key(), anchor=[good, junk]))
    assert not verdict.ok and "anchor message line 2" in verdict.problem
    assert judge([good], {1: head}, 1, Policy(key.public_key(), anchor=[good])).ok


def test_an_unreachable_anchor_is_counted_and_the_checkpoint_stays_on_disk(tmp_path):
    # Given an anchor at an address where nothing listens
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    settings = load_settings(environ={}).with_overrides(
        amqp_url=f"amqp://guest:guest@127.0.0.1:{port}/", audit_dir=tmp_path / "audit"
    )
    failures: list[int] = []
    key = Ed25519PrivateKey.generate()
    signer = checkpoints.Checkpointer(
        tmp_path / CHECKPOINTS_NAME, key, on_failure=lambda: failures.append(1), anchor=Anchor(settings)
    )
    # When a checkpoint is written
    started = time.monotonic()
    written = signer.write(7, "d" * 64)
    # Then it is on disk and signed, the anchor failure is counted, and the writer was not held long
    assert written and failures == [1] and time.monotonic() - started < 10
    assert read_chain(_lines(tmp_path / CHECKPOINTS_NAME), key.public_key())[0].seq == 7

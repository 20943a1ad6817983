"""Audit tampering is caught: flips, deletions, reorderings and truncations of a 100,000-entry log.

The log is written with broker.audit.log.AuditLog (with signed checkpoints beside it, as the writer keeps
them); each tampering is applied to a copy and `broker.audit.log.verify` must name the first bad line.
Cutting whole entries off the end leaves a valid chain: only the signed checkpoints catch that.
"""

from __future__ import annotations

import itertools
import random
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from broker.audit import checkpoints
from broker.audit.log import LOG_NAME, AuditLog, verify

ENTRIES = 100_000
KEY = Ed25519PrivateKey.generate()


@dataclass
class Log:
    data: bytes
    starts: list[int]  # byte offset of each line (1-based line n starts at starts[n - 1])
    copy: Path
    checkpoints: Path

    def line(self, n: int) -> bytes:
        end = self.starts[n] if n < len(self.starts) else len(self.data)
        return self.data[self.starts[n - 1] : end]

    def write(self, data: bytes) -> Path:
        self.copy.write_bytes(data)
        return self.copy


@pytest.fixture(scope="module")
def log(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Log]:
    directory = tmp_path_factory.mktemp("audit-100k")
    audit = AuditLog(directory)
    signer = checkpoints.Checkpointer(directory / checkpoints.CHECKPOINTS_NAME, KEY, every_entries=10_000)
    entry = {
        "entry_id": "",
        "outcome": "delivered",
        "record_id": "",
        "recipient": "cps",
        "agreement": "isa-cps-case-files",
        "record_type": "case.file",
        "fields": ["data.charges", "data.urn"],
        "time": "2026-11-26T09:00:00.000000Z",
        "actor": {"worker": "w1"},
    }
    started = time.perf_counter()
    for batch in range(ENTRIES // 500):
        audit.append(
            [dict(entry, entry_id=f"e-{batch}-{i}", record_id=f"01-niche-{batch}-{i}") for i in range(500)],
            batch=f"b-{batch}",
        )
        signer.maybe(audit.seq, audit.head)
    signer.write(audit.seq, audit.head)
    audit.close()
    data = (directory / LOG_NAME).read_bytes()
    starts = [0, *itertools.accumulate(len(line) + 1 for line in data.split(b"\n")[:-2])]
    elapsed = time.perf_counter() - started
    print(f"\naudit tamper: wrote {ENTRIES} entries ({len(data) / 1e6:.0f} MB) in {elapsed:.1f}s")
    yield Log(data, starts, directory / "tampered" / LOG_NAME, directory / checkpoints.CHECKPOINTS_NAME)
    shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture(autouse=True)
def _tampered_dir(log: Log) -> None:
    log.copy.parent.mkdir(exist_ok=True)


def test_the_untouched_log_verifies_in_seconds(log):
    # Given the 100,000-entry log / When it is verified
    started = time.perf_counter()
    verdict = verify(log.write(log.data))
    elapsed = time.perf_counter() - started
    # Then it is intact (the time is printed, not asserted)
    print(f"\naudit tamper: whole-log verification of {verdict.entries} entries took {elapsed:.2f}s")
    assert verdict.ok and verdict.entries == ENTRIES


def test_every_single_byte_flip_is_caught_at_its_own_line(log):
    # Given 100 flips at random lines and random bytes within them (the newline included)
    rng = random.Random(100)
    path = log.write(log.data)
    caught = 0
    with path.open("r+b") as fh:
        for n in sorted(rng.sample(range(1, ENTRIES + 1), 100)):
            offset = log.starts[n - 1] + rng.randrange(len(log.line(n)))
            original = log.data[offset]
            # When one byte is changed
            fh.seek(offset)
            fh.write(bytes([original ^ rng.randrange(1, 256)]))
            fh.flush()
            verdict = verify(path)
            fh.seek(offset)
            fh.write(bytes([original]))
            fh.flush()
            # Then verification fails at exactly that line
            assert (verdict.ok, verdict.first_bad_line) == (False, n), (n, offset, str(verdict))
            caught += 1
    print(f"\naudit tamper: {caught}/100 single-byte flips caught at the flipped line")


def test_every_deleted_entry_is_caught_where_it_was(log):
    rng = random.Random(10)
    caught = 0
    for n in sorted(rng.sample(range(1, ENTRIES), 10)):
        # Given line n removed
        tampered = log.data[: log.starts[n - 1]] + log.data[log.starts[n] :]
        # When verified / Then the break is reported at line n (its successor no longer follows)
        verdict = verify(log.write(tampered))
        assert (verdict.ok, verdict.first_bad_line) == (False, n), str(verdict)
        caught += 1
    print(f"\naudit tamper: {caught}/10 deletions caught at the deleted position")


def test_every_reordering_is_caught_at_the_first_moved_entry(log):
    rng = random.Random(11)
    caught = 0
    for n in sorted(rng.sample(range(1, ENTRIES - 50), 10)):
        m = n + rng.randrange(1, 50)
        # Given lines n and m swapped
        lines = [log.line(n), log.line(m)]
        between = log.data[log.starts[n] : log.starts[m - 1]]
        tampered = log.data[: log.starts[n - 1]] + lines[1] + between + lines[0] + log.data[log.starts[m] :]
        # When verified / Then the break is reported at line n
        verdict = verify(log.write(tampered))
        assert (verdict.ok, verdict.first_bad_line) == (False, n), str(verdict)
        caught += 1
    print(f"\naudit tamper: {caught}/10 reorderings caught at the first moved entry")


def test_a_tail_cut_mid_entry_is_caught_by_the_chain(log):
    # Given the log cut in the middle of its last entry
    verdict = verify(log.write(log.data[: log.starts[-1] + 40]))
    # Then the chain names the last line
    assert (verdict.ok, verdict.first_bad_line) == (False, ENTRIES)


def test_whole_entries_cut_off_the_end_are_caught_by_the_signed_checkpoints(log):
    # Given the last 25 entries removed: the chain of what is left is still valid
    path = log.write(log.data[: log.starts[ENTRIES - 25]])
    chain = verify(path)
    # When the signed checkpoints are checked against the log
    signed = checkpoints.verify_beside(path, log.checkpoints, KEY.public_key())
    # Then the truncation is reported
    assert chain.ok and chain.entries == ENTRIES - 25
    assert not signed.ok and "truncated" in signed.problem
    print(f"\naudit tamper: tail truncation of 25 entries: chain {chain.ok}, checkpoints: {signed.problem}")

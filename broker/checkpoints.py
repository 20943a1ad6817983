"""Signed checkpoints of the audit chain head: tamper evidence that never blocks delivery.

Every so often (every `every_entries` entries or `every_seconds`, and when the writer stops) the audit
writer appends one line to a checkpoint file an operator can keep apart from the log (another disk,
another host, write-once storage)::

    {"seq": 1042, "hash": "<chain head>", "time": "2026-11-26T12:00:00Z", "mac": "<HMAC-SHA256>"}

The MAC is HMAC-SHA256 over the canonical JSON of seq, hash and time, keyed by INTERCHANGE_CHECKPOINT_KEY.
A rewritten log cannot reproduce the signed hash at a checkpointed seq, and a log truncated after a
checkpoint no longer reaches it; `verify()` reports both.  Writing a checkpoint is best effort: a failure is
logged and counted (`interchange_audit_checkpoint_failures_total`), and the writer carries on.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from broker import logs

DEV_KEY = b"interchange-development-checkpoint-key-not-for-production"
CHECKPOINTS_NAME = "checkpoints.jsonl"


def checkpoint_key() -> bytes:
    value = os.environ.get("INTERCHANGE_CHECKPOINT_KEY")
    if value:
        return value.encode()
    logs.get("interchange.audit").warning(
        "checkpoint_dev_key", note="set INTERCHANGE_CHECKPOINT_KEY in production"
    )
    return DEV_KEY


def checkpoints_path(audit_dir: Path | str) -> Path:
    """INTERCHANGE_CHECKPOINTS when set (keep it apart from the log), else <audit dir>/checkpoints.jsonl."""
    configured = os.environ.get("INTERCHANGE_CHECKPOINTS")
    return Path(configured) if configured else Path(audit_dir) / CHECKPOINTS_NAME


def sign(seq: int, head: str, when: str, key: bytes) -> str:
    body = orjson.dumps({"hash": head, "seq": seq, "time": when}, option=orjson.OPT_SORT_KEYS)
    return hmac.new(key, body, hashlib.sha256).hexdigest()


class Checkpointer:
    """Appends signed checkpoints; never raises."""

    def __init__(
        self,
        path: Path,
        key: bytes | None = None,
        every_entries: int = 1000,
        every_seconds: float = 60.0,
        on_failure: Any = None,
    ) -> None:
        self.path, self.key = path, key or checkpoint_key()
        self.every_entries, self.every_seconds = every_entries, every_seconds
        self.on_failure = on_failure or (lambda: None)
        self.last_seq, self.last_time = 0, time.monotonic()
        self.log = logs.get("interchange.audit")

    def maybe(self, seq: int, head: str, force: bool = False) -> bool:
        due = (
            seq - self.last_seq >= self.every_entries
            or time.monotonic() - self.last_time >= self.every_seconds
        )
        if seq <= self.last_seq or not (due or force):
            return False
        return self.write(seq, head)

    def write(self, seq: int, head: str) -> bool:
        when = dt.datetime.now(dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
        line = {"seq": seq, "hash": head, "time": when, "mac": sign(seq, head, when, self.key)}
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("ab") as fh:
                fh.write(orjson.dumps(line, option=orjson.OPT_SORT_KEYS) + b"\n")
                fh.flush()
                os.fsync(fh.fileno())
        except OSError as exc:
            self.log.error(
                "audit_checkpoint_failed", seq=seq, path=str(self.path), error=exc.strerror or repr(exc)
            )
            self.on_failure()
            return False
        self.last_seq, self.last_time = seq, time.monotonic()
        return True


@dataclass(frozen=True)
class CheckpointVerdict:
    ok: bool
    checkpoints: int
    problem: str = ""

    def __str__(self) -> str:
        if self.ok:
            return f"checkpoints intact: {self.checkpoints} signed checkpoints match the log"
        return f"checkpoints FAILED: {self.problem}"


def verify(path: Path, heads: dict[int, str], last_seq: int, key: bytes | None = None) -> CheckpointVerdict:
    """Check every checkpoint's signature and that the log (seq -> hash in `heads`) still holds it."""
    if not path.exists():
        return CheckpointVerdict(True, 0)
    key = key or checkpoint_key()
    count = 0
    with path.open("rb") as fh:
        for n, raw in enumerate(fh, start=1):
            if not raw.strip():
                continue
            try:
                cp = orjson.loads(raw)
                seq, head, when, mac = int(cp["seq"]), str(cp["hash"]), str(cp["time"]), str(cp["mac"])
            except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
                return CheckpointVerdict(False, count, f"checkpoint line {n} is unreadable")
            if not hmac.compare_digest(mac, sign(seq, head, when, key)):
                return CheckpointVerdict(False, count, f"checkpoint line {n} (seq {seq}) has a bad signature")
            if seq > last_seq:
                return CheckpointVerdict(
                    False,
                    count,
                    f"checkpoint at seq {seq} ({when}) but the log ends at seq "
                    f"{last_seq}: the log was truncated",
                )
            if heads.get(seq) != head:
                return CheckpointVerdict(
                    False,
                    count,
                    f"the log's entry seq {seq} does not match the checkpoint "
                    f"signed at {when}: the log was rewritten",
                )
            count += 1
    return CheckpointVerdict(True, count)


def verify_beside(log_path: Path, path: Path, key: bytes | None = None) -> CheckpointVerdict:
    """Check the checkpoints at `path` against the log at `log_path` (reads each once)."""
    if not path.exists():
        return CheckpointVerdict(True, 0)
    wanted: set[int] = set()
    with path.open("rb") as fh:
        for raw in fh:
            try:
                wanted.add(int(orjson.loads(raw)["seq"]))
            except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
                continue
    heads, last_seq = {}, 0
    if log_path.exists():
        from broker.auditlog import read_entries

        for entry in read_entries(log_path):
            seq = entry.get("seq")
            if isinstance(seq, int):
                last_seq = max(last_seq, seq)
                if seq in wanted:
                    heads[seq] = entry.get("hash", "")
    return verify(path, heads, last_seq, key)

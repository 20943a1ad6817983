"""Helpers for the crash and fault tests: a small agreement set, a record stream, worker processes,
and a reconciler that consumes every recipient's inbox and counts what arrived.

Reconciliation is the same for every fault: each record confirmed by RabbitMQ must reach every recipient
entitled to it (0 lost), and any extra copy must carry the same message_id and the same body as the first.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pika
import pika.exceptions
import yaml

from broker import topology
from broker.config import PROJECT_ROOT, Settings
from broker.errors import TransportError
from broker.ingress.publisher import record_message
from broker.transports.amqp import blocking_channel
from tests.support import EXAMPLES

# Every crime report from a territorial force goes to these four recipients.
FLOW_RECIPIENTS = ("force-13", "force-48", "victim-support-london", "crime-map")


def write_flow_agreements(directory: Path) -> Path:
    """Four agreements: crime.report from any territorial force to each of FLOW_RECIPIENTS."""
    directory.mkdir(parents=True, exist_ok=True)
    for recipient in FLOW_RECIPIENTS:
        doc = {
            "id": f"ISA-FLOW-{recipient.upper()}",
            "title": f"Fault-test flow to {recipient}",
            "controller": "Test controller",
            "providers": ["group:territorial-forces"],
            "recipient": recipient,
            "record_types": ["crime.report"],
            "purposes": ["testing"],
            "lawful_basis": "Test fixture only",
            "max_classification": "OFFICIAL",
            "fields": {"crime.report": ["data.category", "data.month", "data.crime_ref"]},
            "valid_from": "2024-01-01",
            "valid_until": "2099-12-31",
            "review_by": "2099-01-01",
            "status": "active",
        }
        (directory / f"{doc['id']}.yaml").write_text(yaml.safe_dump(doc))
    return directory


def write_flow_recipients(path: Path) -> Path:
    """recipients.yaml holding only FLOW_RECIPIENTS (fewer vhosts and quorum queues to create)."""
    doc = yaml.safe_load((PROJECT_ROOT / "deploy" / "config" / "recipients.yaml").read_text())
    # the fault tests count deliveries by record id: their crime-map is a plain (not public) recipient here
    doc["recipients"] = [
        {k: v for k, v in r.items() if k not in ("public", "format")}
        for r in doc["recipients"]
        if r["id"] in FLOW_RECIPIENTS
    ]
    path.write_text(yaml.safe_dump(doc))
    return path


_TEMPLATE = json.loads((EXAMPLES / "01-crime.report-burglary-victim-suspect.json").read_text())


def flow_records(count: int, prefix: str, cases: int = 500) -> Iterator[dict[str, Any]]:
    """`count` valid crime reports with ids `<prefix>-<n>`, spread over `cases` correlation ids."""
    for n in range(count):
        record = copy.copy(_TEMPLATE)
        record["id"] = f"{prefix}-{n}"
        record["correlation_id"] = f"case-{prefix}-{n % cases}"
        yield record


def flow_messages(count: int, prefix: str) -> Iterator[Any]:
    for record in flow_records(count, prefix):
        yield record_message(record)


def write_settings_file(settings: Settings, path: Path, heartbeat: int = 5) -> Path:
    """A settings file for a worker or audit-writer subprocess, equal to the test's Settings."""
    doc = {
        "amqp": {
            "url": settings.amqp_url,
            "core_vhost": settings.core_vhost,
            "recipient_vhost_prefix": settings.recipient_vhost_prefix,
            "prefetch": settings.prefetch,
            "partitions": settings.partitions,
            "confirm_timeout_seconds": settings.confirm_timeout_seconds,
            "heartbeat_seconds": heartbeat,
        },
        "management_url": settings.management_url,
        "audit": {"dir": str(settings.audit_dir)},
        "paths": {
            "agencies": str(settings.agencies_file),
            "recipients": str(settings.recipients_file),
            "agreements": str(settings.agreements_dir),
        },
        "metrics": {"port": 0},
        "identity": {"require_publisher": settings.require_publisher},
        "development": settings.development,  # the tests' settings (deploy/interchange.yaml) are development's
    }
    path.write_text(yaml.safe_dump(doc))
    return path


@dataclass
class Role:
    """A `python -m broker <role>` child process that can be SIGKILLed and started again."""

    role: str
    config: Path
    log: Path
    args: tuple[str, ...] = ()
    process: subprocess.Popen[bytes] | None = None
    kills: int = 0

    def start(self) -> Role:
        env = dict(os.environ, PYTHONPATH=str(PROJECT_ROOT))
        env.pop("INTERCHANGE_AMQP_URL", None)
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "broker",
                    "--config",
                    str(self.config),
                    "--log-level",
                    "warning",
                    self.role,
                    *self.args,
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=PROJECT_ROOT,
                env=env,
            )
        return self

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait()
            self.kills += 1

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.kill()


def _sha(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()


@dataclass
class Inbox:
    """What one recipient received: message_id -> body hash of the first copy, and counts."""

    first: dict[str, str] = field(default_factory=dict)
    copies: int = 0
    without_id: int = 0
    differing: list[str] = field(default_factory=list)

    def add(self, message_id: str | None, body: bytes) -> None:
        self.copies += 1
        if not message_id:
            self.without_id += 1
            return
        digest = _sha(body)
        known = self.first.setdefault(message_id, digest)
        if known != digest:
            self.differing.append(message_id)


class Flow:
    """Publishes `count` flow records from a background thread through publish_all (confirm window,
    resend of what was not confirmed); `confirmed` holds the ids RabbitMQ confirmed, nothing else."""

    def __init__(self, settings: Settings, count: int, prefix: str, window: int = 300) -> None:
        self.settings, self.count, self.prefix, self.window = settings, count, prefix, window
        self.confirmed: set[str] = set()
        self.report: Any = None
        self.error: BaseException | None = None
        self.transport: Any = None
        self.thread = threading.Thread(target=self._run, daemon=True, name=f"flow-{prefix}")

    def _run(self) -> None:
        from broker.ingress.publisher import StreamPublisher
        from broker.transports.amqp import AmqpTransport

        s = self.settings
        try:
            self.transport = AmqpTransport(
                s.amqp_url,
                {"core": s.core_vhost},
                s.confirm_timeout_seconds,
                s.heartbeat_seconds,
                name=f"flow-{self.prefix}",
            )
            self.report = StreamPublisher(
                self.transport,
                flow_messages(self.count, self.prefix),
                self.window,
                max_attempts=1_000_000,
                on_confirmed=lambda m: self.confirmed.add(m.message_id),
            ).run()
        except BaseException as exc:  # surfaced by join()
            self.error = exc

    def start(self) -> Flow:
        self.thread.start()
        return self

    def join(self, timeout: float) -> Any:
        self.thread.join(timeout)
        assert not self.thread.is_alive(), f"publisher still running after {timeout}s"
        assert self.error is None, repr(self.error)
        assert self.report.failed == 0 and self.report.published == self.count, self.report
        return self.report


class Reconciler:
    """Consumes every recipient's inbox in its own thread (manual acks, reconnecting across the node list)
    and reconciles what arrived against the records RabbitMQ confirmed."""

    def __init__(self, settings: Settings, recipients: tuple[str, ...] = FLOW_RECIPIENTS, batch: int = 200) -> None:
        self.settings, self.recipients, self.batch = settings, recipients, batch
        self.inboxes = {r: Inbox() for r in recipients}
        self.reconnects = 0
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [
            threading.Thread(target=self._consume, args=(r,), daemon=True, name=f"inbox-{r}") for r in recipients
        ]

    def __enter__(self) -> Reconciler:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=10)

    def _consume(self, recipient: str) -> None:
        vhost = self.settings.recipient_vhost(recipient)
        while not self._stop.is_set():
            try:
                self._consume_once(recipient, vhost)
            except (pika.exceptions.AMQPError, TransportError, OSError):
                with self._lock:
                    self.reconnects += 1
                time.sleep(0.5)

    def _consume_once(self, recipient: str, vhost: str) -> None:
        connection, channel = blocking_channel(self.settings.amqp_url, vhost, f"reconciler-{recipient}")
        try:
            channel.basic_qos(prefetch_count=self.batch * 2)
            unacked = 0
            last_tag = 0
            for method, props, body in channel.consume(topology.INBOX_QUEUE, inactivity_timeout=0.3):
                if method is not None:
                    with self._lock:
                        self.inboxes[recipient].add(props.message_id, body)
                    unacked, last_tag = unacked + 1, method.delivery_tag
                if unacked and (unacked >= self.batch or method is None):
                    channel.basic_ack(last_tag, multiple=True)
                    unacked = 0
                if self._stop.is_set():
                    break
        finally:
            try:
                connection.close()
            except (pika.exceptions.AMQPError, OSError):
                pass

    def least_received(self) -> int:
        with self._lock:
            return min(len(box.first) for box in self.inboxes.values())

    def missing(self, expected: set[str]) -> dict[str, int]:
        with self._lock:
            return {r: len(expected - set(box.first)) for r, box in self.inboxes.items()}

    def wait_for(self, expected: set[str], timeout: float, tick: Callable[[], None] | None = None) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not any(self.missing(expected).values()):
                return True
            if tick:
                tick()
            time.sleep(0.5)
        return False

    def report(self, expected: set[str]) -> dict[str, dict[str, int]]:
        """Per recipient: expected, received (unique), copies, duplicates, lost, unexpected, differing."""
        out = {}
        with self._lock:
            for recipient, box in self.inboxes.items():
                ids = set(box.first)
                out[recipient] = {
                    "expected": len(expected),
                    "received": len(ids & expected),
                    "copies": box.copies,
                    "duplicates": box.copies - len(ids) - box.without_id,
                    "lost": len(expected - ids),
                    "unexpected": len(ids - expected) + box.without_id,
                    "differing": len(box.differing),
                }
        return out


def dead_lettered(settings: Settings) -> int:
    """Records in the core dead-letter queue (refused, or past the delivery limit): must be 0 here."""
    connection, channel = blocking_channel(settings.amqp_url, settings.core_vhost, "reconciler-dead")
    try:
        return int(channel.queue_declare(topology.DEAD_QUEUE, passive=True).method.message_count)
    finally:
        connection.close()


def assert_reconciled(name: str, report: dict[str, dict[str, int]], dead: int = 0, **facts: Any) -> None:
    """Print the counts (CI keeps them) and fail on any loss, stray message, differing copy or dead letter."""
    facts["dead_lettered"] = dead
    totals = {k: sum(r[k] for r in report.values()) for k in next(iter(report.values()))}
    print(
        f"\n[{name}] "
        + " ".join(f"{k}={v}" for k, v in facts.items())
        + " | "
        + " ".join(f"{k}={v}" for k, v in totals.items())
    )
    for recipient, counts in report.items():
        print(f"[{name}]   {recipient}: " + " ".join(f"{k}={v}" for k, v in counts.items()))
    assert totals["lost"] == 0, f"{name}: {totals['lost']} entitled deliveries lost"
    assert totals["unexpected"] == 0, f"{name}: deliveries with unknown or missing message_id"
    assert totals["differing"] == 0, f"{name}: a duplicate differs from the first copy"
    assert dead == 0, f"{name}: {dead} records dead-lettered (delivery limit reached?)"

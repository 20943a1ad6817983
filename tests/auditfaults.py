"""The audit-disk fault rig: worker and audit writer as child processes on the real RabbitMQ, the audit
directory on a small tmpfs, a mixed record stream (deliveries, withholds, rejections), and the checks of
issue 18's acceptance: the chain verifies, every delivery, withhold and rejection has exactly one audit
entry, and nothing is in interchange.dead but the rejected records."""

from __future__ import annotations

import collections
import copy
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from broker import topology
from broker.audit.log import LOG_NAME, AuditWriter, read_entries
from broker.config import PROJECT_ROOT
from broker.ingress.publisher import PublishReport, publish_all, record_message
from tests.flowkit import FLOW_RECIPIENTS, Role, flow_records, write_flow_agreements, write_flow_recipients
from tests.flowkit import write_settings_file as _flow_settings_file
from tests.smalldisk import SmallDisk
from tests.support import TestBroker


def kind_of(n: int) -> str:
    """Record n of the mixed stream: every 10th withheld from everyone, every 50th rejected, else delivered."""
    if n % 50 == 7:
        return "rejected"
    if n % 10 == 3:
        return "withheld"
    return "delivered"


def mixed_records(count: int, prefix: str) -> Iterator[dict[str, Any]]:
    for n, record in enumerate(flow_records(count, prefix)):
        kind = kind_of(n)
        if kind == "withheld":  # above every flow agreement's ceiling (max_classification OFFICIAL)
            record = copy.deepcopy(record)
            record["classification"] = dict(record["classification"], sensitive=True)
        elif kind == "rejected":  # fails the schema
            record = dict(record, subjects="not-a-list")
        yield record


class Rig:
    """One test's vhosts, settings file, child processes and record stream."""

    def __init__(self, tmp_path: Path, disk: SmallDisk, lag_bound: float = 30.0) -> None:
        self.tmp, self.disk = tmp_path, disk
        self.broker = TestBroker.create(
            disk.path / "audit",
            write_flow_agreements(tmp_path / "agreements"),
            recipients_file=write_flow_recipients(tmp_path / "recipients.yaml"),
        )
        self.settings = self.broker.settings
        self.config = _flow_settings_file(self.settings, tmp_path / "settings.yaml")
        doc = yaml.safe_load(self.config.read_text())
        doc["audit"]["lag_bound_seconds"] = lag_bound
        self.config.write_text(yaml.safe_dump(doc))
        self.writer = Role("audit-writer", self.config, tmp_path / "audit-writer.log")
        self.worker = Role("worker", self.config, tmp_path / "worker.log")
        self.expected: dict[str, str] = {}
        self.confirmed: set[str] = set()
        self.reports: list[PublishReport] = []
        self._publisher: threading.Thread | None = None

    @property
    def log(self) -> Path:
        return Path(self.settings.audit_dir) / LOG_NAME

    def publish(self, count: int, prefix: str, per_second: float | None = None) -> None:
        """Publish `count` mixed records from a thread (paced to `per_second` when given)."""
        records = list(mixed_records(count, prefix))
        self.expected.update({r["id"]: kind_of(n) for n, r in enumerate(records)})

        def messages() -> Iterator[Any]:
            started = time.monotonic()
            for n, record in enumerate(records):
                if per_second:
                    time.sleep(max(0.0, started + n / per_second - time.monotonic()))
                yield record_message(record)

        self._publisher = threading.Thread(
            target=lambda: self.reports.append(
                publish_all(
                    self.settings,
                    messages(),
                    window=20 if per_second else 500,
                    on_confirmed=lambda m: self.confirmed.add(m.message_id),
                )
            ),
            daemon=True,
        )
        self._publisher.start()

    def published(self, timeout: float) -> PublishReport:
        assert self._publisher is not None
        self._publisher.join(timeout)
        assert not self._publisher.is_alive(), f"publisher still running after {timeout}s"
        [report] = self.reports
        assert report.failed == 0 and report.published == len(self.expected), report
        return report

    def entitled(self) -> set[str]:
        return {i for i in self.confirmed if self.expected[i] == "delivered"}

    def finish(self) -> None:
        """Stop both children, then write whatever is still queued with a writer in this process."""
        self.worker.stop()
        self.writer.stop()
        AuditWriter(self.settings).run(stop_when_idle=True)

    def close(self) -> None:
        self.worker.kill()
        self.writer.kill()
        self.broker.close()

    # ---------------------------------------------------------------- the acceptance checks
    def audit_problems(self) -> list[str]:
        """Every delivery, withhold and rejection of a confirmed record has exactly one audit entry."""
        counts: collections.Counter[tuple[str, str | None, str]] = collections.Counter()
        for entry in read_entries(self.log):
            if entry.get("record_id") in self.expected:
                counts[(entry["record_id"], entry.get("recipient"), entry.get("operation", ""))] += 1
        wanted: collections.Counter[tuple[str, str | None, str]] = collections.Counter()
        for record_id in self.confirmed:
            kind = self.expected[record_id]
            if kind == "rejected":
                wanted[(record_id, None, "reject")] = 1
            else:
                for recipient in FLOW_RECIPIENTS:
                    wanted[(record_id, recipient, "disclose" if kind == "delivered" else "withhold")] = 1
        problems = [f"{key}: {counts.get(key, 0)} audit entries" for key in wanted if counts.get(key, 0) != 1]
        problems += [f"{key}: unexpected audit entry" for key in counts if key not in wanted]
        return problems

    def dead_letters(self) -> list[str]:
        return [props.message_id for props, _body in self.broker.drain(self.settings.core_vhost, topology.DEAD_QUEUE)]

    def rejected(self) -> set[str]:
        return {i for i in self.confirmed if self.expected[i] == "rejected"}

    def verify_cli(self) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "broker", "--audit-dir", str(self.settings.audit_dir), "audit", "verify"],
            capture_output=True,
            text=True,
            cwd=PROJECT_ROOT,
        )

    def counts(self) -> dict[str, int]:
        kinds = collections.Counter(self.expected[i] for i in self.confirmed)
        return {
            "records": len(self.expected),
            "confirmed": len(self.confirmed),
            "deliveries": kinds["delivered"] * len(FLOW_RECIPIENTS),
            "withholds": kinds["withheld"] * len(FLOW_RECIPIENTS),
            "rejections": kinds["rejected"],
        }

    def log_lines(self, role: Role, event: str) -> list[str]:
        return [line for line in role.log.read_text(errors="replace").splitlines() if f'"{event}"' in line]


def disk_full_mid_flow(tmp_path: Path, disk: SmallDisk, full_seconds: float, records: int) -> dict[str, Any]:
    """The audit disk is full for `full_seconds` while `records` flow; returns the counts, asserts the rest."""
    from tests.flowkit import Reconciler, assert_reconciled

    rig = Rig(tmp_path, disk)
    try:
        rig.writer.start()
        rig.worker.start()
        with Reconciler(rig.settings) as inboxes:
            rig.publish(records, "full", per_second=records / (full_seconds + 10))
            _wait(lambda: rig.log.exists() and rig.log.stat().st_size > 20_000, 60, "the first audit entries")
            rig.disk.fill()
            full_since = time.monotonic()
            written_when_full = rig.log.stat().st_size
            time.sleep(full_seconds)
            rig.disk.free()
            full_for = time.monotonic() - full_since
            report = rig.published(timeout=300)
            assert inboxes.wait_for(rig.entitled(), timeout=180), inboxes.missing(rig.entitled())
            delivered = inboxes.report(rig.entitled())
        waits = rig.log_lines(rig.writer, "audit_writer_waiting")
        pauses = rig.log_lines(rig.worker, "worker_paused_for_audit_lag")
        rig.finish()
        dead = rig.dead_letters()
        verdict = rig.verify_cli()
        problems = rig.audit_problems()
        facts = rig.counts() | {
            "disk_full_seconds": round(full_for, 1),
            "write_retries": len(waits),
            "log_bytes_when_full": written_when_full,
            "resent": report.resent,
            "dead_letters": len(dead),
            "audit_problems": len(problems),
            "worker_pauses": len(pauses),
        }
        assert_reconciled(f"audit-disk-full-{full_seconds:.0f}s", delivered, len(dead) - len(rig.rejected()), **facts)
        assert waits and all("disk space" in line for line in waits), waits[:3]
        # back-off: 0.5, 1, 2, 4 … 30 s (jittered) instead of a retry about every second
        assert len(waits) < full_seconds / 2, f"{len(waits)} retries in {full_for:.0f}s: no back-off"
        assert verdict.returncode == 0, verdict.stdout + verdict.stderr
        assert not problems, problems[:10]
        assert sorted(dead) == sorted(rig.rejected()), "interchange.dead holds more than the rejected records"
        return facts
    finally:
        rig.close()


def _wait(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out after {timeout}s waiting for {what}"
        time.sleep(0.05)

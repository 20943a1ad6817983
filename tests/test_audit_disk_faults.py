"""Issue 18 on the real RabbitMQ, worker and audit writer as separate processes, the audit directory on a
small tmpfs: a full disk, a frozen writer and a writer killed during a backlog lose no audit entry and leave
the chain verifiable; workers pause at the audit lag bound and resume by themselves.

The 90-second disk-full run is in the fault battery (tests/cluster/test_audit_disk_battery.py,
`make test-cluster`); this file keeps a 15-second one so the normal suite stays short."""

from __future__ import annotations

import signal
import time

import pytest

from broker.audit.log import verify
from tests.auditfaults import Rig, _wait, disk_full_mid_flow
from tests.flowkit import Reconciler, assert_reconciled
from tests.smalldisk import small_disk

pytestmark = [pytest.mark.rabbitmq, pytest.mark.slow]


@pytest.fixture
def disk(rabbitmq, tmp_path):
    with small_disk(tmp_path / "disk", "256m") as mounted:
        yield mounted


def test_a_disk_full_for_15_seconds_mid_flow_loses_no_audit_entry_and_dead_letters_none(tmp_path, disk):
    disk_full_mid_flow(tmp_path, disk, full_seconds=15, records=1500)


def test_a_frozen_writer_pauses_deliveries_within_the_bound_and_they_resume_after_it_thaws(tmp_path, disk):
    bound, frozen_for = 5.0, 25.0
    rig = Rig(tmp_path, disk, lag_bound=bound)
    try:
        rig.writer.start()
        rig.worker.start()
        with Reconciler(rig.settings) as inboxes:
            rig.publish(4000, "frozen", per_second=80)
            _wait(lambda: inboxes.least_received() >= 200, 60, "deliveries to start")
            assert rig.writer.process is not None
            rig.writer.process.send_signal(signal.SIGSTOP)
            stopped = time.monotonic()
            samples: list[tuple[float, int]] = []
            while time.monotonic() - stopped < frozen_for:
                samples.append((time.monotonic() - stopped, inboxes.least_received()))
                time.sleep(0.25)
            rig.writer.process.send_signal(signal.SIGCONT)
            thawed = time.monotonic()
            at_thaw = inboxes.least_received()
            _wait(lambda: inboxes.least_received() > at_thaw + 50, 30, "deliveries to resume")
            resumed_after = time.monotonic() - thawed
            rig.published(timeout=300)
            assert inboxes.wait_for(rig.entitled(), timeout=180), inboxes.missing(rig.entitled())
            delivered = inboxes.report(rig.entitled())
        paused = rig.log_lines(rig.worker, "worker_paused_for_audit_lag")
        resumed = rig.log_lines(rig.worker, "worker_resumed_after_audit_lag")
        rig.finish()
        # deliveries stopped: after bound + 6 s (stats interval and checks) + 2 s of in-flight, nothing new
        settle = bound + 8.0
        still = [n for t, n in samples if t >= settle]
        last_growth = max((t for (t, n), (_t0, n0) in zip(samples[1:], samples, strict=False) if n > n0), default=0)
        facts = rig.counts() | {
            "frozen_seconds": frozen_for,
            "bound_seconds": bound,
            "last_delivery_after_freeze_s": round(last_growth, 1),
            "resumed_after_thaw_s": round(resumed_after, 1),
            "pauses": len(paused),
        }
        assert_reconciled("audit-writer-frozen", delivered, len(rig.dead_letters()) - len(rig.rejected()), **facts)
        assert still and max(still) == min(still), f"deliveries went on {last_growth:.1f}s after the writer froze"
        assert paused and resumed
        assert rig.verify_cli().returncode == 0
        assert not rig.audit_problems()
    finally:
        rig.close()


def test_a_writer_sigkilled_five_times_during_a_backlog_leaves_the_log_intact(tmp_path, disk):
    rig = Rig(tmp_path, disk)
    try:
        rig.worker.start()
        with Reconciler(rig.settings) as inboxes:
            rig.publish(3000, "backlog")
            rig.published(timeout=300)  # the backlog: every audit message waits, no writer yet
            assert inboxes.wait_for(rig.entitled(), timeout=180), inboxes.missing(rig.entitled())
            delivered = inboxes.report(rig.entitled())
        rig.worker.stop()
        for _ in range(5):
            rig.writer.start()
            _wait(lambda: rig.log.exists() and rig.log.stat().st_size > 0, 30, "the writer to write")
            time.sleep(0.4)
            rig.writer.kill()
        rig.writer.start()
        rig.finish()
        verdict = rig.verify_cli()
        problems = rig.audit_problems()
        assert_reconciled(
            "audit-writer-killed-in-backlog",
            delivered,
            0,
            kills=rig.writer.kills,
            **rig.counts(),
            audit_problems=len(problems),
            repairs=len(verify(rig.log).repairs),
        )
        assert verdict.returncode == 0, verdict.stdout
        assert not problems, problems[:10]
        assert sorted(rig.dead_letters()) == sorted(rig.rejected())
    finally:
        rig.close()

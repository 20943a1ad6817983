"""The fault battery on a 3-node RabbitMQ cluster (scripts/cluster.sh): nodes and workers die, and nothing
RabbitMQ confirmed is lost.  Run with `make test-cluster`; every test prints its counts.

Each test publishes flow records (every record to 4 recipients), runs the audit writer and two routing
workers as child processes on two partitions, injects its fault, and reconciles: every confirmed record
reaches every entitled recipient (0 lost), and every extra copy has the same message_id and body.
"""

from __future__ import annotations

import threading
import time
from contextlib import contextmanager
from pathlib import Path

import pytest

from broker.audit.log import LOG_NAME, AuditWriter, verify
from tests.flowkit import Flow, Reconciler, Role, assert_reconciled, dead_lettered, write_settings_file
from tests.support import TestBroker

pytestmark = [pytest.mark.cluster, pytest.mark.slow]

WORKER_KILL_RECORDS = 20_000  # docs/RELIABILITY.md: what fits in about three minutes on two shared cores


def _wait(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


@contextmanager
def routing_core(broker: TestBroker, tmp_path: Path, workers: int = 2):
    """The audit writer and `workers` routing workers as child processes; the audit chain is checked after."""
    config = write_settings_file(broker.settings, tmp_path / "settings.yaml", heartbeat=5)
    writer = Role("audit-writer", config, tmp_path / "audit-writer.log").start()
    roles = [
        Role("worker", config, tmp_path / f"worker-{i}.log", ("--index", str(i), "--of", str(workers))).start()
        for i in range(workers)
    ]
    try:
        yield roles
    finally:
        for role in roles + [writer]:
            role.stop()
    AuditWriter(broker.settings).run(stop_when_idle=True)
    assert verify(Path(broker.settings.audit_dir) / LOG_NAME).ok


def test_workers_killed_every_two_seconds_and_the_leader_node_killed_once_lose_nothing(
    cluster, cluster_broker, tmp_path
):
    # Given two workers sharing two partitions on the cluster, and 20,000 records flowing to 4 recipients
    settings, count = cluster_broker.settings, WORKER_KILL_RECORDS
    started = time.monotonic()
    node_events: list[str] = []
    with routing_core(cluster_broker, tmp_path) as workers, Reconciler(settings) as inboxes:
        flow = Flow(settings, count, "wk").start()
        # When a worker is SIGKILLed every 2 s, and the route queue's leader node is SIGKILLed halfway
        killed_node, restarter, kills = None, None, 0
        while (
            len(flow.confirmed) < count or any(inboxes.missing(flow.confirmed).values())
        ) and time.monotonic() - started < 600:
            time.sleep(2)
            victim = workers[kills % len(workers)]
            victim.kill()
            victim.start()
            kills += 1
            if killed_node is None and inboxes.least_received() >= count // 2:
                killed_node = cluster.leader(settings.core_vhost, "interchange.route.0")
                cluster.kill(killed_node)
                node_events.append(f"killed ic{killed_node} at {inboxes.least_received()} delivered")

                def restart(node: int = killed_node) -> None:
                    time.sleep(5)
                    cluster.start_node(node)
                    node_events.append(f"ic{node} back")

                restarter = threading.Thread(target=restart, daemon=True)
                restarter.start()
        report = flow.join(60)
        assert inboxes.wait_for(flow.confirmed, timeout=120), inboxes.missing(flow.confirmed)
        counts, dead = inboxes.report(flow.confirmed), dead_lettered(settings)
        if restarter:
            restarter.join(120)
    elapsed = time.monotonic() - started
    assert killed_node is not None, "the flow finished before half of it was delivered"
    assert_reconciled(
        "worker-and-leader-kills",
        counts,
        dead,
        records=count,
        confirmed=len(flow.confirmed),
        worker_kills=sum(w.kills for w in workers),
        node=";".join(node_events),
        resent=report.resent,
        seconds=round(elapsed),
        records_per_second=round(count / elapsed),
    )


def test_two_of_three_nodes_down_for_30_seconds_publishers_wait_and_deliver_everything_after(
    cluster, cluster_broker, tmp_path
):
    # Given records flowing through two workers
    settings, count = cluster_broker.settings, 6_000
    with routing_core(cluster_broker, tmp_path), Reconciler(settings) as inboxes:
        flow = Flow(settings, count, "q2").start()
        _wait(lambda: len(flow.confirmed) >= count // 4, 120, "a quarter of the records confirmed")
        # When two of the three nodes are SIGKILLed (the survivor is a minority and pauses) for 30 s
        cluster.kill(2)
        cluster.kill(3)
        down_at = time.monotonic()
        time.sleep(5)
        confirmed_early = len(flow.confirmed)
        time.sleep(25)
        confirmed_during = len(flow.confirmed) - confirmed_early
        cluster.start_node(2)
        cluster.start_node(3)
        outage = time.monotonic() - down_at
        # Then nothing was confirmed while quorum was lost, and everything is delivered once it is back
        report = flow.join(300)
        assert inboxes.wait_for(flow.confirmed, timeout=180), inboxes.missing(flow.confirmed)
        counts, dead = inboxes.report(flow.confirmed), dead_lettered(settings)
    assert confirmed_during == 0, f"{confirmed_during} publishes confirmed without a quorum"
    assert_reconciled(
        "two-nodes-down",
        counts,
        dead,
        records=count,
        confirmed=len(flow.confirmed),
        confirmed_at_outage=confirmed_early,
        confirmed_during_outage=confirmed_during,
        outage_seconds=round(outage),
        resent=report.resent,
    )


def test_the_whole_cluster_stopped_and_started_mid_stream_consumers_resume_by_themselves(
    cluster, cluster_broker, tmp_path
):
    settings, count = cluster_broker.settings, 6_000
    with routing_core(cluster_broker, tmp_path) as workers, Reconciler(settings) as inboxes:
        flow = Flow(settings, count, "all").start()
        _wait(lambda: inboxes.least_received() >= count // 4, 180, "a quarter delivered")
        # When every node is stopped and the cluster started again, with no client restarted
        stopped_at = time.monotonic()
        cluster.run("stop")
        cluster.run("start")
        restarted = time.monotonic() - stopped_at
        # Then the same worker processes, publisher and consumers carry on and deliver everything
        report = flow.join(300)
        assert inboxes.wait_for(flow.confirmed, timeout=180), inboxes.missing(flow.confirmed)
        counts, dead = inboxes.report(flow.confirmed), dead_lettered(settings)
        assert all(w.process.poll() is None and w.kills == 0 for w in workers)
    assert_reconciled(
        "whole-cluster-restart",
        counts,
        dead,
        records=count,
        confirmed=len(flow.confirmed),
        restart_seconds=round(restarted),
        resent=report.resent,
        consumer_reconnects=inboxes.reconnects,
    )


def test_a_recipients_consumer_killed_mid_batch_twenty_times_gets_every_unacked_delivery_again(
    cluster, cluster_broker, tmp_path
):
    settings, count = cluster_broker.settings, 4_000
    received = tmp_path / "force-13.ids"
    with routing_core(cluster_broker, tmp_path), Reconciler(settings, ("force-48",)) as inboxes:
        flow = Flow(settings, count, "rc").start()
        flow.join(300)
        assert inboxes.wait_for(flow.confirmed, timeout=180)  # so force-13's inbox holds its whole backlog
        # When force-13's consumer (acks every 50) is SIGKILLed 20 times, each after a random number of
        # deliveries that is not a multiple of 50 (so some were written down but not yet acknowledged)
        for kill in range(20):
            target = len(_lines(received)) + 7 + 13 * kill % 43 + 50 * (kill % 3)
            process = _start_consumer(settings, "force-13", received, tmp_path / "consumer.log")
            _wait(
                lambda t=target, p=process: len(_lines(received)) >= t or p.poll() is not None,
                60,
                "deliveries",
            )
            process.kill()
            process.wait()
        written_before_last = len(_lines(received))
        # Then a consumer started afterwards receives every delivery the killed ones did not acknowledge
        process = _start_consumer(settings, "force-13", received, tmp_path / "consumer.log")
        try:
            _wait(lambda: set(_lines(received)) >= flow.confirmed, 180, "force-13 to have every record")
        finally:
            process.kill()
            process.wait()
    kills = 20
    lines = received.read_text().split()
    unique = set(lines)
    print(
        f"\n[consumer-kills] records={count} kills={kills} force-13: expected={len(flow.confirmed)} "
        f"received={len(unique & flow.confirmed)} copies={len(lines)} duplicates={len(lines) - len(unique)} "
        f"lost={len(flow.confirmed - unique)} unexpected={len(unique - flow.confirmed)}"
    )
    assert set(lines) == flow.confirmed
    assert len(lines) > len(set(lines)), "no kill landed mid-batch: nothing was redelivered"
    assert written_before_last < count, "the killed consumers drained everything: the last one proved nothing"


def _lines(path: Path) -> list[str]:
    return path.read_text().split() if path.exists() else []


def _start_consumer(settings, recipient: str, out: Path, log: Path):
    import subprocess
    import sys

    from broker.config import PROJECT_ROOT

    with log.open("ab") as sink:
        return subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.cluster.inbox_consumer",
                settings.amqp_url,
                settings.recipient_vhost(recipient),
                str(out),
            ],
            cwd=PROJECT_ROOT,
            stdout=sink,
            stderr=subprocess.STDOUT,
        )


def test_memory_and_disk_alarms_block_publishers_who_resume_when_they_clear_and_nothing_is_lost(
    cluster, cluster_broker, tmp_path
):
    settings, count = cluster_broker.settings, 3_000
    during: dict[str, int] = {}
    flows: list[Flow] = []
    with routing_core(cluster_broker, tmp_path), Reconciler(settings) as inboxes:
        for alarm, raise_it, clear_it in (
            (
                "memory",
                ("set_vm_memory_high_watermark", "absolute", "1MB"),
                ("set_vm_memory_high_watermark", "0.1"),
            ),
            ("disk", ("set_disk_free_limit", "100000GB"), ("set_disk_free_limit", "50MB")),
        ):
            # When node 2 raises the alarm (RabbitMQ blocks publishing connections cluster-wide) and a
            # publisher starts sending while it is up, for 15 s
            cluster.run("ctl", "2", *raise_it)
            flow = Flow(settings, count, f"al-{alarm}").start()
            flows.append(flow)
            time.sleep(15)
            during[alarm] = len(flow.confirmed)
            cluster.run("ctl", "2", *clear_it)
            # Then nothing was confirmed while the alarm was up, and the publisher resumes by itself
            flow.join(300)
        confirmed = set().union(*(f.confirmed for f in flows))
        assert inboxes.wait_for(confirmed, timeout=180), inboxes.missing(confirmed)
        counts, dead = inboxes.report(confirmed), dead_lettered(settings)
    assert during == {"memory": 0, "disk": 0}, during
    assert_reconciled(
        "alarms",
        counts,
        dead,
        records=2 * count,
        confirmed=len(confirmed),
        confirmed_during_memory_alarm=during["memory"],
        confirmed_during_disk_alarm=during["disk"],
        resent=sum(f.report.resent for f in flows),
    )


def test_three_network_partitions_each_isolating_a_different_node_heal_by_themselves(cluster, cluster_broker, tmp_path):
    settings, count = cluster_broker.settings, 4_000
    healed_after: list[float] = []
    with routing_core(cluster_broker, tmp_path), Reconciler(settings) as inboxes:
        flow = Flow(settings, count, "np").start()
        for node in (1, 2, 3):
            # When node N is cut off from the other two for 20 s (its distribution traffic dropped)
            cluster.run("partition", str(node))
            try:
                time.sleep(20)
            finally:
                cluster.run("heal")
            healed = time.monotonic()
            # Then with no manual step all three nodes run again and none lists a partition within 30 s
            _wait(
                lambda: cluster.all_running_without_partitions(),
                30,
                f"the cluster to heal after isolating ic{node}",
            )
            healed_after.append(round(time.monotonic() - healed, 1))
        report = flow.join(300)
        assert inboxes.wait_for(flow.confirmed, timeout=180), inboxes.missing(flow.confirmed)
        counts, dead = inboxes.report(flow.confirmed), dead_lettered(settings)
    assert_reconciled(
        "partitions",
        counts,
        dead,
        records=count,
        confirmed=len(flow.confirmed),
        healed_after_s="/".join(str(s) for s in healed_after),
        resent=report.resent,
    )

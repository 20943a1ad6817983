"""The fault battery's own 3-node RabbitMQ cluster (scripts/cluster.sh), started once per session.

Tests marked `cluster` run only when asked for (`make test-cluster`, i.e. `pytest -m cluster tests/cluster`);
a plain `pytest` deselects them, so the normal suite never starts a cluster.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from broker.config import PROJECT_ROOT
from broker.errors import TransportError
from broker.transports.admin import RabbitAdmin
from tests.flowkit import write_flow_agreements, write_flow_recipients
from tests.support import TestBroker

SCRIPT = PROJECT_ROOT / "scripts" / "cluster.sh"
AMQP_BASE, MGMT_BASE = 5700, 15700
NODES = (1, 2, 3)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if "cluster" in (config.option.markexpr or ""):
        return
    skipped = [item for item in items if item.get_closest_marker("cluster")]
    if skipped:
        config.hook.pytest_deselected(items=skipped)
        items[:] = [item for item in items if not item.get_closest_marker("cluster")]


@dataclass
class Cluster:
    directory: Path

    @property
    def amqp_url(self) -> str:
        return ",".join(f"amqp://guest:guest@127.0.0.1:{AMQP_BASE + n}/" for n in NODES)

    def management_url(self, node: int = 1) -> str:
        return f"http://127.0.0.1:{MGMT_BASE + node}/"

    def run(self, *args: str, timeout: float = 240) -> str:
        env = dict(os.environ, INTERCHANGE_CLUSTER_DIR=str(self.directory))
        done = subprocess.run(["bash", str(SCRIPT), *args], env=env, capture_output=True, text=True, timeout=timeout)
        assert done.returncode == 0, f"cluster.sh {' '.join(args)} failed: {done.stdout}{done.stderr}"
        return done.stdout

    def kill(self, node: int) -> None:
        self.run("kill", str(node))

    def start_node(self, node: int) -> None:
        self.run("startnode", str(node))

    def admin(self, avoid: int | None = None) -> RabbitAdmin:
        node = next(n for n in NODES if n != avoid)
        return RabbitAdmin(self.management_url(node))

    def leader(self, vhost: str, queue: str) -> int:
        """The node (1..3) holding the quorum queue's leader."""
        for node in NODES:
            try:
                info = RabbitAdmin(self.management_url(node), timeout=5).queue(vhost, queue)
            except Exception:  # that node is down: ask the next
                continue
            name = info.get("leader") or info.get("node", "")
            return int(name.split("@")[0].removeprefix("ic"))
        raise AssertionError("no node answered")

    def wait_healthy(self, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while not self.all_running_without_partitions():
            assert time.monotonic() < deadline, f"the cluster is not whole after {timeout}s"
            time.sleep(1)

    def all_running_without_partitions(self) -> bool:
        """Every node runs and lists no partition, as seen by every node's management API."""
        for node in NODES:
            try:
                nodes = RabbitAdmin(self.management_url(node), timeout=3)._call("GET", "/nodes")
            except Exception:  # that node is paused or still rejoining
                return False
            if len(nodes) != len(NODES) or any(not n.get("running") or n.get("partitions") for n in nodes):
                return False
        return True


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    the_cluster = Cluster(tmp_path_factory.mktemp("rabbit-cluster"))
    print("\n" + the_cluster.run("start").strip())
    try:
        yield the_cluster
    finally:
        the_cluster.run("stop", "--purge")


@pytest.fixture
def cluster_broker(cluster: Cluster, tmp_path: Path) -> Iterator[TestBroker]:
    """This test's vhosts on the cluster: the flow agreements (every record to 4 recipients).  Setup and
    teardown first wait for a whole cluster, so one test's fault never leaks into the next."""
    cluster.wait_healthy()
    broker = TestBroker.create(
        tmp_path / "audit",
        write_flow_agreements(tmp_path / "agreements"),
        recipients_file=write_flow_recipients(tmp_path / "recipients.yaml"),
        amqp_url=cluster.amqp_url,
        management_url=cluster.management_url(1),
        confirm_timeout_seconds=5.0,
        heartbeat_seconds=5,
        partitions=2,
        prefetch=200,
    )
    try:
        yield broker
    finally:
        cluster.run("heal")
        cluster.wait_healthy()
        try:
            broker.close()
        except TransportError as exc:  # deleting quorum queues just after a restart can be slow: the
            print(f"note: {exc}")  # whole cluster is removed at the end of the session anyway

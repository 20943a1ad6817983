"""`interchange run` behaves like a supervisor: its restart back-off resets after a healthy run, a child
waiting for its restart keeps neither the other children nor shutdown waiting, and `--metrics-port 0`
gives no child a metrics endpoint."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

import orjson
import pytest

from broker.config import PROJECT_ROOT
from broker.runner import child_commands

SLEEPER = [sys.executable, "-c", "import time; time.sleep(120)"]


class Supervisor:
    """`broker.runner.supervise` in its own process (it owns the signal handlers), its log lines parsed."""

    def __init__(self, commands: dict[str, list[str]], **options: float) -> None:
        code = (
            "import sys, orjson; from broker.ops import logs; from broker.runner import supervise; "
            "logs.configure('info', stream=sys.stdout); "
            f"supervise(orjson.loads({orjson.dumps(commands).decode()!r}), **{options!r})"
        )
        self.process = subprocess.Popen(
            [sys.executable, "-c", code],
            stdout=subprocess.PIPE,
            cwd=PROJECT_ROOT,
            env=dict(os.environ, PYTHONPATH=str(PROJECT_ROOT)),
        )
        self.events: list[dict] = []
        self._lock = threading.Lock()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            try:
                event = orjson.loads(line)
            except orjson.JSONDecodeError:
                continue
            with self._lock:
                self.events.append(event)

    def of(self, kind: str, process: str) -> list[dict]:
        with self._lock:
            return [e for e in self.events if e.get("event") == kind and e.get("process") == process]

    def wait_for(self, kind: str, process: str, count: int, timeout: float = 10.0) -> dict:
        deadline = time.monotonic() + timeout
        while len(self.of(kind, process)) < count:
            assert time.monotonic() < deadline, f"no {count}th {kind} of {process} within {timeout}s: {self.events}"
            time.sleep(0.02)
        return self.of(kind, process)[count - 1]

    def stop(self) -> float:
        started = time.monotonic()
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        self.process.wait(timeout=30)
        return time.monotonic() - started


def test_the_restart_back_off_resets_after_a_healthy_run_across_six_kills():
    supervisor = Supervisor({"worker-0": SLEEPER}, first_backoff=0.3, healthy_seconds=1.0)
    try:
        for kill in range(1, 7):
            pid = supervisor.wait_for("process_started", "worker-0", kill)["pid"]
            time.sleep(1.3)  # a healthy run
            os.kill(pid, signal.SIGKILL)
            supervisor.wait_for("process_exited", "worker-0", kill)
        delays = [e["restart_in"] for e in supervisor.of("process_exited", "worker-0")]
        assert delays == [0.3] * 6, f"the back-off did not reset after healthy runs: {delays}"
    finally:
        supervisor.stop()


def test_the_back_off_still_doubles_while_a_child_keeps_dying_at_once():
    supervisor = Supervisor(
        {"worker-0": [sys.executable, "-c", "raise SystemExit(3)"]},
        first_backoff=0.1,
        max_backoff=0.8,
        healthy_seconds=5.0,
    )
    try:
        supervisor.wait_for("process_exited", "worker-0", 5, timeout=15)
        delays = [e["restart_in"] for e in supervisor.of("process_exited", "worker-0")][:5]
        assert delays == [0.1, 0.2, 0.4, 0.8, 0.8]
    finally:
        supervisor.stop()


def test_a_child_waiting_for_its_restart_blocks_neither_the_others_nor_shutdown():
    supervisor = Supervisor(
        {"audit-writer": [sys.executable, "-c", "raise SystemExit(1)"], "worker-0": SLEEPER},
        first_backoff=30.0,
        max_backoff=30.0,
        healthy_seconds=60.0,
    )
    try:
        supervisor.wait_for("process_exited", "audit-writer", 1)  # now waiting 30 s to restart
        pid = supervisor.wait_for("process_started", "worker-0", 1)["pid"]
        os.kill(pid, signal.SIGKILL)
        supervisor.wait_for("process_exited", "worker-0", 1)
        # worker-0 also waits 30 s; shutdown does not wait for either restart
    finally:
        took = supervisor.stop()
    assert took < 3.0, f"SIGTERM waited {took:.1f}s behind a restart back-off"
    assert supervisor.process.returncode == 0


def test_a_killed_child_restarts_while_another_waits_out_a_long_back_off():
    supervisor = Supervisor(
        {"audit-writer": [sys.executable, "-c", "raise SystemExit(1)"], "worker-0": SLEEPER},
        first_backoff=0.2,
        max_backoff=30.0,
        healthy_seconds=60.0,
    )
    try:
        supervisor.wait_for("process_exited", "audit-writer", 6, timeout=20)  # its back-off is now 6.4 s+
        pid = supervisor.wait_for("process_started", "worker-0", 1)["pid"]
        killed = time.monotonic()
        os.kill(pid, signal.SIGKILL)
        supervisor.wait_for("process_started", "worker-0", 2, timeout=5)
        assert time.monotonic() - killed < 1.5
    finally:
        supervisor.stop()


def test_metrics_port_zero_tells_every_child_to_serve_no_endpoint():
    commands = child_commands(2, ["--config", "x.yaml"], metrics_port=0)
    for argv in commands.values():
        assert argv[argv.index("--metrics-port") + 1] == "0"
    ports = [argv[argv.index("--metrics-port") + 1] for argv in child_commands(2, [], metrics_port=9464).values()]
    assert ports == ["9464", "9465", "9466"]


def test_a_child_given_metrics_port_zero_ignores_the_port_in_the_settings_file():
    from pathlib import Path

    from broker.config import load_settings

    settings_file = PROJECT_ROOT / "deploy" / "interchange.yaml"
    assert load_settings(settings_file).metrics_port != 0  # the file names a port
    argv = child_commands(1, [], metrics_port=0)["worker-0"]
    port = int(argv[argv.index("--metrics-port") + 1])
    assert load_settings(Path(settings_file), metrics_port=port).metrics_port == 0


@pytest.mark.rabbitmq
@pytest.mark.slow
def test_a_worker_sigkilled_six_times_under_run_restarts_after_the_first_delay_each_time_and_loses_nothing(
    rabbitmq, tmp_path
):
    from broker.ingress.publisher import publish_all
    from broker.transports.memory import TestBroker
    from tests.flowkit import (
        Reconciler,
        assert_reconciled,
        dead_lettered,
        flow_messages,
        write_flow_agreements,
        write_flow_recipients,
        write_settings_file,
    )

    broker = TestBroker.create(
        tmp_path / "audit",
        write_flow_agreements(tmp_path / "agreements"),
        recipients_file=write_flow_recipients(tmp_path / "recipients.yaml"),
    )
    config = write_settings_file(broker.settings, tmp_path / "settings.yaml")
    out = (tmp_path / "run.log").open("wb")
    run = subprocess.Popen(
        [sys.executable, "-m", "broker", "--config", str(config), "run", "--workers", "1", "--healthy-after", "3"],
        stdout=out,
        stderr=subprocess.STDOUT,
        cwd=PROJECT_ROOT,
        env=dict(os.environ, PYTHONPATH=str(PROJECT_ROOT)),
    )

    def events(kind: str) -> list[dict]:
        found = []
        for line in (tmp_path / "run.log").read_bytes().splitlines():
            try:
                event = orjson.loads(line)
            except orjson.JSONDecodeError:
                continue
            if isinstance(event, dict) and event.get("event") == kind and event.get("process") == "worker-0":
                found.append(event)
        return found

    def wait_for(kind: str, count: int) -> dict:
        deadline = time.monotonic() + 30
        while len(events(kind)) < count:
            assert time.monotonic() < deadline, f"no {count}th {kind}"
            time.sleep(0.05)
        return events(kind)[count - 1]

    records, confirmed = 2000, set()
    try:
        with Reconciler(broker.settings) as inboxes:

            def paced():
                for n, message in enumerate(flow_messages(records, "run-kill")):
                    if n % 20 == 0:
                        time.sleep(0.2)
                    yield message

            publisher = threading.Thread(
                target=lambda: publish_all(
                    broker.settings, paced(), window=50, on_confirmed=lambda m: confirmed.add(m.message_id)
                ),
                daemon=True,
            )
            publisher.start()
            for kill in range(1, 7):
                pid = wait_for("process_started", kill)["pid"]
                time.sleep(3.5)  # a healthy run (--healthy-after 3)
                os.kill(pid, signal.SIGKILL)
                wait_for("process_exited", kill)
            publisher.join(timeout=120)
            assert len(confirmed) == records
            assert inboxes.wait_for(confirmed, timeout=120), inboxes.missing(confirmed)
            counts = inboxes.report(confirmed)
        dead = dead_lettered(broker.settings)
    finally:
        run.send_signal(signal.SIGTERM)
        run.wait(timeout=30)
        out.close()
        broker.close()
    delays = [e["restart_in"] for e in events("process_exited")]
    assert_reconciled("run-worker-killed-six-times", counts, dead, kills=6, restart_delays=delays)
    assert delays == [0.5] * 6, f"the back-off did not reset after healthy runs: {delays}"

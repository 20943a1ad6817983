"""What the benchmark drives: its own vhosts, child processes, inbox counting and a paced publisher."""

from __future__ import annotations

import datetime as dt
import os
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from adapters.registry import adapter_class, get_adapter
from bench.inputs import legacy_inputs
from broker import topology
from broker.config import Registry, Settings, load_settings
from broker.errors import DataError
from broker.ingress.publisher import record_message
from broker.ops import provision
from broker.transports.amqp import AmqpTransport, blocking_channel

BENCH = Path(__file__).resolve().parent
CONFIG = BENCH / "config"


def bench_settings(work: Path) -> Settings:
    name = f"bench-{secrets.token_hex(3)}"
    return load_settings().with_overrides(
        core_vhost=name,
        recipient_vhost_prefix=f"{name}.",
        audit_dir=work / "audit",
        recipients_file=CONFIG / "recipients.yaml",
        agreements_dir=CONFIG / "agreements",
    )


def child_env(settings: Settings) -> dict[str, str]:
    return dict(
        os.environ,
        INTERCHANGE_RECIPIENTS=str(settings.recipients_file),
        INTERCHANGE_AGENCIES=str(settings.agencies_file),
        PYTHONPATH=str(BENCH.parent),
    )


def start_role(settings: Settings, role: str, log: Path, metrics_port: int = 0) -> subprocess.Popen[bytes]:
    """`python -m broker ROLE` on the bench's vhosts; metrics_port 0 serves no metrics."""
    argv = [sys.executable, "-m", "broker", *settings.cli_args(), "--agreements", str(settings.agreements_dir)]
    argv += ["--metrics-port", str(metrics_port), role]
    with log.open("ab") as out:
        return subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=child_env(settings))


def start_tool(settings: Settings, module: str, spec: Path) -> subprocess.Popen[bytes]:
    """`python -m MODULE SPEC` (relay, peer, latency probe) on the bench's vhosts, its stdout piped."""
    return subprocess.Popen([sys.executable, "-m", module, str(spec)], stdout=subprocess.PIPE, env=child_env(settings))


def last_json_line(child: subprocess.Popen[bytes], timeout: float) -> Any:
    """What a tool printed last (its result as one JSON line), once it exits."""
    import orjson

    return orjson.loads(child.communicate(timeout=timeout)[0].splitlines()[-1])


def stop(child: subprocess.Popen[bytes] | None) -> None:
    if child is not None and child.poll() is None:
        child.terminate()
        try:
            child.wait(timeout=20)
        except subprocess.TimeoutExpired:
            child.kill()


# ------------------------------------------------------------------ /proc readings


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


# ------------------------------------------------------------------ records


@dataclass
class Translated:
    bodies: list[tuple[str, str, bytes]]  # (record type, id, body)
    seconds: dict[str, float]  # per adapter
    counts: dict[str, int]


def translate_all(total: int, start: int = 0) -> Translated:
    import orjson

    bodies: list[tuple[str, str, bytes]] = []
    seconds: dict[str, float] = {}
    counts: dict[str, int] = {}
    for adapter_name, mapping, data in legacy_inputs(total, start):
        adapter = get_adapter(adapter_name)
        began, n = time.perf_counter(), 0
        for result in adapter.translate(data, mapping):  # type: ignore[union-attr]
            if isinstance(result, DataError):
                raise SystemExit(f"bench: {adapter_name} refused a synthetic record: {result}")
            bodies.append((result["type"], result["id"], orjson.dumps(result)))
            n += 1
        seconds[adapter_name] = seconds.get(adapter_name, 0.0) + time.perf_counter() - began
        counts[adapter_name] = counts.get(adapter_name, 0) + n
    return Translated(bodies, seconds, counts)


def stream_records(total: int, start: int) -> Iterator[dict[str, Any]]:
    """Records translated on demand, one format after another (constant memory per format)."""
    for adapter_name, mapping, data in legacy_inputs(total, start):
        for result in get_adapter(adapter_name).translate(data, mapping):  # type: ignore[union-attr]
            if not isinstance(result, DataError):
                yield result


def messages(bodies: list[tuple[str, str, bytes]]) -> Iterator[Any]:
    for record_type, record_id, body in bodies:
        yield record_message(body, routing_key=record_type, message_id=record_id)


# ------------------------------------------------------------------ RabbitMQ side


class Vhosts:
    """The benchmark's own vhosts (core + one per recipient), created now and removed by close()."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.registry = Registry.load(settings, adapter_class)
        provision.apply(settings, self.registry)
        self.recipients = provision.recipient_vhosts(settings, self.registry)
        self._channels: list[tuple[Any, Any]] = []

    def inbox_total(self) -> int:
        if not self._channels:
            self._channels = [
                blocking_channel(self.settings.amqp_url, v, "interchange-bench-count") for v in self.recipients.values()
            ]
        return sum(
            ch.queue_declare(topology.INBOX_QUEUE, passive=True).method.message_count for _conn, ch in self._channels
        )

    def queue_depth(self, queue: str) -> int:
        conn, ch = blocking_channel(self.settings.amqp_url, self.settings.core_vhost, "interchange-bench-depth")
        try:
            return ch.queue_declare(queue, passive=True).method.message_count
        finally:
            conn.close()

    def purge(self) -> None:
        provision.purge(self.settings, self.registry)

    def close(self) -> None:
        for conn, _ch in self._channels:
            if conn.is_open:
                conn.close()
        provision.remove(self.settings, self.registry)


@dataclass
class Drain:
    seconds: float
    deliveries: int
    cpu_seconds: float = 0.0


def wait_for_deliveries(
    vhosts: Vhosts, expected: int, timeout: float, pid: int | None = None, stall: float = 15.0
) -> Drain:
    """Poll the inboxes until `expected` deliveries sit in them; time from the first to the last."""
    deadline, first, base, cpu0 = time.monotonic() + timeout, None, 0, 0.0
    last_change, last_total = time.monotonic(), -1
    while time.monotonic() < deadline:
        total = vhosts.inbox_total()
        now = time.perf_counter()
        if first is None and total > 0:
            first, base = now, total
            cpu0 = cpu_seconds(pid) if pid else 0.0
        if total >= expected:
            cpu = (cpu_seconds(pid) - cpu0) if pid else 0.0
            return Drain(now - (first or now), total - base, cpu)
        if total != last_total:
            last_change, last_total = time.monotonic(), total
        elif time.monotonic() - last_change > stall:
            raise SystemExit(f"bench: deliveries stalled at {total} of {expected}")
        time.sleep(0.05)
    raise SystemExit(f"bench: only {vhosts.inbox_total()} of {expected} deliveries within {timeout:.0f}s")


def iso_now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def paced_publish(settings: Settings, records: Iterator[dict[str, Any]], rate: float, count: int) -> float:
    """Publish `count` records at `rate` per second, each stamped with the time it is published."""
    import orjson

    transport = AmqpTransport(settings.amqp_url, {"core": settings.core_vhost}, name="interchange-bench-paced")
    state = {"sent": 0, "confirmed": 0, "start": 0.0}

    def confirmed(ok: bool, why: str) -> None:
        if not ok:
            raise SystemExit(f"bench: paced publish failed: {why}")
        state["confirmed"] += 1
        if state["confirmed"] == count:
            transport.stop()

    def tick() -> None:
        if not state["start"]:
            state["start"] = time.monotonic()
        due = min(count, int((time.monotonic() - state["start"]) * rate) + 1)
        while state["sent"] < due:
            record = next(records)
            record["time"] = iso_now()
            transport.publish(record_message(orjson.dumps(record), record["type"], record["id"]), confirmed)
            state["sent"] += 1
        if state["sent"] < count:
            transport.call_later(0.002, tick)

    transport.start(on_ready=tick)
    transport.run()
    return time.monotonic() - state["start"]

"""`make bench BENCH_ARGS=--long`: the long runs, after the ordinary phases, in the same vhosts.

1. backlog: 100,000 records published first, then drained by a fresh worker; the rate of each
   10,000-record window is printed, and the slowest window is compared with the fastest.
2. memory: `--long-records` (default 1,000,000) records streamed through the worker while they are
   translated and published; the worker's RSS is sampled every 10 s and must stay flat (max within 10 %
   of the first sample taken after the first 100,000 records).  The inboxes get a drop-head cap of 20,000
   for this run (as `bench.ingest` does for the route queue) so RabbitMQ holds a bounded amount; progress
   is read from the worker's own `interchange_records_received_total` on its metrics port.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

from bench import harness
from broker import topology
from broker.ingress.publisher import publish_all, record_message
from broker.ops.provision import admin_for

BACKLOG = 100_000
WINDOW = 10_000
RSS_EVERY = 10.0
INBOX_CAP = 20_000


def run(
    settings: Any, vhosts: harness.Vhosts, per_record: float, records: int, step: Callable[[str], None]
) -> dict[str, Any]:
    work = Path(settings.audit_dir).parent
    out: dict[str, Any] = {}
    vhosts.purge()
    step(f"long: {BACKLOG:,}-record backlog")
    translated = harness.translate_all(BACKLOG, start=10_000_000)
    publish_all(settings, harness.messages(translated.bodies), window=1000)
    del translated
    children = _start(settings, work, "backlog", metrics_port=None)
    try:
        out["backlog"] = _drain_windows(vhosts, len_expected=BACKLOG, per_record=per_record)
    finally:
        for child in children:
            harness.stop(child)
    vhosts.purge()

    step(f"long: {records:,} records through the worker, RSS every {RSS_EVERY:.0f} s")
    _cap_inboxes(settings, vhosts)
    port = _free_port()
    children = _start(settings, work, "memory", metrics_port=port)
    worker = children[1]
    samples: list[tuple[float, int, float]] = []
    stop = threading.Event()

    def sample() -> None:
        began = time.monotonic()
        while not stop.wait(RSS_EVERY):
            samples.append((round(time.monotonic() - began, 1), _routed(port), round(harness.rss_mb(worker.pid), 1)))

    sampler = threading.Thread(target=sample, daemon=True)
    try:
        sampler.start()
        began = time.monotonic()
        stream = (
            record_message(orjson.dumps(r), r["type"], r["id"]) for r in harness.stream_records(records, 20_000_000)
        )
        publish_all(settings, stream, window=1000)
        while _routed(port) < records and time.monotonic() - began < 4 * 3600:
            time.sleep(1.0)
        seconds = time.monotonic() - began
    finally:
        stop.set()
        sampler.join(timeout=RSS_EVERY + 1)
        for child in children:
            harness.stop(child)
    settled = [rss for _t, routed, rss in samples if routed >= min(100_000, records // 10)]
    out["memory"] = {
        "records": records,
        "seconds": round(seconds, 1),
        "records_per_s": round(records / seconds),
        "rss_samples": samples,
        "rss_first_mb": settled[0] if settled else None,
        "rss_max_mb": max(settled) if settled else None,
        "flat_within_10pct": bool(settled) and max(settled) <= settled[0] * 1.10,
    }
    return out


def _start(settings: Any, work: Path, name: str, metrics_port: int | None) -> list[subprocess.Popen[bytes]]:
    logs = work / "logs"
    logs.mkdir(exist_ok=True)
    writer = harness.start_role(settings, "audit-writer", logs / f"long-{name}-audit-writer.log")
    worker = harness.start_role(settings, "worker", logs / f"long-{name}-worker.log", metrics_port=metrics_port or 0)
    return [writer, worker]


def _drain_windows(vhosts: harness.Vhosts, len_expected: int, per_record: float) -> dict[str, Any]:
    """Poll the inboxes; the seconds each 10,000 records took, from the first delivery."""
    rates: list[int] = []
    first = mark = None
    done_windows = 0
    deadline = time.monotonic() + 3600
    while time.monotonic() < deadline:
        routed = vhosts.inbox_total() / per_record
        now = time.perf_counter()
        if first is None and routed > 0:
            first = mark = now
        while first is not None and routed >= (done_windows + 1) * WINDOW:
            rates.append(round(WINDOW / max(now - mark, 1e-6)))
            print(f"    window {done_windows + 1:>3}: {rates[-1]:,} rec/s", flush=True)
            mark, done_windows = now, done_windows + 1
        if routed >= len_expected:
            break
        time.sleep(0.1)
    peak = max(rates) if rates else 0
    return {
        "records": len_expected,
        "window_records_per_s": rates,
        "peak": peak,
        "slowest": min(rates) if rates else 0,
        "within_10pct_of_peak": bool(rates) and min(rates) >= 0.9 * peak,
        "seconds": round((mark or 0) - (first or 0), 1),
    }


def _cap_inboxes(settings: Any, vhosts: harness.Vhosts) -> None:
    admin = admin_for(settings)
    for vhost in vhosts.recipients.values():
        admin.put_policy(
            vhost,
            "bench-long-cap",
            f"^{topology.INBOX_QUEUE}$",
            {"max-length": INBOX_CAP, "overflow": "drop-head"},
            "queues",
            10,
        )


def _routed(port: int) -> int:
    try:
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2).read().decode()
    except OSError:
        return 0
    return int(
        sum(
            float(line.rsplit(" ", 1)[1])
            for line in text.splitlines()
            if line.startswith("interchange_records_received_total{")
        )
    )


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def table(long: dict[str, Any]) -> str:
    b, m = long["backlog"], long["memory"]
    return "\n".join(
        [
            "",
            f"LONG backlog {b['records']:,}: peak window {b['peak']:,} rec/s, slowest {b['slowest']:,} "
            f"({'within' if b['within_10pct_of_peak'] else 'NOT within'} 10% of peak)",
            f"LONG memory {m['records']:,} records at {m['records_per_s']:,} rec/s: worker RSS "
            f"{m['rss_first_mb']} -> max {m['rss_max_mb']} MB ({'flat' if m['flat_within_10pct'] else 'NOT flat'} "
            f"within 10%)",
        ]
    )


if __name__ == "__main__":
    sys.exit("run through `python -m bench --long`")

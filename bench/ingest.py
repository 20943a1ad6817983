"""`make bench-ingest`: bulk ingest of a large legacy file, records/s published (confirmed) and peak memory.

    python -m bench.ingest [--mb 1024] [--small-mb 10] [--format street|fixed-width] [--window 1000]

For each size (`--small-mb`, then `--mb`) it writes a synthetic file of about that many megabytes to a
temporary directory (data.police.uk street CSV by default, or the force-b mainframe layout), runs
`python -m broker ingest <adapter> <file>` as a child process against its own vhost on the local RabbitMQ
(`tests.support.TestBroker`, removed afterwards), and reads the child's peak RSS from `wait4()` (the
kernel's ru_maxrss).  The same memory at both sizes means the ingest path streams.

The route queue would otherwise fill with millions of messages, so the bench vhost gets a policy
`max-length` 20,000 with `overflow: drop-head` on `interchange.route` (priority above the topology's own
policy, no dead-lettering): every record is still written to the quorum queue and confirmed — which is
what the publisher waits for — and RabbitMQ drops the oldest, so neither its memory nor its disk grows.
Writes bench/results/ingest-<timestamp>.json and prints a table.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson

from bench.inputs import STREET_HEADER, fixed_width, street_csv_rows
from broker import topology
from broker.ops.provision import admin_for
from tests.support import TestBroker

RESULTS = Path(__file__).resolve().parent / "results"
BLOCK = 2_000  # rows generated per write
ROUTE_CAP = 20_000
FORMATS = {"street": ("police-uk-csv", "city-of-london"), "fixed-width": ("fixed-width", "force-b")}
RATE = re.compile(r"read (\d+), published (\d+) \(confirmed\), rejected (\d+).*?, not confirmed (\d+), (\d+) records/s")


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.ingest", description=__doc__.split("\n\n")[0])
    parser.add_argument("--mb", type=int, default=1024, help="size of the large file in MB (default 1024)")
    parser.add_argument("--small-mb", type=int, default=10, help="size of the small file in MB (default 10)")
    parser.add_argument("--format", choices=sorted(FORMATS), default="street")
    parser.add_argument("--window", type=int, default=1000, help="confirm window (default 1000)")
    return parser.parse_args(argv)


def write_input(path: Path, fmt: str, megabytes: int) -> int:
    """Write about `megabytes` MB of distinct synthetic records; returns how many records."""
    target, written, count = megabytes * 1024 * 1024, 0, 0
    with path.open("wb") as out:
        if fmt == "street":
            written += out.write(STREET_HEADER.encode())
        while written < target:
            if fmt == "street":
                block = "".join(street_csv_rows(count, BLOCK)).encode()
            else:
                block = fixed_width(BLOCK // 10, count)
            written += out.write(block)
            count += BLOCK if fmt == "street" else BLOCK // 10
    return count


def cap_route_queue(broker: TestBroker) -> None:
    admin_for(broker.settings).put_policy(
        broker.settings.core_vhost,
        "bench-ingest-drop",
        rf"^{re.escape(topology.ROUTE_QUEUE)}$",
        {"max-length": ROUTE_CAP, "overflow": "drop-head"},
        "queues",
        10,
    )


def run_ingest(broker: TestBroker, fmt: str, path: Path, window: int) -> dict[str, Any]:
    adapter, mapping = FORMATS[fmt]
    settings = broker.settings
    argv = [
        sys.executable,
        "-m",
        "broker",
        *settings.cli_args(),
        "ingest",
        adapter,
        str(path),
        "--mapping",
        mapping,
        "--window",
        str(window),
    ]
    began = time.perf_counter()
    with (path.parent / "ingest.err").open("w+b") as errors:
        child = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=errors)
        assert child.stdout is not None
        out = child.stdout.read().decode()  # the child prints one summary line at the end
        _pid, status, usage = os.wait4(child.pid, 0)
        errors.seek(0)
        err = errors.read().decode(errors="replace")
    child.returncode = os.waitstatus_to_exitcode(status)
    seconds = time.perf_counter() - began
    match = RATE.search(out)
    if not match:
        raise SystemExit(
            f"bench-ingest: the ingest printed no summary (exit {child.returncode}):\n{out}\n{err[-2000:]}"
        )
    read, published, rejected, failed, rate = map(int, match.groups())
    return {
        "adapter": adapter,
        "mapping": mapping,
        "exit": child.returncode,
        "read": read,
        "published": published,
        "rejected": rejected,
        "not_confirmed": failed,
        "records_per_s": rate,
        "wall_seconds": round(seconds, 1),
        "wall_records_per_s": round(published / seconds),
        "peak_rss_mb": round(usage.ru_maxrss / 1024, 1),
        "cpu_seconds": round(usage.ru_utime + usage.ru_stime, 1),
    }


def measure(fmt: str, megabytes: int, window: int, work: Path) -> dict[str, Any]:
    path = work / f"bulk-{megabytes}mb.{'csv' if fmt == 'street' else 'txt'}"
    began = time.perf_counter()
    records = write_input(path, fmt, megabytes)
    size = path.stat().st_size
    print(
        f"  {time.strftime('%H:%M:%S')} {size / 2**20:,.0f} MB, {records:,} records written in "
        f"{time.perf_counter() - began:.1f}s; ingesting",
        flush=True,
    )
    broker = TestBroker.create(work / "audit")
    try:
        cap_route_queue(broker)
        result = run_ingest(broker, fmt, path, window)
        result["route_queue_depth_after"] = (
            admin_for(broker.settings).queue(broker.settings.core_vhost, topology.ROUTE_QUEUE).get("messages")
        )
    finally:
        broker.close()
        path.unlink(missing_ok=True)
    result.update(megabytes=round(size / 2**20, 1), records_written=records)
    print(
        f"  {time.strftime('%H:%M:%S')} {result['published']:,} published (confirmed) in "
        f"{result['wall_seconds']}s: {result['records_per_s']:,} records/s, "
        f"peak RSS {result['peak_rss_mb']} MB",
        flush=True,
    )
    return result


def table(results: list[dict[str, Any]]) -> str:
    lines = [f"{'input':<26} {'records':>11} {'records/s':>10} {'wall s':>8} {'CPU s':>7} {'peak RSS':>9}"]
    for r in results:
        lines.append(
            f"{r['adapter'] + ' ' + str(round(r['megabytes'])) + ' MB':<26} {r['published']:>11,} "
            f"{r['records_per_s']:>10,} {r['wall_seconds']:>8} {r['cpu_seconds']:>7} "
            f"{r['peak_rss_mb']:>6} MB"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    work = Path(tempfile.mkdtemp(prefix="interchange-bench-ingest-"))
    out: dict[str, Any] = {
        "started": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "format": args.format,
        "window": args.window,
        "route_cap": ROUTE_CAP,
        "runs": [],
    }
    print(f"bench-ingest: {args.format}, {args.small_mb} MB then {args.mb} MB, window {args.window}", flush=True)
    try:
        for megabytes in dict.fromkeys((args.small_mb, args.mb)):
            out["runs"].append(measure(args.format, megabytes, args.window, work))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"ingest-{dt.datetime.now().strftime('%Y%m%dT%H%M%S')}.json"
    path.write_bytes(orjson.dumps(out, option=orjson.OPT_INDENT_2))
    print()
    print(table(out["runs"]))
    print(f"results in {path.relative_to(RESULTS.parent.parent)}")
    bad = [r for r in out["runs"] if r["published"] != r["records_written"] or r["exit"] != 0]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())

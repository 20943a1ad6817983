"""`make bench`: the exchange against the raw RabbitMQ ceiling, in one run, on the same RabbitMQ.

    python -m bench [--quick] [--records N] [--paced-seconds S] [--profile]

Phases (own vhosts `bench-<hex>`, removed afterwards):
  translate   legacy inputs (cjse-spi XML, police-uk CSV, fixed-width) -> common-schema records, in process
  cpu         route() in a loop in process: µs per record per stage (parse, validate, decide, render, audit)
  publish     the records to interchange.ingress with a 1,000-message confirm window (a backlog)
  ceiling     bench/relay.py drains that backlog doing only the worker's AMQP work (1 audit + 4 deliveries)
  audit       the audit writer drains the relay's audit messages (entries/s appended and fsynced)
  route       the same backlog again through the real worker (plus the audit writer): records/s, CPU/record
  peer        the same backlog through bench/peer.py, the job as a straightforward FastStream application
  end-to-end  translate -> publish -> route -> deliver, all at once, on fresh records
  paced       50% of the end-to-end rate for a while; latency record time -> delivery, p50/p95/p99
  relay-paced the transport-only relay at the same pace: its own latency, the floor to compare with
With --long (bench/long.py): a 100,000-record backlog drained (rate per 10,000-record window) and
1,000,000 records through the worker with its RSS sampled every 10 s.
Writes bench/results/<timestamp>.json and prints a table.
"""

from __future__ import annotations

import argparse
import datetime as dt
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson

from bench import cpu, harness
from broker import router
from broker.audit.log import LOG_NAME, AuditWriter, read_entries, verify
from broker.ingress.publisher import publish_all, record_message
from broker.message import Message
from broker.runner import build_context

RESULTS = harness.BENCH / "results"


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer records (about a minute)")
    parser.add_argument("--records", type=int, help="records per phase (default 15000; --quick 6000)")
    parser.add_argument("--paced-seconds", type=float, help="length of the paced latency run (default 20; quick 8)")
    parser.add_argument(
        "--profile",
        action="store_true",
        help="record the worker with py-spy during the route phase (bench/results/*.txt)",
    )
    parser.add_argument("--keep-logs", action="store_true", help="keep the children's logs and audit log")
    parser.add_argument("--no-peer", action="store_true", help="skip the FastStream peer phase")
    parser.add_argument(
        "--long",
        action="store_true",
        help="also the long runs: a 100,000-record backlog and 1,000,000 records (RSS every 10 s)",
    )
    parser.add_argument("--long-records", type=int, default=1_000_000, help="records in the memory run")
    args = parser.parse_args(argv)
    args.records = args.records or (6000 if args.quick else 15000)
    args.paced_seconds = args.paced_seconds or (8.0 if args.quick else 20.0)
    return args


def machine() -> dict[str, Any]:
    cpus = [
        line.split(":", 1)[1].strip()
        for line in Path("/proc/cpuinfo").read_text().splitlines()
        if line.startswith("model name")
    ]
    return {
        "cpu": cpus[0] if cpus else platform.processor(),
        "cores": len(cpus) or None,
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def sample_plan(settings: Any, registry: Any, body: bytes) -> Any:
    ctx = build_context(settings, registry)
    ctx.actor = {"system": "interchange", "worker": "bench"}
    return router.route(Message(body, "application/json"), ctx)


def run(args: argparse.Namespace) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="interchange-bench-"))
    settings = harness.bench_settings(work)
    n = args.records
    out: dict[str, Any] = {
        "started": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "records": n,
        "machine": machine(),
        "prefetch": settings.prefetch,
    }
    print(f"bench: {n} records per phase, vhost {settings.core_vhost}, prefetch {settings.prefetch}", flush=True)

    step("translate")
    translated = harness.translate_all(n)
    out["translate"] = {name: round(translated.counts[name] / s) for name, s in translated.seconds.items()}
    out["translate_records_per_s"] = round(len(translated.bodies) / sum(translated.seconds.values()))
    n = len(translated.bodies)

    step("cpu per stage (in process)")
    sample = [orjson.loads(body) for i, (_t, _id, body) in enumerate(translated.bodies) if i % max(1, n // 900) == 0]
    vhosts = harness.Vhosts(settings)
    children: list[Any] = []
    first_worker_peak = 0.0
    try:
        out["cpu_us"] = cpu.stage_micros(settings, vhosts.registry, sample)
        per_record = statistics.fmean(v["deliveries"] for v in out["cpu_us"].values())
        expected = round(n * per_record)
        plan = sample_plan(settings, vhosts.registry, translated.bodies[0][2])
        out["deliveries_per_record"] = per_record

        step("publish (backlog)")
        report = publish_all(settings, harness.messages(translated.bodies), window=1000)
        publish_rates = [report.rate]

        step("ceiling: transport-only relay")
        spec = {
            "url": settings.amqp_url,
            "core": settings.core_vhost,
            "recipients": vhosts.recipients,
            "fanout": round(per_record),
            "count": n,
            "prefetch": settings.prefetch,
            "headers": plan.outputs[0].headers,
            "audit_entries": orjson.loads(plan.audit.body)["entries"],
        }
        spec_path = work / "relay.json"
        spec_path.write_bytes(orjson.dumps(spec))
        relay = harness.start_tool(settings, "bench.relay", spec_path)
        children.append(relay)
        drain = harness.wait_for_deliveries(vhosts, n * round(per_record), timeout=600, pid=relay.pid)
        relay_out = harness.last_json_line(relay, timeout=60)
        out["ceiling_records_per_s"] = round(relay_out["records"] / relay_out["seconds"])
        out["ceiling_cpu_us_per_record"] = round(drain.cpu_seconds / n * 1e6)

        step("audit writer (the relay's audit backlog)")
        writer = AuditWriter(settings)
        began = time.perf_counter()
        written = writer.run(stop_when_idle=True)
        seconds = time.perf_counter() - began - writer.idle_seconds
        out["audit_entries_per_s"] = round(written / seconds)
        out["audit_records_per_s"] = round(n / seconds)
        (Path(settings.audit_dir) / LOG_NAME).unlink()

        vhosts.purge()
        step("publish (backlog, again)")
        report = publish_all(settings, harness.messages(translated.bodies), window=1000)
        publish_rates.append(report.rate)
        out["publish_records_per_s"] = round(statistics.median(publish_rates))

        step("route: the worker drains the backlog")
        logs = work / "logs"
        logs.mkdir()
        audit_writer = harness.start_role(settings, "audit-writer", logs / "audit-writer.log")
        worker = harness.start_role(settings, "worker", logs / "worker.log")
        children += [audit_writer, worker]
        profiler = start_profiler(worker.pid, work) if args.profile else None
        drain = harness.wait_for_deliveries(vhosts, expected, timeout=900, pid=worker.pid)
        if profiler:
            out["profile"] = stop_profiler(profiler, work)
        out["route_records_per_s"] = round(drain.deliveries / per_record / drain.seconds)
        out["worker_cpu_us_per_record"] = round(drain.cpu_seconds / (drain.deliveries / per_record) * 1e6)
        out["ratio"] = round(out["route_records_per_s"] / out["ceiling_records_per_s"], 3)
        out["rss_after_route_mb"] = round(harness.rss_mb(worker.pid), 1)

        if not args.no_peer:
            first_worker_peak = harness.peak_rss_mb(worker.pid)
            harness.stop(worker)  # the peer alone on the route queue and the audit queue
            harness.stop(audit_writer)
            vhosts.purge()
            step("peer: the same backlog through a straightforward FastStream application")
            report = publish_all(settings, harness.messages(translated.bodies), window=1000)
            peer = harness.start_tool(settings, "bench.peer", spec_path)
            children.append(peer)
            drain = harness.wait_for_deliveries(vhosts, n * round(per_record), timeout=1800, pid=peer.pid)
            peer_out = harness.last_json_line(peer, timeout=60)
            out["peer_records_per_s"] = round(peer_out["records"] / peer_out["seconds"])
            out["peer_cpu_us_per_record"] = round(drain.cpu_seconds / n * 1e6)
            out["peer_multiple"] = round(out["route_records_per_s"] / out["peer_records_per_s"], 2)
            vhosts.purge()
            audit_writer = harness.start_role(settings, "audit-writer", logs / "audit-writer.log")
            worker = harness.start_role(settings, "worker", logs / "worker.log")
            children += [audit_writer, worker]

        vhosts.purge()
        step("end to end: translate -> publish -> route, at once")
        began = time.perf_counter()
        stream = (record_message(orjson.dumps(r), r["type"], r["id"]) for r in harness.stream_records(n, n))
        publish_all(settings, stream, window=1000)
        drain = harness.wait_for_deliveries(vhosts, expected, timeout=900)
        out["records_per_s"] = round(n / (time.perf_counter() - began))

        vhosts.purge()
        # Half the maximum rate of the whole pipeline (the end-to-end run, every stage at once), not of the
        # worker alone: above the pipeline's rate a backlog grows and latency measures the backlog.
        rate = min(out["route_records_per_s"], out["records_per_s"]) * 0.5
        count = int(rate * args.paced_seconds)
        step(f"paced: {rate:.0f} records/s for {args.paced_seconds:.0f}s, latency to delivery")
        probe_path = work / "probe.json"
        probe_path.write_bytes(
            orjson.dumps(
                {
                    "url": settings.amqp_url,
                    "recipients": vhosts.recipients,
                    "expect": round(count * per_record),
                    "idle": 10,
                }
            )
        )
        probe = harness.start_tool(settings, "bench.latency", probe_path)
        children.append(probe)
        assert probe.stdout is not None
        probe.stdout.readline()  # "ready"
        harness.paced_publish(settings, harness.stream_records(count, 2 * n + 10), rate, count)
        latencies = harness.last_json_line(probe, timeout=120)
        out["paced_records_per_s"] = round(rate)
        out["latency_deliveries"] = len(latencies)
        for q in (50, 95, 99):
            out[f"p{q}_ms"] = round(percentile(latencies, q), 1)
        out["peak_rss_mb"] = round(max(harness.peak_rss_mb(worker.pid), first_worker_peak), 1)
        out["worker_stage_us"] = worker_stage_micros(logs / "worker.log")
        harness.stop(worker)
        harness.stop(audit_writer)
        verdict = verify(Path(settings.audit_dir) / LOG_NAME)
        out["audit_chain"] = str(verdict)
        out["usage"] = usage_check(Path(settings.audit_dir) / LOG_NAME)

        vhosts.purge()
        step(f"relay-paced: the transport-only relay at {rate:.0f} records/s, its own latency")
        spec_path.write_bytes(orjson.dumps(spec | {"count": count}))
        relay = harness.start_tool(settings, "bench.relay", spec_path)
        children.append(relay)
        probe = harness.start_tool(settings, "bench.latency", probe_path)
        children.append(probe)
        assert probe.stdout is not None
        probe.stdout.readline()
        harness.paced_publish(settings, harness.stream_records(count, 3 * n + 10), rate, count)
        relay_latencies = harness.last_json_line(probe, timeout=120)
        for q in (50, 95, 99):
            out[f"relay_p{q}_ms"] = round(percentile(relay_latencies, q), 1)
        out["p99_over_relay_p99"] = round(out["p99_ms"] / out["relay_p99_ms"], 2) if out["relay_p99_ms"] else None
        harness.stop(relay)

        if args.long:
            from bench import long

            out["long"] = long.run(settings, vhosts, per_record, args.long_records, step)
    finally:
        for child in children:
            harness.stop(child)
        vhosts.close()
        if args.keep_logs:
            print(f"bench: logs and audit log kept in {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    return out


def usage_check(log: Path) -> dict[str, Any]:
    """`interchange report usage` over the bench's own audit log, beside a plain count of that log."""
    from broker.audit.usage import Costs, Period, usage

    day = dt.datetime.now(dt.UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    report = usage(read_entries(log), Period(day - dt.timedelta(days=1), day + dt.timedelta(days=1)), {}, Costs())
    counted = {"delivered": 0, "withheld": 0, "rejected": 0}
    cancelled = {e.get("cancels") for e in read_entries(log) if e.get("operation") == "undelivered"}
    for entry in read_entries(log):
        operation = entry.get("operation")
        if operation == "disclose" and entry.get("outcome") == "delivered" and entry["entry_id"] not in cancelled:
            counted["delivered"] += 1
        elif operation in ("withhold", "reject"):
            counted["withheld" if operation == "withhold" else "rejected"] += 1
    figures = {k: report["totals"][k] for k in counted}
    return {"report": figures, "audit_log": counted, "equal": figures == counted}


def percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    index = min(len(sorted_values) - 1, max(0, round(q / 100 * len(sorted_values)) - 1))
    return sorted_values[index]


def worker_stage_micros(log: Path) -> dict[str, float]:
    """Mean µs per stage from the worker's own `record_routed` lines (its stage timings, under load)."""
    sums: dict[str, float] = {}
    count = 0
    with log.open("rb") as fh:
        for line in fh:
            if b'"record_routed"' not in line:
                continue
            try:
                durations = orjson.loads(line).get("durations_ms") or {}
            except orjson.JSONDecodeError:
                continue
            count += 1
            for stage, ms in durations.items():
                sums[stage] = sums.get(stage, 0.0) + ms
    return {stage: round(total / count * 1000, 1) for stage, total in sums.items()} if count else {}


def start_profiler(pid: int, work: Path) -> subprocess.Popen[bytes] | None:
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(py_spy).exists():
        print("bench: --profile needs py-spy (pip install py-spy)", file=sys.stderr)
        return None
    return subprocess.Popen(
        [
            py_spy,
            "record",
            "--pid",
            str(pid),
            "--format",
            "raw",
            "--rate",
            "200",
            "--nonblocking",
            "--output",
            str(work / "worker.stacks"),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def stop_profiler(profiler: subprocess.Popen[bytes], work: Path) -> dict[str, Any]:
    import signal

    profiler.send_signal(signal.SIGINT)
    profiler.wait(timeout=30)
    from bench.profile import summarise

    stacks = work / "worker.stacks"
    if not stacks.exists():
        return {}
    return summarise(stacks)


def step(name: str) -> None:
    print(f"  {time.strftime('%H:%M:%S')} {name}", flush=True)


def table(r: dict[str, Any]) -> str:
    rows = [
        (
            "translate (adapters, in process)",
            f"{r['translate_records_per_s']:,} rec/s",
            ", ".join(f"{k} {v:,}" for k, v in r["translate"].items()),
        ),
        ("publish to ingress (confirmed)", f"{r['publish_records_per_s']:,} rec/s", "window 1,000"),
        (
            "CEILING transport-only relay",
            f"{r['ceiling_records_per_s']:,} rec/s",
            f"1 audit + {round(r['deliveries_per_record'])} deliveries, {r['ceiling_cpu_us_per_record']} us CPU/rec",
        ),
        (
            "route (worker drains backlog)",
            f"{r['route_records_per_s']:,} rec/s",
            f"{r['worker_cpu_us_per_record']} us CPU/rec in the worker",
        ),
        ("ratio route / ceiling", f"{r['ratio']:.2f}", "target >= 0.80"),
        (
            "audit write (append + fsync)",
            f"{r['audit_records_per_s']:,} rec/s",
            f"{r['audit_entries_per_s']:,} entries/s",
        ),
        ("END TO END translate->deliver", f"{r['records_per_s']:,} rec/s", "all stages at once"),
        (
            f"latency at {r['paced_records_per_s']:,} rec/s",
            f"p99 {r['p99_ms']} ms",
            f"p50 {r['p50_ms']} ms, p95 {r['p95_ms']} ms ({r['latency_deliveries']:,} deliveries)",
        ),
        (
            f"relay latency at {r['paced_records_per_s']:,} rec/s",
            f"p99 {r['relay_p99_ms']} ms",
            f"p50 {r['relay_p50_ms']} ms, p95 {r['relay_p95_ms']} ms; worker p99 / relay p99 "
            f"{r['p99_over_relay_p99']} (target <= 2)",
        ),
        ("worker peak memory (VmHWM)", f"{r['peak_rss_mb']} MB", f"RSS after route {r['rss_after_route_mb']} MB"),
    ]
    if "peer_records_per_s" in r:
        rows.insert(
            5,
            (
                "PEER FastStream, same backlog",
                f"{r['peer_records_per_s']:,} rec/s",
                f"route is {r['peer_multiple']}x the peer (target >= 5); "
                f"{r['peer_cpu_us_per_record']} us CPU/rec in the peer",
            ),
        )
    lines = [f"{a:<34} {b:>16}   {c}" for a, b, c in rows]
    lines.append("")
    lines.append(
        f"{'CPU us/record (in process)':<34} "
        + "  ".join(f"{s:>8}" for s in ("parse", "validate", "decide", "render", "audit", "total"))
    )
    for label, stages in r["cpu_us"].items():
        lines.append(
            f"  {label:<32} "
            + "  ".join(f"{stages.get(s, 0):>8}" for s in ("parse", "validate", "decide", "render", "audit", "total"))
        )
    if r.get("worker_stage_us"):
        lines.append(
            f"  {'worker, under load (mean)':<32} "
            + "  ".join(
                f"{r['worker_stage_us'].get(s, 0):>8}" for s in ("parse", "validate", "decide", "render", "audit")
            )
        )
    lines.append(f"audit chain: {r['audit_chain']}")
    if "usage" in r:
        u = r["usage"]
        lines.append(
            f"usage report on this traffic: {u['report']} - {'equal to' if u['equal'] else 'NOT equal to'} "
            f"the audit log's own count"
        )
    if "long" in r:
        from bench import long

        lines.append(long.table(r["long"]))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    began = time.perf_counter()
    result = run(args)
    result["bench_seconds"] = round(time.perf_counter() - began, 1)
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{dt.datetime.now().strftime('%Y%m%dT%H%M%S')}.json"
    path.write_bytes(orjson.dumps(result, option=orjson.OPT_INDENT_2))
    print()
    print(table(result))
    print(f"\n{result['bench_seconds']}s; results in {path.relative_to(harness.BENCH.parent)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""`make bench-enquiry`: cross-force enquiry step one under 50 concurrent officers against 3 responders,
with the transport's own request/reply round trip measured in the same run as the ceiling.

    python -m bench.enquiry [--officers 50] [--seconds 15] [--records 3000]

Phases (own vhosts and a PostgreSQL database of their own, removed afterwards):
  ceiling  the gateway's request/reply transport (broker/enquiry/transport.py) against echo consumers on the
           three forces' enquiry queues: each officer asks the two other forces and waits for both replies
  gateway  HTTP step one through the real gateway (JWT check, agreements, fan-out, audit entry published and
           confirmed) to the three reference responders on their PostgreSQL indexes, with the audit writer
Writes bench/results/enquiry-<timestamp>.json and prints a table.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson

from bench import harness

FORCES = ("01", "13", "48")
RESULTS = harness.BENCH / "results"


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.enquiry", description=__doc__.split("\n\n")[0])
    parser.add_argument("--officers", type=int, default=50, help="concurrent officers (default 50)")
    parser.add_argument("--seconds", type=float, default=15.0, help="length of each phase (default 15)")
    parser.add_argument("--records", type=int, default=3000, help="records indexed per force (default 3000)")
    parser.add_argument("--echo", help=argparse.SUPPRESS)  # internal: run an echo consumer on this vhost
    parser.add_argument("--amqp-url", default="amqp://guest:guest@127.0.0.1:5672/", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def percentiles(samples: list[float]) -> dict[str, float]:
    if not samples:
        return {"p50_ms": 0.0, "p95_ms": 0.0, "p99_ms": 0.0}
    cuts = statistics.quantiles(samples, n=100, method="inclusive")
    return {
        "p50_ms": round(cuts[49] * 1000, 2),
        "p95_ms": round(cuts[94] * 1000, 2),
        "p99_ms": round(cuts[98] * 1000, 2),
    }


# ------------------------------------------------------------------ the echo consumer (ceiling)


def echo(url: str, vhost: str) -> None:
    """Reply `{}` to every request on interchange.enquiry: the transport with no work behind it."""
    import pika

    from broker.enquiry.responder import ENQUIRY_QUEUE, QUEUE_ARGUMENTS
    from broker.transports.amqp import blocking_channel

    connection, channel = blocking_channel(url, vhost, "interchange-bench-echo")
    channel.queue_declare(ENQUIRY_QUEUE, durable=True, arguments=QUEUE_ARGUMENTS)
    channel.basic_qos(prefetch_count=64)

    def on_message(ch: Any, method: Any, props: Any, body: bytes) -> None:
        ch.basic_publish("", props.reply_to, b'{"hits": {}}', pika.BasicProperties(correlation_id=props.correlation_id))
        ch.basic_ack(method.delivery_tag)

    channel.basic_consume(ENQUIRY_QUEUE, on_message)
    print("ready", flush=True)
    channel.start_consuming()


async def ceiling(settings: Any, officers: int, seconds: float) -> dict[str, Any]:
    from broker.enquiry.transport import ForceLink

    links = {f: ForceLink(settings, f) for f in FORCES}
    await asyncio.sleep(1.0)
    samples: list[float] = []
    stop_at = time.monotonic() + seconds

    async def officer(i: int) -> None:
        own = FORCES[i % 3]
        while time.monotonic() < stop_at:
            started = time.perf_counter()
            deadline = time.time() + 2.0
            futures = [links[f].ask(b'{"step": "hits"}', deadline)[1] for f in FORCES if f != own]
            await asyncio.gather(*(asyncio.wrap_future(fut) for fut in futures))
            samples.append(time.perf_counter() - started)

    began = time.monotonic()
    await asyncio.gather(*(officer(i) for i in range(officers)))
    elapsed = time.monotonic() - began
    for link in links.values():
        link.close()
    return {"round_trips": len(samples), "per_second": round(len(samples) / elapsed, 1), **percentiles(samples)}


# ------------------------------------------------------------------ the gateway phase


def seed(dsn: str, per_force: int) -> list[dict[str, str]]:
    """Index `per_force` custody records per force, one person each; returns the subjects to ask about."""
    from broker.enquiry import index
    from tests.enquirykit import person_records

    template = person_records()["48"][0]
    conn = index.connect(dsn)
    index.create_schema(conn)
    rng, subjects = random.Random(7), []
    for force in FORCES:
        records = []
        for n in range(per_force):
            record = json.loads(json.dumps(template))
            person = record["data"]["persons"][0]
            family = f"Bench{rng.randrange(per_force * 2)}"
            dob = f"19{rng.randrange(50, 99)}-0{rng.randrange(1, 9)}-1{n % 9}"
            person["name"] = {"given": ["Sam"], "family": family}
            person["birth_date"] = dob
            person["identifiers"] = []
            record.update(id=f"{force}-bench-{n}", origin={"agency": force, "system": "bench"})
            records.append(record)
            if n % 10 == 0:
                subjects.append({"family": family, "given": "Sam", "birth_date": dob})
        index.index_records(conn, force, records)
    conn.close()
    return subjects


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


async def through_gateway(
    url: str, tokens: list[str], subjects: list[dict[str, str]], seconds: float
) -> dict[str, Any]:
    import httpx

    samples: list[float] = []
    statuses: dict[str, int] = {}
    timeouts = 0
    stop_at = time.monotonic() + seconds
    async with httpx.AsyncClient(base_url=url, timeout=10, limits=httpx.Limits(max_connections=len(tokens))) as http:

        async def officer(i: int) -> None:
            nonlocal timeouts
            rng = random.Random(i)
            while time.monotonic() < stop_at:
                started = time.perf_counter()
                response = await http.post(
                    "/v1/enquiries",
                    headers={"Authorization": f"Bearer {tokens[i]}"},
                    json={"subject": rng.choice(subjects), "purpose": "preserve-order", "justification": "bench"},
                )
                samples.append(time.perf_counter() - started)
                statuses[str(response.status_code)] = statuses.get(str(response.status_code), 0) + 1
                if response.status_code == 200:
                    timeouts += sum(f["status"] != "answered" for f in response.json()["forces"])

        began = time.monotonic()
        await asyncio.gather(*(officer(i) for i in range(len(tokens))))
        elapsed = time.monotonic() - began
        metrics = (await http.get("/metrics")).text
    return {
        "enquiries": len(samples),
        "per_second": round(len(samples) / elapsed, 1),
        "http_status": statuses,
        "forces_not_answered": timeouts,
        **percentiles(samples),
        "mean_fan_out_ms": _mean_ms(metrics, "interchange_enquiry_fan_out_seconds", 'step="hits"'),
        "mean_audit_confirm_ms": _mean_ms(metrics, "interchange_enquiry_audit_seconds", ""),
    }


def _mean_ms(exposition: str, name: str, labels: str) -> float:
    """Mean of a histogram in a Prometheus exposition, in milliseconds."""
    values = {}
    for line in exposition.splitlines():
        for part in ("_sum", "_count"):
            if line.startswith(name + part) and labels in line:
                values[part] = float(line.rsplit(" ", 1)[1])
    return round(1000 * values.get("_sum", 0) / values["_count"], 1) if values.get("_count") else 0.0


def wait_port(port: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"nothing listens on port {port}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if args.echo:
        echo(args.amqp_url, args.echo)
        return 0
    from cryptography.hazmat.primitives import serialization

    from tests.enquirykit import Signer, agreements_with, scratch_database
    from tests.support import TestBroker

    work = Path(tempfile.mkdtemp(prefix="bench-enquiry-"))
    broker = TestBroker.create(work / "audit")
    settings = broker.settings
    agreements = agreements_with(work / "agreements", rate_limit={"per_officer": 10**6, "window_seconds": 60})
    signer = Signer()
    pem = work / "idp.pem"
    pem.write_bytes(
        signer.key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    env = dict(os.environ, PYTHONPATH=str(harness.BENCH.parent))
    base = [sys.executable, "-m", "broker", *settings.cli_args(), "--agreements", str(agreements)]
    children: list[subprocess.Popen[bytes]] = []
    result: dict[str, Any] = {
        "time": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "officers": args.officers,
        "seconds": args.seconds,
        "records_per_force": args.records,
        "machine": {"cores": os.cpu_count()},
    }
    try:
        echoes = [
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "bench.enquiry",
                    "--echo",
                    settings.recipient_vhost(f"force-{f}"),
                    "--amqp-url",
                    settings.amqp_url,
                ],
                env=env,
                stdout=subprocess.PIPE,
            )
            for f in FORCES
        ]
        children += echoes
        for child in echoes:
            child.stdout.readline()  # "ready"
        result["ceiling"] = asyncio.run(ceiling(settings, args.officers, args.seconds))
        for child in echoes:
            harness.stop(child)
        with scratch_database() as dsn:
            subjects = seed(dsn, args.records)
            log = (work / "children.log").open("ab")
            children.append(subprocess.Popen(base + ["audit-writer"], env=env, stdout=log, stderr=log))
            responders = [
                subprocess.Popen(base + ["enquiry-responder", force, "--dsn", dsn], env=env, stdout=log, stderr=log)
                for force in FORCES
            ]
            children += responders
            port = free_port()
            from tests.enquirykit import ISSUER

            gateway = subprocess.Popen(
                base
                + [
                    "enquiry-gateway",
                    "--port",
                    str(port),
                    "--host",
                    "127.0.0.1",
                    "--jwt-public-key",
                    str(pem),
                    "--issuer",
                    ISSUER,
                ],
                env=env,
                stdout=log,
                stderr=log,
            )
            children.append(gateway)
            wait_port(port)
            time.sleep(1.0)
            tokens = [
                signer.token(officer=f"PC-{i:04d}", force=FORCES[i % 3], expires_in=3600) for i in range(args.officers)
            ]
            cpu_before = [harness.cpu_seconds(p.pid) for p in [gateway, *responders]]
            client_before = time.process_time()
            result["gateway"] = asyncio.run(through_gateway(f"http://127.0.0.1:{port}", tokens, subjects, args.seconds))
            cpu = [harness.cpu_seconds(p.pid) - b for p, b in zip([gateway, *responders], cpu_before, strict=True)]
            result["gateway"]["gateway_cpu_seconds"] = round(cpu[0], 1)
            result["gateway"]["client_cpu_seconds"] = round(time.process_time() - client_before, 1)
            result["gateway"]["responder_cpu_seconds"] = [round(c, 1) for c in cpu[1:]]
            result["load_average"] = os.getloadavg()[0]
            for child in reversed(children):
                harness.stop(child)
    finally:
        for child in children:
            harness.stop(child)
        broker.close()
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"enquiry-{dt.datetime.now(dt.UTC):%Y%m%dT%H%M%SZ}.json"
    out.write_bytes(orjson.dumps(result, option=orjson.OPT_INDENT_2))
    c, g = result["ceiling"], result["gateway"]
    print(f"{'phase':<10} {'per second':>11} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8}")
    print(f"{'ceiling':<10} {c['per_second']:>11} {c['p50_ms']:>8} {c['p95_ms']:>8} {c['p99_ms']:>8}")
    print(f"{'step one':<10} {g['per_second']:>11} {g['p50_ms']:>8} {g['p95_ms']:>8} {g['p99_ms']:>8}")
    print(f"mean fan-out {g['mean_fan_out_ms']} ms, mean audit confirm {g['mean_audit_confirm_ms']} ms")
    print(
        f"http status {g['http_status']}, forces not answered {g['forces_not_answered']}; cpu seconds: gateway "
        f"{g['gateway_cpu_seconds']}, client {g['client_cpu_seconds']}, responders {g['responder_cpu_seconds']}; "
        f"load {result['load_average']:.1f}; "
        f"written to {out.name}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

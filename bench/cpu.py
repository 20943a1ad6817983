"""CPU per record per stage: route() in a loop in this process, no RabbitMQ.

route() times its own stages (parse, validate, decide, render, audit); this runs every record through it
a few times and reports, per record type and source, the median of each stage in microseconds.
"""

from __future__ import annotations

import statistics
import time
from collections import defaultdict
from typing import Any

import orjson

from broker import router
from broker.config import Registry, Settings
from broker.message import Message
from broker.runner import build_context, load_registry

STAGES = ("parse", "validate", "decide", "render", "audit")


def stage_micros(
    settings: Settings, registry: Registry, records: list[dict[str, Any]], rounds: int = 3
) -> dict[str, dict[str, float]]:
    """{source label: {stage: median µs, 'total': median µs, 'deliveries': mean}} over `rounds` passes."""
    ctx = build_context(settings, registry)
    ctx.actor = {"system": "interchange", "worker": "bench"}
    samples: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for record in records:  # warm up caches (compiled schemas, projectors) before measuring
        router.route(Message(orjson.dumps(record)), ctx)
        break
    for _ in range(rounds):
        for record in records:
            label = f"{record['type']} ({record['origin']['agency']})"
            body = orjson.dumps(record)
            started = time.perf_counter()
            plan = router.route(Message(body, "application/json", record["id"]), ctx)
            total = time.perf_counter() - started
            if plan.outcome != "routed":
                raise SystemExit(f"bench: record {record['id']} was {plan.outcome}: {plan.reason}")
            for stage in STAGES:
                samples[label][stage].append(plan.timings.get(stage, 0.0))
            samples[label]["total"].append(total)
            samples[label]["deliveries"].append(len(plan.outputs))
    out: dict[str, dict[str, float]] = {}
    for label, stages in sorted(samples.items()):
        out[label] = {
            stage: round(statistics.median(values) * 1e6, 1)
            for stage, values in stages.items()
            if stage != "deliveries"
        }
        out[label]["deliveries"] = round(statistics.fmean(stages["deliveries"]), 2)
    return out


def main(argv: list[str] | None = None) -> None:
    """`python -m bench.cpu [--records N] [--rounds R]`: the cpu phase alone, in process, no RabbitMQ."""
    import argparse
    import tempfile
    from pathlib import Path

    from bench import harness

    parser = argparse.ArgumentParser(prog="python -m bench.cpu", description=main.__doc__)
    parser.add_argument("--records", type=int, default=3000, help="records translated (a sample of ~900 is routed)")
    parser.add_argument("--rounds", type=int, default=3, help="passes over the sample")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-cpu-") as work:
        settings = harness.bench_settings(Path(work))
        registry = load_registry(settings)
        bodies = harness.translate_all(args.records).bodies
        step = max(1, len(bodies) // 900)
        sample = [orjson.loads(body) for i, (_t, _id, body) in enumerate(bodies) if i % step == 0]
        result = stage_micros(settings, registry, sample, args.rounds)
    print(f"{'CPU us/record (in process)':<34} " + "  ".join(f"{s:>8}" for s in (*STAGES, "total")))
    for label, stages in result.items():
        print(f"  {label:<32} " + "  ".join(f"{stages.get(s, 0):>8}" for s in (*STAGES, "total")))


if __name__ == "__main__":
    main()

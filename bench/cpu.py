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
from broker.runner import build_context

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

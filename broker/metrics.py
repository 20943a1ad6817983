"""Every Prometheus metric Interchange exports, in one place.

Names follow Prometheus conventions: `interchange_` prefix, base units, counters ending `_total`.
Label values come only from configuration (agency codes, recipient ids, agreement ids) or fixed lists
(reason codes, stages) — never from record content.  Each process owns a `Metrics` with its own
registry, so tests can use a fresh one and read values with `get_sample_value`.
"""

from __future__ import annotations

import platform

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from broker import __version__
from broker.errors import REJECT_REASONS

STAGES = ("parse", "validate", "decide", "render", "audit", "publish")
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)
STAGE_BUCKETS = (0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05, 0.25, 1)


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.build_info = Gauge("interchange_build_info", "Build information", ["version", "python"], registry=r)
        self.build_info.labels(__version__, platform.python_version()).set(1)
        self.received = Counter("interchange_records_received_total", "Records consumed from the ingress",
                                ["source"], registry=r)
        self.rejected = Counter("interchange_records_rejected_total", "Records refused at ingress and dead-lettered",
                                ["reason"], registry=r)
        self.decisions = Counter("interchange_decisions_total", "Sharing decisions by recipient and outcome",
                                 ["recipient", "agreement", "outcome", "reason"], registry=r)
        self.delivered = Counter("interchange_deliveries_confirmed_total",
                                 "Deliveries confirmed by RabbitMQ on a recipient's queue", ["recipient"], registry=r)
        self.publish_failures = Counter("interchange_publish_failures_total",
                                        "Publishes nacked, returned, timed out or lost", ["target"], registry=r)
        self.requeued = Counter("interchange_records_requeued_total",
                                "Records returned to the route queue to be decided again", registry=r)
        self.duplicates = Counter("interchange_duplicates_dropped_total",
                                  "Records dropped because their id was already routed", registry=r)
        self.stage_seconds = Histogram("interchange_stage_seconds", "Time per pipeline stage", ["stage"],
                                       buckets=STAGE_BUCKETS, registry=r)
        self.latency = Histogram("interchange_end_to_end_latency_seconds",
                                 "From record time to confirmed delivery", buckets=LATENCY_BUCKETS, registry=r)
        self.reconnects = Counter("interchange_reconnects_total", "Connection losses followed by a reconnect",
                                  registry=r)
        for reason in REJECT_REASONS:
            self.rejected.labels(reason)
        for stage in STAGES:
            self.stage_seconds.labels(stage)

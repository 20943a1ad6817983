"""Every Prometheus metric Interchange exports, in one place.

Names follow Prometheus conventions: `interchange_` prefix, base units, counters ending `_total`.
Label values come only from configuration (agency codes, recipient ids, agreement ids) or fixed lists
(reason codes, stages) — never from record content.  Each process owns a `Metrics` with its own
registry, so tests can use a fresh one and read values with `get_sample_value`.
"""

from __future__ import annotations

import datetime as dt
import platform
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from broker import __version__
from broker.errors import REJECT_REASONS, WITHHOLD_REASONS
from broker.routing.rules import LONDON

if TYPE_CHECKING:
    from broker.config import Agreement, Registry

UNREGISTERED = "unregistered"
DEFAULT_FORMAT = "common-json"
FORMAT_HEADER = "x-interchange-format"
# Inbound adapters (adapters/registry.py); a header naming anything else is counted as common-json.
INBOUND_FORMATS = frozenset({"common-json", "cjse-spi", "police-uk-csv", "niem-nibrs", "fixed-width", "custody-csv"})

STAGES = ("parse", "validate", "decide", "render", "audit", "publish")
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)
CONFIRM_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
STAGE_BUCKETS = (0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05, 0.25, 1)


class Metrics:
    """The routing core's Prometheus metrics, in their own registry."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self._children: dict[tuple[Any, tuple[str, ...]], Any] = {}
        r = self.registry
        self.build_info = Gauge("interchange_build_info", "Build information", ["version", "python"], registry=r)
        self.build_info.labels(__version__, platform.python_version()).set(1)
        self.received = Counter(
            "interchange_records_received_total", "Records consumed from the ingress", ["source", "format"], registry=r
        )
        self.rejected = Counter(
            "interchange_records_rejected_total", "Records refused at ingress and dead-lettered", ["reason"], registry=r
        )
        self.decisions = Counter(
            "interchange_decisions_total",
            "Sharing decisions by recipient and outcome",
            ["recipient", "agreement", "outcome", "reason"],
            registry=r,
        )
        self.delivered = Counter(
            "interchange_deliveries_confirmed_total",
            "Deliveries confirmed by RabbitMQ on a recipient's queue",
            ["recipient"],
            registry=r,
        )
        self.publish_failures = Counter(
            "interchange_publish_failures_total",
            "Publishes nacked, returned, timed out or lost",
            ["target"],
            registry=r,
        )
        self.requeued = Counter(
            "interchange_records_requeued_total", "Records returned to the route queue to be decided again", registry=r
        )
        self.duplicates = Counter(
            "interchange_duplicates_dropped_total", "Records dropped because their id was already routed", registry=r
        )
        self.corrections_waiting = Counter(
            "interchange_corrections_waiting_total",
            "Times a correction was held because its original was not yet audited",
            registry=r,
        )
        self.stage_seconds = Histogram(
            "interchange_stage_seconds", "Time per pipeline stage", ["stage"], buckets=STAGE_BUCKETS, registry=r
        )
        self.latency = Histogram(
            "interchange_end_to_end_latency_seconds",
            "From record time to confirmed delivery",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.reconnects = Counter(
            "interchange_reconnects_total", "Connection losses followed by a reconnect", registry=r
        )
        self.internal_errors = Counter(
            "interchange_route_internal_errors_total",
            "Records the routing core failed on unexpectedly, dead-lettered as internal_error, by exception type",
            ["exception"],
            registry=r,
        )
        self.undelivered = Counter(
            "interchange_undelivered_total",
            "Deliveries audited as disclosed whose publish then failed (cancelled by an undelivered audit entry)",
            ["recipient", "reason"],
            registry=r,
        )
        self.dead_lettered = Counter(
            "interchange_dead_lettered_total",
            "Records whose dead letter RabbitMQ confirmed on interchange.dead",
            ["reason"],
            registry=r,
        )
        self.audit_written = Counter(
            "interchange_audit_entries_written_total",
            "Audit entries appended to the hash-chained log and fsynced",
            registry=r,
        )
        self.audit_checkpoint_failures = Counter(
            "interchange_audit_checkpoint_failures_total",
            "Audit checkpoints that could not be written or signed",
            registry=r,
        )
        self.audit_write_failures = Counter(
            "interchange_audit_write_failures_total",
            "Audit appends or fsyncs that failed (disk full, I/O error) and will be retried",
            registry=r,
        )
        self.audit_lag = Gauge(
            "interchange_audit_lag_seconds",
            "Age of the oldest audit entry this process knows is not yet on disk",
            registry=r,
        )
        self.audit_paused = Gauge(
            "interchange_audit_lag_paused",
            "1 while this worker takes no new records because the audit lag passed its bound",
            registry=r,
        )
        self.audit_verify_failures = Counter(
            "interchange_audit_verify_failures_total", "Audit chain verifications that found a broken chain", registry=r
        )
        # Seconds, not days: Prometheus base units (promtool refuses _days); alerts divide by 86400.
        self.agreement_expiry = Gauge(
            "interchange_agreement_expiry_timestamp_seconds",
            "When an agreement stops being in force (end of its valid_until day, UK time)",
            ["agreement"],
            registry=r,
        )
        for reason in REJECT_REASONS:
            self.rejected.labels(reason)
            self.dead_lettered.labels(reason)
        for stage in STAGES:
            self.stage_seconds.labels(stage)

    def child(self, metric: Any, *labels: str) -> Any:
        """`metric.labels(*labels)`, cached: label lookups cost more than the increments on the hot path."""
        key = (metric, labels)
        found = self._children.get(key)
        if found is None:
            found = self._children[key] = metric.labels(*labels)
        return found

    def preinitialise(self, registry: Registry) -> None:
        """Create every series the configuration allows, at zero, so rates and alerts see them from start."""
        for source in [*registry.agencies, UNREGISTERED]:
            for fmt in INBOUND_FORMATS:
                self.received.labels(source, fmt)
        self.publish_failures.labels("audit")
        self.publish_failures.labels("core")
        for recipient in registry.recipients:
            self.delivered.labels(recipient)
            self.publish_failures.labels(recipient)
        for agreement in registry.agreements:
            self.decisions.labels(agreement.recipient, agreement.id, "delivered", "")
            for reason in WITHHOLD_REASONS:
                self.decisions.labels(agreement.recipient, agreement.id, "withheld", reason)
        self.observe_agreements(registry.agreements)

    def observe_agreements(self, agreements: Iterable[Agreement]) -> None:
        """Set interchange_agreement_expiry_timestamp_seconds per agreement (at start and on each scrape)."""
        for agreement in agreements:
            end = dt.datetime.combine(agreement.valid_until + dt.timedelta(days=1), dt.time(), LONDON)
            self.agreement_expiry.labels(agreement.id).set(end.timestamp())


class IngestMetrics:
    """What `interchange ingest` and `ingest-worker` expose on /metrics (one set per process)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = r = registry or CollectorRegistry()
        Gauge("interchange_build_info", "Build information", ["version", "python"], registry=r).labels(
            __version__, platform.python_version()
        ).set(1)
        self.read = Counter(
            "interchange_ingest_records_read_total", "Records an adapter read from legacy input", ["format"], registry=r
        )
        self.published = Counter(
            "interchange_ingest_records_published_total",
            "Records published to the ingress and confirmed by RabbitMQ",
            ["format"],
            registry=r,
        )
        self.rejected = Counter(
            "interchange_ingest_records_rejected_total",
            "Records an adapter could not translate, by the adapter's reason code",
            ["format", "reason"],
            registry=r,
        )
        self.bytes = Counter(
            "interchange_ingest_bytes_read_total", "Bytes of legacy input read", ["format"], registry=r
        )
        self.confirm_seconds = Histogram(
            "interchange_ingest_confirm_seconds",
            "From publishing a record to RabbitMQ's confirm",
            buckets=CONFIRM_BUCKETS,
            registry=r,
        )
        for adapter in INBOUND_FORMATS:
            self.prepare(adapter)

    def prepare(self, adapter: str) -> None:
        """Series exist at zero for this adapter before the first record."""
        for counter in (self.read, self.published, self.bytes):
            counter.labels(adapter)


def format_label(headers: dict[str, object] | None) -> str:
    """The inbound format of a record: the adapter named in `x-interchange-format`, else common-json."""
    value = (headers or {}).get(FORMAT_HEADER)
    if isinstance(value, bytes):
        value = value.decode(errors="replace")
    return value if isinstance(value, str) and value in INBOUND_FORMATS else DEFAULT_FORMAT

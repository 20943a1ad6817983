"""Runners that bring legacy data into the exchange through the adapters.

- `ingest_files()` streams files of any size through an inbound adapter and publishes each common-schema
  record to the ingress with publisher confirms (a window, not one round trip per record).  Records the
  adapter cannot translate go to `<input>.rejects.ndjson` beside the input (or to the dead-letter queue)
  with where, which field and why.  Memory stays flat: nothing holds more than the confirm window.
- `RawRunner` consumes raw legacy payloads from the core vhost's `interchange.raw` queue (headers
  `x-adapter` and `x-mapping` name how to read them), publishes the records with confirms, and acks the
  raw message only after every record is confirmed (or dead-lettered).

Every record either publishes carries the header `x-interchange-format: <adapter name>`, the `format`
label of the worker's `interchange_records_received_total`.
"""

from __future__ import annotations

import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import orjson
import pika
import pika.exceptions

from broker import topology
from broker.config import Settings
from broker.contract import AdapterLookup, InboundAdapter
from broker.errors import ConfigError, DataError, TransportError
from broker.ingress.publisher import StreamPublisher, record_message
from broker.message import Outgoing
from broker.ops.metrics import FORMAT_HEADER, IngestMetrics
from broker.transports.amqp import AmqpTransport, blocking_channel


@dataclass
class IngestSummary:
    """What one ingest did: read, published, rejected by reason, failed, notices and time taken."""

    read: int = 0
    published: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    failed: int = 0
    seconds: float = 0.0
    began: float = 0.0
    notices: Counter[str] = field(default_factory=Counter)

    def line(self) -> str:
        """The summary as one printable line."""
        rejected = ", ".join(f"{code} {n}" for code, n in self.rejected.most_common()) or "none"
        rate = self.published / self.seconds if self.seconds else 0.0
        notices = "".join(f", notice {code} {n}" for code, n in self.notices.most_common())
        return (
            f"read {self.read}, published {self.published} (confirmed), rejected {sum(self.rejected.values())} "
            f"({rejected}), not confirmed {self.failed}, {rate:.0f} records/s{notices}"
        )


def rejection_line(error: DataError, source: str) -> bytes:
    """A rejected record as one NDJSON line for the rejects file."""
    return (
        orjson.dumps(
            {
                "source": source,
                "location": error.location,
                "record_id": error.record_id,
                "reason": error.reason,
                "errors": [e.as_dict() for e in error.errors],
            }
        )
        + b"\n"
    )


def dead_letter(error: DataError, source: str) -> Outgoing:
    """A rejected legacy record as a dead letter, its reason and errors in the headers."""
    headers = {
        "x-interchange-reason": "adapter_error",
        "x-interchange-source": source,
        "x-interchange-location": error.location or "",
        "x-interchange-errors": orjson.dumps([e.as_dict() for e in error.errors]).decode(),
    }
    return Outgoing(
        "core",
        topology.DLX,
        "adapter_error",
        rejection_line(error, source),
        error.record_id or f"{source}:{error.location}",
        None,
        headers,
    )


class _Progress:
    """Bytes read of the total, %, records/s and ETA on a terminal (tqdm); nothing otherwise.

    Off a terminal the command prints one summary line at the end (`IngestSummary.line`), as users of
    command-line tools expect from a pipe or a log.
    """

    def __init__(self, stream: IO[str] | None, total_bytes: int) -> None:
        self.bar: Any = None
        self.done = 0
        self.last = 0.0
        if stream is not None and stream.isatty():
            from tqdm import tqdm

            self.bar = tqdm(
                total=total_bytes,
                unit="B",
                unit_scale=True,
                unit_divisor=1024,
                file=stream,
                desc="ingest",
                dynamic_ncols=True,
            )

    def show(self, summary: IngestSummary, position: int, force: bool = False) -> None:
        now = time.monotonic()
        if self.bar is None or not (force or now - self.last > 0.25):
            return
        self.last = now
        self.bar.update(max(0, position - self.done))
        self.done = max(self.done, position)
        rate = summary.read / (now - summary.began) if now > summary.began else 0.0
        self.bar.set_postfix(
            records=summary.read,
            published=summary.published,
            rejected=sum(summary.rejected.values()),
            rec_s=f"{rate:,.0f}",
            refresh=False,
        )

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def ingest_files(
    settings: Settings,
    adapter: InboundAdapter,
    mapping: str,
    files: list[Path],
    rejects_to: str = "file",
    window: int = 1000,
    progress: IO[str] | None = sys.stderr,
    lineage: Any = None,
    metrics: IngestMetrics | None = None,
) -> IngestSummary:
    """Translate every file through `adapter` and publish its records with confirms; returns the counts.

    `lineage` is the adapter's store of the latest version of each source record (e.g. an SQLite lineage
    file opened by the caller), so a changed re-send in a later file supersedes it; adapter notices
    (whole-file reports that reject nothing) are counted apart and written beside the input with the
    rejections.  `metrics` are served on /metrics.
    """
    adapter_name = adapter.name
    store = lineage
    loaded = adapter.load_mapping(mapping)
    metrics = metrics or IngestMetrics()
    metrics.prepare(adapter_name)
    summary = IngestSummary(began=time.monotonic())
    bar = _Progress(progress, sum(path.stat().st_size for path in files))
    headers = {FORMAT_HEADER: adapter_name}
    reject_files: dict[Path, IO[bytes]] = {}
    sent: dict[int, float] = {}  # id(message) -> when it was handed to the publisher
    counted = {"bytes": 0}

    def messages() -> Iterator[Outgoing]:
        for path in files:
            with path.open("rb") as handle:
                for result in adapter.translate(handle, loaded, lineage=store):
                    notice = getattr(result, "notice", False)
                    if not notice:
                        summary.read += 1
                        metrics.read.labels(adapter_name).inc()
                    if summary.read % 256 == 0:
                        _count_bytes(handle.tell())
                    if isinstance(result, DataError):
                        code = result.errors[0].code if result.errors else result.reason
                        (summary.notices if notice else summary.rejected)[code] += 1
                        if not notice:
                            metrics.rejected.labels(adapter_name, code).inc()
                        if rejects_to == "dlq" and notice:
                            continue
                        if rejects_to == "dlq":
                            yield dead_letter(result, f"{path.name}")
                        else:
                            sink = reject_files.get(path)
                            if sink is None:
                                sink = reject_files[path] = path.with_name(path.name + ".rejects.ndjson").open("wb")
                            sink.write(rejection_line(result, path.name))
                    else:
                        message = record_message(result, headers=headers)
                        sent[id(message)] = time.perf_counter()
                        yield message
                _count_bytes(handle.tell())
            counted["base"] = counted.get("base", 0) + path.stat().st_size

    def _count_bytes(position: int) -> None:
        total = counted.get("base", 0) + position
        metrics.bytes.labels(adapter_name).inc(max(0, total - counted["bytes"]))
        counted["bytes"] = max(counted["bytes"], total)
        bar.show(summary, counted["bytes"])

    def confirmed(message: Outgoing) -> None:
        began = sent.pop(id(message), None)
        if began is not None:
            metrics.confirm_seconds.observe(time.perf_counter() - began)
        if message.exchange == topology.INGRESS_EXCHANGE:
            summary.published += 1
            metrics.published.labels(adapter_name).inc()

    transport = AmqpTransport(
        settings.amqp_url,
        {"core": settings.core_vhost},
        settings.confirm_timeout_seconds,
        name="interchange-ingest",
        tls=settings.tls,
    )
    started = time.perf_counter()
    try:
        report = StreamPublisher(transport, messages(), window, on_confirmed=confirmed).run()
    finally:
        for sink in reject_files.values():
            sink.close()
        bar.show(summary, counted["bytes"], force=True)
        bar.close()
        if store is not None:
            store.close()
    summary.failed, summary.seconds = report.failed, time.perf_counter() - started
    return summary


class RawRunner:
    """Consumes raw legacy payloads and publishes their records; acks each raw message after confirms."""

    def __init__(
        self,
        settings: Settings,
        adapters: AdapterLookup,
        queue: str = topology.RAW_QUEUE,
        metrics: IngestMetrics | None = None,
    ) -> None:
        """`adapters` looks an inbound adapter up by the name a raw message's `x-adapter` header gives."""
        self.settings, self.queue, self.get_adapter = settings, queue, adapters
        self.summary = IngestSummary(began=time.monotonic())
        self.metrics = metrics or IngestMetrics()

    def run(self, stop_when_idle: bool = False, idle_seconds: float = 1.0) -> IngestSummary:
        """Consume raw legacy payloads and publish their records until stopped (or idle)."""
        connection, channel = blocking_channel(
            self.settings.amqp_url, self.settings.core_vhost, "interchange-raw-runner", self.settings.tls
        )
        channel.confirm_delivery()
        channel.basic_qos(prefetch_count=4)
        adapters: dict[str, Any] = {}
        try:
            for method, props, body in channel.consume(self.queue, inactivity_timeout=idle_seconds):
                if method is None:
                    if stop_when_idle:
                        break
                    continue
                headers = props.headers or {}
                try:
                    # one instance per adapter name for the whole run, so an amended court result
                    # arriving in a later message supersedes the version this worker sent before
                    name = str(headers.get("x-adapter", ""))
                    adapter: Any = adapters.get(name) or adapters.setdefault(name, self.get_adapter(name))
                    mapping = adapter.load_mapping(str(headers.get("x-mapping", "default")))
                except ConfigError as exc:  # unknown adapter or mapping: the message cannot be read at all
                    self._publish(
                        channel,
                        Outgoing(
                            "core",
                            topology.DLX,
                            "adapter_error",
                            body,
                            props.message_id or "",
                            props.correlation_id,
                            {"x-interchange-reason": "adapter_error", "x-interchange-errors": str(exc)[:1000]},
                        ),
                    )
                    channel.basic_ack(method.delivery_tag)
                    continue
                source = str(props.message_id or headers.get("x-adapter"))
                self.metrics.bytes.labels(adapter.name).inc(len(body))
                for result in adapter.translate(body, mapping):
                    if getattr(result, "notice", False):  # a whole-payload report that rejects nothing
                        self.summary.notices[result.errors[0].code] += 1
                        continue
                    self.summary.read += 1
                    self.metrics.read.labels(adapter.name).inc()
                    if isinstance(result, DataError):
                        code = result.errors[0].code if result.errors else result.reason
                        self.summary.rejected[code] += 1
                        self.metrics.rejected.labels(adapter.name, code).inc()
                        self._publish(channel, dead_letter(result, source))
                    else:
                        began = time.perf_counter()
                        self._publish(channel, record_message(result, headers={FORMAT_HEADER: adapter.name}))
                        self.metrics.confirm_seconds.observe(time.perf_counter() - began)
                        self.summary.published += 1
                        self.metrics.published.labels(adapter.name).inc()
                channel.basic_ack(method.delivery_tag)
        finally:
            if connection.is_open:
                connection.close()
        return self.summary

    @staticmethod
    def _publish(channel: Any, out: Outgoing) -> None:
        """Blocking publish with confirm and mandatory.

        A nack or return raises TransportError: the runner stops without acking the raw message, which
        RabbitMQ redelivers; records already published from it come again with the same ids.
        """
        try:
            channel.basic_publish(
                out.exchange,
                out.routing_key,
                out.body,
                pika.BasicProperties(
                    content_type=out.content_type,
                    delivery_mode=2,
                    message_id=out.message_id,
                    correlation_id=out.correlation_id,
                    headers=out.headers,
                ),
                mandatory=True,
            )
        except (pika.exceptions.UnroutableError, pika.exceptions.NackError) as exc:
            raise TransportError(f"RabbitMQ did not accept {out.message_id!r} on {out.exchange!r}: {exc!r}") from exc

"""The routing worker: consume records, carry out each Plan, acknowledge only when it is safe.

For each record: `exchange.route()` decides (pure); then its audit entries are published and confirmed —
batched with those of the other records decided in the same turn of the I/O loop, one message for many
records — then every delivery (or the dead letter) is published and confirmed; then the input is acked.  If any
publish fails, the input is rejected with requeue and decided again later (at-least-once; every copy of a
delivery has the record id as message_id).  Acks are batched: the longest finished prefix of deliveries
is acked with one `multiple=True` ack.
"""

from __future__ import annotations

import collections
import datetime as dt
import os
import socket
import time
from dataclasses import dataclass, field
from typing import Any

from broker import exchange, logs, topology
from broker.auditlag import AuditLag
from broker.exchange import Context, Message, Outgoing, Plan
from broker.metrics import Metrics, format_label
from broker.transport import Inbound

# Records whose audit entries travel in one audit message at most (a batch also ends with each ioloop turn).
AUDIT_BATCH_RECORDS = 200


class SeenRecords:
    """Dedup keys (record id + body fingerprint) of records this worker routed to the end, newest kept."""

    def __init__(self, limit: int = 200_000) -> None:
        self.limit = limit
        self._ids: collections.OrderedDict[str, None] = collections.OrderedDict()

    def __contains__(self, record_id: str) -> bool:
        return record_id in self._ids

    def add(self, record_id: str) -> None:
        self._ids[record_id] = None
        if len(self._ids) > self.limit:
            self._ids.popitem(last=False)


class AckBatcher:
    """Acks the longest prefix of settled deliveries with one multiple=True ack.

    A rejected (requeued) delivery is settled by its nack; the batch ack then stops short of it.
    """

    def __init__(self, transport: Any) -> None:
        self.transport = transport
        self.order: collections.deque[Inbound] = collections.deque()
        self.done: dict[int, bool] = {}
        self.generation = -1

    def received(self, inbound: Inbound) -> None:
        if inbound.generation != self.generation:
            self.order.clear()
            self.done.clear()
            self.generation = inbound.generation
        self.order.append(inbound)

    def settle(self, inbound: Inbound, acked: bool = True) -> None:
        if inbound.generation != self.generation:
            return
        self.done[inbound.delivery_tag] = acked
        last_acked = None
        while self.order and self.order[0].delivery_tag in self.done:
            head = self.order.popleft()
            if self.done.pop(head.delivery_tag):
                last_acked = head
        if last_acked is not None:
            self.transport.ack(last_acked, multiple=True)


@dataclass(slots=True)
class _Job:
    inbound: Inbound
    plan: Plan
    started: float
    remaining: int = 0
    failure: str = ""
    outputs: list[Outgoing] = field(default_factory=list)


class Worker:
    """Consumes `interchange.route` and carries out plans on an AmqpTransport (or the memory one)."""

    def __init__(self, ctx: Context, transport: Any, metrics: Metrics | None = None, log: Any = None,
                 lag: AuditLag | None = None, lag_check_seconds: float = 0.5) -> None:
        self.ctx = ctx
        self.transport = transport
        self.metrics = metrics or Metrics()
        self.log = log or logs.get("interchange.worker")
        self.seen = SeenRecords()
        self._deciding: dict[str, int] = {}   # dedup key -> copies in flight (a second copy is a duplicate)
        self.ctx.seen = lambda key: key in self.seen or key in self._deciding
        self.ctx.actor = self.ctx.actor or {"system": "interchange", "worker": f"{socket.gethostname()}:{os.getpid()}"}
        self.metrics.preinitialise(ctx.registry)
        self.acks = AckBatcher(transport)
        self._audit_batch: list[_Job] = []
        self._flush_scheduled = False
        self.in_flight = 0
        self.routed = 0
        self.ready = False
        # audit lag bound (broker.auditlag): past it, records delivered to us are held, not decided
        self.lag, self.lag_check_seconds = lag, lag_check_seconds
        self.paused = False
        self._held: list[Inbound] = []

    def start(self) -> None:
        self.transport.start(on_ready=self._on_ready, on_lost=self._on_lost)
        if self.lag is not None:
            self.transport.call_later(self.lag_check_seconds, self._check_lag)
        s = self.ctx.settings
        own, standby = topology.partition_preference(s.partitions, s.worker_index, s.workers)
        for queue in own:
            self.transport.consume("core", queue, s.prefetch, self.on_message)
        if standby:   # subscribe later, so the workers that own these partitions become their active consumers
            self.transport.call_later(s.standby_delay_seconds, lambda: [
                self.transport.consume("core", queue, s.prefetch, self.on_message) for queue in standby])

    def _on_ready(self) -> None:
        self.ready = True
        self.log.info("worker_ready", vhost=self.ctx.settings.core_vhost,
                      recipients=len(self.ctx.registry.recipients), agreements=len(self.ctx.registry.agreements))

    def _on_lost(self, reason: str) -> None:
        self.ready = False
        self.in_flight = 0
        self._audit_batch = []   # their inputs return to the queue with the lost channel
        self._deciding.clear()
        self._held = []          # they return to the queue with the lost channel too
        self.metrics.reconnects.inc()
        self.log.warning("connection_lost", reason=reason, note="unacked records will be redelivered")

    # ---------------------------------------------------------------- per record
    def on_message(self, inbound: Inbound) -> None:
        if self.paused:
            self._held.append(inbound)     # unacked: the prefetch limit stops RabbitMQ sending more
            return
        self.acks.received(inbound)
        props = inbound.properties
        message = Message(inbound.body, props.content_type, props.message_id, props.correlation_id,
                          props.user_id, props.headers or {}, inbound.redelivered)
        plan = exchange.route(message, self.ctx)
        with logs.record_context(plan.record_id, plan.correlation_id):
            self._carry_out(inbound, plan, format_label(message.headers))

    def _carry_out(self, inbound: Inbound, plan: Plan, fmt: str) -> None:
        self._observe_stages(plan)
        if plan.outcome == "duplicate":
            self.metrics.duplicates.inc()
            self.log.info("record_duplicate_dropped", record_id=plan.record_id, correlation_id=plan.correlation_id)
            self.acks.settle(inbound)
            return
        source = plan.source if plan.source in self.ctx.registry.agencies else "unregistered"
        self.metrics.child(self.metrics.received, source, fmt).inc()
        job = _Job(inbound, plan, time.perf_counter())
        self.in_flight += 1
        if plan.outcome == "routed" and plan.dedup:
            self._deciding[plan.dedup] = self._deciding.get(plan.dedup, 0) + 1
        self._audit_batch.append(job)
        if len(self._audit_batch) >= AUDIT_BATCH_RECORDS:
            self._flush_audit()
        elif not self._flush_scheduled:   # after the records that arrived together are decided
            self._flush_scheduled = True
            self.transport.call_later(0, self._flush_audit)

    def _flush_audit(self) -> None:
        """Publish the audit entries of every record decided since the last flush as one message.

        No delivery of any of these records leaves before this message is confirmed.
        """
        self._flush_scheduled = False
        jobs, self._audit_batch = self._audit_batch, []
        if not jobs:
            return
        message = exchange.audit_message([entry for job in jobs for entry in job.plan.audit_entries])

        def confirmed(ok: bool, why: str) -> None:
            if ok and self.lag is not None:
                self.lag.published()
            for job in jobs:
                self._audited(job, ok, why)

        self.transport.publish(message, confirmed)

    def _audited(self, job: _Job, ok: bool, why: str) -> None:
        if not ok:
            self.metrics.child(self.metrics.publish_failures, "audit").inc()
            self._fail(job, f"audit not confirmed: {why}")
            return
        if not job.plan.outputs:
            self._finish(job)
            return
        job.remaining = len(job.plan.outputs)
        for out in job.plan.outputs:
            self.transport.publish(out, lambda ok, why, out=out: self._published(job, out, ok, why))

    def _published(self, job: _Job, out: Outgoing, ok: bool, why: str) -> None:
        if not ok:
            self.metrics.child(self.metrics.publish_failures, out.target).inc()
            job.failure = job.failure or f"{out.target}: {why}"
        job.remaining -= 1
        if job.remaining == 0:
            if job.failure:
                self._fail(job, job.failure)
            else:
                self._finish(job)

    def _finish(self, job: _Job) -> None:
        plan = job.plan
        self.in_flight -= 1
        self.routed += 1
        self.acks.settle(job.inbound)
        if plan.dedup and plan.outcome == "routed":
            self.seen.add(plan.dedup)
            self._done_deciding(plan.dedup)
        publish_seconds = time.perf_counter() - job.started
        self.metrics.child(self.metrics.stage_seconds, "publish").observe(publish_seconds)
        self._count(plan)
        self.log.info("record_" + plan.outcome, record_id=plan.record_id, correlation_id=plan.correlation_id,
                      source=plan.source, record_type=plan.record_type, delivered=plan.delivered,
                      withheld=plan.withheld, reason=plan.reason,
                      durations_ms={k: round(v * 1000, 3) for k, v in plan.timings.items()}
                      | {"publish": round(publish_seconds * 1000, 3)})

    def _done_deciding(self, key: str) -> None:
        copies = self._deciding.pop(key, 0) - 1
        if copies > 0:
            self._deciding[key] = copies

    def _fail(self, job: _Job, why: str) -> None:
        self.in_flight -= 1
        if job.plan.dedup and job.plan.outcome == "routed":
            self._done_deciding(job.plan.dedup)
        self.metrics.requeued.inc()
        self.transport.reject(job.inbound, requeue=True)
        self.acks.settle(job.inbound, acked=False)
        self.log.warning("record_requeued", record_id=job.plan.record_id, correlation_id=job.plan.correlation_id,
                         reason=why)

    # ---------------------------------------------------------------- audit lag bound
    def _check_lag(self) -> None:
        self.apply_lag_bound()
        self.transport.call_later(self.lag_check_seconds, self._check_lag)

    def apply_lag_bound(self) -> None:
        """Pause when the audit lag passes its bound; resume once it is back under half of it."""
        assert self.lag is not None
        seconds = self.lag.seconds()
        self.metrics.audit_lag.set(seconds)
        if not self.paused and self.lag.over_bound(seconds):
            self.paused = True
            self.metrics.audit_paused.set(1)
            self.log.warning("worker_paused_for_audit_lag", audit_lag_seconds=round(seconds, 1),
                             bound_seconds=self.lag.bound, audit_queue_messages=self.lag.queued,
                             note="no new record is decided until the audit writer catches up")
        elif self.paused and seconds <= self.lag.bound / 2:
            self.paused = False
            self.metrics.audit_paused.set(0)
            held, self._held = self._held, []
            self.log.warning("worker_resumed_after_audit_lag", audit_lag_seconds=round(seconds, 1), held=len(held))
            for inbound in held:
                self.on_message(inbound)

    # ---------------------------------------------------------------- metrics
    def _observe_stages(self, plan: Plan) -> None:
        for stage, seconds in plan.timings.items():
            self.metrics.child(self.metrics.stage_seconds, stage).observe(seconds)

    def _count(self, plan: Plan) -> None:
        m = self.metrics
        if plan.outcome == "rejected":
            m.child(m.rejected, plan.reason).inc()
            m.child(m.dead_lettered, plan.reason).inc()
            return
        agreements = plan.agreements
        for recipient in plan.delivered:
            m.child(m.decisions, recipient, agreements.get(recipient, ""), "delivered", "").inc()
            m.child(m.delivered, recipient).inc()
        for recipient, reason in plan.withheld.items():
            m.child(m.decisions, recipient, agreements.get(recipient, ""), "withheld", reason).inc()
        if plan.delivered and plan.record_time:
            latency = _seconds_since(plan.record_time)
            if latency is not None:
                m.latency.observe(latency)



def _seconds_since(timestamp: str) -> float | None:
    try:
        then = dt.datetime.fromisoformat(timestamp.replace("Z", "+00:00"))
    except ValueError:
        return None
    return max(0.0, (dt.datetime.now(dt.UTC) - then).total_seconds())

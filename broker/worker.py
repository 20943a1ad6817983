"""The routing worker: consume records, carry out each Plan, acknowledge only when it is safe.

For each record: `router.route()` decides (pure); then its audit entries are published and confirmed —
batched with those of the other records decided in the same turn of the I/O loop, one message for many
records — then every delivery (or the dead letter) is published and confirmed; then the input is acked.  If any
publish fails, the input is rejected with requeue and decided again later (at-least-once; every copy of a
delivery has the record id as message_id).  Acks are batched: the longest finished prefix of deliveries
is acked with one `multiple=True` ack.

No record stops the worker or charges another: `route()` returns a Plan for every input; an audit batch
that is refused is retried record by record before any record is requeued.  A delivery whose `disclose`
entry was written but whose publish failed gets an `undelivered` entry cancelling it
(`audit.undelivered_entry`), and when the record comes back the recipients that already have it are not
sent it again.
"""

from __future__ import annotations

import collections
import dataclasses
import datetime as dt
import os
import socket
import time
from dataclasses import dataclass, field
from typing import Any

from broker import router, topology
from broker.audit import entries as audit
from broker.audit.lag import AuditLag
from broker.errors import RejectReason
from broker.message import Inbound, Message, Outcome, Outgoing, Plan, audit_message
from broker.ops import logs
from broker.ops.metrics import Metrics, format_label
from broker.router import Context

# Records whose audit entries travel in one audit message at most (a batch also ends with each ioloop turn).
AUDIT_BATCH_RECORDS = 200
# Records whose confirmed recipients are remembered after a failed delivery, so a retry skips them.
REMEMBERED_PARTIAL_DELIVERIES = 10_000


class SeenRecords:
    """Dedup keys (record id + body fingerprint) of records this worker routed to the end, newest kept."""

    def __init__(self, limit: int = 200_000) -> None:
        self.limit = limit
        self._ids: collections.OrderedDict[str, None] = collections.OrderedDict()

    def __contains__(self, record_id: str) -> bool:
        return record_id in self._ids

    def add(self, record_id: str) -> None:
        """Remember a record key, forgetting the oldest past the limit."""
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
        """Note a delivery in the order RabbitMQ gave it (a new channel starts a new order)."""
        if inbound.generation != self.generation:
            self.order.clear()
            self.done.clear()
            self.generation = inbound.generation
        self.order.append(inbound)

    def settle(self, inbound: Inbound, acked: bool = True) -> None:
        """Mark a delivery settled and ack every settled delivery before the first unsettled one in one go."""
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
    confirmed: set[str] = field(default_factory=set)  # recipients whose delivery was confirmed
    failed: list[tuple[str, str]] = field(default_factory=list)  # (recipient, reason) of failed deliveries


class Worker:
    """Consumes `interchange.route` and carries out plans on an AmqpTransport (or the memory one)."""

    def __init__(
        self,
        ctx: Context,
        transport: Any,
        metrics: Metrics | None = None,
        log: Any = None,
        lag: AuditLag | None = None,
        lag_check_seconds: float = 0.5,
    ) -> None:
        self.ctx = ctx
        self.transport = transport
        self.metrics = metrics or Metrics()
        self.log = log or logs.get("interchange.worker")
        self.seen = SeenRecords()
        self._deciding: dict[str, int] = {}  # dedup key -> copies in flight (a second copy is a duplicate)
        self.ctx.seen = lambda key: key in self.seen or key in self._deciding
        self.ctx.actor = self.ctx.actor or {"system": "interchange", "worker": f"{socket.gethostname()}:{os.getpid()}"}
        self.metrics.preinitialise(ctx.registry)
        self.acks = AckBatcher(transport)
        self._audit_batch: list[_Job] = []
        self._flush_scheduled = False
        self._undelivered: list[dict[str, Any]] = []  # `undelivered` entries not yet confirmed by the audit
        self._partial: collections.OrderedDict[str, set[str]] = collections.OrderedDict()  # dedup -> recipients
        self.in_flight = 0
        self.routed = 0
        self.ready = False
        # audit lag bound (broker.audit.lag): past it, records delivered to us are held, not decided
        self.lag, self.lag_check_seconds = lag, lag_check_seconds
        self.paused = False
        self._held: list[Inbound] = []

    def start(self) -> None:
        """Connect, consume the route queue (or its partitions) and route until stopped."""
        self.transport.start(on_ready=self._on_ready, on_lost=self._on_lost)
        if self.lag is not None:
            self.transport.call_later(self.lag_check_seconds, self._check_lag)
        s = self.ctx.settings
        own, standby = topology.partition_preference(s.partitions, s.worker_index, s.workers)
        for queue in own:
            self.transport.consume("core", queue, s.prefetch, self.on_message)
        if standby:  # subscribe later, so the workers that own these partitions become their active consumers
            self.transport.call_later(
                s.standby_delay_seconds,
                lambda: [self.transport.consume("core", queue, s.prefetch, self.on_message) for queue in standby],
            )

    def _on_ready(self) -> None:
        self.ready = True
        self._write_undelivered()
        self.log.info(
            "worker_ready",
            vhost=self.ctx.settings.core_vhost,
            recipients=len(self.ctx.registry.recipients),
            agreements=len(self.ctx.registry.agreements),
        )

    def _on_lost(self, reason: str) -> None:
        self.ready = False
        self.in_flight = 0
        self._audit_batch = []  # their inputs return to the queue with the lost channel
        self._deciding.clear()
        self._held = []  # they return to the queue with the lost channel too
        self.metrics.reconnects.inc()
        self.log.warning("connection_lost", reason=reason, note="unacked records will be redelivered")

    # ---------------------------------------------------------------- per record
    def on_message(self, inbound: Inbound) -> None:
        """Decide one record and carry the plan out; nothing a record holds can make this raise."""
        if self.paused:
            self._held.append(inbound)  # unacked: the prefetch limit stops RabbitMQ sending more
            return
        self.acks.received(inbound)
        props = inbound.properties
        message = Message(
            inbound.body,
            props.content_type,
            props.message_id,
            props.correlation_id,
            props.user_id,
            props.headers or {},
            inbound.redelivered,
        )
        self._decide(inbound, message)

    def _decide(self, inbound: Inbound, message: Message) -> None:
        plan = router.route(message, self.ctx)
        if plan.outcome == Outcome.WAITING:  # a correction whose original is not audited yet: decide it again later
            self._wait(inbound, message, plan)
            return
        plan = self._without_confirmed(plan)
        try:
            with logs.record_context(plan.record_id, plan.correlation_id):
                self._carry_out(inbound, plan, format_label(message.headers))
        except Exception as exc:  # noqa: BLE001 - a defect here must not stop the records behind this one
            self.log.error("record_internal_error", record_id=plan.record_id, error_type=type(exc).__name__)
            self.in_flight = max(0, self.in_flight - 1)
            self.transport.reject(inbound, requeue=True)
            self.acks.settle(inbound, acked=False)

    def _without_confirmed(self, plan: Plan) -> Plan:
        """The plan for a record that comes back after a failed delivery, without the recipients whose
        delivery was confirmed then: their earlier `disclose` entry stands, and they get no second copy."""
        done = self._partial.get(plan.dedup) if plan.dedup else None
        if not done or plan.outcome != Outcome.ROUTED:
            return plan
        plan.outputs = [o for o in plan.outputs if o.target not in done]
        plan.audit_entries = [
            e for e in plan.audit_entries if not (e.get("operation") == "disclose" and e.get("recipient") in done)
        ]
        return plan

    def _wait(self, inbound: Inbound, message: Message, plan: Plan) -> None:
        """Keep the correction (unacked) and decide it again in a moment; after a lost connection RabbitMQ
        has it back, so the retry is dropped."""
        self.metrics.corrections_waiting.inc()
        self.log.info("correction_waiting", record_id=plan.record_id, original=plan.reason, attempt=message.attempt + 1)

        def again() -> None:
            if inbound.generation == getattr(self.transport, "generation", inbound.generation):
                self._decide(inbound, dataclasses.replace(message, attempt=message.attempt + 1))

        self.transport.call_later(self.ctx.settings.correction_wait_seconds, again)

    def _carry_out(self, inbound: Inbound, plan: Plan, fmt: str) -> None:
        self._observe_stages(plan)
        if plan.outcome == Outcome.DUPLICATE:
            self.metrics.duplicates.inc()
            self.log.info("record_duplicate_dropped", record_id=plan.record_id, correlation_id=plan.correlation_id)
            self.acks.settle(inbound)
            return
        source = plan.source if plan.source in self.ctx.registry.agencies else "unregistered"
        self.metrics.child(self.metrics.received, source, fmt).inc()
        job = _Job(inbound, plan, time.perf_counter())
        self.in_flight += 1
        if plan.outcome == Outcome.ROUTED and plan.dedup:
            self._deciding[plan.dedup] = self._deciding.get(plan.dedup, 0) + 1
        self._audit_batch.append(job)
        if len(self._audit_batch) >= AUDIT_BATCH_RECORDS:
            self._flush_audit()
        elif not self._flush_scheduled:  # after the records that arrived together are decided
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
        self._publish_audit(jobs, retry_alone=len(jobs) > 1)

    def _publish_audit(self, jobs: list[_Job], retry_alone: bool) -> None:
        """One audit message for `jobs`; if it is refused while the connection stands, each record's entries
        are tried alone, so a record is requeued only for its own failure."""
        entries = [entry for job in jobs for entry in job.plan.audit_entries]
        if not entries:
            for job in jobs:
                self._audited(job, True, "")
            return

        def confirmed(ok: bool, why: str) -> None:
            if ok and self.lag is not None:
                self.lag.published()
            if not ok and retry_alone and self.transport.ready:
                self.log.warning("audit_batch_refused", records=len(jobs), reason=why, note="retrying one by one")
                for job in jobs:
                    self._publish_audit([job], retry_alone=False)
                return
            for job in jobs:
                self._audited(job, ok, why)

        self._publish(audit_message(entries), confirmed)

    def _publish(self, out: Outgoing, callback: Any) -> None:
        """transport.publish, with anything it raises turned into a failed publish."""
        try:
            self.transport.publish(out, callback)
        except Exception as exc:  # noqa: BLE001 - e.g. a value pika cannot encode
            callback(False, f"publish raised {type(exc).__name__}")

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
            self._publish(out, lambda ok, why, out=out: self._published(job, out, ok, why))

    def _published(self, job: _Job, out: Outgoing, ok: bool, why: str) -> None:
        if not ok:
            self.metrics.child(self.metrics.publish_failures, out.target).inc()
            job.failure = job.failure or f"{out.target}: {why}"
            if out.target != "core":
                job.failed.append((out.target, _failure_code(why)))
        elif out.target != "core":
            job.confirmed.add(out.target)
        job.remaining -= 1
        if job.remaining == 0:
            if job.failure:
                self._fail(job, job.failure)
            else:
                self._finish(job)

    def _finish(self, job: _Job) -> None:
        plan = job.plan
        self._partial.pop(plan.dedup, None)
        self.in_flight -= 1
        self.routed += 1
        self.acks.settle(job.inbound)
        if plan.dedup and plan.outcome == Outcome.ROUTED:
            self.seen.add(plan.dedup)
            self._done_deciding(plan.dedup)
        publish_seconds = time.perf_counter() - job.started
        self.metrics.child(self.metrics.stage_seconds, "publish").observe(publish_seconds)
        self._count(plan)
        self.log.info(
            "record_" + plan.outcome,
            record_id=plan.record_id,
            correlation_id=plan.correlation_id,
            source=plan.source,
            record_type=plan.record_type,
            delivered=plan.delivered,
            withheld=plan.withheld,
            reason=plan.reason,
            durations_ms={k: round(v * 1000, 3) for k, v in plan.timings.items()}
            | {"publish": round(publish_seconds * 1000, 3)},
        )

    def _done_deciding(self, key: str) -> None:
        copies = self._deciding.pop(key, 0) - 1
        if copies > 0:
            self._deciding[key] = copies

    def _fail(self, job: _Job, why: str) -> None:
        self.in_flight -= 1
        if job.plan.dedup and job.plan.outcome == Outcome.ROUTED:
            self._done_deciding(job.plan.dedup)
            self._remember_confirmed(job)
        if job.failed:
            self._cancel_disclosures(job)
        self.metrics.requeued.inc()
        self.transport.reject(job.inbound, requeue=True)
        self.acks.settle(job.inbound, acked=False)
        self.log.warning(
            "record_requeued", record_id=job.plan.record_id, correlation_id=job.plan.correlation_id, reason=why
        )

    # ---------------------------------------------------------------- failed deliveries
    def _remember_confirmed(self, job: _Job) -> None:
        if not job.confirmed:
            return
        done = self._partial.setdefault(job.plan.dedup, set())
        done |= job.confirmed
        self._partial.move_to_end(job.plan.dedup)
        while len(self._partial) > REMEMBERED_PARTIAL_DELIVERIES:
            self._partial.popitem(last=False)

    def _cancel_disclosures(self, job: _Job) -> None:
        """An `undelivered` entry for each failed delivery whose `disclose` entry the audit already holds."""
        disclosed = {e.get("recipient"): e for e in job.plan.audit_entries if e.get("operation") == "disclose"}
        now = router.iso(self.ctx.clock())
        for recipient, reason in job.failed:
            if recipient in disclosed:
                self._undelivered.append(audit.undelivered_entry(disclosed[recipient], reason, self.ctx.actor, now))
                self.metrics.child(self.metrics.undelivered, recipient, reason).inc()
        self._write_undelivered()

    def _write_undelivered(self) -> None:
        """Publish the owed `undelivered` entries; those not confirmed wait for the next attempt."""
        entries, self._undelivered = self._undelivered, []
        if not entries:
            return

        def confirmed(ok: bool, why: str) -> None:
            if not ok:
                self.log.warning("undelivered_entries_not_written", entries=len(entries), reason=why)
                self._undelivered[:0] = entries
                self.transport.call_later(1.0, self._write_undelivered)

        self._publish(audit_message(entries), confirmed)

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
            self.log.warning(
                "worker_paused_for_audit_lag",
                audit_lag_seconds=round(seconds, 1),
                bound_seconds=self.lag.bound,
                audit_queue_messages=self.lag.queued,
                note="no new record is decided until the audit writer catches up",
            )
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
        if plan.outcome == Outcome.REJECTED:
            m.child(m.rejected, plan.reason or RejectReason.INTERNAL_ERROR).inc()
            m.child(m.dead_lettered, plan.reason or RejectReason.INTERNAL_ERROR).inc()
            if plan.error_type:
                m.child(m.internal_errors, plan.error_type).inc()
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


def _failure_code(why: str) -> str:
    """A bounded reason code for a failed publish (the transport's text names vhosts and frames)."""
    text = why.lower()
    for needle, code in (
        ("unroutable", "returned"),
        ("nack", "nacked"),
        ("no confirm", "confirm_timeout"),
        ("raised", "publish_error"),
        ("not ready", "connection_lost"),
        ("closed", "connection_lost"),
        ("nothing heard", "connection_lost"),
        ("cannot connect", "connection_lost"),
    ):
        if needle in text:
            return code
    return "publish_failed"


def _seconds_since(timestamp: str) -> float | None:
    try:
        then = dt.datetime.fromisoformat(timestamp.replace("Z", "+00:00"))
    except ValueError:
        return None
    return max(0.0, (dt.datetime.now(dt.UTC) - then).total_seconds())

"""The enquiry gateway: the HTTP API (FastAPI) officers' devices call, fanning out over RabbitMQ.

`POST /v1/enquiries` (step one: hit/no-hit per force and record type), `GET /v1/enquiries/{id}` (the
answers as they arrive; hits once the consultation is audited), `POST /v1/enquiries/{id}/details` (step
two: the chosen hits' fields, purpose restated), `/openapi.json`, `/metrics`, `/healthz`, `/readyz`, and the
officer's page at `/`.  Every step is audited (broker.enquiry.consult) before its answer is shown; when the
audit cannot be written the answer is withheld (503).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import datetime as dt
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import structlog
from fastapi import FastAPI, Header, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from pydantic import BaseModel, Field

from broker.config import Agency
from broker.enquiry import consult, model
from broker.enquiry.agreements import Ask, EnquiryAgreement, plan, project_details, rate_limits
from broker.enquiry.identity import Verifier
from broker.enquiry.limits import RateLimiter
from broker.enquiry.model import EnquiryRefused, Identity, Subject
from broker.enquiry.review import Usage, unusual_officers
from broker.enquiry.transport import ForceLink, Unavailable
from broker.errors import TransportError

log = structlog.get_logger("interchange.enquiry.gateway")
PAGE = Path(__file__).with_name("page.html")
MAX_KEPT = 10_000  # enquiries kept in memory for GET and step two (oldest dropped first)
STATUS_CODES = {
    model.NO_IDENTITY: 401,
    model.BAD_TOKEN: 401,
    model.TOKEN_EXPIRED: 401,
    model.NO_PURPOSE: 400,
    model.NO_JUSTIFICATION: 400,
    model.BAD_SUBJECT: 400,
    model.NO_ENQUIRY_AGREEMENT: 403,
    model.PURPOSE_NOT_PERMITTED: 403,
    model.RATE_LIMITED: 429,
    model.UNKNOWN_HIT: 400,
}
STEP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 2.5, 5, 10)


class SubjectIn(BaseModel):
    """Exactly one of: pnc; family + given + birth_date; vrm; postcode + house."""

    pnc: str | None = Field(None, max_length=32)
    family: str | None = Field(None, max_length=100)
    given: str | None = Field(None, max_length=100)
    birth_date: str | None = Field(None, max_length=10)
    vrm: str | None = Field(None, max_length=16)
    postcode: str | None = Field(None, max_length=10)
    house: str | None = Field(None, max_length=100)


class EnquiryIn(BaseModel):
    subject: SubjectIn
    purpose: str | None = Field(None, description="one of " + ", ".join(model.PURPOSES))
    justification: str | None = Field(None, max_length=500, description="why, in the officer's words")


class HitChoice(BaseModel):
    force: str
    record_type: str


class DetailsIn(BaseModel):
    hits: list[HitChoice]
    purpose: str | None = None
    justification: str | None = Field(None, max_length=500)


@dataclass
class Enquiry:
    """One officer's enquiry as the gateway keeps it between steps."""

    id: str
    identity: Identity
    purpose: str
    justification: str
    subject: Subject
    asks: list[Ask]
    statuses: dict[str, str] = field(default_factory=dict)
    hits: dict[str, dict[str, int]] = field(default_factory=dict)
    audited: bool = False
    done: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None  # step one running (kept referenced so it is not collected)

    def view(self) -> dict[str, Any]:
        """The enquiry as the officer sees it: each force's status and, once audited, its hits."""
        forces = []
        for ask in self.asks:
            status = self.statuses.get(ask.force, model.PENDING)
            hits = self.hits.get(ask.force) if self.audited else None
            forces.append(
                {
                    "force": ask.force,
                    "status": status,
                    "hits": [{"record_type": t, "count": n} for t, n in sorted((hits or {}).items())]
                    if hits is not None
                    else None,
                }
            )
        return {
            "id": self.id,
            "status": "complete" if self.audited else "pending",
            "purpose": self.purpose,
            "subject_kind": self.subject.kind(),
            "forces": forces,
        }


class Metrics:
    """The gateway's Prometheus metrics."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.steps = Counter(
            "interchange_enquiry_steps_total",
            "Enquiry steps by step and outcome",
            ["step", "outcome"],
            registry=registry,
        )
        self.refusals = Counter(
            "interchange_enquiry_refusals_total", "Enquiries refused, by reason", ["reason"], registry=registry
        )
        self.replies = Counter(
            "interchange_enquiry_force_replies_total",
            "Per-force outcome of each step",
            ["force", "status"],
            registry=registry,
        )
        self.late = Counter(
            "interchange_enquiry_late_replies_total",
            "Replies after their deadline (dropped)",
            ["force"],
            registry=registry,
        )
        self.seconds = Histogram(
            "interchange_enquiry_step_seconds",
            "Time to answer one step",
            ["step"],
            buckets=STEP_BUCKETS,
            registry=registry,
        )
        self.audit_seconds = Histogram(
            "interchange_enquiry_audit_seconds",
            "Time for a consultation entry to be confirmed on the audit queue",
            buckets=STEP_BUCKETS,
            registry=registry,
        )
        self.fan_out_seconds = Histogram(
            "interchange_enquiry_fan_out_seconds",
            "Time from asking the forces to the last one settling",
            ["step"],
            buckets=STEP_BUCKETS,
            registry=registry,
        )
        self.unusual = Gauge(
            "interchange_enquiry_unusual_officers",
            "Officers whose use stands out from their "
            "peers' in the last window (audit consultations --unusual names them)",
            ["signal"],
            registry=registry,
        )
        for reason in model.REASONS:
            self.refusals.labels(reason)
        for step in ("hits", "details"):
            self.seconds.labels(step)
            for outcome in ("answered", "refused", "audit_failed"):
                self.steps.labels(step, outcome)
        for signal in ("rate", "purpose_refusals"):
            self.unusual.labels(signal)


@dataclass
class GatewayConfig:
    """What the gateway needs besides settings: token verifier, agreements, agencies, audit sink and deadline."""

    verifier: Verifier
    agreements: list[EnquiryAgreement]
    agencies: dict[str, Agency]
    audit: Callable[[list[dict[str, Any]]], None]  # blocking (or an AuditSink); raises TransportError
    deadline_seconds: float = 2.0
    usage_window_seconds: float = 3600.0


class Gateway:
    """The enquiry state and the fan-out; `create_app` puts HTTP in front of it."""

    def __init__(self, settings: Any, config: GatewayConfig, registry: CollectorRegistry | None = None) -> None:
        self.settings, self.config = settings, config
        self.metrics = Metrics(registry or CollectorRegistry())
        self.links: dict[str, ForceLink] = {}
        self.enquiries: dict[str, Enquiry] = {}
        self.limiter = RateLimiter()
        self.usage: dict[str, Usage] = {}
        self.usage_since = time.monotonic()

    def close(self) -> None:
        """Close every force link."""
        for link in self.links.values():
            link.close()

    def link(self, force: str) -> ForceLink:
        """The request/reply link to a force (opened on first use)."""
        if force not in self.links:
            self.links[force] = ForceLink(self.settings, force, on_late=lambda f: self.metrics.late.labels(f).inc())
        return self.links[force]

    # ---- refusals and audit
    async def audit(self, entries: list[dict[str, Any]]) -> None:
        """Returns once the entries are confirmed on the audit queue; raises TransportError otherwise."""
        submit = getattr(self.config.audit, "submit", None)
        with self.metrics.audit_seconds.time():
            if submit is None:
                await asyncio.to_thread(self.config.audit, entries)
                return
            try:
                await asyncio.wait_for(asyncio.wrap_future(submit(entries)), 10.0)
            except TimeoutError as exc:
                raise TransportError("the audit entry was not confirmed in time, so the answer is withheld") from exc

    async def refuse(
        self,
        refused: EnquiryRefused,
        identity: Identity | None,
        step: str,
        purpose: str | None,
        justification: str | None,
        subject_keys: list[str],
        enquiry_id: str | None = None,
    ) -> None:
        """Count, log and (when the officer is known) audit a refusal."""
        self.metrics.refusals.labels(refused.reason).inc()
        self.metrics.steps.labels(step, "refused").inc()
        log.info("enquiry_refused", reason=refused.reason, step=step, force=identity.force if identity else None)
        if identity is not None:
            self._count(identity.officer, refused.reason == model.PURPOSE_NOT_PERMITTED)
            try:
                await self.audit(
                    [consult.refusal(identity, step, refused.reason, purpose, justification, subject_keys, enquiry_id)]
                )
            except TransportError as exc:
                log.error("enquiry_refusal_not_audited", reason=refused.reason, error=str(exc)[:200])

    def _count(self, officer: str, purpose_refused: bool) -> None:
        if time.monotonic() - self.usage_since > self.config.usage_window_seconds:
            self.usage, self.usage_since = {}, time.monotonic()
        use = self.usage.get(officer, Usage())
        self.usage[officer] = Usage(use.enquiries + (not purpose_refused), use.purpose_refusals + purpose_refused)

    def refresh_unusual(self) -> None:
        """Update the gauge of officers whose use stands out."""
        found = unusual_officers(self.usage)
        for signal in ("rate", "purpose_refusals"):
            self.metrics.unusual.labels(signal).set(sum(signal in s for s in found.values()))

    # ---- the steps
    def check(self, identity: Identity, purpose: str | None, justification: str | None) -> list[Ask]:
        """The asks an officer may make for a purpose and justification; EnquiryRefused otherwise."""
        if not purpose or purpose not in model.PURPOSES:
            raise EnquiryRefused(
                model.NO_PURPOSE, "state a purpose from the list: " + ", ".join(model.PURPOSES), "purpose"
            )
        if not justification or not justification.strip():
            raise EnquiryRefused(model.NO_JUSTIFICATION, "give a short justification", "justification")
        today = dt.datetime.now(dt.UTC).date()
        asks = plan(identity, purpose, self.config.agreements, self.config.agencies, today)
        over = self.limiter.admit(identity.officer, rate_limits(asks), time.monotonic())
        if over:
            raise EnquiryRefused(model.RATE_LIMITED, f"too many enquiries under {over}: wait and try again")
        return asks

    async def fan_out(self, requests: dict[str, dict[str, Any]], statuses: dict[str, str]) -> dict[str, dict[str, Any]]:
        """Ask each force; every force settles by the deadline as answered, timeout or unavailable."""
        deadline = time.time() + self.config.deadline_seconds
        asked: dict[str, tuple[str, concurrent.futures.Future[dict[str, Any]]]] = {}
        for force, request in requests.items():
            statuses[force] = model.PENDING
            asked[force] = self.link(force).ask(orjson.dumps(dict(request, deadline=deadline)), deadline)
        replies: dict[str, dict[str, Any]] = {}

        async def settle(force: str) -> None:
            correlation, future = asked[force]
            try:
                reply = await asyncio.wait_for(asyncio.wrap_future(future), max(0.0, deadline - time.time()))
                if reply.get("error"):
                    raise Unavailable(str(reply["error"]))
                replies[force], statuses[force] = reply, model.ANSWERED
            except TimeoutError:
                self.links[force].forget(correlation)
                statuses[force] = model.TIMEOUT
            except Unavailable as exc:
                log.info("enquiry_force_unavailable", force=force, error=str(exc)[:200])
                statuses[force] = model.UNAVAILABLE
            self.metrics.replies.labels(force, statuses[force]).inc()

        with self.metrics.fan_out_seconds.labels(str(next(iter(requests.values()), {}).get("step"))).time():
            await asyncio.gather(*(settle(f) for f in asked))
        return replies

    async def step_one(self, enquiry: Enquiry) -> None:
        """Ask every permitted force whether it holds the subject, audit, and record the answers."""
        started = time.perf_counter()
        keys = enquiry.subject.lookup_keys()
        requests = {
            a.force: {
                "enquiry_id": enquiry.id,
                "step": "hits",
                "subject_keys": keys,
                "record_types": list(a.record_types),
            }
            for a in enquiry.asks
        }
        replies = await self.fan_out(requests, enquiry.statuses)
        allowed = {a.force: set(a.record_types) for a in enquiry.asks}
        hits = {f: {t: int(n) for t, n in (r.get("hits") or {}).items() if t in allowed[f]} for f, r in replies.items()}
        used = [ag for a in enquiry.asks for ag in a.by_type.values()]
        entry = consult.consultation(
            enquiry.identity,
            enquiry.id,
            "hits",
            enquiry.purpose,
            enquiry.justification,
            enquiry.subject.audit_keys(),
            dict(enquiry.statuses),
            [a.id for a in used],
            [a.lawful_basis for a in used],
            hits=hits,
        )
        try:
            await self.audit([entry])
        except TransportError as exc:
            self.metrics.steps.labels("hits", "audit_failed").inc()
            log.error("enquiry_not_audited", step="hits", error=str(exc)[:200])
            enquiry.done.set()
            raise
        enquiry.hits, enquiry.audited = hits, True
        self.metrics.steps.labels("hits", "answered").inc()
        self.metrics.seconds.labels("hits").observe(time.perf_counter() - started)
        enquiry.done.set()

    async def step_two(
        self, enquiry: Enquiry, identity: Identity, choices: list[HitChoice], purpose: str, justification: str
    ) -> dict[str, Any]:
        """Fetch the agreed fields of the chosen hits, audited before they are returned."""
        started = time.perf_counter()
        asks = {a.force: a for a in self.check(identity, purpose, justification)}
        wanted: dict[str, dict[str, str]] = {}
        for choice in choices:
            ask = asks.get(choice.force)
            if (
                ask is None
                or not enquiry.hits.get(choice.force, {}).get(choice.record_type)
                or choice.record_type not in ask.by_type
            ):
                raise EnquiryRefused(
                    model.UNKNOWN_HIT,
                    f"force {choice.force} returned no {choice.record_type} hit to this enquiry",
                    "hits",
                )
            wanted.setdefault(choice.force, {})[choice.record_type] = ask.by_type[choice.record_type].id
        requests = {
            f: {
                "enquiry_id": enquiry.id,
                "step": "details",
                "subject_keys": enquiry.subject.lookup_keys(),
                "agreements": types,
            }
            for f, types in wanted.items()
        }
        statuses: dict[str, str] = {}
        replies = await self.fan_out(requests, statuses)
        forces, disclosed = [], []
        for force in sorted(wanted):
            records = []
            for record in (replies.get(force) or {}).get("records") or []:
                agreement = asks[force].by_type.get(str(record.get("type")))
                if agreement is None or record.get("type") not in wanted[force]:
                    continue  # the gateway holds the responder to what was asked
                view, paths = _project(record, agreement)
                records.append(view)
                disclosed.append(
                    {
                        "origin": force,
                        "record_id": record.get("id"),
                        "record_type": record.get("type"),
                        "agreement": agreement.id,
                        "fields_disclosed": paths,
                    }
                )
            forces.append({"force": force, "status": statuses[force], "records": records})
        used = [asks[f].by_type[t] for f, types in wanted.items() for t in types]
        entry = consult.consultation(
            identity,
            enquiry.id,
            "details",
            purpose,
            justification,
            enquiry.subject.audit_keys(),
            statuses,
            [a.id for a in used],
            [a.lawful_basis for a in used],
            records=disclosed,
        )
        try:
            await self.audit([entry])
        except TransportError:
            self.metrics.steps.labels("details", "audit_failed").inc()
            raise
        self.metrics.steps.labels("details", "answered").inc()
        self.metrics.seconds.labels("details").observe(time.perf_counter() - started)
        return {"id": enquiry.id, "step": "details", "forces": forces}

    def keep(self, enquiry: Enquiry) -> None:
        """Keep an enquiry for step two, dropping the oldest beyond the limit."""
        while len(self.enquiries) >= MAX_KEPT:
            self.enquiries.pop(next(iter(self.enquiries)))
        self.enquiries[enquiry.id] = enquiry


def _project(record: dict[str, Any], agreement: EnquiryAgreement) -> tuple[dict[str, Any], list[str]]:
    return project_details(record, agreement)


def _refusal_response(refused: EnquiryRefused) -> JSONResponse:
    return JSONResponse(
        {"error": refused.reason, "message": refused.message, "field": refused.field or None},
        status_code=STATUS_CODES.get(refused.reason, 400),
    )


def create_app(gateway: Gateway) -> FastAPI:
    """The HTTP API over a Gateway."""
    app = FastAPI(
        title="Interchange cross-force enquiry",
        version="1.0",
        description="Ask every force at once (two steps, as Prüm); every consultation is audited.",
    )
    verifier = gateway.config.verifier

    def who(authorization: str | None) -> Identity:
        return verifier.identity(authorization)

    @app.post("/v1/enquiries", status_code=200)
    async def create(body: EnquiryIn, wait: bool = True, authorization: str | None = Header(None)) -> Response:
        """Step one: hit / no-hit per force and record type. `wait=false` answers at once (poll GET)."""
        identity, keys = None, []
        try:
            identity = who(authorization)
            subject = Subject.from_doc(body.subject.model_dump())
            keys = subject.audit_keys()
            asks = gateway.check(identity, body.purpose, body.justification)
        except EnquiryRefused as refused:
            if refused.reason in (model.NO_IDENTITY, model.BAD_TOKEN, model.TOKEN_EXPIRED):
                identity = None
            await gateway.refuse(refused, identity, "hits", body.purpose, body.justification, keys)
            return _refusal_response(refused)
        gateway._count(identity.officer, False)
        enquiry = Enquiry(uuid.uuid4().hex, identity, body.purpose or "", body.justification or "", subject, asks)
        gateway.keep(enquiry)
        task = enquiry.task = asyncio.create_task(gateway.step_one(enquiry))
        if not wait:
            return JSONResponse(enquiry.view(), status_code=202)
        try:
            await task
        except TransportError:
            return JSONResponse(
                {
                    "error": "audit_unavailable",
                    "message": "the consultation could not be audited, so no answer is shown",
                },
                status_code=503,
            )
        return JSONResponse(enquiry.view())

    @app.get("/v1/enquiries/{enquiry_id}")
    async def read(enquiry_id: str, authorization: str | None = Header(None)) -> Response:
        """The enquiry's state: each force's status as it arrives; the hits once audited."""
        try:
            identity = who(authorization)
        except EnquiryRefused as refused:
            await gateway.refuse(refused, None, "read", None, None, [])
            return _refusal_response(refused)
        enquiry = gateway.enquiries.get(enquiry_id)
        if enquiry is None or enquiry.identity.officer != identity.officer:
            return JSONResponse({"error": "not_found", "message": "no such enquiry of yours"}, status_code=404)
        return JSONResponse(enquiry.view())

    @app.post("/v1/enquiries/{enquiry_id}/details")
    async def details(enquiry_id: str, body: DetailsIn, authorization: str | None = Header(None)) -> Response:
        """Step two: the agreed fields of the chosen hits, with the purpose restated."""
        identity = None
        enquiry = None
        try:
            identity = who(authorization)
            enquiry = gateway.enquiries.get(enquiry_id)
            if enquiry is None or enquiry.identity.officer != identity.officer:
                return JSONResponse({"error": "not_found", "message": "no such enquiry of yours"}, status_code=404)
            await enquiry.done.wait()
            return JSONResponse(
                await gateway.step_two(enquiry, identity, body.hits, body.purpose or "", body.justification or "")
            )
        except EnquiryRefused as refused:
            if refused.reason in (model.NO_IDENTITY, model.BAD_TOKEN, model.TOKEN_EXPIRED):
                identity = None
            keys = enquiry.subject.audit_keys() if enquiry else []
            await gateway.refuse(refused, identity, "details", body.purpose, body.justification, keys, enquiry_id)
            return _refusal_response(refused)
        except TransportError:
            return JSONResponse(
                {
                    "error": "audit_unavailable",
                    "message": "the consultation could not be audited, so no answer is shown",
                },
                status_code=503,
            )

    @app.get("/metrics", include_in_schema=False)
    async def metrics() -> Response:
        gateway.refresh_unusual()
        return Response(generate_latest(gateway.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> Response:
        return Response("ok\n", media_type="text/plain")

    @app.get("/readyz", include_in_schema=False)
    async def readyz() -> Response:
        ready = bool(gateway.config.agreements)
        return Response(
            "ready\n" if ready else "no enquiry agreements loaded\n",
            media_type="text/plain",
            status_code=200 if ready else 503,
        )

    @app.get("/", include_in_schema=False)
    async def page(request: Request) -> Response:
        return HTMLResponse(PAGE.read_text(encoding="utf-8"))

    return app

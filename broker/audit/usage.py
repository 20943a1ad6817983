"""Usage evidence from the audit log: what the exchange carried, for whom, and what it replaces.

    usage(entries, period, links_formats, costs) -> dict      (pure; `report usage` streams the log into it)

Every figure is a count of audit entries in the period (entry `time` in [from, to)), so each can be traced
back to the log: the report names the log's first and last sequence numbers and the head hash it read.
The report holds counts only: agency codes, recipient ids, agreement ids, record types and reason codes
(bounded configuration values), never a record id, subject key, name or identifier.

- deliveries: `disclose` entries with outcome `delivered`, less those an `undelivered` entry cancels;
  corrections and retractions are the deliveries whose record `supersedes` another (by its kind), and
  retraction notices (reason `retraction_notice`) count as retractions;
- withheld: `withhold` entries by reason; rejected: `reject` entries by reason (per providing agency);
- enquiries: step-one `consult` entries of the enquiry gateway (`channel: enquiry`) per requesting force:
  asked, answered by at least one force, refused;
- bytes: the delivered bodies' sizes (`body_bytes`, present from schema-v1.1 audit entries on);
- latency: entry time minus the record's own time (`record_time`), p50 and p95 per partner;
- integrations: each (providing agency and system, recipient, recipient format) the period used is one
  point-to-point interface the exchange stands in for, priced with the assumptions in `deploy/usage.yaml`.
"""

from __future__ import annotations

import datetime as dt
import statistics
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

Key = tuple[str, str, str, str]  # recipient, agreement, providing agency, record type
ROW_FIELDS = ("recipient", "agreement", "source", "record_type")


@dataclass(frozen=True)
class Period:
    """A reporting period, start inclusive, end exclusive."""

    start: dt.datetime
    end: dt.datetime  # exclusive

    @property
    def days(self) -> float:
        """The length of the period in days."""
        return (self.end - self.start).total_seconds() / 86400

    def holds(self, moment: dt.datetime) -> bool:
        """Whether a moment falls in the period."""
        return self.start <= moment < self.end


@dataclass(frozen=True)
class Costs:
    """The assumptions behind the money figures; every one is printed on the report."""

    interface_cost_per_year: float = 25_000.0
    core_hour_price: float = 0.05
    currency: str = "GBP"
    cpu_seconds: float | None = None  # measured (process_cpu_seconds_total); else estimated below
    cpu_us_per_record: float = 1_000.0  # the bench's worker CPU per record, when nothing is measured
    source_note: str = ""


def parse_time(text: Any) -> dt.datetime | None:
    """An audit entry's ISO 8601 time as an aware datetime, or None when absent or unreadable."""
    if not isinstance(text, str) or not text:
        return None
    try:
        moment = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)


def usage(entries: Iterable[dict[str, Any]], period: Period, formats: dict[str, str], costs: Costs) -> dict[str, Any]:
    """The whole report as plain data (JSON-ready); `formats` maps recipient -> outbound format."""
    tally = _Tally()
    for entry in entries:
        tally.add(entry, period)
    return tally.report(period, formats, costs)


class _Tally:
    def __init__(self) -> None:
        self.delivered: dict[Key, dict[str, Any]] = {}
        self.cancelled: Counter[str] = Counter()  # disclose entry ids an `undelivered` cancels
        self.withheld: Counter[tuple[Key, str]] = Counter()
        self.rejected: Counter[tuple[str, str, str]] = Counter()
        self.enquiries: Counter[tuple[str, str]] = Counter()
        self.weekly: Counter[tuple[str, str]] = Counter()
        self.latency: defaultdict[str, list[float]] = defaultdict(list)
        self.links: Counter[tuple[str, str, str]] = Counter()
        self.disclosures: dict[str, tuple[Key, str, str, int, float | None, str]] = {}
        self.read = 0
        self.first_seq: int | None = None
        self.last_seq: int | None = None
        self.head = ""

    def add(self, entry: dict[str, Any], period: Period) -> None:
        self.read += 1
        seq = entry.get("seq")
        if isinstance(seq, int):
            self.first_seq = seq if self.first_seq is None else self.first_seq
            self.last_seq = seq
        self.head = entry.get("hash", self.head) or self.head
        operation = entry.get("operation")
        if operation == "undelivered" and isinstance(entry.get("cancels"), str):
            self.cancelled[entry["cancels"]] += 1  # cancels wherever the disclose fell, in period or not
            return
        moment = parse_time(entry.get("time"))
        if moment is None or not period.holds(moment):
            return
        key: Key = (
            str(entry.get("recipient") or ""),
            str(entry.get("agreement") or ""),
            str(entry.get("source") or ""),
            str(entry.get("record_type") or ""),
        )
        if operation == "disclose" and entry.get("outcome") == "delivered":
            kind = _lineage_kind(entry)
            record_moment = parse_time(entry.get("record_time"))
            latency = (moment - record_moment).total_seconds() if record_moment else None
            system = str(entry.get("source_system") or "")
            week = moment.strftime("%G-W%V")
            self.disclosures[str(entry.get("entry_id"))] = (
                key,
                kind,
                week,
                int(entry.get("body_bytes") or 0),
                latency,
                system,
            )
        elif operation == "withhold":
            self.withheld[(key, str(entry.get("reason") or "unknown"))] += 1
        elif operation == "reject":
            self.rejected[(key[2], key[3], str(entry.get("reason") or "unknown"))] += 1
        elif operation == "consult" and entry.get("channel") == "enquiry" and entry.get("step") == "hits":
            force = str((entry.get("actor") or {}).get("organisation") or "")
            if entry.get("outcome") == "refused":
                self.enquiries[(force, "refused")] += 1
                return
            self.enquiries[(force, "asked")] += 1
            if entry.get("forces_answered"):
                self.enquiries[(force, "answered")] += 1

    def report(self, period: Period, formats: dict[str, str], costs: Costs) -> dict[str, Any]:
        rows: dict[Key, dict[str, Any]] = {}

        def row(key: Key) -> dict[str, Any]:
            return rows.setdefault(
                key,
                dict(zip(ROW_FIELDS, key, strict=True))
                | {
                    "delivered": 0,
                    "corrections": 0,
                    "retractions": 0,
                    "bytes_delivered": 0,
                    "withheld": 0,
                    "withheld_by_reason": {},
                },
            )

        latencies: defaultdict[str, list[float]] = defaultdict(list)
        weekly: Counter[tuple[str, str]] = Counter()
        links: Counter[tuple[str, str, str, str]] = Counter()
        for entry_id, (key, kind, week, size, latency, system) in self.disclosures.items():
            if self.cancelled.get(entry_id):
                continue
            r = row(key)
            r["delivered"] += 1
            r["bytes_delivered"] += size
            if kind == "correction":
                r["corrections"] += 1
            elif kind == "retraction":
                r["retractions"] += 1
            weekly[(key[0], week)] += 1
            if latency is not None:
                latencies[key[0]].append(latency)
            links[(key[2], system, key[0], formats.get(key[0], "common-json"))] += 1
        for (key, reason), n in self.withheld.items():
            r = row(key)
            r["withheld"] += n
            r["withheld_by_reason"][reason] = r["withheld_by_reason"].get(reason, 0) + n
        delivered = sum(r["delivered"] for r in rows.values())
        return {
            "period": {
                "from": period.start.isoformat(),
                "to": period.end.isoformat(),
                "days": round(period.days, 3),
                "last_day": (period.end - dt.timedelta(microseconds=1)).date().isoformat(),
            },
            "source": {
                "audit_entries_read": self.read,
                "first_seq": self.first_seq,
                "last_seq": self.last_seq,
                "head_hash": self.head,
            },
            "totals": {
                "delivered": delivered,
                "corrections": sum(r["corrections"] for r in rows.values()),
                "retractions": sum(r["retractions"] for r in rows.values()),
                "withheld": sum(self.withheld.values()),
                "rejected": sum(self.rejected.values()),
                "bytes_delivered": sum(r["bytes_delivered"] for r in rows.values()),
                "enquiries_asked": sum(n for (_f, what), n in self.enquiries.items() if what == "asked"),
                "enquiries_answered": sum(n for (_f, what), n in self.enquiries.items() if what == "answered"),
            },
            "flows": [rows[k] for k in sorted(rows)],
            "withheld_by_reason": _by_reason((reason, n) for (_k, reason), n in self.withheld.items()),
            "rejected": [
                {"source": s, "record_type": t, "reason": reason, "rejected": n}
                for (s, t, reason), n in sorted(self.rejected.items())
            ],
            "rejected_by_reason": _by_reason((reason, n) for (_s, _t, reason), n in self.rejected.items()),
            "enquiries": [{"force": f, "what": what, "count": n} for (f, what), n in sorted(self.enquiries.items())],
            "latency_seconds": {recipient: _quantiles(values) for recipient, values in sorted(latencies.items())},
            "weekly_deliveries": [{"recipient": r, "week": w, "delivered": n} for (r, w), n in sorted(weekly.items())],
            "integrations": _integrations(links, delivered, period, costs),
        }


def _lineage_kind(entry: dict[str, Any]) -> str:
    if entry.get("reason") == "retraction_notice":
        return "retraction"
    supersedes = entry.get("supersedes")
    if isinstance(supersedes, dict) and supersedes.get("id"):
        return "retraction" if supersedes.get("kind") == "retraction" else "correction"
    return "new"


def _by_reason(pairs: Iterable[tuple[str, int]]) -> dict[str, int]:
    out: Counter[str] = Counter()
    for reason, n in pairs:
        out[reason] += n
    return dict(sorted(out.items()))


def _quantiles(values: list[float]) -> dict[str, float]:
    values = sorted(values)
    if len(values) == 1:
        return {"count": 1, "p50": round(values[0], 3), "p95": round(values[0], 3)}
    cuts = statistics.quantiles(values, n=20, method="inclusive")
    return {"count": len(values), "p50": round(statistics.median(values), 3), "p95": round(cuts[18], 3)}


def _integrations(
    links: Counter[tuple[str, str, str, str]], delivered: int, period: Period, costs: Costs
) -> dict[str, Any]:
    years = period.days / 365.25 if period.days > 0 else 0.0
    if costs.cpu_seconds is not None:
        cpu_seconds, cpu_basis = costs.cpu_seconds, "measured: process_cpu_seconds_total over the period"
    else:
        cpu_seconds = delivered * costs.cpu_us_per_record / 1e6
        cpu_basis = f"estimated: {costs.cpu_us_per_record:g} µs of worker CPU per delivery (make bench)"
    running = cpu_seconds / 3600 * costs.core_hour_price
    interfaces = len(links)
    return {
        "links": [
            {"source": s, "source_system": system, "recipient": r, "format": f, "deliveries": n}
            for (s, system, r, f), n in sorted(links.items())
        ],
        "interfaces_replaced": interfaces,
        "assumptions": {
            "interface_cost_per_year": costs.interface_cost_per_year,
            "core_hour_price": costs.core_hour_price,
            "currency": costs.currency,
            "cpu_basis": cpu_basis,
            "note": costs.source_note,
        },
        "point_to_point_cost_per_year": round(interfaces * costs.interface_cost_per_year, 2),
        "exchange_cpu_seconds": round(cpu_seconds, 3),
        "exchange_running_cost_in_period": round(running, 4),
        "exchange_running_cost_per_year": round(running / years, 2) if years else None,
    }


FLAT_COLUMNS = ("section", "recipient", "agreement", "source", "record_type", "reason", "metric", "value")


def flat_rows(report: dict[str, Any]) -> list[dict[str, Any]]:
    """The report as one table (the CSV): every number with the keys it belongs to."""
    out: list[dict[str, Any]] = []

    def add(section: str, metric: str, value: Any, **keys: str) -> None:
        out.append({c: "" for c in FLAT_COLUMNS} | keys | {"section": section, "metric": metric, "value": value})

    for metric, value in report["totals"].items():
        add("totals", metric, value)
    for flow in report["flows"]:
        keys = {k: flow[k] for k in ROW_FIELDS}
        for metric in ("delivered", "corrections", "retractions", "bytes_delivered", "withheld"):
            add("flow", metric, flow[metric], **keys)
        for reason, n in sorted(flow["withheld_by_reason"].items()):
            add("flow", "withheld", n, reason=reason, **keys)
    for rejected in report["rejected"]:
        add(
            "rejected",
            "rejected",
            rejected["rejected"],
            source=rejected["source"],
            record_type=rejected["record_type"],
            reason=rejected["reason"],
        )
    for recipient, q in report["latency_seconds"].items():
        for metric in ("p50", "p95"):
            add("latency", f"{metric}_seconds", q[metric], recipient=recipient)
    for enquiry in report["enquiries"]:
        add("enquiries", f"enquiries_{enquiry['what']}", enquiry["count"], source=enquiry["force"])
    integrations = report["integrations"]
    for metric in (
        "interfaces_replaced",
        "point_to_point_cost_per_year",
        "exchange_cpu_seconds",
        "exchange_running_cost_per_year",
    ):
        add("integrations", metric, integrations[metric])
    return out

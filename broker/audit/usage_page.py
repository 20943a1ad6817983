"""The usage report as one self-contained HTML page, charts drawn by matplotlib as inline SVG.

No script, no external resource: the page opens from a file or an e-mail attachment, and every value is
escaped.  The charts show what a reader would rather look at than read (deliveries per partner per week,
withheld by reason, latency per partner); the tables below them carry the same numbers as the CSV.
"""

from __future__ import annotations

import html
import io
from typing import Any

import matplotlib

matplotlib.use("svg")  # no display, no GUI toolkit
import matplotlib.pyplot as plt  # noqa: E402

STYLE = """
body{font-family:system-ui,sans-serif;margin:2rem;max-width:1100px;color:#1b1b1b}
h1{font-size:1.6rem}h2{font-size:1.2rem;margin-top:2rem;border-bottom:1px solid #ccc}
table{border-collapse:collapse;margin:.5rem 0;font-size:.85rem;display:block;overflow-x:auto}
td,th{border:1px solid #ccc;padding:.25rem .5rem;text-align:left}td.n{text-align:right}
.cards{display:flex;gap:1rem;flex-wrap:wrap}.card{border:1px solid #ccc;padding:.75rem 1rem;border-radius:6px}
.card b{display:block;font-size:1.4rem}.note{color:#555;font-size:.9rem}figure{margin:1rem 0}
"""


def render(report: dict[str, Any]) -> str:
    """The whole page."""
    e = html.escape
    period = report["period"]
    totals = report["totals"]
    integrations = report["integrations"]
    parts = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
        "<meta name='viewport' content='width=device-width, initial-scale=1'>",
        f"<title>Interchange usage {e(period['from'][:10])} to {e(period['last_day'])}</title>",
        f"<style>{STYLE}</style></head><body>",
        f"<h1>Interchange usage, {e(period['from'][:10])} to {e(period['last_day'])}</h1>",
        "<p class='note'>Counts of audit entries in the period; no record, person or identifier appears here. "
        f"Read {report['source']['audit_entries_read']:,} audit entries, sequence "
        f"{e(str(report['source']['first_seq']))} to {e(str(report['source']['last_seq']))}, head hash "
        f"<code>{e(str(report['source']['head_hash'])[:16])}…</code>.</p>",
        "<div class='cards'>",
        *(
            f"<div class='card'><b>{totals[k]:,}</b>{e(label)}</div>"
            for k, label in (
                ("delivered", "records delivered"),
                ("withheld", "decisions withheld"),
                ("rejected", "records rejected"),
                ("corrections", "corrections sent"),
                ("retractions", "retractions sent"),
                ("enquiries_asked", "enquiries asked"),
            )
        ),
        f"<div class='card'><b>{integrations['interfaces_replaced']:,}</b>point-to-point interfaces replaced</div>",
        "</div>",
        "<h2>Deliveries per partner per week</h2>",
        _figure(_weekly_chart(report), "deliveries per partner per week"),
        "<h2>Withheld, by reason</h2>",
        _figure(_reason_chart(report["withheld_by_reason"]), "withheld by reason"),
        "<h2>Latency from record time to delivery</h2>",
        _figure(_latency_chart(report), "latency per partner"),
        "<h2>Integrations the exchange stands in for</h2>",
        _integrations(integrations),
        "<h2>Flows</h2>",
        _flows(report["flows"]),
        "<h2>Rejected at ingress</h2>",
        _table(
            ("providing agency", "record type", "reason", "rejected"),
            [(r["source"], r["record_type"], r["reason"], r["rejected"]) for r in report["rejected"]],
        ),
        "</body></html>",
    ]
    return "".join(parts)


def _figure(svg: str | None, caption: str) -> str:
    if svg is None:
        return "<p class='note'>Nothing in this period.</p>"
    return f"<figure role='img' aria-label='{html.escape(caption)}'>{svg}</figure>"


def _svg(fig: Any) -> str:
    buffer = io.StringIO()
    fig.savefig(buffer, format="svg", bbox_inches="tight")
    plt.close(fig)
    text = buffer.getvalue()
    return text[text.index("<svg") :]  # drop the XML declaration and DOCTYPE: inline SVG in HTML


def _weekly_chart(report: dict[str, Any]) -> str | None:
    rows = report["weekly_deliveries"]
    if not rows:
        return None
    weeks = sorted({r["week"] for r in rows})
    partners = sorted({r["recipient"] for r in rows})
    counts = {(r["recipient"], r["week"]): r["delivered"] for r in rows}
    fig, ax = plt.subplots(figsize=(9, 3.6))
    bottom = [0] * len(weeks)
    for partner in partners:
        values = [counts.get((partner, w), 0) for w in weeks]
        ax.bar(weeks, values, bottom=bottom, label=partner)
        bottom = [b + v for b, v in zip(bottom, values, strict=True)]
    ax.set_ylabel("records delivered")
    ax.legend(fontsize="small", ncol=2, loc="upper left", bbox_to_anchor=(1.01, 1))
    return _svg(fig)


def _reason_chart(by_reason: dict[str, int]) -> str | None:
    if not by_reason:
        return None
    items = sorted(by_reason.items(), key=lambda kv: kv[1])
    fig, ax = plt.subplots(figsize=(9, 0.4 * len(items) + 1))
    ax.barh([k for k, _v in items], [v for _k, v in items], color="#b35c00")
    ax.set_xlabel("decisions withheld")
    return _svg(fig)


def _latency_chart(report: dict[str, Any]) -> str | None:
    latency = report["latency_seconds"]
    if not latency:
        return None
    partners = list(latency)
    fig, ax = plt.subplots(figsize=(9, 0.45 * len(partners) + 1))
    ax.barh(partners, [latency[p]["p95"] for p in partners], color="#9ec5e8", label="p95")
    ax.barh(partners, [latency[p]["p50"] for p in partners], color="#1f5f99", label="p50")
    ax.set_xlabel("seconds from the record's time to its delivery")
    ax.legend(fontsize="small")
    return _svg(fig)


def _integrations(integrations: dict[str, Any]) -> str:
    a = integrations["assumptions"]
    e = html.escape
    money = a["currency"]
    per_year = integrations["exchange_running_cost_per_year"]
    return "".join(
        [
            f"<p>{integrations['interfaces_replaced']:,} links served (providing agency and system × recipient × "
            f"format). Built point to point, each would be an interface of its own: "
            f"<b>{money} {integrations['point_to_point_cost_per_year']:,.0f} a year</b> at {money} "
            f"{a['interface_cost_per_year']:,.0f} per interface per year. The exchange used "
            f"{integrations['exchange_cpu_seconds']:,.1f} CPU seconds in the period ({e(a['cpu_basis'])}), "
            f"{money} {integrations['exchange_running_cost_in_period']:,.2f} at {money} {a['core_hour_price']:g} per "
            f"core-hour" + (f", about {money} {per_year:,.2f} a year." if per_year is not None else ".") + "</p>",
            f"<p class='note'>Assumptions: {e(a['note'])}</p>" if a.get("note") else "",
            _table(
                ("providing agency", "system", "recipient", "format", "deliveries"),
                [
                    (x["source"], x["source_system"], x["recipient"], x["format"], x["deliveries"])
                    for x in integrations["links"]
                ],
            ),
        ]
    )


def _flows(flows: list[dict[str, Any]]) -> str:
    return _table(
        (
            "recipient",
            "agreement",
            "providing agency",
            "record type",
            "delivered",
            "corrections",
            "retractions",
            "bytes",
            "withheld",
            "withheld by reason",
        ),
        [
            (
                f["recipient"],
                f["agreement"],
                f["source"],
                f["record_type"],
                f["delivered"],
                f["corrections"],
                f["retractions"],
                f["bytes_delivered"],
                f["withheld"],
                ", ".join(f"{k} {v}" for k, v in sorted(f["withheld_by_reason"].items())),
            )
            for f in flows
        ],
    )


def _table(headings: tuple[str, ...], rows: list[tuple[Any, ...]]) -> str:
    if not rows:
        return "<p class='note'>None in this period.</p>"
    e = html.escape
    head = "".join(f"<th>{e(h)}</th>" for h in headings)
    body = "".join(
        "<tr>"
        + "".join(f"<td class='n'>{v:,}</td>" if isinstance(v, int) else f"<td>{e(str(v))}</td>" for v in row)
        + "</tr>"
        for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"

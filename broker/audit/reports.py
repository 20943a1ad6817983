"""Subject disclosure reports and audit queries: everything disclosed about one person.

The audit holds no payloads, so a person is found by the keyed hashes of their identifiers
(`subject_keys`, see broker.audit.entries) and a disclosure is described by its entry: when, to whom, under
which agreement and lawful basis, for which purposes, and which fields (`fields_disclosed`).  Disclosures
of a record under a live covert hold — placed on it or on any record of its lineage (the original it corrects,
its corrections) — are left out of the subject-facing report until the hold is released; disclosures whose
delivery did not take place (cancelled by an `undelivered` entry) are not reported.
Rendering (table, CSV, JSON, HTML) is pure; every value is escaped in HTML.
"""

from __future__ import annotations

import csv
import html
import io
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import orjson

from broker.audit.entries import name_reference, subject_key
from broker.audit.index import held_key

COLUMNS = (
    "time",
    "operation",
    "outcome",
    "reason",
    "recipient",
    "agreement",
    "lawful_basis",
    "purposes",
    "record_id",
    "record_type",
    "classification",
    "fields_disclosed",
    "held",
)


@dataclass(frozen=True)
class Subject:
    """How the person is named on the command line (never written anywhere in clear)."""

    pnc: str | None = None
    cro: str | None = None
    nhs: str | None = None
    name: str | None = None  # "Family, Given"
    dob: str | None = None

    def keys(self, key: bytes | None = None) -> list[str]:
        """The subject's search keys (keyed hashes of PNC, CRO, NHS number, name with birth date)."""
        keys = [
            subject_key(scheme, value, key)
            for scheme, value in (("pnc", self.pnc), ("cro", self.cro), ("nhs", self.nhs))
            if value
        ]
        if self.name:
            family, _, given = self.name.partition(",")
            if not given.strip() or not self.dob:
                raise ValueError('--name needs the form "Family, Given" and --dob YYYY-MM-DD')
            keys.append(subject_key("name", name_reference(family, given, self.dob), key))
        return keys

    def label(self) -> str:
        """What the report calls the subject: the schemes searched, never the values."""
        parts = [s.upper() for s in ("pnc", "cro", "nhs") if getattr(self, s)]
        return " + ".join(parts + (["name and date of birth"] if self.name else [])) or "no subject"


def rows(entries: Iterable[dict[str, Any]], live_holds: dict[str, list[str]]) -> list[dict[str, Any]]:
    """One flat row per entry (lists joined), with `held` naming the live holds on its record (by id, or
    through its lineage by origin and id: `broker.audit.index.live_holds`)."""
    out = []
    for entry in entries:
        row = {c: entry.get(c) for c in COLUMNS}
        row["purposes"] = ", ".join(entry.get("purposes") or [])
        row["fields_disclosed"] = ", ".join(entry.get("fields_disclosed") or [])
        records = [(entry.get("source") or entry.get("origin"), entry.get("record_id") or "")] + [
            (r.get("origin"), str(r.get("record_id"))) for r in _records_of(entry)
        ]
        held = {h for o, r in records for h in live_holds.get(r, []) + live_holds.get(held_key(str(o), r), [])}
        row["held"] = ", ".join(sorted(held))
        if _is_enquiry(entry):  # a cross-force enquiry: the records it disclosed stand for the record
            row["record_id"] = ", ".join(f"{r.get('origin')}/{r.get('record_id')}" for r in _records_of(entry))
            row["record_type"] = "cross-force enquiry (" + str(entry.get("step")) + ")"
        out.append(row)
    return out


def _records_of(entry: dict[str, Any]) -> list[dict[str, Any]]:
    return [r for r in entry.get("records") or [] if isinstance(r, dict)]


def _is_enquiry(entry: dict[str, Any]) -> bool:
    return entry.get("operation") == "consult" and entry.get("channel") == "enquiry"


def subject_report(
    entries: Iterable[dict[str, Any]], live_holds: dict[str, list[str]], include_held: bool = False
) -> list[dict[str, Any]]:
    """The disclosures (delivered) about a subject, and the cross-force enquiries about them (each
    consultation, docs/ENQUIRY.md); held ones only when `include_held` (DPO view).

    A disclosure whose delivery did not take place (`cancelled_by`, see broker.audit.index) is left out, and
    so is a repeat of one already listed (same record, origin, recipient and delivered bytes).
    """
    seen: set[tuple[Any, ...]] = set()
    taken = []
    for entry in entries:
        if _is_enquiry(entry):
            if entry.get("outcome") == "consulted":
                taken.append(entry)
            continue
        if entry.get("operation") != "disclose" or entry.get("outcome") != "delivered" or entry.get("cancelled_by"):
            continue
        key = (entry.get("record_id"), entry.get("source"), entry.get("recipient"), entry.get("body_sha256"))
        if key[3] is None or key not in seen:
            seen.add(key)
            taken.append(entry)
    report = rows(taken, live_holds)
    return report if include_held else [r for r in report if not r["held"]]


def as_csv(table: list[dict[str, Any]], columns: tuple[str, ...] = COLUMNS) -> str:
    """Report rows as CSV, cells made safe against formula injection."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(columns), extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in table:
        writer.writerow({c: _csv_safe(row.get(c)) for c in columns})
    return buffer.getvalue()


def _csv_safe(value: Any) -> Any:
    """Neutralise spreadsheet formulas (a value starting =, +, -, @ is prefixed with ')."""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return "" if value is None else value


def as_json(table: list[dict[str, Any]]) -> str:
    """Report rows as NDJSON."""
    return "\n".join(orjson.dumps(row).decode() for row in table) + ("\n" if table else "")


def as_table(
    table: list[dict[str, Any]],
    columns: tuple[str, ...] = (
        "time",
        "operation",
        "outcome",
        "recipient",
        "agreement",
        "record_id",
        "reason",
        "held",
    ),
) -> str:
    """Report rows as an aligned text table."""
    cells = [[str(row.get(c) or "") for c in columns] for row in table]
    widths = [max([len(c)] + [len(r[i]) for r in cells]) for i, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)) for r in cells]
    return "\n".join(lines) + f"\n({len(table)} entries)\n"


def as_html(table: list[dict[str, Any]], subject_label: str, generated_at: str, include_held: bool = False) -> str:
    """A readable, self-contained page for a data-protection officer or a subject access response."""
    e = html.escape
    head = ("When", "To whom", "Agreement", "Lawful basis", "Purposes", "Record", "Fields disclosed")
    body = []
    for row in table:
        held = f' <strong class="held">HELD ({e(row["held"])})</strong>' if row.get("held") else ""
        fields = "".join(f"<li>{e(f)}</li>" for f in (row.get("fields_disclosed") or "").split(", ") if f)
        body.append(
            "<tr>"
            + "".join(
                f"<td>{v}</td>"
                for v in (
                    e(str(row.get("time") or "")),
                    e(str(row.get("recipient") or "")) + held,
                    e(str(row.get("agreement") or "")),
                    e(str(row.get("lawful_basis") or "")),
                    e(str(row.get("purposes") or "")),
                    e(str(row.get("record_type") or ""))
                    + "<br><code>"
                    + e(str(row.get("record_id") or ""))
                    + "</code>",
                    f"<ul>{fields}</ul>" if fields else "<em>no fields about people</em>",
                )
            )
            + "</tr>"
        )
    note = (
        (
            "This internal view includes disclosures under a covert hold (marked HELD); they must not "
            "be shown to the data subject until released."
        )
        if include_held
        else "Disclosures tied to a live investigation may be withheld from this report until it allows."
    )
    rows_html = "\n".join(body) or f'<tr><td colspan="{len(head)}">No disclosures found.</td></tr>'
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Disclosure report</title>
<style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse}}
td,th{{border:1px solid #999;padding:.3em;vertical-align:top;text-align:left}}
.held{{color:#a00}}</style></head>
<body><h1>Disclosures of personal data</h1>
<p>Subject identified by: {e(subject_label)}. Generated {e(generated_at)}. {len(table)} disclosures.</p>
<p>{e(note)}</p>
<table><thead><tr>{"".join(f"<th>{e(h)}</th>" for h in head)}</tr></thead>
<tbody>
{rows_html}
</tbody></table></body></html>
"""

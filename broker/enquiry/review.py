"""Misuse review: consultations from the audit log, and officers whose use stands out from their peers'.

Pure functions over audit entries (operation `consult`, channel `enquiry`) and per-officer counts.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

CHANNEL = "enquiry"
RATE_FACTOR = 5.0  # an officer asking more than 5x the median of their peers stands out ...
RATE_FLOOR = 20  # ... once they have made at least this many enquiries in the window
REFUSED_SHARE = 0.25  # a quarter of enquiries refused for a purpose the role may not use stands out
REFUSED_FLOOR = 4


@dataclass(frozen=True)
class Usage:
    """One officer's enquiries and purpose refusals, counted from the audit log."""

    enquiries: int = 0
    purpose_refusals: int = 0


def unusual_officers(usage: dict[str, Usage]) -> dict[str, list[str]]:
    """officer -> the signals that stand out (`rate`, `purpose_refusals`); officers within bounds are absent."""
    counts = [u.enquiries + u.purpose_refusals for u in usage.values()]
    median = statistics.median(counts) if counts else 0
    found: dict[str, list[str]] = {}
    for officer, use in usage.items():
        total = use.enquiries + use.purpose_refusals
        signals = []
        if total >= RATE_FLOOR and total > RATE_FACTOR * max(median, 1):
            signals.append("rate")
        if use.purpose_refusals >= REFUSED_FLOOR and use.purpose_refusals / max(total, 1) >= REFUSED_SHARE:
            signals.append("purpose_refusals")
        if signals:
            found[officer] = signals
    return found


def usage_from_entries(entries: Iterable[dict[str, Any]]) -> dict[str, Usage]:
    """Per-officer counts of enquiry consultations and purpose refusals in audit entries."""
    usage: dict[str, Usage] = {}
    for entry in consultations(entries):
        officer = (entry.get("actor") or {}).get("person") or "unknown"
        use = usage.get(officer, Usage())
        refused = entry.get("reason") == "purpose_not_permitted_for_role"
        usage[officer] = Usage(use.enquiries + (not refused), use.purpose_refusals + refused)
    return usage


def consultations(entries: Iterable[dict[str, Any]], officer: str | None = None) -> list[dict[str, Any]]:
    """The enquiry consultations (and refusals) among audit entries, optionally of one officer."""
    return [
        e
        for e in entries
        if e.get("operation") == "consult"
        and e.get("channel") == CHANNEL
        and (officer is None or (e.get("actor") or {}).get("person") == officer)
    ]


COLUMNS = (
    "time",
    "officer",
    "force",
    "role",
    "step",
    "outcome",
    "reason",
    "purpose",
    "justification",
    "forces_asked",
    "forces_answered",
    "forces_timed_out",
    "records",
)


def rows(entries: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """One flat row per consultation for `interchange audit consultations`."""
    out = []
    for e in entries:
        actor = e.get("actor") or {}
        out.append(
            {
                "time": e.get("time"),
                "officer": actor.get("person"),
                "force": actor.get("organisation"),
                "role": actor.get("role"),
                "step": e.get("step"),
                "outcome": e.get("outcome"),
                "reason": e.get("reason"),
                "purpose": ", ".join(e.get("purposes") or []),
                "justification": e.get("justification"),
                "forces_asked": ", ".join(e.get("forces_asked") or []),
                "forces_answered": ", ".join(e.get("forces_answered") or []),
                "forces_timed_out": ", ".join(e.get("forces_timed_out") or []),
                "records": ", ".join(f"{r.get('origin')}/{r.get('record_id')}" for r in e.get("records") or []),
            }
        )
    return out

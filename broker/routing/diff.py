"""Policy dry-run: what a proposed set of agreements would change, per recipient, on real or sample traffic.

`diff(old, new, records, at)` decides every record under both agreement sets and reports, per recipient,
the records it would newly receive or no longer receive, and the fields it would gain or lose on records
it receives under both.  Pure: it takes two Rulebooks and never touches RabbitMQ or the audit log.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from broker.routing.rules import Deliver, Rulebook


@dataclass
class RecipientChange:
    """What one recipient would gain and lose under the new agreements."""

    gained_records: list[str] = field(default_factory=list)
    lost_records: list[tuple[str, str]] = field(default_factory=list)  # (record id, new reason)
    gained_fields: dict[str, list[str]] = field(default_factory=dict)  # record id -> paths
    lost_fields: dict[str, list[str]] = field(default_factory=dict)

    def empty(self) -> bool:
        """Whether nothing changes for the recipient."""
        return not (self.gained_records or self.lost_records or self.gained_fields or self.lost_fields)


def _views(rulebook: Rulebook, record: dict[str, Any], at: dt.datetime) -> tuple[dict[str, Deliver], dict[str, str]]:
    delivered, reasons = {}, {}
    for decision in rulebook.decide(record, at):
        if isinstance(decision, Deliver):
            delivered[decision.recipient] = decision
        elif decision.recipient:
            reasons[decision.recipient] = decision.reason
    return delivered, reasons


def diff(
    old: Rulebook, new: Rulebook, records: Iterable[dict[str, Any]], at: dt.datetime
) -> dict[str, RecipientChange]:
    """recipient -> what changes for it (recipients with no change are left out)."""
    changes: dict[str, RecipientChange] = defaultdict(RecipientChange)
    for record in records:
        record_id = str(record.get("id"))
        before, _ = _views(old, record, at)
        after, why_not = _views(new, record, at)
        for recipient in sorted(set(after) - set(before)):
            changes[recipient].gained_records.append(record_id)
        for recipient in sorted(set(before) - set(after)):
            changes[recipient].lost_records.append((record_id, why_not.get(recipient, "no_agreement")))
        for recipient in sorted(set(before) & set(after)):
            was, now = set(before[recipient].projection.disclosed), set(after[recipient].projection.disclosed)
            if now - was:
                changes[recipient].gained_fields[record_id] = sorted(now - was)
            if was - now:
                changes[recipient].lost_fields[record_id] = sorted(was - now)
    return {r: c for r, c in sorted(changes.items()) if not c.empty()}


def render(changes: dict[str, RecipientChange]) -> str:
    """The changes as readable text, per recipient."""
    if not changes:
        return "no recipient would gain or lose any record or field\n"
    lines = []
    for recipient, c in changes.items():
        lines.append(f"{recipient}:")
        lines += [f"  + record {r}" for r in c.gained_records]
        lines += [f"  - record {r} ({why})" for r, why in c.lost_records]
        for r, paths in c.gained_fields.items():
            lines.append(f"  + fields on {r}: {', '.join(paths)}")
        for r, paths in c.lost_fields.items():
            lines.append(f"  - fields on {r}: {', '.join(paths)}")
    return "\n".join(lines) + "\n"


def as_dict(changes: dict[str, RecipientChange]) -> dict[str, Any]:
    """The changes as JSON-ready data, per recipient."""
    return {
        r: {
            "gained_records": c.gained_records,
            "lost_records": [{"record_id": i, "reason": w} for i, w in c.lost_records],
            "gained_fields": c.gained_fields,
            "lost_fields": c.lost_fields,
        }
        for r, c in changes.items()
    }

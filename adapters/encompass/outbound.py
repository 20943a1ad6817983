"""`safeguarding.notification` (scheme encompass) -> minimal Operation Encompass notice for a school.

Only what a school's key adult needs before the next school day: the child's name, date of birth and
school, when the incident happened and whether the child was present.  No adult identities, addresses,
identifiers or incident narrative.  `options["format"]` is "json" (default) or "text" (a short notice);
`options["school_urn"]` limits the notice to that school's pupils.  Home-educated children and children
without a school are left out (the local authority is notified instead).
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

from adapters.base import AdapterError, OutboundAdapter, Record


class EncompassAdapter(OutboundAdapter):
    name = "encompass"
    description = "safeguarding.notification -> minimal Operation Encompass school notice (JSON or plain text)"
    folder = Path(__file__).resolve().parent
    content_type = "application/json"
    record_types = ("safeguarding.notification",)

    def _render(self, record: Record, options: dict[str, Any]) -> tuple[bytes, str]:
        notice = minimal(record, options.get("school_urn"))
        if options.get("format", "json") == "text":
            return text(notice).encode("utf-8"), "text/plain; charset=utf-8"
        return json.dumps(notice, indent=2, ensure_ascii=False).encode("utf-8") + b"\n", self.content_type


def minimal(record: Record, school_urn: str | None = None) -> dict[str, Any]:
    """The notice as a dict: reference, incident time, child present, and the pupils it concerns."""
    data = record["data"]
    if data.get("scheme") != "encompass":
        raise AdapterError(
            "scheme_not_encompass",
            "only encompass notifications go to schools",
            path="data.scheme",
            record_id=record.get("id"),
        )
    persons = {p["id"]: p for p in data.get("persons") or []}
    pupils = []
    for ref in data["children"]:
        child = persons[ref]
        school = child.get("school") or {}
        if child.get("home_educated") or not school.get("urn") or school_urn not in (None, school["urn"]):
            continue
        pupils.append(
            {
                "given": child["name"].get("given") or [],
                "family": child["name"]["family"],
                "birth_date": child.get("birth_date"),
                "school_urn": school["urn"],
                "school_name": school.get("name"),
            }
        )
    if not pupils:
        raise AdapterError(
            "no_pupils",
            "no child in the notification attends the school",
            path="data.children",
            record_id=record.get("id"),
        )
    return {
        "notification": record["id"],
        "scheme": "operation-encompass",
        "incident_time": data["incident"]["time"],
        "child_present": data.get("child_present"),
        "children": pupils,
    }


def text(notice: dict[str, Any]) -> str:
    """A short plain-text notice for the key adult."""
    when = datetime.fromisoformat(notice["incident_time"].replace("Z", "+00:00")).strftime("%d/%m/%Y at %H:%M UTC")
    present = {True: "was present", False: "was not present"}.get(notice["child_present"], "may have been present")
    lines = [
        "OPERATION ENCOMPASS - OFFICIAL-SENSITIVE",
        "",
        f"Police attended a domestic abuse incident on {when}.",
        f"A child {present}. Please make sure a key adult is available to the child(ren) below.",
        "",
    ]
    for child in notice["children"]:
        name = " ".join([*child["given"], child["family"]])
        lines.append(
            f"- {name}, born {child['birth_date'] or 'unknown'}, {child['school_name'] or child['school_urn']}"
        )
    lines += [
        "",
        f"Reference: {notice['notification']}",
        "Keep this notice secure. Do not share it outside the school's safeguarding team.",
        "",
    ]
    return "\n".join(lines)

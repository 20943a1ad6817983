"""One data.police.uk stop-and-search row -> a `stop.search` record (schema v1.1).

The person searched is described, never identified: gender, age range, self-defined and officer-defined
ethnicity codes.  Every label is checked against the mapping's tables; an unknown label is refused with
`<table>_unknown`, never dropped.
"""

from __future__ import annotations

import re
from typing import Any

from adapters.base import digest, envelope, make_id, problem
from adapters.mapping import Mapping
from broker.errors import FieldError

_RANGE = re.compile(r"^(\d{1,3})\s*-\s*(\d{1,3})$")
_UNDER = re.compile(r"^under\s+(\d{1,3})$", re.IGNORECASE)
_OVER = re.compile(r"^over\s+(\d{1,3})$", re.IGNORECASE)
_CODE = re.compile(r"\(([A-Z0-9]{1,4})\)$")
FLAGS = {"true": True, "false": False}


def stop_search(
    row: dict[str, str],
    number: int,
    mapping: Mapping,
    problems: list[FieldError],
    when: str | None,
    point: tuple[float | None, float | None],
) -> dict[str, Any]:
    """The stop as a stop.search record; problems found are appended to `problems`."""
    ref = f"sas-{digest(*row.values())}-{number}"
    label(mapping, "object_of_search", row["Object of search"], "data.object_of_search", problems, optional=True)
    lat, lon = point
    data: dict[str, Any] = {
        "stop_ref": ref,
        "time": when,
        "month": (when or "")[:7],
        "kind": label(mapping, "search_type", row["Type"], "data.kind", problems),
        "operation": _operation(row, problems),
        "legislation": row["Legislation"].strip(),
        "object_of_search": row["Object of search"].strip(),
        "outcome": label(mapping, "stop_outcome", row["Outcome"], "data.outcome", problems, optional=True),
        "outcome_linked_to_object": _flag(row, "Outcome linked to object of search", problems),
        "more_than_outer_clothing_removed": _flag(row, "Removal of more than just outer clothing", problems),
        "subject": {
            "gender": label(mapping, "gender", row["Gender"], "data.subject.gender", problems, optional=True),
            "age_range": _age_range(row["Age range"], problems),
            "ethnicity": {
                "self_defined": _self_defined(row["Self-defined ethnicity"], problems),
                "officer_defined": label(
                    mapping,
                    "officer_ethnicity",
                    row["Officer-defined ethnicity"],
                    "data.subject.ethnicity.officer_defined",
                    problems,
                    optional=True,
                ),
            },
        },
        "location": {"id": "l1", "kind": "point", "point": {"lat": lat, "lon": lon}} if lat is not None else None,
    }
    record_id = make_id(mapping.agency, mapping.system, "stop", ref)
    return envelope(mapping, "stop.search", record_id, when or "1970-01-01T00:00:00Z", data)


def label(
    mapping: Mapping,
    table: str,
    text: str,
    path: str,
    problems: list[FieldError],
    *,
    optional: bool = False,
    fallback: str | None = None,
) -> str | None:
    """A published label looked up (case-insensitively) in a code table; missing or unknown is a problem."""
    if not text.strip():
        if not optional and not fallback:
            problems.append(problem(path, f"{table}_missing", f"no {table.replace('_', ' ')}"))
        return fallback
    found = mapping.code(table, text, fold_case=True)
    if found is None:
        problems.append(
            problem(path, f"{table}_unknown", f"{table.replace('_', ' ')} {text.strip()!r} is not in the mapping")
        )
    return found


def _operation(row: dict[str, str], problems: list[FieldError]) -> dict[str, Any] | None:
    part_of = _flag(row, "Part of a policing operation", problems, path="data.operation.part_of")
    name = row["Policing operation"].strip()[:2000]
    if part_of is None:
        return {"part_of": True, "name": name} if name else None
    return {"part_of": part_of, "name": name}


def _flag(row: dict[str, str], column: str, problems: list[FieldError], *, path: str = "") -> bool | None:
    text = row[column].strip().lower()
    if not text:
        return None
    if text not in FLAGS:
        message = f"{column} {row[column]!r} is not True or False"
        problems.append(problem(path or f"data.{column}", "flag_invalid", message))
    return FLAGS.get(text)


def _age_range(text: str, problems: list[FieldError]) -> dict[str, int] | None:
    """`18-24` -> {min 18, max 24}; `under 10` -> {max 9}; `over 34` -> {min 35}."""
    text = text.strip()
    if not text:
        return None
    if found := _RANGE.match(text):
        low, high = int(found[1]), int(found[2])
        if low <= high <= 200:
            return {"min": low, "max": high}
    elif found := _UNDER.match(text):
        return {"max": max(int(found[1]) - 1, 0)}
    elif found := _OVER.match(text):
        return {"min": min(int(found[1]) + 1, 200)}
    problems.append(problem("data.subject.age_range", "age_range_invalid", f"age range {text!r} is not understood"))
    return None


def _self_defined(text: str, problems: list[FieldError]) -> str | None:
    """`White - White British (W1)` -> `W1` (the 2011 census code in brackets)."""
    text = text.strip()
    if not text:
        return None
    if found := _CODE.search(text):
        return found[1]
    problems.append(
        problem(
            "data.subject.ethnicity.self_defined",
            "self_defined_ethnicity_invalid",
            f"self-defined ethnicity {text!r} carries no code in brackets",
        )
    )
    return None

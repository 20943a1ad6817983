"""Agreements' tests as data, and explanations of decisions (`interchange rules test|explain`).

A rule test is a YAML file beside the agreements (deploy/agreements/tests/*.yaml)::

    name: a case file reaches the CPS and nobody else
    at: 2026-11-26T12:00:00Z
    record: ../../../examples/records/02-case.file-to-cps.json   # or `record_inline: {...}`
    expect:
      - {recipient: cps, outcome: delivered, agreement: ISA-CPS-CASEFILES, disclosed_include: [data.urn]}
      - {recipient: victim-support-london, outcome: withheld, reason: condition_not_met}

A test may change the record before deciding: `set: {"data.persons.3.home_educated": false}` and
`unset: [classification.descriptors]` (dotted paths, list indices as numbers).  An expectation may name
`persons: [p3]`, the person ids left in the recipient's view after the agreement's `scope`.

Every delivery the decision makes must be listed (no surprise recipients); every listed expectation must
hold.  The record is validated first, as the routing core would.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from broker.config import Registry, Settings, load_yaml
from broker.contract import FormatLookup
from broker.routing.rules import Deliver, Rulebook
from broker.routing.validation import Validator


def parse_time(text: str | dt.datetime) -> dt.datetime:
    """An ISO 8601 time (or datetime) as an aware datetime, UTC when no zone is given."""
    if isinstance(text, dt.datetime):
        return text if text.tzinfo else text.replace(tzinfo=dt.UTC)
    moment = dt.datetime.fromisoformat(str(text).replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)


@dataclass
class Deciding:
    """What deciding needs: the registry, the rulebook and the validator."""

    registry: Registry
    rulebook: Rulebook
    validator: Any

    @classmethod
    def load(cls, settings: Settings, formats: FormatLookup | None = None) -> Deciding:
        """The registry, rulebook and validator for `settings`; `formats` as for `Registry.load`."""
        registry = Registry.load(settings, formats)
        return cls(registry, Rulebook(registry.agreements, registry.recipients, registry.agencies), Validator())

    def explain(self, record: dict[str, Any], at: dt.datetime | None = None) -> dict[str, Any]:
        """What the routing core would do with this record, as data."""
        at = at or dt.datetime.now(dt.UTC)
        errors = self.validator.validate(record) if isinstance(record, dict) else []
        out: dict[str, Any] = {
            "record_id": record.get("id") if isinstance(record, dict) else None,
            "type": record.get("type") if isinstance(record, dict) else None,
            "at": at.isoformat(),
            "errors": [str(e) for e in errors],
            "decisions": [],
        }
        if errors:
            out["outcome"] = "rejected"
            return out
        if record["origin"]["agency"] not in self.registry.agencies:
            out["outcome"], out["errors"] = "rejected", [f"origin.agency: {record['origin']['agency']!r} unknown"]
            return out
        out["outcome"] = "routed"
        for decision in self.rulebook.decide(record, at):
            item: dict[str, Any] = {
                "recipient": decision.recipient,
                "outcome": decision.outcome,
                "agreement": decision.agreement.id if decision.agreement else None,
            }
            if isinstance(decision, Deliver):
                item["persons"] = _person_ids(decision.scoped if decision.scoped is not None else record)
                item["disclosed"] = list(decision.projection.disclosed)
                item["withheld_fields"] = list(decision.projection.withheld)
            else:
                item["reason"], item["detail"] = decision.reason, decision.detail
            out["decisions"].append(item)
        return out


def render_explanation(where: str, explanation: dict[str, Any]) -> str:
    """An explanation as readable text: the outcome, then each recipient's decision."""
    lines = [f"{where}: record {explanation['record_id']} ({explanation['type']}): {explanation['outcome']}"]
    for error in explanation["errors"]:
        lines.append(f"  error  {error}")
    for d in explanation["decisions"]:
        if d["outcome"] == "delivered":
            lines.append(
                f"  DELIVER {d['recipient']} under {d['agreement']}: {len(d['disclosed'])} fields "
                f"disclosed, {len(d['withheld_fields'])} withheld"
            )
            if d["withheld_fields"]:
                lines.append(f"          withheld: {', '.join(d['withheld_fields'])}")
        else:
            detail = f" ({d['detail']})" if d.get("detail") else ""
            lines.append(
                f"  WITHHOLD {d['recipient'] or '(no recipient)'}: {d['reason']}{detail}"
                + (f" under {d['agreement']}" if d["agreement"] else "")
            )
    return "\n".join(lines)


@dataclass
class TestResult:
    """One agreement test's name and problems."""

    name: str
    problems: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        """Whether the test found no problem."""
        return not self.problems


def run_file(path: Path, deciding: Deciding) -> TestResult:
    """Run one agreement test file."""
    doc = load_yaml(path)
    result = TestResult(f"{path.name}: {doc.get('name', path.stem)}")
    record = doc.get("record_inline") or orjson.loads((path.parent / doc["record"]).read_bytes())
    record = _changed(record, doc.get("set") or {}, doc.get("unset") or [])
    explanation = deciding.explain(record, parse_time(doc.get("at", dt.datetime.now(dt.UTC))))
    if doc.get("expect_rejected"):
        if explanation["outcome"] != "rejected":
            result.problems.append("expected the record to be rejected, but it was routed")
        return result
    if explanation["outcome"] != "routed":
        result.problems.append(f"record rejected: {explanation['errors']}")
        return result
    by_recipient = {d["recipient"]: d for d in explanation["decisions"]}
    expected = {e["recipient"]: e for e in doc.get("expect", [])}
    for recipient, decision in by_recipient.items():
        if decision["outcome"] == "delivered" and recipient not in expected:
            result.problems.append(f"unexpected delivery to {recipient} under {decision['agreement']}")
    for recipient, want in expected.items():
        got = by_recipient.get(recipient)
        if got is None:
            if want["outcome"] == "delivered":
                result.problems.append(f"{recipient}: expected delivery, but no agreement covers it")
            continue
        result.problems.extend(_compare(recipient, want, got))
    return result


def _compare(recipient: str, want: dict[str, Any], got: dict[str, Any]) -> list[str]:
    problems = []
    for key in ("outcome", "agreement", "reason", "detail"):
        if key in want and want[key] != got.get(key):
            problems.append(f"{recipient}: {key} is {got.get(key)!r}, expected {want[key]!r}")
    for key, have in (
        ("disclosed_include", got.get("disclosed", [])),
        ("withheld_include", got.get("withheld_fields", [])),
    ):
        missing = [p for p in want.get(key, []) if p not in have]
        if missing:
            problems.append(f"{recipient}: {key} missing {missing} (have {have})")
    persons = set(got.get("persons", []))
    if "persons" in want and set(want["persons"]) != persons:
        problems.append(f"{recipient}: persons in view are {sorted(persons)}, expected {sorted(want['persons'])}")
    disclosed = got.get("disclosed", [])
    leaked = [
        p
        for p in want.get("disclosed_exclude", [])
        if any(d == p or d.startswith(p + ".") or d.startswith(p + "[]") for d in disclosed)
    ]
    if leaked:
        problems.append(f"{recipient}: disclosed {leaked}, which must be withheld")
    return problems


def run_folder(folder: Path, deciding: Deciding) -> list[TestResult]:
    """Run every agreement test file of a folder, in name order."""
    return [run_file(path, deciding) for path in sorted(folder.glob("*.yaml"))]


def _person_ids(record: dict[str, Any]) -> list[str | None]:
    given = record.get("data")
    data: dict[str, Any] = given if isinstance(given, dict) else {}
    return [p.get("id") for p in data.get("persons") or [] if isinstance(p, dict)]


def _changed(record: dict[str, Any], changes: dict[str, Any], removals: list[str]) -> dict[str, Any]:
    """A copy of the record with `set` ({"data.persons.3.home_educated": false}) and `unset` applied."""
    if not changes and not removals:
        return record
    out = orjson.loads(orjson.dumps(record))
    for path, value in list(changes.items()) + [(p, _UNSET) for p in removals]:
        *parents, last = path.split(".")
        node: Any = out
        for step in parents:
            node = node[int(step)] if isinstance(node, list) else node.setdefault(step, {})
        key: Any = int(last) if isinstance(node, list) else last
        if value is _UNSET:
            node.pop(key, None) if isinstance(node, dict) else node.pop(key)
        else:
            node[key] = value
    return out


_UNSET = object()

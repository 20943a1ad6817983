"""No leak, no miss on the side paths, through route(): corrections and retractions (including ones that
claim another origin's record), entity scope, nested conditions, handling text, covert holds and the public
crime map.

Per agreement set (drawn by hypothesis, plus a crime-map agreement shaped like ISA-CRIME-MAP) a seeded
Random draws a stream of records (the generator of test_security_fuzz, with crime-map places, categories
and outcomes): new records, corrections and retractions of earlier ones by their origin, corrections that
claim another origin's record or an id nobody published, and records that reuse another origin's id.
Halfway through, the agreements change (test_corrections_fuzz.changed_since).  Every record goes through
`broker.router.route` with the configured recipients and renderers and the real audit index as lineage
(`Context.original`); the validator accepts every record (the generated records are shaped like the common
schema, not valid against it; validation has its own tests).

The reference decides each record again from the agreement documents and its own ledger of who holds what
(keyed by origin and record id), following docs/GOVERNANCE.md section 6: rejected when the origin never
published the superseded id (`supersedes_unknown`, or `supersedes_foreign_record` when only another origin
did); else today's agreements; else, for a holder of the original, the correction under the original's
agreement if that agreement (lifecycle aside) permits it and scopes a person in, else a retraction notice
of exactly the documented keys.  The crime map may receive only a data.police.uk row of published values
(GOVERNANCE.md section 1).  Finally holds are placed on and released from some records by id, and every
subject's report must show exactly the delivered disclosures whose record lineage holds no live hold.
"""

from __future__ import annotations

import copy
import csv
import io
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from random import Random
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_corrections_fuzz import changed_since, timeless
from test_open_data import every_byte
from test_security_fuzz import (
    ENVELOPE,
    FUZZ_SETTINGS,
    NOW,
    RECIPIENT_IDS,
    REGISTRY,
    Expected,
    agreement_docs,
    random_record,
    reference,
)

from adapters.crime_map_csv import outbound
from adapters.crime_map_csv.outbound import CATEGORY_LABELS, COLUMNS, OUTCOME_LABELS, map_points, street_row
from broker import router
from broker.audit import reports
from broker.audit.index import AuditIndex, Original, Query
from broker.config import agreement_from_doc, check_against_schema, load_settings
from broker.identifiers import force_name
from broker.message import Message
from broker.routing import conditions, scope
from broker.routing.rules import Rulebook
from broker.runner import load_renderers

SETS = int(os.environ.get("FUZZ_PATH_SETS", 50))
RECORDS_PER_SET = 200
TARGET_RECORDS = 10_000
MUTANT_SETS = 10  # each planted leak must be found in 2,000 records
NOTICE_KEYS = {"notice", "record_id", "origin", "supersedes", "kind", "reason"}
PUBLIC = {r for r, recipient in REGISTRY.recipients.items() if recipient.public}
POINTS = map_points()
PUBLISHED_PLACES = {(f"{p.lat:.6f}", f"{p.lon:.6f}", p.location, p.lsoa_code, p.lsoa_name) for p in POINTS}
CRIME_MAP_DOC = {
    "id": "ISA-FUZZ-MAP",
    "title": "fuzz crime map",
    "controller": "fuzz",
    "providers": ["group:territorial-forces"],
    "recipient": "crime-map",
    "record_types": ["crime.report"],
    "purposes": ["public-information"],
    "lawful_basis": "fuzz",
    "max_classification": "OFFICIAL",
    "handling": {"permitted_codes": ["P"], "legacy_max_handling": "2"},
    "conditions": [],
    "fields": {"crime.report": ["data.category", "data.month", "data.outcome", "data.locations[].point"]},
    "valid_from": "2024-04-01",
    "valid_until": "2028-03-31",
    "review_by": "2027-03-31",
    "status": "active",
}


class AnyRecord:
    """A validator that accepts every record: the routing decisions, not the schema, are under test."""

    def validate(self, record: dict[str, Any]) -> list[Any]:
        return []


@dataclass
class Totals:
    records: int = 0
    rejected: dict[str, int] = field(default_factory=dict)
    deliveries: int = 0
    corrections: int = 0
    to_past: int = 0
    notices: int = 0
    public_rows: int = 0
    public_notices: int = 0
    held_rows: int = 0
    report_rows: int = 0
    leaks: list[str] = field(default_factory=list)
    misses: list[str] = field(default_factory=list)


TOTALS = Totals()


# ---------------------------------------------------------------- the stream


def crime_map_shape(rnd: Random, record: dict[str, Any]) -> None:
    """Give a record the fields the crime map publishes from: a point near a published map point (or far
    from every one), a category (one in ten has no data.police.uk label), a month and an outcome."""
    base = rnd.choice(POINTS)
    far = rnd.random() < 0.15
    lat = round(base.lat + rnd.uniform(-0.002, 0.002) + (3 if far else 0), 5)
    lon = round(base.lon + rnd.uniform(-0.002, 0.002), 5)
    record["data"]["locations"] = [
        {"id": "l1", "kind": "point", "point": {"lat": lat, "lon": lon}, "description": "Outside 12 Hidden Street"}
    ]
    record["data"]["category"] = rnd.choice([*CATEGORY_LABELS, "not-a-category"])
    record["data"]["month"] = f"2026-{rnd.randrange(1, 6):02d}"
    if rnd.random() < 0.7:
        record["data"]["outcome"] = rnd.choice(list(OUTCOME_LABELS))


def stream(rnd: Random, docs: list[dict[str, Any]], published: list[dict[str, Any]], n: int) -> dict[str, Any]:
    """The next record: new, a correction or retraction by the origin of an earlier one, a correction that
    claims another origin's record or an unknown id, or a new record reusing another origin's id."""
    record = random_record(rnd, n, docs)
    record["id"] = f"{record['origin']['agency']}-rms-CR-2026-{n:06d}"
    if record["type"] == "crime.report" and rnd.random() < 0.6:
        crime_map_shape(rnd, record)
    draw = rnd.random()
    earlier = rnd.choice(published) if published else None
    if earlier is not None and draw < 0.3:  # the origin corrects or retracts its own record
        record["origin"] = dict(earlier["origin"])
        if rnd.random() < 0.5:  # a correction is mostly the same record with a change
            record["type"] = earlier["type"]
            record["data"] = copy.deepcopy(earlier["data"])
            record["data"]["summary"] = f"corrected {n}"
        record["supersedes"] = {"id": earlier["id"], "kind": rnd.choice(["correction", "retraction"])}
    elif earlier is not None and draw < 0.38:  # another origin claims to supersede it
        others = [a for a in REGISTRY.agencies if a != earlier["origin"]["agency"]]
        record["origin"]["agency"] = rnd.choice(others)
        record["supersedes"] = {"id": earlier["id"], "kind": "correction"}
    elif draw < 0.41:  # supersedes a record nobody published
        record["supersedes"] = {"id": f"never-published-{n}", "kind": "correction"}
    elif earlier is not None and draw < 0.46:  # another origin reuses the id for its own new record
        others = [a for a in REGISTRY.agencies if a != earlier["origin"]["agency"]]
        record["origin"]["agency"] = rnd.choice(others)
        record["id"] = earlier["id"]
    return record


# ---------------------------------------------------------------- the reference


@dataclass
class Ledger:
    """What the reference says each recipient holds, by (origin, record id): recipient -> agreement id."""

    holders: dict[tuple[str, str], dict[str, str]] = field(default_factory=dict)
    lineage: dict[tuple[str, str], set[tuple[str, str]]] = field(default_factory=dict)


def renders_publicly(expected: Expected, record: dict[str, Any]) -> bool:
    """The crime map's format carries a crime.report whose delivered category data.police.uk labels."""
    return record["type"] == "crime.report" and expected.data.get("category") in CATEGORY_LABELS


def decide(docs: list[dict[str, Any]], record: dict[str, Any], ledger: Ledger) -> tuple[str, dict[str, Any]]:
    """("rejected", {"reason": code}) or ("routed", recipient -> Expected | "notice")."""
    origin = record["origin"]["agency"]
    if origin not in REGISTRY.agencies:
        return "rejected", {"reason": "unknown_agency"}
    if record["classification"]["tier"] in ("SECRET", "TOP SECRET"):
        return "rejected", {"reason": "classification_not_permitted"}
    supersedes = record.get("supersedes")
    holders: dict[str, str] = {}
    if supersedes:
        key = (origin, supersedes["id"])
        if key not in ledger.holders:
            foreign = any(i == supersedes["id"] for _, i in ledger.holders)
            return "rejected", {"reason": "supersedes_foreign_record" if foreign else "supersedes_unknown"}
        holders = ledger.holders[key]
    out: dict[str, Any] = {}
    for recipient in RECIPIENT_IDS:
        now = reference(docs, record, recipient)
        if now is None and recipient in holders:
            doc = next((d for d in docs if d["id"] == holders[recipient]), None)
            now = reference([timeless(doc)], record, recipient) if doc else None
            if now is None:
                out[recipient] = "notice"
                continue
        if now is not None and (recipient not in PUBLIC or renders_publicly(now, record)):
            out[recipient] = now
    return "routed", out


def remember(ledger: Ledger, record: dict[str, Any], outcome: str, expected: dict[str, Any]) -> None:
    if outcome != "routed":
        return
    key = (record["origin"]["agency"], record["id"])
    ledger.holders[key] = {r: e.agreement for r, e in expected.items() if isinstance(e, Expected)}
    if record.get("supersedes"):
        other = (key[0], record["supersedes"]["id"])
        ledger.lineage.setdefault(key, set()).add(other)
        ledger.lineage.setdefault(other, set()).add(key)


# ---------------------------------------------------------------- checking one plan


def record_strings(record: dict[str, Any]) -> set[str]:
    """The record's own strings that would identify it (published vocabularies and short tokens excepted)."""
    # published vocabularies: the record type, category, outcome, month... and the handling code's recipient
    # classes (configuration words such as "police", which the delivery's public schema address contains)
    published = {"type", "category", "outcome", "month", "kind", "specversion", "scheme", "time", "recipient_classes"}
    found: set[str] = set()

    def walk(node: Any, key: str = "") -> None:
        if isinstance(node, dict):
            for k, v in node.items():
                walk(v, k)
        elif isinstance(node, list):
            for v in node:
                walk(v, key)
        elif isinstance(node, str) and key not in published and len(node) >= 6:
            found.add(node)

    walk(record)
    return found


def public_problems(out: router.Outgoing, record: dict[str, Any], expected: Expected | str) -> list[str]:
    """A crime-map delivery holds only published values: one street row, or a notice of a Crime ID."""
    problems = [f"{s!r} in the delivery" for s in record_strings(record) if s.encode() in every_byte(out)]
    if out.correlation_id is not None:
        problems.append("correlation id delivered")
    if expected == "notice":
        if out.headers.get("x-notice") != "retraction":
            return [*problems, f"a {out.content_type} delivery where only a retraction notice may go"]
        body = orjson.loads(out.body)
        if set(body) != {"notice", "crime_id"} or not re.fullmatch(r"[0-9a-f]{64}", body["crime_id"]):
            problems.append(f"public notice {body!r}")
        return problems
    assert isinstance(expected, Expected)
    if out.headers.get("x-notice") or not out.content_type.startswith("text/csv"):
        return [*problems, f"{out.content_type} {out.body[:120]!r} where a street row was expected"]
    header, row = list(csv.reader(io.StringIO(out.body.decode())))
    cells = dict(zip(header, row, strict=True))
    data = expected.data
    asb = data["category"] == "anti-social-behaviour"
    if header != COLUMNS or not re.fullmatch("" if asb else "[0-9a-f]{64}", cells["Crime ID"]):
        problems.append(f"columns or Crime ID {cells['Crime ID']!r}")
    if cells["Month"] != data.get("month", "") or cells["Reported by"] != force_name(record["origin"]["agency"]):
        problems.append(f"month or force {cells['Month']!r} {cells['Reported by']!r}")
    place = (cells["Latitude"], cells["Longitude"], cells["Location"], cells["LSOA code"], cells["LSOA name"])
    if place not in PUBLISHED_PLACES and place != ("", "", "No Location", "", ""):
        problems.append(f"place {place} is not a published map point")
    for location in record["data"].get("locations", []):
        point = location["point"]
        if (cells["Latitude"], cells["Longitude"]) == (f"{point['lat']:.6f}", f"{point['lon']:.6f}"):
            problems.append("the exact point was delivered")
    outcome = "" if asb else OUTCOME_LABELS.get(data.get("outcome"), "")
    if cells["Crime type"] != CATEGORY_LABELS[data["category"]] or cells["Last outcome category"] != outcome:
        problems.append("category or outcome")
    if cells["Context"]:
        problems.append("context")
    return problems


def private_problems(out: router.Outgoing, record: dict[str, Any], expected: Expected | str) -> list[str]:
    try:
        body = orjson.loads(out.body)
    except orjson.JSONDecodeError:
        return [f"{out.content_type} body {out.body[:120]!r}, reference sends common JSON"]
    if expected == "notice":
        want = {
            "notice": "retraction",
            "record_id": record["id"],
            "origin": record["origin"]["agency"],
            "supersedes": record["supersedes"]["id"],
            "kind": record["supersedes"]["kind"],
        }
        if (
            set(body) != NOTICE_KEYS
            or {k: body[k] for k in want} != want
            or out.headers.get("x-notice") != "retraction"
        ):
            return [f"notice {body!r}"]
        return []
    assert isinstance(expected, Expected)
    problems = []
    if out.headers.get("x-notice"):
        return [f"a retraction notice where the reference sends {expected.agreement}'s view"]
    if body.get("data") != expected.data:
        problems.append(f"data {body.get('data')!r}, reference {expected.data!r}")
    if body.get("handling") != expected.handling or body.get("subjects") != expected.view.get("subjects"):
        problems.append(f"handling or subjects {body.get('handling')!r} {body.get('subjects')!r}")
    if not set(body) <= ENVELOPE | {"data"}:
        problems.append(f"non-envelope keys {sorted(set(body) - ENVELOPE)}")
    if "conditions" in str(out.headers.get("x-handling", "")) and "text" in str(out.headers.get("x-handling")):
        problems.append("handling text in the x-handling header")
    return problems


def check_plan(
    plan: router.Plan, record: dict[str, Any], outcome: str, expected: dict[str, Any], totals: Totals
) -> None:
    where = f"{record['origin']['agency']}/{record['id']}"
    sent = {o.target: o for o in plan.outputs if o.target != "core"}
    if outcome == "rejected":
        totals.rejected[expected["reason"]] = totals.rejected.get(expected["reason"], 0) + 1
        if plan.outcome != "rejected" or plan.reason != expected["reason"]:
            totals.misses.append(f"{where}: {plan.outcome} {plan.reason}, reference rejects {expected['reason']}")
        totals.leaks += [f"{where}: rejected by the reference, sent to {r}" for r in sent]
        return
    if plan.outcome != "routed":
        totals.misses.append(f"{where}: {plan.outcome} {plan.reason} {plan.error_type}, reference routes it")
        return
    entries = {e.get("recipient"): e for e in plan.audit_entries if e["operation"] == "disclose"}
    totals.corrections += bool(record.get("supersedes"))
    for recipient in RECIPIENT_IDS:
        want, out = expected.get(recipient), sent.get(recipient)
        if out is None:
            if want is not None:
                totals.misses.append(f"{where} -> {recipient}: nothing sent, reference sends {want!r}"[:300])
            continue
        if want is None:
            totals.leaks.append(f"{where} -> {recipient}: {out.body[:200]!r} sent, reference sends nothing")
            continue
        check = public_problems if recipient in PUBLIC else private_problems
        totals.leaks += [f"{where} -> {recipient}: {p}" for p in check(out, record, want)]
        entry = entries.get(recipient)
        if want == "notice":
            totals.notices += 1
            totals.public_notices += recipient in PUBLIC
            if entry is None or entry["reason"] != "retraction_notice" or entry["fields_disclosed"] != []:
                totals.leaks.append(f"{where} -> {recipient}: notice not audited as one: {entry!r}"[:300])
            continue
        totals.deliveries += 1
        totals.public_rows += recipient in PUBLIC
        totals.to_past += (entry or {}).get("reason") == "correction_to_past_recipient"
        if entry is None or entry["agreement"] != want.agreement or set(entry["fields_disclosed"]) != want.paths:
            totals.leaks.append(f"{where} -> {recipient}: disclosure not audited as decided: {entry!r}"[:300])


# ---------------------------------------------------------------- holds and subject reports


def check_reports(index: AuditIndex, rnd: Random, routed: list[dict[str, Any]], ledger: Ledger, totals: Totals) -> None:
    """Hold some records by id (releasing a few holds again); every subject's report must list exactly the
    delivered disclosures whose lineage (keyed by origin and id) holds no live hold."""
    seq = index.last_seq()
    held_ids: set[str] = set()
    for n, record in enumerate(rnd.sample(routed, min(len(routed), 12))):
        seq += 1
        hold = {"operation": "hold", "record_id": record["id"], "hold": {"id": f"hold-{n}"}, "seq": seq}
        index.add([hold | {"time": NOW.isoformat(), "outcome": "held", "actor": {"user": "dpo"}}])
        if n % 4 == 3:  # released again: no longer held
            seq += 1
            index.add(
                [
                    {
                        "operation": "release",
                        "record_id": record["id"],
                        "hold": {"id": f"hold-{n}"},
                        "seq": seq,
                        "time": NOW.isoformat(),
                    }
                ]
            )
        else:
            held_ids.add(record["id"])
    index.commit()
    held: set[tuple[str, str]] = set()
    frontier = [key for key in ledger.holders if key[1] in held_ids]
    while frontier:
        key = frontier.pop()
        if key not in held:
            held.add(key)
            frontier.extend(ledger.lineage.get(key, ()))
    disclosures = [
        e for e in index.query(Query(operation="disclose")) if e["outcome"] == "delivered" and e["subject_keys"]
    ]
    live = index.live_holds()
    for key in sorted({k for e in disclosures for k in e["subject_keys"]}):
        about = [e for e in disclosures if key in e["subject_keys"]]
        want = sorted(
            (e["record_id"], e["recipient"], e["agreement"])
            for e in about
            if (e.get("source") or e.get("origin"), e["record_id"]) not in held
        )
        rows = reports.subject_report(index.query(Query(subject_keys=[key])), live)
        got = sorted((r["record_id"], r["recipient"], r["agreement"]) for r in rows)
        totals.report_rows += len(got)
        totals.held_rows += len(about) - len(want)
        totals.leaks += [f"subject report shows held disclosure {row}" for row in sorted(set(got) - set(want))]
        totals.misses += [f"subject report leaves out disclosure {row}" for row in sorted(set(want) - set(got))]


# ---------------------------------------------------------------- the run


def run_set(docs: list[dict[str, Any]], seed: int, audit_dir: Path, totals: Totals) -> None:
    rnd = Random(seed)
    docs = [*docs, CRIME_MAP_DOC]
    for doc in docs:
        check_against_schema("agreement", doc, doc["id"])
    today = changed_since(rnd, docs)
    settings_ = load_settings(environ={}).with_overrides(audit_dir=audit_dir)
    index = AuditIndex(audit_dir / "index.sqlite")
    ctx = router.Context(
        settings_,
        REGISTRY,
        AnyRecord(),
        Rulebook([agreement_from_doc(d, d["id"]) for d in docs], REGISTRY.recipients, REGISTRY.agencies),
        renderers=load_renderers(REGISTRY, settings_),
        original=index.original,
        clock=lambda: NOW,
    )
    ledger, published, routed, seq = Ledger(), [], [], 0
    current = docs
    for n in range(RECORDS_PER_SET):
        if n == RECORDS_PER_SET // 2:  # the agreements change: suspended, expired, narrowed, removed
            current = today
            ctx.rulebook = Rulebook(
                [agreement_from_doc(d, d["id"]) for d in today], REGISTRY.recipients, REGISTRY.agencies
            )
        record = stream(rnd, current, published, n)
        outcome, expected = decide(current, record, ledger)
        message = Message(
            orjson.dumps(record), "application/json", record["id"], attempt=settings_.correction_wait_attempts
        )
        plan = router.route(message, ctx)
        totals.records += 1
        check_plan(plan, record, outcome, expected, totals)
        for entry in plan.audit_entries:
            seq += 1
            index.add([dict(entry, seq=seq)])
        remember(ledger, record, outcome, expected)
        if outcome == "routed":
            routed.append(record)
            if record["origin"]["agency"] in REGISTRY.agencies and record["classification"]["tier"] == "OFFICIAL":
                published.append(record)
    index.commit()
    check_reports(index, rnd, routed, ledger, totals)
    index.close()


@settings(max_examples=SETS, **FUZZ_SETTINGS)
@given(docs=agreement_docs(), seed=st.integers(0, 2**32 - 1))
def test_every_side_path_is_decided_exactly_as_the_reference_decides(tmp_path_factory, docs, seed) -> None:
    # Given an agreement set, a stream of records, corrections, foreign claims and holds
    before = (len(TOTALS.leaks), len(TOTALS.misses))
    # When each is routed and the subject reports are drawn / Then the reference agrees
    run_set(docs, seed, tmp_path_factory.mktemp("audit"), TOTALS)
    assert (len(TOTALS.leaks), len(TOTALS.misses)) == before, (TOTALS.leaks + TOTALS.misses)[-5:]


def test_no_side_path_leaked_or_missed_and_every_side_path_was_taken() -> None:
    # Given the run above (pytest runs this module in order), Then the totals hold
    summary = {k: v for k, v in vars(TOTALS).items() if k not in ("leaks", "misses")}
    print(f"\nside paths: {summary}, leaks {len(TOTALS.leaks)}, misses {len(TOTALS.misses)}")
    assert TOTALS.records >= TARGET_RECORDS, "run the whole module: the run above feeds these totals"
    assert TOTALS.leaks == [] and TOTALS.misses == []
    assert TOTALS.to_past and TOTALS.notices and TOTALS.public_rows and TOTALS.public_notices and TOTALS.held_rows
    assert TOTALS.rejected.get("supersedes_foreign_record") and TOTALS.rejected.get("supersedes_unknown")


# ---------------------------------------------------------------- the reference catches planted leaks


def _scope_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(scope, "apply", lambda _scope, record, _recipient: (record, -1))


def _not_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(conditions.OPERATORS, "not", lambda _spec, _record, _recipient: True)


def _past_recipient_checks_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Rulebook, "refusal_to_past_recipient", lambda *_args: None)


def _lineage_by_bare_id(monkeypatch: pytest.MonkeyPatch) -> None:
    def any_origin(self: AuditIndex, origin: str, record_id: str) -> Original:
        origins = {e.get("source") for e in self.query(Query(record_id=record_id)) if e.get("source")}
        return next((real(self, o, record_id) for o in sorted(origins)), Original("unknown"))

    real = AuditIndex.original
    monkeypatch.setattr(AuditIndex, "original", any_origin)


def _holds_ignored(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(AuditIndex, "live_holds", lambda self: {})


def _exact_point_published(monkeypatch: pytest.MonkeyPatch) -> None:
    def unsnapped(record: dict[str, Any], options: dict[str, Any]) -> list[str]:
        row = street_row(record, options)
        point = next((loc["point"] for loc in record["data"].get("locations") or [] if loc.get("point")), None)
        return row if point is None else row[:4] + [f"{point['lon']:.6f}", f"{point['lat']:.6f}"] + row[6:]

    monkeypatch.setattr(outbound, "street_row", unsnapped)


MUTANTS = {
    "entity scope ignored": _scope_off,
    "`not` conditions always hold": _not_off,
    "corrections skip the checks of the original's agreement": _past_recipient_checks_off,
    "lineage looked up by bare record id": _lineage_by_bare_id,
    "covert holds ignored by subject reports": _holds_ignored,
    "crime map gets the exact point": _exact_point_published,
}


@pytest.mark.parametrize("mutant", MUTANTS)
def test_the_reference_finds_a_planted_leak(mutant, monkeypatch, tmp_path_factory) -> None:
    # Given the exchange with one check switched off
    MUTANTS[mutant](monkeypatch)
    totals = Totals()

    @settings(max_examples=MUTANT_SETS, **FUZZ_SETTINGS)
    @given(docs=agreement_docs(), seed=st.integers(0, 2**32 - 1))
    def run(docs, seed) -> None:
        run_set(docs, seed, tmp_path_factory.mktemp("mutant"), totals)

    # When the side paths are fuzzed
    run()
    # Then the reference reports leaks
    print(f"\n{mutant}: {totals.records} records, leaks {len(totals.leaks)}, misses {len(totals.misses)}")
    assert totals.leaks, f"{mutant}: no leak found in {totals.records} records"

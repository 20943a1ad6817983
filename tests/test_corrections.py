"""Corrections take the same checks as any disclosure (issue 11 section 1), decided by route() on an audit index.

Each original is routed first and its audit entries go into a real index, as the audit writer would put them;
then the correction is routed against that index.
"""

from __future__ import annotations

import copy
import dataclasses
import datetime as dt
import json

import orjson
import pytest

from broker import router
from broker.audit import reports as disclosures
from broker.audit.index import AuditIndex, held_key
from broker.message import Message, Plan
from broker.routing.rules import Rulebook
from broker.runner import build_context
from tests.support import EXAMPLES

NOW = dt.datetime(2026, 11, 26, 12, tzinfo=dt.UTC)
ENCOMPASS = "05-safeguarding.notification-encompass.json"
MASH_48 = "06-safeguarding.notification-mash.json"
INTEL_P = "09-intelligence.report-3x5x2-p.json"
VICTIM = "07-victim.referral-consent-given.json"


def _example(name: str) -> dict:
    return json.loads((EXAMPLES / name).read_text())


def _correction(original: dict, suffix: str = "-c1", kind: str = "correction") -> dict:
    record = copy.deepcopy(original)
    record["id"] = original["id"] + suffix
    record["supersedes"] = {"id": original["id"], "kind": kind}
    return record


@pytest.fixture
def index(tmp_path):
    index = AuditIndex(tmp_path / "audit.index.sqlite")
    yield index
    index.close()


@pytest.fixture
def ctx(settings, index):
    ctx = build_context(settings)
    ctx.clock = lambda: NOW
    ctx.original = index.original
    return ctx


def _route(ctx, record: dict, attempt: int = 0) -> Plan:
    return router.route(Message(orjson.dumps(record), "application/json", attempt=attempt), ctx)


def _audit(index: AuditIndex, *entries: dict) -> None:
    """Append entries to the index as the audit writer does (it numbers them)."""
    seq = index.last_seq()
    for entry in entries:
        seq += 1
        index.add([dict(entry, seq=seq)])
    index.commit()


def _published(ctx, index, record: dict) -> Plan:
    plan = _route(ctx, record)
    assert plan.outcome == "routed"
    _audit(index, *plan.audit_entries)
    return plan


def _entries(plan: Plan) -> dict[str, dict]:
    return {e["recipient"]: e for e in plan.audit_entries}


def _body(plan: Plan, recipient: str) -> dict:
    [out] = [o for o in plan.outputs if o.target == recipient]
    return orjson.loads(out.body)


def _is_notice(plan: Plan, recipient: str, reason: str) -> None:
    """The recipient was sent a retraction notice with no data, and the audit says so."""
    [out] = [o for o in plan.outputs if o.target == recipient]
    record = orjson.loads(out.body)
    assert set(record) == {"notice", "record_id", "origin", "supersedes", "kind", "reason"}
    assert record["notice"] == "retraction" and record["reason"] == reason
    assert out.headers["x-notice"] == "retraction" and out.message_id == plan.record_id
    entry = _entries(plan)[recipient]
    assert (entry["operation"], entry["outcome"], entry["reason"]) == ("disclose", "delivered", "retraction_notice")
    assert entry["withheld_reason"] == reason
    assert entry["fields_disclosed"] == [] and entry["subject_keys"] == []


def test_a_record_superseding_another_forces_record_is_refused_and_reaches_none_of_its_recipients(ctx, index):
    # Given force 13's Encompass notification reached the school, the Leeds MASH and Leeds home education
    original = _published(ctx, index, _example(ENCOMPASS))
    assert sorted(original.delivered) == ["la-education-leeds", "la-mash-leeds", "school-100001"]
    # When force 01 publishes a record that supersedes it
    foreign = _correction(_example(ENCOMPASS), "-01")
    foreign["origin"] = {"agency": "01", "system": "niche-rms"}
    # Then it waits while the index may still be behind, and is then refused, dead-lettered and audited
    assert _route(ctx, foreign).outcome == "waiting"
    plan = _route(ctx, foreign, attempt=ctx.settings.correction_wait_attempts)
    assert (plan.outcome, plan.reason) == ("rejected", "supersedes_foreign_record")
    assert [o.target for o in plan.outputs] == ["core"]
    assert plan.outputs[0].headers["x-interchange-reason"] == "supersedes_foreign_record"
    [entry] = plan.audit_entries
    assert (entry["operation"], entry["reason"]) == ("reject", "supersedes_foreign_record")
    # the same record without supersedes is no_agreement, as it always was
    plain = dict(foreign)
    del plain["supersedes"]
    assert _route(ctx, plain).withheld == {"none": "no_agreement"}


def test_a_correction_raising_the_handling_code_sends_retraction_notices_not_the_record(ctx, index):
    # Given a 3x5x2 P intelligence report the forces received
    original = _published(ctx, index, _example(INTEL_P))
    assert original.delivered
    # When its correction raises the handling to 5x5x5 code 5
    legacy = _correction(_example(INTEL_P))
    legacy["handling"] = {"scheme": "5x5x5", "source": "B", "intelligence": "2", "handling": "5"}
    plan = _route(ctx, legacy)
    # Then every past recipient gets a retraction notice, none gets the record
    assert sorted(plan.delivered) == sorted(original.delivered)
    for recipient in original.delivered:
        _is_notice(plan, recipient, "legacy_handling_no_onward_sharing")
    # When another correction is 3x5x2 C naming only the CPS
    narrowed = _correction(_example(INTEL_P), "-c2")
    narrowed["handling"] = dict(narrowed["handling"], code="C", conditions={"recipients": ["cps"]})
    plan = _route(ctx, narrowed)
    for recipient in original.delivered:
        _is_notice(plan, recipient, "handling_conditions_exclude_recipient")


def test_a_correction_that_names_no_pupil_of_the_school_sends_the_school_a_notice_only(ctx, index):
    # Given the Encompass notification reached school 100001 (Mia attends it)
    _published(ctx, index, _example(ENCOMPASS))
    # When a correction says Mia attends another school
    correction = _correction(_example(ENCOMPASS))
    correction["data"]["persons"][2]["school"] = {"urn": "100002", "name": "Another Primary School"}
    plan = _route(ctx, correction)
    # Then the school gets a notice without the incident time or child_present, the MASH gets the correction
    _is_notice(plan, "school-100001", "condition_not_met")
    assert "incident" not in json.dumps(_body(plan, "school-100001"))
    assert _body(plan, "la-mash-leeds")["data"]["child_present"] is True


def test_a_correction_reaches_only_the_recipients_of_its_own_origins_record_when_another_force_reused_the_id(
    ctx, index
):
    # Given force 48 published its MASH notice under force 13's Encompass id first
    reused = _example(MASH_48)
    reused["id"] = _example(ENCOMPASS)["id"]
    first = _published(ctx, index, reused)
    assert first.delivered and "la-mash-leeds" not in first.delivered
    # and force 13's own notification under that id
    own = _published(ctx, index, _example(ENCOMPASS))
    # When force 13 corrects its notification
    plan = _route(ctx, _correction(_example(ENCOMPASS)))
    # Then only force 13's recipients hear of it; force 48's recipients get nothing
    assert sorted(plan.delivered) == sorted(own.delivered)
    assert not set(plan.delivered) & (set(first.delivered) - set(own.delivered))


def test_a_correction_under_an_agreement_since_narrowed_to_official_sends_a_notice_not_the_sensitive_record(ctx, index):
    # Given the victim referral reached victim support under ISA-VICTIMS-LONDON
    original = _published(ctx, index, _example(VICTIM))
    assert original.delivered == ["victim-support-london"]
    # When the agreement is narrowed to OFFICIAL and an OFFICIAL-SENSITIVE correction is published
    narrowed = [
        dataclasses.replace(a, max_classification="OFFICIAL") if a.id == "ISA-VICTIMS-LONDON" else a
        for a in ctx.registry.agreements
    ]
    ctx.rulebook = Rulebook(narrowed, ctx.registry.recipients, ctx.registry.agencies)
    plan = _route(ctx, _correction(_example(VICTIM)))
    # Then victim support is sent a retraction notice only
    _is_notice(plan, "victim-support-london", "classification_above_ceiling")


def test_when_consent_is_withdrawn_victim_support_gets_the_retraction_not_the_new_contact_details(ctx, index):
    # Given victim support received a referral given with consent
    _published(ctx, index, _example(VICTIM))
    # When a correction withdraws consent and gives a new phone number
    correction = _correction(_example(VICTIM))
    correction["data"]["consent"]["given"] = False
    correction["data"]["contact"]["telephone"] = "07700 900999"
    plan = _route(ctx, correction)
    # Then victim support is told to stop relying on the referral, and not given the new number
    _is_notice(plan, "victim-support-london", "condition_not_met")
    assert b"07700 900999" not in b"".join(o.body for o in plan.outputs)


def test_a_correction_that_passes_todays_checks_under_an_expired_agreement_still_reaches_the_past_recipient(ctx, index):
    # Given a crime report the City of London ASB partnership received in 2024 (its agreement since expired)
    record = _example("12-crime.report-open-data-crime-map.json")
    ctx.clock = lambda: dt.datetime(2024, 6, 1, 12, tzinfo=dt.UTC)
    _published(ctx, index, record)
    ctx.clock = lambda: NOW
    # When its correction is routed today / Then the partnership gets it under the old agreement (s.38)
    plan = _route(ctx, _correction(record))
    entry = _entries(plan)["la-mash-city-of-london"]
    assert (entry["reason"], entry["agreement"]) == ("correction_to_past_recipient", "ISA-ASB-CITY-2023")


def test_a_correction_never_overtakes_an_original_not_yet_audited_or_whose_delivery_failed(ctx, index):
    # Given an original not yet in the index
    original = _example(VICTIM)
    correction = _correction(original)
    # Then its correction waits, and after the bound is dead-lettered supersedes_unknown
    assert _route(ctx, correction).outcome == "waiting"
    bound = ctx.settings.correction_wait_attempts
    assert _route(ctx, correction, attempt=bound).reason == "supersedes_unknown"
    # Given the original's disclosure was audited but its delivery then failed (an `undelivered` entry)
    plan = _route(ctx, original)
    _audit(index, *plan.audit_entries)
    disclose = _entries(plan)["victim-support-london"]
    _audit(
        index,
        {
            "entry_id": "u1",
            "operation": "undelivered",
            "outcome": "not_delivered",
            "reason": "nacked",
            "record_id": original["id"],
            "origin": "48",
            "recipient": "victim-support-london",
            "agreement": "ISA-VICTIMS-LONDON",
            "cancels": disclose["entry_id"],
        },
    )
    # Then the correction waits for the original to be decided again
    assert _route(ctx, correction).outcome == "waiting"
    assert _route(ctx, correction, attempt=bound).reason == "supersedes_original_pending"
    # When the original is delivered on its redelivery / Then the correction is decided
    _audit(index, *_route(ctx, original).audit_entries)
    assert _route(ctx, correction).delivered == ["victim-support-london"]


def test_a_covert_hold_on_an_original_hides_its_corrections_in_every_report_format_and_query(ctx, index):
    # Given a victim referral and its correction were both delivered
    original = _example(VICTIM)
    _published(ctx, index, original)
    correction = _published(ctx, index, _correction(original))
    # When a covert hold is placed on the original's record id
    _audit(
        index,
        {
            "entry_id": "h1",
            "operation": "hold",
            "time": "2026-11-26T12:30:00Z",
            "record_id": original["id"],
            "hold": {"id": "hold-1"},
            "justification": "Operation X",
        },
    )
    holds = index.live_holds()
    # Then the correction's disclosure is held too, so no subject-facing report shows it
    assert holds[held_key(original["origin"]["agency"], correction.record_id)] == ["hold-1"]
    entries = list(index.query(disclosures_query()))
    assert disclosures.subject_report(entries, holds) == []
    internal = disclosures.subject_report(entries, holds, include_held=True)
    assert {r["record_id"] for r in internal} == {original["id"], correction.record_id}
    assert all(r["held"] == "hold-1" for r in internal)
    assert "HELD (hold-1)" in disclosures.as_html(internal, "NHS", "now", include_held=True)
    assert disclosures.as_table(disclosures.rows(entries, holds)).splitlines()[0].split()[-1] == "held"
    # And a hold placed on the correction covers the original it corrects
    _audit(
        index,
        {
            "entry_id": "r1",
            "operation": "release",
            "time": "2026-11-26T13:00:00Z",
            "record_id": original["id"],
            "hold": {"id": "hold-1"},
        },
        {
            "entry_id": "h2",
            "operation": "hold",
            "time": "2026-11-26T13:00:01Z",
            "record_id": correction.record_id,
            "hold": {"id": "hold-2"},
        },
    )
    assert index.live_holds()[held_key(original["origin"]["agency"], original["id"])] == ["hold-2"]


def test_a_hold_follows_the_lineage_of_its_own_origin_not_another_origin_reusing_the_id(index):
    # Given force 13's record X corrected by its X-c1, and force 48's own record that reuses the id X
    def disclosed(seq: int, origin: str, record_id: str, supersedes: str | None = None) -> dict:
        entry = {"entry_id": f"e{seq}", "seq": seq, "operation": "disclose", "outcome": "delivered"}
        entry |= {"record_id": record_id, "source": origin, "recipient": "cps", "subject_keys": ["k"]}
        return entry | ({"supersedes": {"id": supersedes, "kind": "correction"}} if supersedes else {})

    index.add([disclosed(1, "13", "X"), disclosed(2, "48", "X"), disclosed(3, "13", "X-c1", "X")])
    # When a covert hold is placed on the correction
    index.add([{"seq": 4, "operation": "hold", "record_id": "X-c1", "hold": {"id": "hold-9"}}])
    # Then force 13's original is held through its lineage, and force 48's record is not
    holds = index.live_holds()
    assert holds[held_key("13", "X")] == ["hold-9"] and held_key("48", "X") not in holds and "X" not in holds
    report = disclosures.subject_report(list(index.query(disclosures_query())), holds)
    assert [(r["record_id"], r["held"]) for r in report] == [("X", "")]


def disclosures_query():
    from broker.audit.index import Query

    return Query(operation="disclose")


def test_the_correction_wait_is_set_in_the_settings_file_and_the_environment(tmp_path):
    from broker.config import load_settings

    # Given a settings file with a corrections block / Then it sets the wait, and the environment overrides it
    (tmp_path / "interchange.yaml").write_text("corrections:\n  wait_seconds: 0.2\n  wait_attempts: 7\n")
    settings = load_settings(tmp_path / "interchange.yaml", environ={})
    assert (settings.correction_wait_seconds, settings.correction_wait_attempts) == (0.2, 7)
    settings = load_settings(tmp_path / "interchange.yaml", environ={"INTERCHANGE_CORRECTION_WAIT_ATTEMPTS": "3"})
    assert settings.correction_wait_attempts == 3

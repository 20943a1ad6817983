"""Corrections on the real RabbitMQ: worker, audit writer and index together (issue 11 section 1)."""

from __future__ import annotations

import copy
import json
import sys
import threading
from pathlib import Path

import orjson
import pytest

from broker import topology
from broker.audit.log import LOG_NAME, AuditWriter, read_entries
from broker.cli import main as cli
from broker.errors import ExitCode
from broker.ingress.publisher import publish_all, record_message
from broker.ops import logs
from tests.support import EXAMPLES, worker_thread
from tests.support import wait_until as _wait

pytestmark = pytest.mark.rabbitmq


def _encompass() -> dict:
    return json.loads((EXAMPLES / "05-safeguarding.notification-encompass.json").read_text())


def test_a_correction_published_with_its_original_waits_for_it_and_a_foreign_supersede_is_refused(broker):
    # Given force 13's Encompass notification and, published right behind it before anything is audited,
    # a correction by force 13 saying the child attends another school, and a record by force 01 that
    # claims to supersede force 13's notification
    original = _encompass()
    correction = copy.deepcopy(original)
    correction["id"] = original["id"] + "-c1"
    correction["supersedes"] = {"id": original["id"], "kind": "correction"}
    correction["data"]["persons"][2]["school"] = {"urn": "100002", "name": "Another Primary School"}
    foreign = copy.deepcopy(original)
    foreign["id"] = "01-niche-ENC-2026-000001"
    foreign["origin"] = {"agency": "01", "system": "niche-rms"}
    foreign["supersedes"] = {"id": original["id"], "kind": "correction"}
    settings = broker.settings.with_overrides(correction_wait_seconds=0.25, correction_wait_attempts=40)

    # When a worker and the audit writer run together
    writer = AuditWriter(settings)
    writing = threading.Thread(target=writer.run, name="audit-writer", daemon=True)
    writing.start()
    try:
        with worker_thread(settings, broker.registry) as worker:
            report = publish_all(settings, [record_message(r) for r in (original, correction, foreign)])
            assert report.published == 3
            _wait(lambda: worker.routed >= 3, timeout=60, what="all three records decided")
            waits = worker.metrics.registry.get_sample_value("interchange_corrections_waiting_total")
    finally:
        writer.stop()
        writing.join(timeout=15)
    log = list(read_entries(Path(settings.audit_dir) / LOG_NAME))

    # Then the correction was never decided before the original's decisions were audited
    seqs = {(e["record_id"], e["operation"]): e["seq"] for e in log}
    assert seqs[(correction["id"], "disclose")] > seqs[(original["id"], "disclose")]
    assert waits >= 1
    # and the school, which no longer has a pupil in it, got a retraction notice without any data
    school = {props.message_id: (props, orjson.loads(body)) for props, body in broker.inbox("school-100001")}
    assert set(school) == {original["id"], correction["id"]}
    props, notice = school[correction["id"]]
    assert notice == {
        "notice": "retraction",
        "record_id": correction["id"],
        "origin": "13",
        "supersedes": original["id"],
        "kind": "correction",
        "reason": "condition_not_met",
    }
    assert props.headers["x-supersedes"] == original["id"]
    assert props.headers["x-agreement"] == "ISA-ENCOMPASS-13-SCHOOLS"
    [entry] = [e for e in log if e["record_id"] == correction["id"] and e["recipient"] == "school-100001"]
    assert (entry["operation"], entry["reason"], entry["withheld_reason"]) == (
        "disclose",
        "retraction_notice",
        "condition_not_met",
    )
    assert entry["fields_disclosed"] == [] and entry["subject_keys"] == []
    # and the MASH got the correction itself
    mash = {props.message_id: orjson.loads(body) for props, body in broker.inbox("la-mash-leeds")}
    assert mash[correction["id"]]["supersedes"]["id"] == original["id"]
    # and force 01's record reached nobody: refused, audited and dead-lettered with the reason
    assert not [e for e in log if e["record_id"] == foreign["id"] and e["operation"] != "reject"]
    [refused] = [e for e in log if e["record_id"] == foreign["id"]]
    assert refused["reason"] == "supersedes_foreign_record"
    dead = broker.drain(settings.core_vhost, topology.DEAD_QUEUE)
    assert [(p.message_id, p.headers["x-interchange-reason"]) for p, _ in dead] == [
        (foreign["id"], "supersedes_foreign_record")
    ]
    for recipient in ("la-education-leeds", "la-mash-leeds", "school-100001"):
        assert foreign["id"] not in {p.message_id for p, _ in broker.inbox(recipient)}


def test_a_correction_dead_lettered_before_its_original_is_routed_by_dlq_replay_once_the_original_is_audited(
    broker,
):
    # Given a correction whose original was never published: it waits its bound and is dead-lettered
    original = json.loads((EXAMPLES / "07-victim.referral-consent-given.json").read_text())
    correction = dict(original, id=original["id"] + "-c1", supersedes={"id": original["id"], "kind": "correction"})
    settings = broker.settings.with_overrides(correction_wait_seconds=0.1, correction_wait_attempts=3)
    with worker_thread(settings, broker.registry) as worker:
        publish_all(settings, [record_message(correction)])
        _wait(lambda: worker.routed >= 1, what="the correction dead-lettered")
        # When the original is published and audited, then the dead letter is replayed
        publish_all(settings, [record_message(original)])
        _wait(lambda: worker.routed >= 2, what="the original routed")
        AuditWriter(settings).run(stop_when_idle=True)
        code = cli.main([*settings.cli_args(), "dlq", "replay", "--reason", "supersedes_unknown"])
        logs.configure("info", stream=sys.__stderr__)
        assert code == ExitCode.OK
        _wait(lambda: worker.routed >= 3, what="the replayed correction routed")
    AuditWriter(settings).run(stop_when_idle=True)
    # Then victim support holds the original and then the correction, and the dead-letter queue is empty
    assert [p.message_id for p, _ in broker.inbox("victim-support-london")] == [original["id"], correction["id"]]
    assert broker.drain(settings.core_vhost, topology.DEAD_QUEUE) == []
    reasons = [
        e["reason"]
        for e in read_entries(Path(settings.audit_dir) / LOG_NAME)
        if e["record_id"] == correction["id"] and e["operation"] in ("reject", "disclose")
    ]
    assert reasons == ["supersedes_unknown", None]

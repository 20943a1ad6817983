"""Dead-letter triage and replay on the real RabbitMQ: list, show (redacted), replay exactly once, purge."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import structlog
import yaml

from adapters.registry import adapter_class
from broker import topology
from broker.audit.log import LOG_NAME, AuditWriter, read_entries, verify
from broker.cli.main import main
from broker.config import Registry
from broker.ingress.publisher import publish_all, record_message
from tests.support import EXAMPLES, TestBroker, worker_thread
from tests.support import wait_until as _wait

pytestmark = pytest.mark.rabbitmq

RECORD = json.loads((EXAMPLES / "09-intelligence.report-3x5x2-p.json").read_text())  # from agency 13


@pytest.fixture
def without_13(rabbitmq, tmp_path: Path):
    """A broker whose agencies file does not (yet) list West Yorkshire (13)."""
    from broker.config import load_settings

    full = load_settings(environ={})
    doc = yaml.safe_load(full.agencies_file.read_text())
    doc["agencies"] = [a for a in doc["agencies"] if a["code"] != "13"]
    agencies = tmp_path / "agencies-without-13.yaml"
    agencies.write_text(yaml.safe_dump(doc))
    broker = TestBroker.create(tmp_path / "audit", agencies_file=agencies)
    try:
        yield broker
    finally:
        broker.close()


def _route(settings, registry, messages=(), expect: int = 0) -> None:
    with worker_thread(settings, registry) as worker:
        if messages:
            publish_all(settings, list(messages))
        _wait(lambda: worker.routed >= expect)


def _cli(broker, *argv: str) -> int:
    """Run the CLI in-process; then reset structlog (main() binds it to this test's captured stderr)."""
    s = broker.settings
    try:
        return main([*s.cli_args(), *argv])
    finally:
        structlog.reset_defaults()


def _entries(broker) -> list[dict]:
    AuditWriter(broker.settings).run(stop_when_idle=True)
    return list(read_entries(Path(broker.settings.audit_dir) / LOG_NAME))


def test_a_record_from_an_unregistered_agency_is_delivered_once_by_replay_after_the_agency_is_added(without_13, capsys):
    broker = without_13
    # Given a record from agency 13, dead-lettered as unknown_agency while 13 was not registered
    _route(broker.settings, broker.registry, [record_message(RECORD)], expect=1)
    capsys.readouterr()
    assert _cli(broker, "dlq", "list", "--json") == 0
    listed = json.loads(capsys.readouterr().out)
    assert listed["by_reason"] == {"unknown_agency": 1}
    # When agency 13 is added (the full agencies file) and the dead letter is replayed, twice
    fixed = broker.settings.with_overrides(agencies_file=_full_agencies())
    registry = Registry.load(fixed, adapter_class)
    with worker_thread(fixed, registry) as worker:
        assert _cli(broker, "dlq", "replay", "--reason", "unknown_agency") == 0
        _wait(lambda: worker.routed >= 1)
        assert _cli(broker, "dlq", "replay", "--reason", "unknown_agency") == 0
        time.sleep(0.5)
    # Then every entitled recipient holds the record exactly once, and the audit shows one replay and one
    # delivery per recipient
    entries = _entries(broker)
    delivered = [e["recipient"] for e in entries if e["outcome"] == "delivered" and e["record_id"] == RECORD["id"]]
    assert delivered and len(delivered) == len(set(delivered))
    for recipient in registry.recipients:
        ids = [props.message_id for props, _ in broker.inbox(recipient)]
        assert ids == ([RECORD["id"]] if recipient in delivered else [])
    outcomes = [e["outcome"] for e in entries if e["record_id"] == RECORD["id"]]
    assert outcomes.count("rejected") == 1 and outcomes.count("replayed") == 1
    assert broker.drain(broker.settings.core_vhost, topology.DEAD_QUEUE) == []
    assert verify(Path(broker.settings.audit_dir) / LOG_NAME).ok


def test_a_dead_letter_whose_record_was_routed_since_is_removed_not_replayed(without_13):
    broker = without_13
    # Given the record was dead-lettered, replayed and routed, but its dead letter came back (a replay that
    # crashed after republishing and before removing it)
    _route(broker.settings, broker.registry, [record_message(RECORD)], expect=1)
    [(props, body)] = broker.drain(broker.settings.core_vhost, topology.DEAD_QUEUE)
    fixed = broker.settings.with_overrides(agencies_file=_full_agencies())
    registry = Registry.load(fixed, adapter_class)
    _route(fixed, registry, [record_message(RECORD)], expect=1)
    _entries(broker)
    _republish_dead_letter(broker, props, body)
    # When the operator replays it
    with worker_thread(fixed, registry) as worker:
        assert _cli(broker, "dlq", "replay", RECORD["id"]) == 0
        time.sleep(0.5)
        routed = worker.routed
    # Then nothing is republished, the dead letter is gone, and each recipient still holds one copy
    assert routed == 0
    assert broker.drain(broker.settings.core_vhost, topology.DEAD_QUEUE) == []
    for recipient in registry.recipients:
        ids = [p.message_id for p, _ in broker.inbox(recipient)]
        assert len(ids) == len(set(ids))


def test_dlq_show_gives_reason_and_errors_without_names_dates_or_identifiers(broker, capsys):
    # Given a record with a bad PNC check letter, dead-lettered
    bad = json.loads((EXAMPLES / "invalid" / "01-crime.report-bad-pnc-check-letter.json").read_text())
    _route(broker.settings, broker.registry, [record_message(bad)], expect=1)
    # When the operator shows it
    capsys.readouterr()
    assert _cli(broker, "dlq", "show", bad["id"]) == 0
    out = capsys.readouterr().out
    view = json.loads(out)
    # Then it names the reason and the field paths, and none of the record's personal values
    assert view["reason"] == "identifier_invalid"
    assert any("identifiers" in e["path"] for e in view["errors"])
    for value in _personal_values(bad):
        assert value not in out
    # and the dead letter is still there afterwards
    assert len(broker.drain(broker.settings.core_vhost, topology.DEAD_QUEUE)) == 1


def test_purge_removes_only_dead_letters_older_than_the_age_and_audits_each(broker):
    # Given two dead letters, one rejected 40 days ago
    old = json.loads((EXAMPLES / "invalid" / "02-case.file-missing-urn.json").read_text())
    _route(broker.settings, broker.registry, [record_message(old)], expect=1)
    [(props, body)] = broker.drain(broker.settings.core_vhost, topology.DEAD_QUEUE)
    props.headers["x-interchange-rejected-at"] = "2020-01-01T00:00:00Z"
    _republish_dead_letter(broker, props, body)
    _republish_dead_letter(broker, _fresh(props), b"{not json")
    # When dead letters older than 30 days are purged
    assert _cli(broker, "dlq", "purge", "--older-than", "30d") == 0
    # Then only the old one is gone, and its removal is audited
    remaining = broker.drain(broker.settings.core_vhost, topology.DEAD_QUEUE)
    assert [p.message_id for p, _ in remaining] == ["junk-fresh"]
    purged = [e for e in _entries(broker) if e["outcome"] == "purged"]
    assert [e["record_id"] for e in purged] == [old["id"]]


# ---------------------------------------------------------------- helpers


def _full_agencies() -> Path:
    from broker.config import load_settings

    return load_settings(environ={}).agencies_file


def _republish_dead_letter(broker, props, body: bytes) -> None:
    import pika

    from broker.transports.amqp import blocking_channel

    connection, channel = blocking_channel(broker.settings.amqp_url, broker.settings.core_vhost)
    try:
        channel.confirm_delivery()
        channel.basic_publish(
            topology.DLX,
            "test",
            body,
            pika.BasicProperties(
                message_id=props.message_id,
                correlation_id=props.correlation_id,
                headers=props.headers,
                content_type=props.content_type,
                delivery_mode=2,
            ),
            mandatory=True,
        )
    finally:
        connection.close()


def _fresh(props):
    import datetime as dt
    from types import SimpleNamespace

    now = dt.datetime.now(dt.UTC).isoformat().replace("+00:00", "Z")
    return SimpleNamespace(
        message_id="junk-fresh",
        correlation_id=None,
        content_type="application/json",
        headers={"x-interchange-reason": "malformed_json", "x-interchange-rejected-at": now},
    )


def _personal_values(record: dict) -> list[str]:
    values = []
    for person in record["data"].get("persons", []):
        values += [person["name"]["family"], *person["name"].get("given", [])]
        values += [person[k] for k in ("birth_date",) if k in person]
        values += [i["value"] for i in person.get("identifiers", [])]
    return [v for v in values if v]

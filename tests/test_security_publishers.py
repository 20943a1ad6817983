"""Publishers proven: a force cannot inject records as another, and RabbitMQ refuses a forged user_id."""

from __future__ import annotations

import dataclasses
import json
import secrets
import time
from pathlib import Path

import orjson
import pika
import pika.exceptions
import pytest

from broker import router, topology
from broker.audit.log import LOG_NAME, AuditWriter, read_entries
from broker.config import PROJECT_ROOT, load_settings
from broker.message import Message
from broker.ops import access
from broker.ops.provision import admin_for
from broker.runner import build_context
from broker.transports.amqp import connection_parameters
from tests.support import EXAMPLES, worker_thread

pytestmark = pytest.mark.rabbitmq

RECORD_OF_01 = "01-crime.report-burglary-victim-suspect.json"
RECORD_OF_48 = "12-crime.report-open-data-crime-map.json"


def _example(name: str) -> dict:
    return json.loads((EXAMPLES / name).read_text())


def _publish_as(settings, user: str, password: str, record: dict, user_id: str | None) -> None:
    params = connection_parameters(settings.amqp_url, settings.core_vhost, name="interchange-test-publisher")
    params.credentials = pika.PlainCredentials(user, password)
    connection = pika.BlockingConnection(params)
    try:
        channel = connection.channel()
        channel.confirm_delivery()
        channel.basic_publish(
            topology.INGRESS_EXCHANGE,
            record["type"],
            orjson.dumps(record),
            pika.BasicProperties(
                message_id=record["id"], user_id=user_id, delivery_mode=2, content_type="application/json"
            ),
            mandatory=True,
        )
    finally:
        if connection.is_open:
            connection.close()


@pytest.fixture
def forces(broker):
    """Throw-away users for forces 01 and 48 (write ingress only), named as their agencies' publishers."""
    prefix = f"t-{secrets.token_hex(3)}-"
    agencies = dict(broker.registry.agencies)
    for code in ("01", "48"):
        agencies[code] = dataclasses.replace(agencies[code], publishers=(f"{prefix}force-{code}",))
    registry = dataclasses.replace(broker.registry, agencies=agencies)
    admin = admin_for(broker.settings)
    passwords = {code: secrets.token_urlsafe(16) for code in ("01", "48")}
    for code, password in passwords.items():
        admin.put_user(f"{prefix}force-{code}", password)
        admin.set_permissions(
            broker.settings.core_vhost,
            f"{prefix}force-{code}",
            access.NOTHING,
            access.exact(topology.INGRESS_EXCHANGE),
            access.NOTHING,
        )
    try:
        yield registry, {code: (f"{prefix}force-{code}", pw) for code, pw in passwords.items()}
    finally:
        for code in passwords:
            admin.delete_user(f"{prefix}force-{code}")


def _wait(predicate, timeout=20.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.05)


def test_a_force_publishing_as_another_force_is_rejected_and_audited(broker, forces):
    # Given the routing core requiring proven publishers, and force 48's own login
    registry, users = forces
    settings = broker.settings.with_overrides(require_publisher=True)
    user48, password48 = users["48"]
    forged = dict(_example(RECORD_OF_01), id="01-forged-by-48")
    honest = _example(RECORD_OF_48)
    # When force 48 publishes one record claiming origin 01 and one of its own, user_id set to itself
    with worker_thread(settings, registry) as worker:
        _publish_as(settings, user48, password48, forged, user_id=user48)
        _publish_as(settings, user48, password48, honest, user_id=user48)
        _wait(lambda: worker.routed >= 2)
    AuditWriter(settings).run(stop_when_idle=True)
    entries = {e["record_id"]: e for e in read_entries(Path(settings.audit_dir) / LOG_NAME)}
    # Then the forged record is dead-lettered publisher_not_origin and audited with the real publisher
    [(props, _body)] = broker.drain(settings.core_vhost, topology.DEAD_QUEUE)
    assert props.headers["x-interchange-reason"] == "publisher_not_origin"
    assert props.headers["x-original-user-id"] == user48
    assert entries["01-forged-by-48"]["outcome"] == "rejected"
    assert entries["01-forged-by-48"]["reason"] == "publisher_not_origin"
    # And force 48's own record is routed
    assert entries[honest["id"]]["outcome"] != "rejected"
    print(f"\npublisher identity: forged origin rejected ({entries['01-forged-by-48']['reason']}), own record routed")


def test_rabbitmq_itself_refuses_a_user_id_that_is_not_the_login(broker, forces):
    # Given force 48's login
    _registry, users = forces
    user48, password48 = users["48"]
    user01, _ = users["01"]
    # When it publishes with user_id claiming to be force 01
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as refused:
        _publish_as(broker.settings, user48, password48, _example(RECORD_OF_01), user_id=user01)
    # Then RabbitMQ closes the channel (PRECONDITION_FAILED) and nothing reaches the route queue
    assert refused.value.reply_code == 406
    assert broker.drain(broker.settings.core_vhost, topology.ROUTE_QUEUE) == []


def test_without_a_user_id_a_record_is_refused_when_publishers_are_required(settings, registry):
    # Given the routing core with require_publisher on
    ctx = build_context(settings.with_overrides(require_publisher=True), registry)
    record = _example(RECORD_OF_01)
    # When a record arrives without a user_id, and then with force 01's
    anonymous = router.route(Message(orjson.dumps(record), "application/json", record["id"]), ctx)
    body = orjson.dumps(record)
    proven = router.route(Message(body, "application/json", record["id"], user_id="force-01"), ctx)
    # Then only the proven one passes the identity check
    assert (anonymous.outcome, anonymous.reason) == ("rejected", "publisher_not_origin")
    assert proven.outcome == "routed"


def test_production_settings_require_proven_publishers_over_tls_without_guest():
    # Given the production settings file
    settings = load_settings(PROJECT_ROOT / "deploy" / "interchange.production.yaml", environ={})
    # Then publishers must be proven, and the URL is TLS with no password in it
    assert settings.require_publisher is True
    assert settings.amqp_url.startswith("amqps://") and "guest" not in settings.amqp_url
    assert "@" not in settings.amqp_url

"""Partners are isolated in RabbitMQ: every principal x every operation, exactly the allowed cells succeed.

The plan (broker.ops.access) is checked as data first; then a small configuration (2 forces, 3 recipients)
is applied to the real RabbitMQ with throw-away users and the whole matrix is walked and printed.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pika
import pika.exceptions
import pytest

from adapters.registry import adapter_class
from broker import topology
from broker.config import Registry, load_settings
from broker.ops import access, provision
from broker.transports.amqp import connection_parameters

FORCES = ("01", "48")
RECIPIENTS = ("cps", "force-48", "school-100001")


def _subset(registry: Registry) -> Registry:
    return Registry({c: registry.agencies[c] for c in FORCES}, {r: registry.recipients[r] for r in RECIPIENTS}, [])


# ---------------------------------------------------------------- the plan as data


def test_no_generated_user_may_configure_anything_or_use_the_management_api(registry):
    # Given the whole configuration
    plan = access.access_plan(registry, "interchange", lambda r: f"interchange.{r}")
    # Then nobody may declare, delete or bind - but a responder its own enquiry and tap queues - and nobody
    # has a tag
    for p in plan.permissions:
        if plan.user(p.user).role == "enquiry-responder":
            code = plan.user(p.user).subject
            assert p.configure in (
                access.exact(topology.ENQUIRY_QUEUE, topology.ENQUIRY_EXCHANGE),
                access.exact(access.tap_queue(code)),
            )
        else:
            assert p.configure == access.NOTHING
    assert all(u.tags == "" for u in plan.users)
    assert "guest" not in {u.name for u in plan.users}


def test_each_recipient_user_holds_permissions_in_its_own_vhost_only(registry):
    # Given the plan
    plan = access.access_plan(registry, "interchange", lambda r: f"interchange.{r}")
    # Then each recipient user reads exactly its inbox, in exactly one vhost, and writes only its receipts
    for rid in registry.recipients:
        held = plan.permissions_of(access.recipient_user(rid))
        assert list(held) == [f"interchange.{rid}"]
        assert held[f"interchange.{rid}"].read == "^(interchange\\.inbox)$"
        assert held[f"interchange.{rid}"].write == access.exact(topology.RECEIPTS_EXCHANGE)


def test_the_enquiry_gateway_and_each_responder_hold_only_what_an_enquiry_needs(registry):
    plan = access.access_plan(registry, "interchange", lambda r: f"interchange.{r}")
    forces = sorted(r for r in registry.recipients if r.startswith("force-"))
    # the gateway: audit entries through the default exchange in the core; in each force's vhost it sends
    # requests to the enquiry exchange and reads replies on direct reply-to, nothing else anywhere
    gateway = plan.permissions_of(access.GATEWAY_USER)
    assert set(gateway) == {"interchange", *(f"interchange.{f}" for f in forces)}
    assert (gateway["interchange"].write, gateway["interchange"].read) == ("^(amq\\.default)$", access.NOTHING)
    for force in forces:
        held = gateway[f"interchange.{force}"]
        assert (held.configure, held.write, held.read) == (
            access.NOTHING,
            "^(interchange\\.enquiries)$",
            "^(amq\\.rabbitmq\\.reply\\-to)$",
        )
    # a responder: its own force's enquiry queue and its own tap queue in the core, nothing of another force
    for force in forces:
        code = force.removeprefix("force-")
        held = plan.permissions_of(access.responder_user(code))
        assert set(held) == {"interchange", f"interchange.{force}"}
        assert held[f"interchange.{force}"].read == access.exact(topology.ENQUIRY_QUEUE, topology.ENQUIRY_EXCHANGE)
        assert held["interchange"].read == access.exact(access.tap_queue(code), topology.INGRESS_EXCHANGE)
        assert held["interchange"].write == access.exact(access.tap_queue(code))


def test_each_publisher_may_write_only_to_ingress_in_the_core(registry):
    plan = access.access_plan(registry, "interchange", lambda r: f"interchange.{r}")
    publishers = [u for u in plan.users if u.role == "publisher"]
    assert {u.name for u in publishers} == {p for a in registry.agencies.values() for p in a.publishers}
    for user in publishers:
        assert {v: (p.write, p.read) for v, p in plan.permissions_of(user.name).items()} == {
            "interchange": ("^(interchange\\.ingress)$", access.NOTHING)
        }


def test_credentials_come_from_environment_then_secrets_file_then_generation(registry):
    # Given one password in the environment, one hash in the secrets file
    plan = access.access_plan(_subset(registry), "c", lambda r: f"c.{r}")
    environ = {access.password_env_var("force-01"): "from-env"}
    secrets_doc = {"users": {"force-48": {"password_hash": "HASH"}, "recipient-cps": {"certificate": True}}}
    # When credentials are resolved without and with generation
    kept = access.credentials(plan, environ, secrets_doc)
    made = access.credentials(plan, environ, secrets_doc, generate=True, token=lambda: "tok")
    # Then env wins, the hash is used as is, certificate-only is honoured, others are left alone or generated
    assert access.password_env_var("force-01") == "INTERCHANGE_PASSWORD_FORCE_01"
    assert kept == {
        "force-01": access.Credential("password", "from-env"),
        "force-48": access.Credential("hash", "HASH"),
        "recipient-cps": access.Credential("certificate"),
    }
    assert made["interchange-router"] == access.Credential("password", "tok", generated=True)


# ---------------------------------------------------------------- the matrix on the real RabbitMQ


@dataclass
class World:
    settings: Any
    registry: Registry
    prefix: str
    passwords: dict[str, str]

    def user(self, name: str) -> str:
        return self.prefix + name


@pytest.fixture(scope="module")
def world(rabbitmq: None) -> Iterator[World]:
    name = f"t-{secrets.token_hex(4)}"
    settings = load_settings(environ={}).with_overrides(core_vhost=name, recipient_vhost_prefix=f"{name}.")
    registry = _subset(Registry.load(load_settings(environ={}), adapter_class))
    prefix = f"{name}-"
    provision.apply(settings, registry)
    plan = access.access_plan(registry, settings.core_vhost, settings.recipient_vhost, prefix)
    given = access.credentials(plan, {}, generate=True)
    try:
        provision.apply_access(settings, registry, given, user_prefix=prefix)
        yield World(settings, registry, prefix, {u: c.value for u, c in given.items()})
    finally:
        provision.remove_access(settings, registry, user_prefix=prefix)
        provision.remove(settings, registry)


def _connect(world: World, user: str, vhost: str) -> Any:
    params = connection_parameters(world.settings.amqp_url, vhost, name="interchange-matrix")
    params.credentials = pika.PlainCredentials(user, world.passwords[user])
    return pika.BlockingConnection(params)


def _publish(exchange: str, key: str = "crime.report") -> Callable[[Any], None]:
    def run(channel: Any) -> None:
        channel.confirm_delivery()
        channel.basic_publish(exchange, key, b"{}", pika.BasicProperties(delivery_mode=2))

    return run


def _consume(queue: str) -> Callable[[Any], None]:
    return lambda channel: channel.basic_consume(queue, lambda *a: None)


OPERATIONS: dict[str, tuple[str, Callable[[Any], None] | None]] = {
    # column -> (vhost: "core" or a recipient id, operation on a fresh channel; None = just open the vhost)
    "core:open": ("core", None),
    "core:publish-ingress": ("core", _publish(topology.INGRESS_EXCHANGE)),
    "core:get-route": ("core", lambda ch: ch.basic_get(topology.ROUTE_QUEUE)),
    "core:consume-audit": ("core", _consume(topology.AUDIT_QUEUE)),
    "core:declare": ("core", lambda ch: ch.queue_declare("evil", durable=False, auto_delete=True)),
    "core:bind": ("core", lambda ch: ch.queue_bind(topology.ROUTE_QUEUE, topology.INGRESS_EXCHANGE, "evil")),
    # the checkpoint anchor (docs/SECURITY.md section 6): only the audit writer appends, nobody removes
    "core:publish-anchor": ("core", _publish(topology.ANCHOR_EXCHANGE, "")),
    "core:delete-anchor": ("core", lambda ch: ch.queue_delete(topology.ANCHOR_QUEUE)),
    "core:purge-anchor": ("core", lambda ch: ch.queue_purge(topology.ANCHOR_QUEUE)),
    # an enquiry responder's wire tap (docs/ENQUIRY.md): force 48's own queue in the core
    "core:declare-tap-48": ("core", lambda ch: ch.queue_declare(access.tap_queue("48"), durable=True)),
    "core:bind-tap-48": (
        "core",
        lambda ch: (
            ch.queue_declare(access.tap_queue("48"), passive=True),
            ch.queue_bind(access.tap_queue("48"), topology.INGRESS_EXCHANGE, "#"),
        ),
    ),
    "core:consume-tap-48": ("core", _consume(access.tap_queue("48"))),
}
for _rid in RECIPIENTS:
    OPERATIONS |= {
        f"{_rid}:open": (_rid, None),
        f"{_rid}:consume-inbox": (_rid, _consume(topology.INBOX_QUEUE)),
        f"{_rid}:get-inbox": (_rid, lambda ch: ch.basic_get(topology.INBOX_QUEUE)),
        f"{_rid}:passive-declare-inbox": (_rid, lambda ch: ch.queue_declare(topology.INBOX_QUEUE, passive=True)),
        f"{_rid}:publish-deliver": (_rid, _publish(topology.DELIVER_EXCHANGE, "")),
        f"{_rid}:declare": (_rid, lambda ch: ch.queue_declare("evil", durable=False, auto_delete=True)),
        f"{_rid}:bind": (_rid, lambda ch: ch.queue_bind(topology.INBOX_QUEUE, topology.DELIVER_EXCHANGE, "")),
        f"{_rid}:publish-inbox-direct": (_rid, _publish("", topology.INBOX_QUEUE)),
    }
OPERATIONS |= {  # cross-force enquiries, in the one force vhost of the subset
    "force-48:publish-enquiry": ("force-48", _publish(topology.ENQUIRY_EXCHANGE, topology.ENQUIRY_QUEUE)),
    "force-48:consume-enquiry": ("force-48", _consume(topology.ENQUIRY_QUEUE)),
    "force-48:consume-reply-to": (
        "force-48",
        lambda ch: ch.basic_consume("amq.rabbitmq.reply-to", lambda *a: None, auto_ack=True),
    ),
    "force-48:declare-enquiry": (
        "force-48",
        lambda ch: ch.queue_declare(topology.ENQUIRY_QUEUE, durable=True, arguments={"x-queue-type": "classic"}),
    ),
}


def _allowed(role: str, subject: str, column: str) -> bool:
    """The policy, written independently of broker.ops.access: what each role may do, cell by cell."""
    where, op = column.split(":")
    if op == "consume-reply-to":  # a per-channel pseudo-queue RabbitMQ does not permission-check: no harm,
        return _allowed(role, subject, f"{where}:open")  # a consumer only ever sees replies to its own channel
    if role == "publisher":
        return column in ("core:open", "core:publish-ingress")
    if role == "recipient":
        return where == subject and op in ("open", "consume-inbox", "get-inbox", "passive-declare-inbox")
    if role == "router":
        return column in ("core:open", "core:get-route") or (
            where != "core" and op in ("open", "publish-deliver", "passive-declare-inbox")
        )
    if role == "audit":
        return column in ("core:open", "core:consume-audit", "core:publish-anchor")
    if role == "enquiry-gateway":  # requests to each force's enquiry exchange, replies on direct reply-to
        return column == "core:open" or (
            where.startswith("force-")
            and op in ("open", "publish-enquiry", "consume-reply-to", "passive-declare-inbox")
        )
    if role == "enquiry-responder":  # its own force's enquiry queue, and its own wire tap in the core
        own = f"force-{subject}"
        core = ("core:open", f"core:declare-tap-{subject}", f"core:bind-tap-{subject}", f"core:consume-tap-{subject}")
        return column in core or (
            where == own
            and op in ("open", "consume-enquiry", "declare-enquiry", "passive-declare-inbox", "publish-inbox-direct")
        )
    raise AssertionError(role)


def _attempt(world: World, user: str, vhost_of: Callable[[str], str], column: str, connections: dict[str, Any]) -> bool:
    where, operation = OPERATIONS[column]
    vhost = vhost_of(where)
    if vhost not in connections:
        try:
            connections[vhost] = _connect(world, user, vhost)
        except pika.exceptions.AMQPError:
            connections[vhost] = None
    connection = connections[vhost]
    if connection is None:
        return False
    if operation is None:
        return True
    channel = connection.channel()
    try:
        operation(channel)
    except pika.exceptions.ChannelClosedByBroker as exc:
        assert exc.reply_code in (403, 404, 405), exc
        return False
    if channel.is_open:
        channel.close()
    return True


def test_every_partner_can_do_exactly_what_its_role_allows_and_nothing_else(world):
    # Given the subset's users applied to RabbitMQ with throw-away passwords
    plan = access.access_plan(world.registry, world.settings.core_vhost, world.settings.recipient_vhost, world.prefix)

    def vhost_of(where: str) -> str:
        return world.settings.core_vhost if where == "core" else world.settings.recipient_vhost(where)

    # When each user tries every operation
    rows: dict[str, dict[str, bool]] = {}
    wrong: list[str] = []
    for user in plan.users:
        connections: dict[str, Any] = {}
        try:
            rows[user.name] = {c: _attempt(world, user.name, vhost_of, c, connections) for c in OPERATIONS}
        finally:
            for connection in connections.values():
                if connection is not None and connection.is_open:
                    connection.close()
        for column, succeeded in rows[user.name].items():
            if succeeded != _allowed(user.role, user.subject, column):
                wrong.append(f"{user.name} {column}: {'succeeded' if succeeded else 'refused'}")

    # Then exactly the allowed cells succeeded
    _print_matrix(rows, world.prefix)
    cells = sum(len(r) for r in rows.values())
    allowed = sum(v for r in rows.values() for v in r.values())
    print(
        f"isolation matrix: {len(rows)} users x {len(OPERATIONS)} operations = {cells} cells, "
        f"{allowed} allowed, {cells - allowed} refused, {len(wrong)} wrong"
    )
    assert not wrong, wrong


def _print_matrix(rows: dict[str, dict[str, bool]], prefix: str) -> None:
    columns = list(OPERATIONS)
    print("\nuser \\ operation: " + " ".join(f"{i:>2}" for i in range(len(columns))))
    for i, column in enumerate(columns):
        print(f"  {i:>2} = {column}")
    for user, row in rows.items():
        print(f"{user.removeprefix(prefix):<26}" + " ".join(" Y" if row[c] else " ." for c in columns))

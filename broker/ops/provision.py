"""Applying the topology to a running RabbitMQ: vhosts, permissions, policies, exchanges, queues.

`apply(settings, registry)` is idempotent: run it at every deployment and from tests.  It needs the
management API (for vhosts and policies) and an AMQP login that may configure the vhosts.
"""

from __future__ import annotations

from typing import Any

import pika

from broker import topology
from broker.config import Registry, Settings
from broker.ops import access
from broker.transports.admin import RabbitAdmin
from broker.transports.amqp import blocking_channel, split_urls


def recipient_vhosts(settings: Settings, registry: Registry) -> dict[str, str]:
    """Each recipient's vhost, by recipient id."""
    return {rid: settings.recipient_vhost(rid) for rid in sorted(registry.recipients)}


def vhost_specs(settings: Settings, registry: Registry) -> dict[str, dict[str, list[dict[str, Any]]]]:
    """vhost -> topology spec for this configuration (core with its partitions, and every recipient)."""
    return topology.vhost_specs(settings.core_vhost, recipient_vhosts(settings, registry), settings.partitions)


def admin_for(settings: Settings) -> RabbitAdmin:
    """A management API client with the AMQP URL's credentials."""
    params = pika.URLParameters(split_urls(settings.amqp_url)[0])
    return RabbitAdmin(settings.management_url, params.credentials.username, params.credentials.password)


def apply(settings: Settings, registry: Registry, admin: RabbitAdmin | None = None) -> list[str]:
    """Create or update every vhost the configuration needs; returns the vhosts touched."""
    admin = admin or admin_for(settings)
    core_user = pika.URLParameters(split_urls(settings.amqp_url)[0]).credentials.username
    specs = vhost_specs(settings, registry)
    for vhost, spec in specs.items():
        admin.put_vhost(vhost)
        admin.set_permissions(vhost, core_user, ".*", ".*", ".*")
        for policy in spec["policies"]:
            admin.put_policy(
                vhost, policy["name"], policy["pattern"], policy["definition"], policy["apply-to"], policy["priority"]
            )
        connection, channel = blocking_channel(settings.amqp_url, vhost, "interchange-provision", settings.tls)
        try:
            topology.declare(channel, spec)
        finally:
            connection.close()
    return list(specs)


def remove(settings: Settings, registry: Registry, admin: RabbitAdmin | None = None) -> None:
    """Delete every vhost of this configuration (tests and demo resets only)."""
    admin = admin or admin_for(settings)
    for vhost in vhost_specs(settings, registry):
        admin.delete_vhost(vhost)


def purge(settings: Settings, registry: Registry) -> None:
    """Empty every queue of this configuration (the demo starts from nothing); a stream (the checkpoint
    anchor) cannot be purged, and is append-only on purpose: it is left as it is."""
    for vhost, spec in vhost_specs(settings, registry).items():
        connection, channel = blocking_channel(settings.amqp_url, vhost, "interchange-purge", settings.tls)
        try:
            for queue in spec["queues"]:
                if (queue.get("arguments") or {}).get("x-queue-type") != "stream":
                    channel.queue_purge(queue["name"])
        finally:
            connection.close()


def queue_depths(settings: Settings, registry: Registry) -> dict[tuple[str, str], int]:
    """(vhost, queue) -> messages ready + unacked, through passive declares."""
    depths: dict[tuple[str, str], int] = {}
    for vhost, spec in vhost_specs(settings, registry).items():
        connection, channel = blocking_channel(settings.amqp_url, vhost, "interchange-depth", settings.tls)
        try:
            for queue in spec["queues"]:
                ok: Any = channel.queue_declare(queue["name"], passive=True)
                depths[(vhost, queue["name"])] = ok.method.message_count
        finally:
            connection.close()
    return depths


def apply_access(
    settings: Settings,
    registry: Registry,
    given: dict[str, Any],
    admin: RabbitAdmin | None = None,
    user_prefix: str = "",
) -> list[str]:
    """Create the users of `broker.ops.access.access_plan` and set exactly their permissions (idempotent).

    `given` maps user -> `access.Credential`; a user without one that already exists keeps its credential,
    a new user without one is certificate-only (EXTERNAL).  Permissions a managed user holds on any vhost
    outside the plan are removed.  Returns the users touched.
    """
    admin = admin or admin_for(settings)
    plan = access.access_plan(registry, settings.core_vhost, settings.recipient_vhost, user_prefix)
    existing = {u["name"] for u in admin.users()}
    for user in plan.users:
        credential = given.get(user.name)
        if credential is None and user.name in existing:
            continue
        kind = credential.kind if credential else "certificate"
        value = credential.value if credential else None
        admin.put_user(
            user.name,
            password=value if kind == "password" else None,
            tags=user.tags,
            password_hash=value if kind == "hash" else None,
        )
    for user in plan.users:
        wanted = plan.permissions_of(user.name)
        for held in admin.user_permissions(user.name):
            if held["vhost"] not in wanted:
                admin.clear_permissions(held["vhost"], user.name)
        for vhost, p in wanted.items():
            admin.set_permissions(vhost, user.name, p.configure, p.write, p.read)
    return [u.name for u in plan.users]


def remove_access(
    settings: Settings, registry: Registry, admin: RabbitAdmin | None = None, user_prefix: str = ""
) -> None:
    """Delete every user of the access plan (tests only: never run against a live deployment)."""
    admin = admin or admin_for(settings)
    plan = access.access_plan(registry, settings.core_vhost, settings.recipient_vhost, user_prefix)
    for user in plan.users:
        admin.delete_user(user.name)

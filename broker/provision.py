"""Applying the topology to a running RabbitMQ: vhosts, permissions, policies, exchanges, queues.

`apply(settings, registry)` is idempotent: run it at every deployment and from tests.  It needs the
management API (for vhosts and policies) and an AMQP login that may configure the vhosts.
"""

from __future__ import annotations

from typing import Any

import pika

from broker import topology
from broker.config import Registry, Settings
from broker.rabbitadmin import RabbitAdmin
from broker.transport import blocking_channel, split_urls


def recipient_vhosts(settings: Settings, registry: Registry) -> dict[str, str]:
    return {rid: settings.recipient_vhost(rid) for rid in sorted(registry.recipients)}


def admin_for(settings: Settings) -> RabbitAdmin:
    params = pika.URLParameters(split_urls(settings.amqp_url)[0])
    return RabbitAdmin(settings.management_url, params.credentials.username, params.credentials.password)


def apply(settings: Settings, registry: Registry, admin: RabbitAdmin | None = None) -> list[str]:
    """Create or update every vhost the configuration needs; returns the vhosts touched."""
    admin = admin or admin_for(settings)
    core_user = pika.URLParameters(split_urls(settings.amqp_url)[0]).credentials.username
    specs = topology.vhost_specs(settings.core_vhost, recipient_vhosts(settings, registry))
    for vhost, spec in specs.items():
        admin.put_vhost(vhost)
        admin.set_permissions(vhost, core_user, ".*", ".*", ".*")
        for policy in spec["policies"]:
            admin.put_policy(vhost, policy["name"], policy["pattern"], policy["definition"], policy["apply-to"],
                             policy["priority"])
        connection, channel = blocking_channel(settings.amqp_url, vhost, "interchange-provision")
        try:
            topology.declare(channel, spec)
        finally:
            connection.close()
    return list(specs)


def remove(settings: Settings, registry: Registry, admin: RabbitAdmin | None = None) -> None:
    """Delete every vhost of this configuration (tests and demo resets only)."""
    admin = admin or admin_for(settings)
    for vhost in topology.vhost_specs(settings.core_vhost, recipient_vhosts(settings, registry)):
        admin.delete_vhost(vhost)


def purge(settings: Settings, registry: Registry) -> None:
    """Empty every queue of this configuration (the demo starts from nothing)."""
    for vhost, spec in topology.vhost_specs(settings.core_vhost, recipient_vhosts(settings, registry)).items():
        connection, channel = blocking_channel(settings.amqp_url, vhost, "interchange-purge")
        try:
            for queue in spec["queues"]:
                channel.queue_purge(queue["name"])
        finally:
            connection.close()


def queue_depths(settings: Settings, registry: Registry) -> dict[tuple[str, str], int]:
    """(vhost, queue) -> messages ready + unacked, through passive declares."""
    depths: dict[tuple[str, str], int] = {}
    for vhost, spec in topology.vhost_specs(settings.core_vhost, recipient_vhosts(settings, registry)).items():
        connection, channel = blocking_channel(settings.amqp_url, vhost, "interchange-depth")
        try:
            for queue in spec["queues"]:
                ok: Any = channel.queue_declare(queue["name"], passive=True)
                depths[(vhost, queue["name"])] = ok.method.message_count
        finally:
            connection.close()
    return depths

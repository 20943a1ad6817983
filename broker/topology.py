"""The RabbitMQ topology, declared in code and exported as `deploy/rabbitmq/definitions.json`.

Core vhost (`settings.core_vhost`):
  exchange interchange.ingress (topic)  -> quorum queue interchange.route   (records from forces)
  exchange interchange.raw (topic)      -> quorum queue interchange.raw     (legacy payloads for the adapters)
  quorum queue interchange.audit (single active consumer)                  (audit entries, to the writer)
  exchange interchange.dlx (topic)      -> quorum queue interchange.dead    (refused records, with reasons)
  exchange interchange.anchor (fanout)  -> stream interchange.anchor        (audit checkpoints, append-only)
One vhost per recipient (`settings.recipient_vhost(id)`), holding only that recipient's queues:
  exchange interchange.deliver (fanout) -> quorum queue interchange.inbox
  exchange interchange.dlx (topic)      -> quorum queue interchange.dead
  exchange interchange.receipts (fanout) -> quorum queue interchange.receipts  (partners acknowledge corrections)
With `partitions: N` (N > 1), ingress feeds an x-consistent-hash exchange keyed on correlation_id and
quorum queues interchange.route.0..N-1, each with a single active consumer (docs/SCALING.md).
Dead-lettering and delivery limits are policies, so operators can change them without redeclaring.
The audit queue has its own policy without a delivery limit and without dead-lettering: an audit entry waits
for the writer however often a failing writer returns it (docs/RELIABILITY.md, audit disk faults).
"""

from __future__ import annotations

from typing import Any

INGRESS_EXCHANGE = "interchange.ingress"
RAW_EXCHANGE = "interchange.raw"
RAW_QUEUE = "interchange.raw"
ROUTE_QUEUE = "interchange.route"
AUDIT_QUEUE = "interchange.audit"
DLX = "interchange.dlx"
DEAD_QUEUE = "interchange.dead"
DELIVER_EXCHANGE = "interchange.deliver"
INBOX_QUEUE = "interchange.inbox"
RECEIPTS_EXCHANGE = "interchange.receipts"  # partners acknowledge corrections here (broker.routing.corrections)
RECEIPTS_QUEUE = "interchange.receipts"
ANCHOR_EXCHANGE = "interchange.anchor"  # audit checkpoints kept off the audit disk (broker.audit.anchor)
ANCHOR_QUEUE = "interchange.anchor"

QUORUM = {"x-queue-type": "quorum"}
# A record returned to its queue this many times is dead-lettered (reason delivery_limit).  Every crash of a
# worker returns all it had prefetched, so the limit leaves room for many crashes before a record is given up.
DELIVERY_LIMIT = 50
# The audit queue never dead-letters and has no delivery limit (a quorum queue without one redelivers for
# ever): a writer that cannot write returns its batches, and they must still be there when it can.
AUDIT_POLICY: dict[str, Any] = {
    "name": "interchange-audit",
    "pattern": r"^interchange\.audit$",
    "apply-to": "queues",
    "priority": 1,
    "definition": {"overflow": "reject-publish"},
}
PARTITION_EXCHANGE = "interchange.route.hash"  # x-consistent-hash on the correlation_id property
UNKEYED_EXCHANGE = "interchange.route.unkeyed"  # records without a correlation_id: partition 0


def route_queues(partitions: int = 1) -> list[str]:
    """The queues routing workers consume: `interchange.route`, or `interchange.route.0..N-1`."""
    return [ROUTE_QUEUE] if partitions <= 1 else [f"{ROUTE_QUEUE}.{i}" for i in range(partitions)]


def partition_preference(partitions: int, worker_index: int, workers: int) -> tuple[list[str], list[str]]:
    """(own, standby): the route queues worker `worker_index` of `workers` subscribes to at once, and the
    ones it subscribes to a little later.  With single active consumer the first subscriber of a queue is
    its active consumer, so the partitions spread over the workers; the later subscriptions are standbys
    that take over when a worker dies."""
    queues = route_queues(partitions)
    workers = max(1, workers)
    own = [q for k, q in enumerate(queues) if k % workers == worker_index % workers]
    return own, [q for q in queues if q not in own]


def _route_exchanges(partitions: int) -> list[dict[str, Any]]:
    if partitions <= 1:
        return []
    return [
        {
            "name": PARTITION_EXCHANGE,
            "type": "x-consistent-hash",
            "arguments": {"hash-property": "correlation_id", "alternate-exchange": UNKEYED_EXCHANGE},
        },
        {"name": UNKEYED_EXCHANGE, "type": "fanout"},
    ]


def _route_queue_specs(partitions: int) -> list[dict[str, Any]]:
    """With partitions, each queue has a single active consumer: one worker at a time decides the records
    of a case, in order, while N workers share the partitions (docs/SCALING.md)."""
    if partitions <= 1:
        return [{"name": ROUTE_QUEUE, "arguments": dict(QUORUM)}]
    return [
        {"name": q, "arguments": dict(QUORUM, **{"x-single-active-consumer": True})} for q in route_queues(partitions)
    ]


def _route_bindings(partitions: int) -> list[dict[str, Any]]:
    if partitions <= 1:
        return [{"source": INGRESS_EXCHANGE, "destination": ROUTE_QUEUE, "routing_key": "#"}]
    queues = route_queues(partitions)
    return (
        [
            {
                "source": INGRESS_EXCHANGE,
                "destination": PARTITION_EXCHANGE,
                "routing_key": "#",
                "destination_type": "exchange",
            }
        ]
        + [{"source": PARTITION_EXCHANGE, "destination": q, "routing_key": "1"} for q in queues]
        + [{"source": UNKEYED_EXCHANGE, "destination": queues[0], "routing_key": ""}]
    )


def core_spec(partitions: int = 1) -> dict[str, list[dict[str, Any]]]:
    """The core vhost's exchanges, queues and bindings (route queues split into `partitions`)."""
    return {
        "exchanges": [
            {"name": INGRESS_EXCHANGE, "type": "topic"},
            *_route_exchanges(partitions),
            {"name": RAW_EXCHANGE, "type": "topic"},
            {"name": DLX, "type": "topic"},
            {"name": ANCHOR_EXCHANGE, "type": "fanout"},
        ],
        "queues": [
            *_route_queue_specs(partitions),
            {"name": RAW_QUEUE, "arguments": dict(QUORUM)},
            {"name": AUDIT_QUEUE, "arguments": dict(QUORUM, **{"x-single-active-consumer": True})},
            {"name": DEAD_QUEUE, "arguments": dict(QUORUM)},
            {"name": ANCHOR_QUEUE, "arguments": {"x-queue-type": "stream"}},
        ],
        "bindings": [
            *_route_bindings(partitions),
            {"source": RAW_EXCHANGE, "destination": RAW_QUEUE, "routing_key": "#"},
            {"source": DLX, "destination": DEAD_QUEUE, "routing_key": "#"},
            {"source": ANCHOR_EXCHANGE, "destination": ANCHOR_QUEUE, "routing_key": ""},
        ],
        "policies": [
            {
                "name": "interchange-core",
                "pattern": r"^interchange\.(route|raw)$" if partitions <= 1 else r"^interchange\.(route\.[0-9]+|raw)$",
                "apply-to": "queues",
                "priority": 0,
                "definition": {
                    "dead-letter-exchange": DLX,
                    "dead-letter-strategy": "at-least-once",
                    "overflow": "reject-publish",
                    "delivery-limit": DELIVERY_LIMIT,
                },
            },
            AUDIT_POLICY,
        ],
    }


def recipient_spec() -> dict[str, list[dict[str, Any]]]:
    """A recipient vhost's exchanges, queues and bindings."""
    return {
        "exchanges": [
            {"name": DELIVER_EXCHANGE, "type": "fanout"},
            {"name": DLX, "type": "topic"},
            {"name": RECEIPTS_EXCHANGE, "type": "fanout"},
        ],
        "queues": [
            {"name": INBOX_QUEUE, "arguments": dict(QUORUM)},
            {"name": DEAD_QUEUE, "arguments": dict(QUORUM)},
            {"name": RECEIPTS_QUEUE, "arguments": dict(QUORUM)},
        ],
        "bindings": [
            {"source": DELIVER_EXCHANGE, "destination": INBOX_QUEUE, "routing_key": ""},
            {"source": RECEIPTS_EXCHANGE, "destination": RECEIPTS_QUEUE, "routing_key": ""},
            {"source": DLX, "destination": DEAD_QUEUE, "routing_key": "#"},
        ],
        "policies": [
            {
                "name": "interchange-inbox",
                "pattern": r"^interchange\.inbox$",
                "apply-to": "queues",
                "priority": 0,
                "definition": {
                    "dead-letter-exchange": DLX,
                    "dead-letter-strategy": "at-least-once",
                    "overflow": "reject-publish",
                    "delivery-limit": 50,
                },
            },
        ],
    }


ENQUIRY_QUEUE = "interchange.enquiry"  # a force's cross-force enquiry requests (docs/ENQUIRY.md)
ENQUIRY_QUEUE_SPEC = {"name": ENQUIRY_QUEUE, "arguments": {"x-queue-type": "classic"}}  # short-lived, expiring
# the gateway sends requests here, not through the default exchange, so its user can write to nothing else
ENQUIRY_EXCHANGE = "interchange.enquiries"


def vhost_specs(
    core_vhost: str, recipient_vhosts: dict[str, str], partitions: int = 1
) -> dict[str, dict[str, list[dict[str, Any]]]]:
    """vhost name -> spec, for the core and every recipient (a force's vhost also holds its enquiry queue)."""
    specs = {core_vhost: core_spec(partitions)}
    for recipient, vhost in recipient_vhosts.items():
        specs[vhost] = recipient_spec()
        if recipient.startswith("force-"):
            specs[vhost]["exchanges"].append({"name": ENQUIRY_EXCHANGE, "type": "direct"})
            specs[vhost]["queues"].append(dict(ENQUIRY_QUEUE_SPEC))
            specs[vhost]["bindings"].append(
                {"source": ENQUIRY_EXCHANGE, "destination": ENQUIRY_QUEUE, "routing_key": ENQUIRY_QUEUE}
            )
    return specs


def declare(channel: Any, spec: dict[str, list[dict[str, Any]]]) -> None:
    """Declare a vhost's exchanges, queues and bindings on a blocking pika channel (idempotent)."""
    for exchange in spec["exchanges"]:
        channel.exchange_declare(
            exchange["name"], exchange["type"], durable=True, arguments=exchange.get("arguments") or None
        )
    for queue in spec["queues"]:
        channel.queue_declare(queue["name"], durable=True, arguments=queue["arguments"])
    for binding in spec["bindings"]:
        if binding.get("destination_type") == "exchange":
            channel.exchange_bind(binding["destination"], binding["source"], binding["routing_key"])
        else:
            channel.queue_bind(binding["destination"], binding["source"], binding["routing_key"])


def definitions(
    core_vhost: str, recipient_vhosts: dict[str, str], extra: dict[str, Any] | None = None, partitions: int = 1
) -> dict[str, Any]:
    """The topology in RabbitMQ's definitions format (importable with `rabbitmqctl import_definitions`)."""
    out: dict[str, Any] = {
        "vhosts": [],
        "exchanges": [],
        "queues": [],
        "bindings": [],
        "policies": [],
        "users": [],
        "permissions": [],
    }
    for vhost, spec in vhost_specs(core_vhost, recipient_vhosts, partitions).items():
        out["vhosts"].append({"name": vhost})
        for exchange in spec["exchanges"]:
            out["exchanges"].append(
                {
                    "name": exchange["name"],
                    "vhost": vhost,
                    "type": exchange["type"],
                    "durable": True,
                    "auto_delete": False,
                    "internal": False,
                    "arguments": exchange.get("arguments", {}),
                }
            )
        for queue in spec["queues"]:
            out["queues"].append(
                {
                    "name": queue["name"],
                    "vhost": vhost,
                    "durable": True,
                    "auto_delete": False,
                    "arguments": queue["arguments"],
                }
            )
        for binding in spec["bindings"]:
            out["bindings"].append(
                {
                    "source": binding["source"],
                    "vhost": vhost,
                    "destination": binding["destination"],
                    "destination_type": binding.get("destination_type", "queue"),
                    "routing_key": binding["routing_key"],
                    "arguments": {},
                }
            )
        for policy in spec["policies"]:
            out["policies"].append(dict(policy, vhost=vhost))
    for key, value in (extra or {}).items():
        out[key] = value
    return out

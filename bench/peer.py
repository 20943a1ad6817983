"""The peer: the same routing job written as a straightforward FastStream application.

    python -m bench.peer SPEC.json

What an integration team would write first with a well-kept framework, to set Interchange's rate beside:
one FastStream subscriber on the route queue (prefetch as the worker's), which for each record parses the
JSON, validates it against the common schema with `jsonschema` (the reference engine, formats checked),
publishes one audit line to the audit queue and waits for its confirm, then publishes the record to the
same 4 recipient vhosts as the relay (aio-pika publisher confirms, awaited together), and lets FastStream
ack after the handler returns.  A record that fails validation goes to the dead-letter exchange instead.
No agreements, projection or rendering: it is cheaper than the real job, so the multiple is conservative.
Prints {"records": n, "seconds": s, "invalid": k} when `count` records are handled, then exits.
"""

from __future__ import annotations

import asyncio
import sys
import time
from typing import Any
from urllib.parse import quote

import orjson
from faststream.rabbit import Channel, RabbitBroker, RabbitQueue
from jsonschema import Draft202012Validator

from broker import topology
from broker.routing.validation import Validator


def vhost_url(url: str, vhost: str) -> str:
    return f"{url.split(',')[0].rstrip('/')}/{quote(vhost, safe='')}"


def validators() -> dict[str, Draft202012Validator]:
    """One reference-engine validator per record type, over the common schema's own registry."""
    common = Validator()
    return {
        record_type: Draft202012Validator(
            schema, registry=common.registry, format_checker=Draft202012Validator.FORMAT_CHECKER
        )
        for record_type, schema in common.schemas.items()
    }


async def run(spec: dict[str, Any]) -> dict[str, Any]:
    checks = validators()
    core = RabbitBroker(vhost_url(spec["url"], spec["core"]), logger=None)
    partners = {
        name: RabbitBroker(vhost_url(spec["url"], vhost), logger=None)
        for name, vhost in sorted(spec["recipients"].items())
    }
    targets = sorted(partners)
    state = {"handled": 0, "invalid": 0, "first": 0.0, "last": 0.0}
    done = asyncio.Event()

    async def raw(message: Any) -> bytes:  # the body as published: the handler parses it itself
        return bytes(message.body)

    @core.subscriber(
        RabbitQueue(topology.ROUTE_QUEUE, declare=False), channel=Channel(prefetch_count=spec["prefetch"]), decoder=raw
    )
    async def route(body: bytes) -> None:
        if not state["first"]:
            state["first"] = time.perf_counter()
        record = orjson.loads(body)
        errors = list(checks[record["type"]].iter_errors(record))
        if errors:
            state["invalid"] += 1
            await core.publish(body, exchange=topology.DLX, routing_key="schema_invalid", message_id=record.get("id"))
        else:
            n = state["handled"]
            line = orjson.dumps(
                {
                    "record_id": record["id"],
                    "type": record["type"],
                    "time": time.time(),
                    "recipients": [targets[(n + k) % len(targets)] for k in range(spec["fanout"])],
                }
            )
            await core.publish(line, queue=topology.AUDIT_QUEUE, message_id=f"peer-audit-{n}")
            await asyncio.gather(
                *(
                    partners[targets[(n + k) % len(targets)]].publish(
                        body,
                        exchange=topology.DELIVER_EXCHANGE,
                        routing_key=record["type"],
                        message_id=record["id"],
                        headers=spec["headers"],
                        content_type="application/json",
                    )
                    for k in range(spec["fanout"])
                )
            )
        state["handled"] += 1
        if state["handled"] >= spec["count"]:
            state["last"] = time.perf_counter()
            done.set()

    for partner in partners.values():
        await partner.start()
    await core.start()
    await done.wait()
    await asyncio.sleep(0.2)  # let FastStream ack the last handler before the connection closes
    await core.stop()
    for partner in partners.values():
        await partner.stop()
    return {"records": state["handled"], "seconds": state["last"] - state["first"], "invalid": state["invalid"]}


def main(argv: list[str]) -> int:
    with open(argv[0], "rb") as fh:
        spec = orjson.loads(fh.read())
    print(orjson.dumps(asyncio.run(run(spec))).decode(), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""The transport-only ceiling: the worker's AMQP work for each record, with nothing else.

    python -m bench.relay SPEC.json

Consumes the route queue with the worker's prefetch, and for each record publishes one audit message
(a real one, captured from route(), with its own batch id) to the audit queue, waits for its confirm, then
publishes the record's body to 4 recipient vhosts (with delivery headers like the worker's), waits for
those confirms and acks with the worker's batched multiple-ack.  Same transport class, same confirm
pipelining, same ordering guarantees; no parsing, validation, deciding, rendering or audit building.
Prints {"records": n, "seconds": s} when `count` records are settled, then exits.
"""

from __future__ import annotations

import sys
import time
from typing import Any

import orjson

from broker import topology
from broker.message import Outgoing
from broker.transports.amqp import AmqpTransport, Inbound
from broker.worker import AckBatcher


class Relay:
    def __init__(self, spec: dict[str, Any]) -> None:
        self.targets = sorted(spec["recipients"])
        self.fanout = spec["fanout"]
        self.count = spec["count"]
        self.headers = spec["headers"]
        self.audit_entries = spec["audit_entries"]
        self.transport = AmqpTransport(
            spec["url"],
            {"core": spec["core"]} | spec["recipients"],
            confirm_timeout=30.0,
            name="interchange-bench-relay",
        )
        self.acks = AckBatcher(self.transport)
        self.prefetch = spec["prefetch"]
        self.received = self.settled = 0
        self.first = self.last = 0.0

    def run(self) -> dict[str, Any]:
        self.transport.start(on_ready=lambda: None)
        self.transport.consume("core", topology.ROUTE_QUEUE, self.prefetch, self.on_message)
        self.transport.run()
        return {"records": self.settled, "seconds": self.last - self.first}

    def on_message(self, inbound: Inbound) -> None:
        if not self.received:
            self.first = time.perf_counter()
        self.received += 1
        self.acks.received(inbound)
        n = self.received
        audit = Outgoing(
            "core",
            "",
            topology.AUDIT_QUEUE,
            orjson.dumps({"batch": f"relay-{n}-{time.time_ns()}", "entries": self.audit_entries}),
            f"audit-{n}",
            None,
            {"x-record-id": str(n)},
        )
        self.transport.publish(audit, lambda ok, why: self._audited(inbound, n, ok, why))

    def _audited(self, inbound: Inbound, n: int, ok: bool, why: str) -> None:
        if not ok:
            raise SystemExit(f"relay: audit publish failed: {why}")
        remaining = [self.fanout]
        for k in range(self.fanout):
            target = self.targets[(n + k) % len(self.targets)]
            out = Outgoing(target, topology.DELIVER_EXCHANGE, "bench", inbound.body, f"r-{n}", None, self.headers)
            self.transport.publish(out, lambda ok, why: self._delivered(inbound, remaining, ok, why))

    def _delivered(self, inbound: Inbound, remaining: list[int], ok: bool, why: str) -> None:
        if not ok:
            raise SystemExit(f"relay: delivery publish failed: {why}")
        remaining[0] -= 1
        if remaining[0] == 0:
            self.acks.settle(inbound)
            self.settled += 1
            if self.settled == self.count:
                self.last = time.perf_counter()
                self.transport.stop()


def main(argv: list[str]) -> int:
    with open(argv[0], "rb") as fh:
        spec = orjson.loads(fh.read())
    print(orjson.dumps(Relay(spec).run()).decode(), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

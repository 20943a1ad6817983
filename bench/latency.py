"""Latency probe: consume every recipient inbox and measure record time -> delivery, per delivery.

    python -m bench.latency SPEC.json

The paced publisher stamps each record's `time` just before publishing it; this process reads `time`
from each delivered body and records now - time.  It prints the latencies (ms, sorted) as JSON once it has
seen `expect` deliveries or has been idle for `idle` seconds.  It reads deliveries from the partner's side,
so each figure includes RabbitMQ handing the delivery on: an upper bound of "until confirmed".
"""

from __future__ import annotations

import datetime as dt
import sys
import time
from typing import Any

import orjson

from broker import topology
from broker.transports.amqp import AmqpTransport, Inbound


def main(argv: list[str]) -> int:
    with open(argv[0], "rb") as fh:
        spec: dict[str, Any] = orjson.loads(fh.read())
    transport = AmqpTransport(spec["url"], spec["recipients"], name="interchange-bench-latency")
    latencies: list[float] = []
    state = {"last": time.monotonic()}

    def on_message(inbound: Inbound) -> None:
        now = time.time()
        stamped = orjson.loads(inbound.body).get("time", "")
        then = dt.datetime.fromisoformat(stamped.replace("Z", "+00:00")).timestamp()
        latencies.append((now - then) * 1000)
        transport.ack(inbound)
        state["last"] = time.monotonic()
        if len(latencies) >= spec["expect"]:
            transport.stop()

    def watchdog() -> None:
        if time.monotonic() - state["last"] > spec["idle"]:
            transport.stop()
        else:
            transport.call_later(0.5, watchdog)

    transport.start(on_ready=lambda: print("ready", flush=True))
    for target in spec["recipients"]:
        transport.consume(target, topology.INBOX_QUEUE, 1000, on_message)
    transport.call_later(0.5, watchdog)
    transport.run()
    print(orjson.dumps(sorted(latencies)).decode(), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

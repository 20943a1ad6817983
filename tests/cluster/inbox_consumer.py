"""A recipient's consumer for the fault battery: appends each delivery's message_id to a file, then acks
every 50 (so a SIGKILL lands mid-batch), taking PAUSE seconds per delivery (a partner system's own work).
Usage: python -m tests.cluster.inbox_consumer URL VHOST FILE [PAUSE]"""

from __future__ import annotations

import sys
import time

from broker import topology
from broker.transports.amqp import blocking_channel

BATCH = 50


def main(url: str, vhost: str, out: str, pause: str = "0.005") -> None:
    connection, channel = blocking_channel(url, vhost, "fault-test-consumer")
    channel.basic_qos(prefetch_count=BATCH * 4)
    pending, last = 0, 0
    with open(out, "a", buffering=1) as sink:  # one write per line: a kill never leaves half an id
        for method, props, _body in channel.consume(topology.INBOX_QUEUE, inactivity_timeout=0.5):
            if method is not None:
                time.sleep(float(pause))
                sink.write(f"{props.message_id}\n")
                pending, last = pending + 1, method.delivery_tag
            if pending and (pending >= BATCH or method is None):
                sink.flush()  # written down before acknowledged: a kill after this loses nothing
                channel.basic_ack(last, multiple=True)
                pending = 0


if __name__ == "__main__":
    main(*sys.argv[1:5])

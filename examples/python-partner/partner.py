"""A partner system's consumer of its Interchange inbox in Python (pika + jsonschema), the twin of
examples/node-partner/partner.js: it validates every delivery against the view schema its `x-dataschema`
header names, drops duplicates by `message_id`, acknowledges corrections and retraction notices on
`interchange.receipts`, prints its counts as one JSON line and exits 1 when any delivery was invalid.

    python partner.py --url amqp://USER:PASS@HOST:5672/VHOST --recipient ID --contract DIR/ID [--idle 1.5]

It needs only `pika` and `jsonschema` (no part of the exchange).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from pathlib import Path

import jsonschema
import pika
from referencing import Registry, Resource

INBOX, RECEIPTS = "interchange.inbox", "interchange.receipts"


def load_contract(folder: Path) -> dict[str, jsonschema.protocols.Validator]:
    """A validator per schema `$id` under CONTRACT/schemas."""
    schemas = [json.loads(p.read_text(encoding="utf-8")) for p in sorted((folder / "schemas").rglob("*.json"))]
    registry = Registry().with_resources((s["$id"], Resource.from_contents(s)) for s in schemas)
    checker = jsonschema.Draft202012Validator.FORMAT_CHECKER
    return {s["$id"]: jsonschema.Draft202012Validator(s, registry=registry, format_checker=checker) for s in schemas}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--recipient", required=True)
    parser.add_argument("--contract", type=Path, required=True)
    parser.add_argument("--idle", type=float, default=1.5, help="stop after this many seconds without a message")
    args = parser.parse_args(argv)
    validators = load_contract(args.contract)
    seen: set[str] = set()  # keep these in your database: a restart must still drop copies
    counts = {"recipient": args.recipient, "received": 0, "valid": 0, "invalid": 0, "duplicates": 0}
    counts |= {"corrections": 0, "retractions": 0, "receipts": 0}

    connection = pika.BlockingConnection(pika.URLParameters(args.url))
    channel = connection.channel()
    channel.confirm_delivery()  # receipts are confirmed by the broker
    channel.basic_qos(prefetch_count=50)
    for method, props, body in channel.consume(INBOX, inactivity_timeout=args.idle):
        if method is None:
            break
        counts["received"] += 1
        headers = props.headers or {}
        if props.message_id in seen:  # the same record again (a redelivery): already stored
            counts["duplicates"] += 1
            channel.basic_ack(method.delivery_tag)
            continue
        seen.add(props.message_id)
        named = headers.get("x-dataschema")
        content_type = (props.content_type or "application/json").split(";")[0].strip()
        try:
            payload = json.loads(body) if content_type.endswith("json") else body.decode("utf-8")
        except ValueError:
            payload = None
        validator = validators.get(named)
        errors = list(validator.iter_errors(payload)) if validator and payload is not None else ["unreadable"]
        if isinstance(payload, dict) and payload.get("dataschema", named) != named:
            errors.append("body names another schema")
        if errors:
            counts["invalid"] += 1
            print(
                json.dumps({"message_id": props.message_id, "schema": named, "errors": [str(e)[:300] for e in errors]}),
                file=sys.stderr,
            )
            channel.basic_nack(method.delivery_tag, requeue=False)  # refuse what breaks the contract (and alert)
            continue
        counts["valid"] += 1
        # ... store the delivery here, then acknowledge corrections and notices, then ack the message ...
        notice = headers.get("x-notice") == "retraction"
        correction = not notice and "x-supersedes-kind" in headers
        counts["retractions"] += notice
        counts["corrections"] += correction
        if notice or correction:
            receipt = {
                "message_id": props.message_id,
                "recipient": args.recipient,
                "supersedes": headers.get("x-supersedes"),
                "received_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
            }
            channel.basic_publish(
                RECEIPTS,
                "",
                json.dumps(receipt).encode(),
                pika.BasicProperties(
                    content_type="application/json", delivery_mode=2, message_id=f"receipt-{props.message_id}"
                ),
            )
            counts["receipts"] += 1
        channel.basic_ack(method.delivery_tag)
    channel.cancel()
    connection.close()
    print(json.dumps(counts))
    return 1 if counts["invalid"] else 0


if __name__ == "__main__":
    sys.exit(main())

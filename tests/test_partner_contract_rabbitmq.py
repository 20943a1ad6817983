"""The Node.js partner client (examples/node-partner) against a live exchange on the real RabbitMQ: every
recipient of the demo records validates every delivery against its exported contract (issue 13)."""

from __future__ import annotations

import copy
import datetime as dt
import json
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import orjson
import pika
import pytest
import yaml
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from broker import topology
from broker.audit.log import LOG_NAME, AuditWriter, read_entries
from broker.cli.contract import formats_of
from broker.config import PROJECT_ROOT
from broker.ingress.publisher import publish_all, record_message
from broker.ops import logs
from broker.partners import contract
from broker.transports.amqp import blocking_channel
from tests.support import EXAMPLES, TestBroker, worker_thread
from tests.support import wait_until as _wait
from tests.test_partner_contract import property_records
from tests.test_security_fuzz import agreement_docs

pytestmark = pytest.mark.rabbitmq
CLIENT = PROJECT_ROOT / "examples" / "node-partner" / "partner.js"
PY_CLIENT = PROJECT_ROOT / "examples" / "python-partner" / "partner.py"


@pytest.fixture(autouse=True)
def _logs_to_stderr() -> Iterator[None]:
    """`interchange` commands log to the stdout of their moment, which pytest closes after a test: log to
    the real stderr before and after each test so a later worker thread never writes to a closed file."""
    logs.configure("info", stream=sys.__stderr__)
    yield
    logs.configure("info", stream=sys.__stderr__)


def client_command(language: str, url: str, recipient: str, folder: Path) -> list[str]:
    """The example partner client in `language`, consuming one recipient's inbox."""
    common = ["--url", url, "--recipient", recipient, "--contract", str(folder)]
    if language == "node":
        return ["node", str(CLIENT), *common, "--idle-ms", "2000"]
    return [sys.executable, str(PY_CLIENT), *common, "--idle", "2"]


def _records() -> list[dict]:
    """The demo records, a correction of the burglary and of the Encompass notice (the child moved school)."""
    records = [orjson.loads(f.read_bytes()) for f in sorted(EXAMPLES.glob("*.json"))]
    burglary = copy.deepcopy(records[0])
    burglary["id"] += "-c1"
    burglary["supersedes"] = {"id": records[0]["id"], "kind": "correction"}
    burglary["data"]["outcome"] = "under-investigation"
    encompass = next(r for r in records if r["id"].startswith("13-") and r["type"] == "safeguarding.notification")
    moved = copy.deepcopy(encompass)
    moved["id"] += "-c1"
    moved["supersedes"] = {"id": encompass["id"], "kind": "correction"}
    for person in moved["data"]["persons"]:
        if "school" in person:
            person["school"] = {"urn": "100002", "name": "Another Primary School"}
    return [*records, burglary, moved]


def _duplicate_one(settings, recipient: str) -> str:
    """Put a second copy of one delivery in the recipient's inbox, as a redelivery would."""
    connection, channel = blocking_channel(
        settings.amqp_url, settings.recipient_vhost(recipient), "contract-test", settings.tls
    )
    try:
        method, props, body = channel.basic_get(topology.INBOX_QUEUE)
        assert method is not None, f"{recipient} has no delivery to copy"
        channel.basic_publish("", topology.INBOX_QUEUE, body, props)
        channel.basic_nack(method.delivery_tag, requeue=True)
        return props.message_id
    finally:
        connection.close()


@pytest.mark.parametrize("language", ["node", "python"])
def test_the_partner_client_finds_every_delivery_valid_for_every_recipient(language, broker, tmp_path: Path) -> None:
    # Given a live exchange (worker and audit writer) on this test's vhosts, and the demo records with two
    # corrections published to it
    assert shutil.which("node"), "Node.js 20+ is needed (make test installs the client: scripts/ensure-node.sh)"
    settings = broker.settings.with_overrides(
        open_data_key="contract-rabbitmq-key", correction_wait_seconds=0.25, correction_wait_attempts=40
    )
    records = _records()
    writer = AuditWriter(settings)
    writing = threading.Thread(target=writer.run, name="audit-writer", daemon=True)
    writing.start()
    try:
        with worker_thread(settings, broker.registry) as worker:
            assert publish_all(settings, [record_message(r) for r in records]).published == len(records)
            _wait(lambda: worker.routed >= len(records), timeout=90, what="every record decided")
    finally:
        writer.stop()
        writing.join(timeout=15)
    log = list(read_entries(Path(settings.audit_dir) / LOG_NAME))
    disclosed = [e for e in log if e.get("operation") == "disclose"]
    # and force 13's inbox holding a redelivered copy of one delivery
    copied = _duplicate_one(settings, "force-13")
    # and every recipient's contract exported for these vhosts
    formats = formats_of(broker.registry)
    for recipient in broker.registry.recipients:
        contract.export(contract.contract(broker.registry, settings, recipient, None, formats), tmp_path)

    # When the example client (Node.js: amqplib + ajv; Python: pika + jsonschema) consumes every inbox
    runs = {
        recipient: subprocess.Popen(
            client_command(
                language,
                f"amqp://guest:guest@127.0.0.1:5672/{quote(settings.recipient_vhost(recipient), safe='')}",
                recipient,
                tmp_path / recipient,
            ),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for recipient in sorted(broker.registry.recipients)
    }
    counts = {}
    for recipient, run in runs.items():
        out, err = run.communicate(timeout=120)
        assert run.returncode == 0, f"{recipient}: exit {run.returncode}\n{out}\n{err}"
        counts[recipient] = json.loads(out.strip().splitlines()[-1])

    # Then no delivery was invalid against the schema it names, for any recipient, and every one was received
    print(
        f"\n{language} partner client:",
        json.dumps({r: {k: v for k, v in c.items() if k != "schemas"} for r, c in counts.items()}),
    )
    assert {r: c["invalid"] for r, c in counts.items()} == {r: 0 for r in counts}
    assert sum(c["valid"] for c in counts.values()) == len(disclosed) >= 15
    assert all(c["valid"] > 0 for c in counts.values()), counts
    # and the redelivered copy was dropped by message_id
    assert counts["force-13"]["duplicates"] == 1 and copied
    # and the school acknowledged its retraction notice, the burglary's recipients their correction
    assert counts["school-100001"]["retractions"] == 1 and counts["school-100001"]["receipts"] == 1
    assert counts["crime-map"]["corrections"] == 1
    receipts = broker.drain(settings.recipient_vhost("school-100001"), topology.RECEIPTS_QUEUE)
    [(props, body)] = receipts
    receipt = json.loads(body)
    assert receipt["message_id"] == records[-1]["id"] and receipt["recipient"] == "school-100001"
    assert props.message_id == f"receipt-{records[-1]['id']}"
    assert isinstance(props, pika.BasicProperties)


def test_the_node_partner_client_refuses_a_delivery_its_contract_does_not_allow(broker, tmp_path: Path) -> None:
    # Given the CPS contract, and in its inbox a case file naming its view but carrying a field the agreement
    # withholds, and a message naming no schema of the contract
    settings = broker.settings
    contract.export(contract.contract(broker.registry, settings, "cps"), tmp_path)
    [view] = [v for v in contract.views_of(broker.registry, "cps") if v.record_type == "case.file"]
    record = orjson.loads((EXAMPLES / "02-case.file-to-cps.json").read_bytes()) | {"dataschema": view.id}
    record["data"]["not_in_the_agreement"] = "x"
    connection, channel = blocking_channel(settings.amqp_url, settings.recipient_vhost("cps"), "t", settings.tls)
    try:
        for n, (body, named) in enumerate(((record, view.id), ({"a": 1}, "https://example.org/none.json"))):
            props = pika.BasicProperties(
                message_id=f"m{n}", content_type="application/json", headers={"x-dataschema": named}
            )
            channel.basic_publish("", topology.INBOX_QUEUE, orjson.dumps(body), props)
    finally:
        connection.close()
    # When the Node.js client consumes the inbox
    url = f"amqp://guest:guest@127.0.0.1:5672/{quote(settings.recipient_vhost('cps'), safe='')}"
    run = subprocess.run(
        [
            "node",
            str(CLIENT),
            "--url",
            url,
            "--recipient",
            "cps",
            "--contract",
            str(tmp_path / "cps"),
            "--idle-ms",
            "1000",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    # Then it counts both as invalid, names why, and exits 1
    counts = json.loads(run.stdout.strip().splitlines()[-1])
    assert (run.returncode, counts["invalid"], counts["valid"]) == (1, 2, 0)
    assert "not_in_the_agreement" in run.stderr and "no such schema" in run.stderr


def deployable(docs: list[dict], today: dt.date) -> list[dict]:
    """The generated agreements a configuration would accept (a configured recipient; the open-data one
    only for what its anonymising format renders), with validity moved from the generator's day to today."""
    from tests.test_security_fuzz import REGISTRY, TODAY

    kept = []
    for doc in docs:
        if doc["recipient"] not in REGISTRY.recipients:
            continue
        doc = copy.deepcopy(doc)
        if REGISTRY.recipients[doc["recipient"]].public:
            doc["record_types"] = [t for t in doc["record_types"] if t == "crime.report"]
            doc["fields"] = {t: f for t, f in doc["fields"].items() if t == "crime.report"}
            if not doc["record_types"]:
                continue
        for key in ("valid_from", "valid_until", "review_by"):
            doc[key] = (today + (dt.date.fromisoformat(doc[key]) - TODAY)).isoformat()
        kept.append(doc)
    return kept


@settings(max_examples=3, deadline=None, derandomize=True, database=None, suppress_health_check=list(HealthCheck))
@given(docs=agreement_docs(), data=st.data())
def test_the_no_leak_property_tests_agreements_through_rabbitmq_give_0_invalid_deliveries(
    rabbitmq, tmp_path_factory, docs, data
) -> None:
    # Given agreements drawn by the no-leak property test's generator, deployed on this test's own vhosts,
    # and the example records for each agreement re-marked by that test's generators
    docs = deployable(docs, dt.datetime.now(dt.UTC).date())
    assume(docs)
    tmp = tmp_path_factory.mktemp("property")
    for doc in docs:
        (tmp / "agreements").mkdir(exist_ok=True)
        (tmp / "agreements" / f"{doc['id']}.yaml").write_text(yaml.safe_dump(doc))
    records = property_records(docs, data.draw)
    test_broker = TestBroker.create(
        tmp / "audit", tmp / "agreements", open_data_key="contract-property-key", correction_wait_attempts=1
    )
    try:
        settings_ = test_broker.settings
        writer = AuditWriter(settings_)
        writing = threading.Thread(target=writer.run, name="audit-writer", daemon=True)
        writing.start()
        try:
            with worker_thread(settings_, test_broker.registry) as worker:
                assert publish_all(settings_, [record_message(r) for r in records]).published == len(records)
                _wait(lambda: worker.routed >= len(records), timeout=120, what="every record decided")
        finally:
            writer.stop()
            writing.join(timeout=15)
        disclosed = [e for e in read_entries(Path(settings_.audit_dir) / LOG_NAME) if e.get("operation") == "disclose"]
        recipients = sorted({e["recipient"] for e in disclosed})
        formats = formats_of(test_broker.registry)
        for recipient in recipients:
            contract.export(contract.contract(test_broker.registry, settings_, recipient, None, formats), tmp / "c")
        # When the Node.js client consumes every inbox that received something
        runs = {
            r: subprocess.Popen(
                client_command(
                    "node",
                    f"amqp://guest:guest@127.0.0.1:5672/{quote(settings_.recipient_vhost(r), safe='')}",
                    r,
                    tmp / "c" / r,
                ),
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for r in recipients
        }
        counts = {}
        for recipient, run in runs.items():
            out, err = run.communicate(timeout=120)
            assert run.returncode == 0, f"{recipient}: exit {run.returncode}\n{out}\n{err}"
            counts[recipient] = json.loads(out.strip().splitlines()[-1])
    finally:
        test_broker.close()
    # Then every delivery arrived and was valid against the schema it names
    assert sum(c["valid"] for c in counts.values()) == len(disclosed)
    assert sum(c["invalid"] for c in counts.values()) == 0
    PROPERTY_TALLY["deliveries"] += len(disclosed)
    PROPERTY_TALLY["recipients"] |= set(recipients)


PROPERTY_TALLY: dict = {"deliveries": 0, "recipients": set()}


def test_the_property_run_through_rabbitmq_delivered_something() -> None:
    # Given the run above (pytest runs this module in order), Then it carried real deliveries
    print(
        f"\nproperty agreements through RabbitMQ: {PROPERTY_TALLY['deliveries']} deliveries to "
        f"{len(PROPERTY_TALLY['recipients'])} recipients, 0 invalid"
    )
    assert PROPERTY_TALLY["deliveries"] >= 10, PROPERTY_TALLY

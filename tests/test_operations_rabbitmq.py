"""Operations on live processes: the audit writer and a worker run as real `interchange` processes on the
real RabbitMQ with their metrics ports, the example traffic goes through them, then we check the metrics
exposition (promtool), that the metrics count exactly what the audit log holds, that no log line carries
personal data, the health endpoints, and that the dashboard reads only metrics that exist."""

from __future__ import annotations

import collections
import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from broker.audit.log import LOG_NAME
from broker.config import PROJECT_ROOT
from broker.demo import wait_for_audit
from tests.support import EXAMPLES, TestBroker
from tests.test_deploy import dashboard_exprs, metric_names

pytestmark = pytest.mark.rabbitmq

FILES = sorted(EXAMPLES.glob("*.json")) + sorted((EXAMPLES / "invalid").glob("*.json"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()
    except OSError:
        return 0, ""


def wait_until(predicate, timeout: float = 45.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture(scope="module")
def live(rabbitmq, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ops")
    broker = TestBroker.create(tmp / "audit")
    s = broker.settings
    common = [sys.executable, "-m", "broker", *s.cli_args()]
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    ports = {"audit-writer": free_port(), "worker": free_port()}
    logs = {role: tmp / f"{role}.log" for role in ("audit-writer", "worker", "cli")}
    children = []
    try:
        for role, port in ports.items():
            with logs[role].open("ab") as out:
                children.append(
                    subprocess.Popen(
                        common + ["--metrics-port", str(port), role],
                        stdout=out,
                        stderr=subprocess.STDOUT,
                        env=env,
                        cwd=PROJECT_ROOT,
                    )
                )
        for role, port in ports.items():
            wait_until(lambda port=port: get(f"http://127.0.0.1:{port}/readyz")[0] == 200, what=f"{role} ready")

        def cli(*args: str) -> None:
            with logs["cli"].open("ab") as out:
                subprocess.run(
                    common + list(args),
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    env=env,
                    timeout=120,
                    cwd=PROJECT_ROOT,
                    check=False,
                )

        cli("publish", *map(str, FILES))
        ids = {json.loads(f.read_text()).get("id") for f in FILES}
        entries = wait_for_audit(Path(s.audit_dir) / LOG_NAME, ids)
        worker_url = f"http://127.0.0.1:{ports['worker']}"
        wait_until(
            lambda: _value(get(worker_url + "/metrics")[1], "interchange_records_received_total") == len(FILES),
            what="worker counted every record",
        )
        audit_url = f"http://127.0.0.1:{ports['audit-writer']}"
        wait_until(
            lambda: _value(get(audit_url + "/metrics")[1], "interchange_audit_entries_written_total") == len(entries),
            what="audit writer counted every entry",
        )
        cli("dlq", "list")
        for f in sorted((EXAMPLES / "invalid").glob("*.json")):
            cli("dlq", "show", json.loads(f.read_text())["id"])
        yield SimpleNamespace(
            broker=broker,
            entries=entries,
            logs=logs,
            urls={"worker": worker_url, "audit-writer": audit_url},
            expositions={
                "worker": get(worker_url + "/metrics")[1],
                "audit-writer": get(audit_url + "/metrics")[1],
            },
        )
    finally:
        for child in children:
            child.terminate()
        for child in children:
            try:
                child.wait(timeout=20)
            except subprocess.TimeoutExpired:
                child.kill()
        broker.close()


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def _value(text: str, name: str, **labels: str) -> float:
    return sum(
        v
        for (n, lbls), v in _samples(text).items()
        if n == name and all(dict(lbls).get(k) == want for k, want in labels.items())
    )


def test_each_process_exposition_passes_promtool_check_metrics(live):
    for role, text in live.expositions.items():
        # Given a live exposition / When promtool lints it / Then it finds nothing
        result = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True, text=True)
        assert result.returncode == 0, f"{role}: {result.stdout}{result.stderr}"


def test_the_metrics_count_exactly_what_the_audit_log_holds(live):
    # Given the demo traffic has been routed and audited
    worker, entries = live.expositions["worker"], live.entries
    outcome = collections.Counter(e["outcome"] for e in entries)
    # Then every record received is counted once, by source
    assert _value(worker, "interchange_records_received_total") == len(FILES)
    by_source = collections.Counter(e["source"] for e in entries if e["outcome"] == "rejected")
    for source in ("01", "13", "48", "hmcts"):
        routed = {e["record_id"] for e in entries if e["source"] == source and e["outcome"] != "rejected"}
        assert (
            _value(worker, "interchange_records_received_total", source=source, format="common-json")
            == len(routed) + by_source[source]
        )
    # and rejections and dead letters by reason, deliveries by recipient, decisions by outcome match the audit
    for reason, n in collections.Counter(e["reason"] for e in entries if e["outcome"] == "rejected").items():
        assert _value(worker, "interchange_records_rejected_total", reason=reason) == n
        assert _value(worker, "interchange_dead_lettered_total", reason=reason) == n
    for recipient, n in collections.Counter(e["recipient"] for e in entries if e["outcome"] == "delivered").items():
        assert _value(worker, "interchange_deliveries_confirmed_total", recipient=recipient) == n
    delivered = collections.Counter((e["recipient"], e["agreement"]) for e in entries if e["outcome"] == "delivered")
    for (recipient, agreement), n in delivered.items():
        assert (
            _value(
                worker,
                "interchange_decisions_total",
                recipient=recipient,
                agreement=agreement,
                outcome="delivered",
            )
            == n
        )
    withheld = collections.Counter(
        (e["recipient"] or "none", e["reason"]) for e in entries if e["outcome"] == "withheld"
    )
    for (recipient, reason), n in withheld.items():
        assert (
            _value(worker, "interchange_decisions_total", recipient=recipient, outcome="withheld", reason=reason) == n
        )
    assert _value(worker, "interchange_decisions_total", outcome="delivered") == outcome["delivered"]
    assert _value(worker, "interchange_decisions_total", outcome="withheld") == outcome["withheld"]
    assert _value(worker, "interchange_end_to_end_latency_seconds_count") == len(
        {e["record_id"] for e in entries if e["outcome"] == "delivered"}
    )
    assert _value(worker, "interchange_publish_failures_total") == 0
    # and the audit writer counted every entry it wrote
    assert _value(live.expositions["audit-writer"], "interchange_audit_entries_written_total") == len(entries)


def test_no_log_line_of_any_process_carries_a_name_date_of_birth_or_identifier(live):
    # Given the personal values in the example inputs
    secrets = set()
    for f in sorted(EXAMPLES.glob("*.json")):
        secrets |= _personal_values(json.loads(f.read_text()))
    assert len(secrets) > 20
    # When we read every line the worker, the audit writer and the CLI wrote
    text = "\n".join(path.read_text() for path in live.logs.values())
    assert "record_routed" in text and "audit_writer_started" in text
    # Then none of those values appears
    assert sorted(v for v in secrets if v in text) == []


def test_every_worker_line_about_a_record_carries_its_ids_and_a_utc_timestamp(live):
    lines = [json.loads(line) for line in live.logs["worker"].read_text().splitlines() if line.startswith("{")]
    about_records = [line for line in lines if line["event"].startswith("record_")]
    assert len(about_records) == len(FILES)
    for line in about_records:
        assert line["record_id"] and "correlation_id" in line
    for line in lines:
        assert line["timestamp"].endswith("Z") and line["level"]


def test_health_endpoints_answer_alive_and_ready_on_each_process(live):
    for role, url in live.urls.items():
        assert get(url + "/healthz")[0] == 200, role
        status, body = get(url + "/readyz")
        assert status == 200, body
        assert all(check["ok"] for check in json.loads(body)["checks"].values())
        assert get(url + "/nothing-here")[0] == 404


def test_every_dashboard_query_reads_only_metrics_that_exist(live):
    # Given the names in the live expositions and in RabbitMQ's prometheus plugin (aggregated and per queue)
    exists = {name for text in live.expositions.values() for name, _ in _samples(text)}
    rabbit = (
        get("http://127.0.0.1:15692/metrics")[1]
        + get(
            "http://127.0.0.1:15692/metrics/detailed?family=queue_coarse_metrics&family=queue_consumer_count"
            "&family=queue_metrics"
        )[1]
    )
    exists |= {line.split()[2] for line in rabbit.splitlines() if line.startswith("# TYPE")}
    exists.add("up")  # recorded by Prometheus itself for every scrape target
    # the ingest processes' metrics (not running in this test): their own exposition
    from prometheus_client import generate_latest

    from broker.ops.metrics import IngestMetrics

    ingest = generate_latest(IngestMetrics().registry).decode()
    exists |= {line.split()[2] for line in ingest.splitlines() if line.startswith("# TYPE")}
    # and the recording rules' series, each only if what it reads exists
    for group in yaml.safe_load((PROJECT_ROOT / "deploy" / "prometheus" / "recording.yml").read_text())["groups"]:
        for rule in group["rules"]:
            assert metric_names(rule["expr"]) <= exists, rule["record"]
            exists.add(rule["record"])
    # When every panel query is parsed
    used = set().union(*(metric_names(expr) for expr in dashboard_exprs()))
    # Then each metric it reads exists
    assert used and sorted(used - exists) == []


def _personal_values(record: dict) -> set[str]:
    values: set[str] = set()
    for person in record.get("data", {}).get("persons", []):
        name = person.get("name", {})
        values |= {name.get("family", ""), *name.get("given", []), person.get("birth_date", "")}
        values |= {i["value"] for i in person.get("identifiers", [])}
    for obj in record.get("data", {}).get("objects", []):
        values |= {i["value"] for i in obj.get("identifiers", [])} | {obj.get("vrm", "")}
    return {v for v in values if isinstance(v, str) and len(v) >= 3}

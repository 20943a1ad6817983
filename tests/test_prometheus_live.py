"""The monitoring stack, run for real: the Prometheus server scrapes live Interchange processes.

Debian's `prometheus` (installed by `make test` with promtool) starts with the project's own scrape
configuration, alert rules and recording rules; only the targets (127.0.0.1 and this test's ports), the
intervals (1 s) and each alert's `for:` (shortened to 3 s) are changed.  Live processes: audit writer,
routing worker, ingest worker and enquiry gateway on this test's vhosts, and RabbitMQ's own exporter.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path
from types import SimpleNamespace

import pika
import pytest
import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from broker import topology
from broker.config import PROJECT_ROOT
from broker.transports.amqp import blocking_channel
from tests.support import EXAMPLES, TestBroker

pytestmark = [pytest.mark.rabbitmq, pytest.mark.slow]
PROMETHEUS = PROJECT_ROOT / "deploy" / "prometheus"
DASHBOARD = PROJECT_ROOT / "deploy" / "grafana" / "dashboards" / "interchange.json"
FILES = sorted(EXAMPLES.glob("*.json")) + sorted((EXAMPLES / "invalid").glob("*.json"))
STREET_CSV = PROJECT_ROOT / "tests" / "fixtures" / "public" / "2017-01-city-of-london-street.csv"


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(predicate, timeout: float = 60.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.25)
    raise AssertionError(f"timed out waiting for {what}")


def prometheus_config(tmp: Path, ports: dict[str, int]) -> Path:
    """The project's prometheus.yml with this test's targets and 1 s intervals; rules with `for:` of 3 s."""
    config = yaml.safe_load((PROMETHEUS / "prometheus.yml").read_text())
    config["global"] = {"scrape_interval": "1s", "evaluation_interval": "1s"}
    for job in config["scrape_configs"]:
        for static in job["static_configs"]:
            role = static.get("labels", {}).get("role")
            static["targets"] = [
                f"127.0.0.1:{ports[role]}" if role else "127.0.0.1:15692" for _target in static["targets"]
            ]
    for name in config["rule_files"]:
        rules = yaml.safe_load((PROMETHEUS / name).read_text())
        for group in rules["groups"]:
            for rule in group["rules"]:
                if "for" in rule:
                    rule["for"] = "3s"
        (tmp / name).write_text(yaml.safe_dump(rules))
    path = tmp / "prometheus.yml"
    path.write_text(yaml.safe_dump(config))
    return path


def api(base: str, path: str, **params: str) -> dict:
    url = f"{base}/api/v1/{path}" + (f"?{urllib.parse.urlencode(params)}" if params else "")
    with urllib.request.urlopen(url, timeout=10) as response:
        body = json.loads(response.read())
    assert body["status"] == "success", body
    return body["data"]


@pytest.fixture(scope="module")
def stack(rabbitmq, tmp_path_factory):
    if not shutil.which("prometheus"):
        pytest.fail("prometheus is missing: `make test` installs Debian's prometheus (scripts/ensure-promtool.sh)")
    tmp = tmp_path_factory.mktemp("prometheus")
    broker = TestBroker.create(tmp / "audit")
    common = [sys.executable, "-m", "broker", *broker.settings.cli_args()]
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    ports = {
        "audit-writer": free_port(),
        "worker": free_port(),
        "ingest-worker": free_port(),
        "enquiry-gateway": free_port(),
    }
    idp_key = tmp / "idp.pem"
    idp_key.write_bytes(
        ec.generate_private_key(ec.SECP256R1())
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    argv = {role: common + ["--metrics-port", str(port), role] for role, port in ports.items()}
    argv["enquiry-gateway"] = common + [
        "enquiry-gateway",
        "--host",
        "127.0.0.1",
        "--port",
        str(ports["enquiry-gateway"]),
        "--jwt-public-key",
        str(idp_key),
    ]
    children: dict[str, subprocess.Popen] = {}
    prom = None
    try:
        for role in ports:
            with (tmp / f"{role}.log").open("ab") as out:
                children[role] = subprocess.Popen(
                    argv[role], stdout=out, stderr=subprocess.STDOUT, env=env, cwd=PROJECT_ROOT
                )
        prom_port = free_port()
        prom = subprocess.Popen(
            [
                "prometheus",
                f"--config.file={prometheus_config(tmp, ports)}",
                f"--storage.tsdb.path={tmp / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{prom_port}",
            ],
            stdout=(tmp / "prometheus.log").open("ab"),
            stderr=subprocess.STDOUT,
        )
        base = f"http://127.0.0.1:{prom_port}"
        # traffic only once every target has been scraped at zero, as in production where the processes
        # run long before a record arrives (increase() needs a sample before the first record)
        wait_until(lambda: _all_up(base), what="every target scraped")
        time.sleep(2.5)
        # traffic: the example records (valid and invalid) and a raw street CSV through the ingest worker
        subprocess.run(
            common + ["publish", *map(str, FILES)], check=True, timeout=120, cwd=PROJECT_ROOT, capture_output=True
        )
        connection, channel = blocking_channel(broker.settings.amqp_url, broker.settings.core_vhost, "test-raw")
        channel.confirm_delivery()
        channel.basic_publish(
            "",
            topology.RAW_QUEUE,
            STREET_CSV.read_bytes(),
            pika.BasicProperties(
                message_id="street-1",
                delivery_mode=2,
                headers={"x-adapter": "police-uk-csv", "x-mapping": "city-of-london"},
            ),
            mandatory=True,
        )
        connection.close()
        yield SimpleNamespace(base=base, children=children, ports=ports, tmp=tmp)
    finally:
        if prom is not None:
            prom.terminate()
            prom.wait(timeout=20)
        for child in children.values():
            if child.poll() is None:
                child.terminate()
        for child in children.values():
            try:
                child.wait(timeout=20)
            except subprocess.TimeoutExpired:
                child.kill()
        broker.close()


def _all_up(base: str) -> list[dict] | None:
    try:
        targets = api(base, "targets")["activeTargets"]
    except OSError:
        return None
    return targets if len(targets) == 6 and all(t["health"] == "up" for t in targets) else None


def test_every_scrape_target_is_up(stack):
    targets = wait_until(lambda: _all_up(stack.base), what="every target up")
    roles = {t["labels"].get("role") for t in targets if t["labels"]["job"] == "interchange"}
    assert roles == {"audit-writer", "worker", "ingest-worker", "enquiry-gateway"}
    assert {t["labels"]["job"] for t in targets} == {"interchange", "rabbitmq", "rabbitmq-queues"}


def test_every_rule_loads_and_evaluates_without_error(stack):
    files = {name: yaml.safe_load((PROMETHEUS / name).read_text()) for name in ("alerts.yml", "recording.yml")}
    expected = sum(len(g["rules"]) for doc in files.values() for g in doc["groups"])

    def evaluated():
        rules = [r for g in api(stack.base, "rules")["groups"] for r in g["rules"]]
        done = len(rules) == expected and all(r["health"] == "ok" and r["lastEvaluation"] > "2000" for r in rules)
        return rules if done else None

    rules = wait_until(evaluated, what="every rule evaluated")
    assert all(not r.get("lastError") for r in rules)


def test_each_usage_figure_has_a_recording_rule_with_live_data(stack):
    wanted = {
        "interchange:deliveries_by_agreement:increase1d",
        "interchange:withheld_by_reason:increase1d",
        "interchange:rejected_by_reason:increase1d",
        "interchange:integrations_served:count1d",
        "interchange:records_received_by_source:increase1d",
        "interchange:ingest_records_published:increase1d",
        "interchange:ingest_bytes_read:increase1d",
    }
    recorded = {
        r["record"] for g in yaml.safe_load((PROMETHEUS / "recording.yml").read_text())["groups"] for r in g["rules"]
    }
    assert wanted <= recorded
    for name in sorted(wanted):
        result = wait_until(
            lambda name=name: api(stack.base, "query", query=f"{name} > 0")["result"], what=f"{name} has data"
        )
        assert result, name


def test_the_dashboard_usage_row_queries_evaluate_against_the_live_data(stack):
    dashboard = json.loads(DASHBOARD.read_text())
    panels = [p for p in dashboard["panels"] if p.get("type") != "row"]
    usage = [p for p in panels if p.get("title", "").startswith("Usage:")]
    assert len(usage) >= 3
    for panel in panels:
        for target in panel.get("targets", []):
            api(stack.base, "query", query=target["expr"])  # every query parses and evaluates
    for panel in usage:
        for target in panel["targets"]:
            assert wait_until(
                lambda t=target: api(stack.base, "query", query=t["expr"])["result"],
                what=f"usage panel {panel['title']!r} has data",
            )


def test_a_stopped_worker_makes_its_alert_go_pending_then_firing(stack):
    wait_until(lambda: all(t["health"] == "up" for t in api(stack.base, "targets")["activeTargets"]), what="targets up")
    stack.children["worker"].terminate()
    stack.children["worker"].wait(timeout=20)

    def state(want: str):
        alerts = api(stack.base, "alerts")["alerts"]
        return [
            a
            for a in alerts
            if a["labels"]["alertname"] == "InterchangeProcessDown"
            and a["labels"].get("role") == "worker"
            and a["state"] == want
        ]

    assert wait_until(lambda: state("firing"), timeout=45, what="alert firing")
    # it was pending first: Prometheus's own ALERTS series shows the pending state before the firing one
    now = time.time()
    history = {}
    for alertstate in ("pending", "firing"):
        result = api(
            stack.base,
            "query_range",
            start=str(now - 120),
            end=str(now),
            step="1",
            query=f'ALERTS{{alertname="InterchangeProcessDown",role="worker",alertstate="{alertstate}"}}',
        )["result"]
        assert result, f"no {alertstate} sample"
        history[alertstate] = min(float(t) for series in result for t, _v in series["values"])
    assert history["pending"] < history["firing"]

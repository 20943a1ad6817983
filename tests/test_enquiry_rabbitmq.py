"""Cross-force enquiry end to end on the real RabbitMQ and PostgreSQL: three forces' responders, the
gateway's two steps, the s.62 consultation entries in the audit log, timeouts, late answers, refusals."""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from broker.audit import publish as auditpublish
from broker.audit import reports as disclosures
from broker.audit.index import Query, open_for_reading
from broker.audit.log import LOG_NAME, AuditWriter, read_entries
from broker.enquiry import index
from broker.enquiry.agreements import load_enquiry_agreements
from broker.enquiry.auditsink import AuditSink
from broker.enquiry.gateway import create_app
from broker.enquiry.responder import ENQUIRY_QUEUE
from tests.enquirykit import RunningResponder, Signer, agreements_with, gateway, person_records, scratch_database
from tests.support import TestBroker, wait_until

PNC = "2019/0088231R"
WHY = "Driver stopped in a vehicle reported stolen; checking for warnings"

pytestmark = pytest.mark.rabbitmq


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """Vhosts, a database with three forces' indexes, three responders, a local identity provider."""
    import socket

    socket.create_connection(("127.0.0.1", 5672), timeout=3).close()
    broker = TestBroker.create(tmp_path_factory.mktemp("audit"))
    with scratch_database() as dsn:
        conn = index.connect(dsn)
        index.create_schema(conn)
        for force, records in person_records().items():
            index.index_records(conn, force, records)
        conn.close()
        responders = {f: RunningResponder(broker.settings, f, dsn) for f in ("01", "13", "48")}
        try:
            yield {
                "broker": broker,
                "settings": broker.settings,
                "dsn": dsn,
                "signer": Signer(),
                "responders": responders,
            }
        finally:
            for responder in responders.values():
                responder.stop()
            broker.close()


def audited(world: dict[str, Any]) -> list[dict[str, Any]]:
    AuditWriter(world["settings"]).run(stop_when_idle=True)
    return list(read_entries(Path(world["settings"].audit_dir) / LOG_NAME))


def client_for(world: dict[str, Any], **kwargs: Any) -> tuple[TestClient, Any]:
    """A gateway with the deployment's audit path (AuditSink: batched, confirmed) behind a test client."""
    sink = AuditSink(world["settings"])
    gw = gateway(world["settings"], world["signer"], sink, **kwargs)
    close = gw.close
    gw.close = lambda: (close(), sink.close())
    return TestClient(create_app(gw)), gw


def test_an_officer_gets_hits_then_only_the_agreed_fields_of_one_hit_and_both_steps_are_audited(world) -> None:
    client, gw = client_for(world)
    signer = world["signer"]
    try:
        step_one = client.post(
            "/v1/enquiries",
            headers=signer.header(officer="PC-0101"),
            json={"subject": {"pnc": "19/88231R"}, "purpose": "bring-offenders-to-justice", "justification": WHY},
        )
        assert step_one.status_code == 200, step_one.text
        forces = {f["force"]: f for f in step_one.json()["forces"]}
        assert set(forces) == {"13", "48"}  # never the officer's own force
        assert forces["13"]["hits"] == [
            {"record_type": "custody.record", "count": 1},
            {"record_type": "intelligence.report", "count": 1},
        ]
        assert forces["48"]["hits"] == [{"record_type": "custody.record", "count": 1}]
        assert "records" not in str(step_one.json())  # step one carries no personal data

        step_two = client.post(
            f"/v1/enquiries/{step_one.json()['id']}/details",
            headers=signer.header(officer="PC-0101"),
            json={
                "hits": [{"force": "13", "record_type": "custody.record"}],
                "purpose": "bring-offenders-to-justice",
                "justification": WHY,
            },
        )
        assert step_two.status_code == 200, step_two.text
        [force13] = step_two.json()["forces"]
        [record] = force13["records"]
        assert set(record["data"]) == {"custody_number", "arrest", "station", "persons"}
        assert set(record["data"]["arrest"]) == {"time", "reason"}  # not the arrest location
        assert record["data"]["persons"] == [
            {"name": {"given": ["Kieran", "James"], "family": "Oldroyd"}, "birth_date": "2001-02-17"}
        ]  # no identifiers, no gender
    finally:
        gw.close()

    entries = [
        e
        for e in audited(world)
        if e.get("channel") == "enquiry"
        and e.get("outcome") == "consulted"
        and e["enquiry_id"] == step_one.json()["id"]
    ]
    hits, details = sorted(entries, key=lambda e: e["step"] != "hits")
    for entry in (hits, details):
        assert entry["actor"] == {
            "person": "PC-0101",
            "organisation": "01",
            "role": "constable",
            "tool": "enquiry-gateway",
        }
        assert entry["purposes"] == ["bring-offenders-to-justice"] and entry["justification"] == WHY
        assert entry["subject_keys"] and PNC not in str(entry)
    assert hits["forces_asked"] == ["13", "48"] and hits["forces_answered"] == ["13", "48"]
    assert hits["forces_timed_out"] == [] and hits["records"] == []
    assert details["forces_asked"] == ["13"]
    assert details["records"][0]["record_id"] == "13-connect-CU-13WY-26-004417"
    assert "data.persons[].identifiers[].value" not in details["fields_disclosed"]

    index_ = open_for_reading(world["settings"].audit_dir)
    try:
        keys = disclosures.Subject(pnc=PNC).keys()
        report = disclosures.subject_report(index_.query(Query(tuple(keys))), index_.live_holds())
    finally:
        index_.close()
    assert {r["record_type"] for r in report} >= {"cross-force enquiry (hits)", "cross-force enquiry (details)"}


def test_a_stopped_responder_is_a_timeout_within_the_deadline_and_nothing_stays_queued(world) -> None:
    settings, signer = world["settings"], world["signer"]
    world["responders"]["48"].stop()
    client, gw = client_for(world, deadline=1.0)
    try:
        started = time.monotonic()
        answer = client.post(
            "/v1/enquiries",
            headers=signer.header(officer="PC-0102"),
            json={
                "subject": {"family": "OLDROYD", "given": "kieran", "birth_date": "2001-02-17"},
                "purpose": "protect-life-and-property",
                "justification": WHY,
            },
        )
        elapsed = time.monotonic() - started
    finally:
        gw.close()
        world["responders"]["48"] = RunningResponder(settings, "48", world["dsn"])
    assert answer.status_code == 200, answer.text
    statuses = {f["force"]: f["status"] for f in answer.json()["forces"]}
    assert statuses == {"13": "answered", "48": "timeout"}
    assert elapsed < 1.0 + 0.8
    entry = [e for e in audited(world) if e.get("enquiry_id") == answer.json()["id"]][0]
    assert entry["forces_timed_out"] == ["48"] and entry["forces_answered"] == ["13"]
    broker: TestBroker = world["broker"]
    for force in ("01", "13", "48"):
        vhost = settings.recipient_vhost(f"force-{force}")
        wait_until(lambda v=vhost: _depth(broker, v) == 0, 10, f"{vhost} enquiry queue empty")


def _depth(broker: TestBroker, vhost: str) -> int:
    from broker.transports.amqp import blocking_channel

    connection, channel = blocking_channel(broker.settings.amqp_url, vhost)
    try:
        return channel.queue_declare(ENQUIRY_QUEUE, passive=True).method.message_count
    finally:
        connection.close()


def test_a_late_answer_is_dropped_and_counted(world) -> None:
    settings, signer = world["settings"], world["signer"]
    world["responders"]["13"].stop()
    slow = RunningResponder(settings, "13", world["dsn"], delay=1.2)
    client, gw = client_for(world, deadline=0.6)
    try:
        answer = client.post(
            "/v1/enquiries",
            headers=signer.header(officer="PC-0103"),
            json={"subject": {"pnc": PNC}, "purpose": "protect-life-and-property", "justification": WHY},
        )
        assert {f["force"]: f["status"] for f in answer.json()["forces"]}["13"] == "timeout"
        wait_until(
            lambda: (
                gw.metrics.registry.get_sample_value("interchange_enquiry_late_replies_total", {"force": "13"}) == 1.0
            ),
            5,
            "the late reply",
        )
    finally:
        gw.close()
        slow.stop()
        world["responders"]["13"] = RunningResponder(settings, "13", world["dsn"])


def test_an_officer_over_the_agreements_rate_limit_is_refused_and_the_refusal_audited(world, tmp_path) -> None:
    tight = load_enquiry_agreements(agreements_with(tmp_path, rate_limit={"per_officer": 2, "window_seconds": 600}))
    client, gw = client_for(world, agreements=tight)
    body = {"subject": {"vrm": "YH19KTD"}, "purpose": "preserve-order", "justification": WHY}
    try:
        codes = [
            client.post("/v1/enquiries", headers=world["signer"].header(officer="PC-0104"), json=body) for _ in range(3)
        ]
    finally:
        gw.close()
    assert [c.status_code for c in codes] == [200, 200, 429]
    assert codes[2].json()["error"] == "rate_limited"
    assert {f["force"]: f["hits"] for f in codes[0].json()["forces"]}["48"] == [
        {"record_type": "custody.record", "count": 1}
    ]  # the VRM found the vehicle in custody
    refused = [
        e for e in audited(world) if (e.get("actor") or {}).get("person") == "PC-0104" and e.get("outcome") == "refused"
    ]
    assert [e["reason"] for e in refused] == ["rate_limited"]


def test_the_officers_page_in_a_headless_chromium_asks_and_shows_results_by_force(world) -> None:
    """Debian's chromium fills the form at a phone's size, submits, reads hits per force, asks for details."""
    import os

    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select, WebDriverWait

    from tests.enquirykit import ServedGateway, phone_browser

    client_gw = gateway(
        world["settings"], world["signer"], lambda entries: auditpublish.publish_entries(world["settings"], entries)
    )
    served = ServedGateway(create_app(client_gw))
    browser = phone_browser()
    try:
        browser.get(f"{served.url}/#token={world['signer'].token(officer='PC-0105')}")
        browser.find_element(By.ID, "family").send_keys("Oldroyd")
        browser.find_element(By.ID, "given").send_keys("Kieran")
        browser.execute_script("document.getElementById('birth_date').value = '2001-02-17'")
        Select(browser.find_element(By.ID, "purpose")).select_by_value("protect-life-and-property")
        browser.find_element(By.ID, "justification").send_keys("Found asleep in a car at a lay-by")
        browser.find_element(By.ID, "ask").click()
        WebDriverWait(browser, 10).until(lambda b: len(b.find_elements(By.CSS_SELECTOR, ".force .answered")) == 2)
        forces = {e.get_attribute("data-force"): e.text for e in browser.find_elements(By.CSS_SELECTOR, ".force")}
        assert set(forces) == {"13", "48"}
        assert "1 × intelligence.report" in forces["13"] and "1 × custody.record" in forces["48"]
        force48 = browser.find_element(By.CSS_SELECTOR, '.force[data-force="48"]')
        force48.find_element(By.TAG_NAME, "button").click()
        WebDriverWait(browser, 10).until(lambda b: force48.find_elements(By.CSS_SELECTOR, "pre.record"))
        assert "48CL/26/000077" in force48.find_element(By.CSS_SELECTOR, "pre.record").text
        assert browser.execute_script("return window.innerWidth") == 390
        assert browser.execute_script("return document.documentElement.scrollWidth") <= 390  # no sideways scroll
        if os.environ.get("ENQUIRY_SCREENSHOT"):  # how docs/enquiry-page.png is made
            browser.save_screenshot(os.environ["ENQUIRY_SCREENSHOT"])
    finally:
        browser.quit()
        served.stop()
        client_gw.close()


def test_audit_consultations_lists_an_officers_enquiries_and_is_itself_audited(world, capsys) -> None:
    import orjson

    from broker.cli.main import main

    client, gw = client_for(world)
    try:
        answer = client.post(
            "/v1/enquiries",
            headers=world["signer"].header(officer="PC-0106"),
            json={"subject": {"postcode": "ls1 4ap", "house": "12"}, "purpose": "preserve-order", "justification": WHY},
        )
        assert answer.status_code == 200
    finally:
        gw.close()
    AuditWriter(world["settings"]).run(stop_when_idle=True)
    capsys.readouterr()
    argv = world["settings"].cli_args() + [
        "audit",
        "consultations",
        "--officer",
        "PC-0106",
        "--json",
        "--reason",
        "PSD review 42",
        "--actor",
        "dpo",
    ]
    try:
        assert main(argv) == 0
    finally:  # main() points the logs at this test's captured stdout, which pytest closes afterwards
        from broker.ops import logs

        out = capsys.readouterr().out
        logs.configure("info", stream=sys.__stderr__)
    [row] = [orjson.loads(line) for line in out.splitlines() if line.startswith('{"time"')]
    assert (row["officer"], row["force"], row["step"], row["purpose"]) == ("PC-0106", "01", "hits", "preserve-order")
    assert row["forces_asked"] == "13, 48" and row["justification"] == WHY
    dpo = [e for e in audited(world) if (e.get("actor") or {}).get("person") == "dpo"]
    assert dpo[-1]["query"] == {"command": "audit consultations", "officer": "PC-0106"}


def test_the_wire_tap_indexes_the_forces_own_valid_records_and_skips_the_rest(world) -> None:
    import copy

    import orjson

    from broker.enquiry.tap import Tap

    settings = world["settings"]
    conn = index.connect(world["dsn"])
    tap = Tap(settings, "47", lambda r: index.index_record(conn, "47", r), ("force-47",))
    thread = threading.Thread(target=tap.run, daemon=True)
    thread.start()
    assert tap.ready.wait(10)
    own = copy.deepcopy(person_records()["48"][0])
    own.update(id="47-x-CU-1", origin={"agency": "47", "system": "x"})
    other = copy.deepcopy(own)
    other.update(id="13-x-CU-2", origin={"agency": "13", "system": "x"})
    invalid = dict(own, id="47-x-CU-3", time="not a time")
    try:
        from broker.transports.amqp import blocking_channel

        connection, channel = blocking_channel(settings.amqp_url, settings.core_vhost)
        for record in (own, other, invalid):
            channel.basic_publish("interchange.ingress", record["type"], orjson.dumps(record))
        connection.close()
        wait_until(lambda: tap.indexed + tap.skipped == 3, 10, "the tap to see three records")
        found = index.find(conn, "47", [("pnc", "2019/0088231R")], ["custody.record"])
        assert [r["id"] for r in found] == ["47-x-CU-1"]
    finally:
        tap.stop()
        thread.join(timeout=5)
        conn.close()


def test_without_waiting_the_answers_fill_in_as_forces_reply_and_hits_show_once_audited(world) -> None:
    client, gw = client_for(world)
    header = world["signer"].header(officer="PC-0107")
    try:
        client.__enter__()  # one event loop across requests, as uvicorn keeps: step one runs on after 202
        started = client.post(
            "/v1/enquiries?wait=false",
            headers=header,
            json={"subject": {"pnc": PNC}, "purpose": "protect-life-and-property", "justification": WHY},
        )
        assert started.status_code == 202
        assert {f["status"] for f in started.json()["forces"]} == {"pending"}
        assert all(f["hits"] is None for f in started.json()["forces"])

        def complete() -> bool:
            return client.get(f"/v1/enquiries/{started.json()['id']}", headers=header).json()["status"] == "complete"

        wait_until(complete, 5, "the enquiry to complete")
        final = client.get(f"/v1/enquiries/{started.json()['id']}", headers=header).json()
        assert {f["force"]: f["status"] for f in final["forces"]} == {"13": "answered", "48": "answered"}
        other = client.get(f"/v1/enquiries/{started.json()['id']}", headers=world["signer"].header(officer="PC-9"))
        assert other.status_code == 404  # another officer cannot read it
    finally:
        client.__exit__(None, None, None)
        gw.close()


@pytest.mark.parametrize("vhost_exists", [True, False], ids=["no-enquiry-queue", "no-vhost"])
def test_a_force_that_cannot_be_asked_is_unavailable_at_once_not_waited_for(world, tmp_path, vhost_exists) -> None:
    from broker.ops.provision import admin_for

    settings = world["settings"]
    vhost = settings.recipient_vhost("force-47")  # force 47 runs no responder
    if vhost_exists:
        admin_for(settings).put_vhost(vhost)
        admin_for(settings).set_permissions(vhost, "guest", ".*", ".*", ".*")
    elsewhere = load_enquiry_agreements(agreements_with(tmp_path, responder="47"))
    client, gw = client_for(world, agreements=elsewhere, deadline=2.0)
    try:
        started = time.monotonic()
        answer = client.post(
            "/v1/enquiries",
            headers=world["signer"].header(officer="PC-0108"),
            json={"subject": {"pnc": PNC}, "purpose": "preserve-order", "justification": WHY},
        )
        elapsed = time.monotonic() - started
    finally:
        gw.close()
        if vhost_exists:
            admin_for(settings).delete_vhost(vhost)
    assert [(f["force"], f["status"]) for f in answer.json()["forces"]] == [("47", "unavailable")]
    assert elapsed < 2.0

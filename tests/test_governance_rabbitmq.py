"""Governance on the real RabbitMQ: subject reports with covert holds; corrections reach past recipients."""

from __future__ import annotations

import datetime as dt
import json
import sys
from pathlib import Path

import orjson
import pytest

from adapters.registry import adapter_class
from broker.audit.log import LOG_NAME, AuditWriter, read_entries, verify
from broker.cli import main as cli
from broker.errors import ExitCode
from broker.ingress.publisher import publish_all, record_message
from broker.ops import logs
from broker.partners.receive import receive
from broker.routing import agreement_tests as ruletests
from tests.support import EXAMPLES, worker_thread
from tests.support import wait_until as _wait

pytestmark = pytest.mark.rabbitmq

PNC = "2015/0123457V"  # the burglary suspect: crime report, case file, court result, intelligence


def _examples() -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(EXAMPLES.glob("*.json"))]


def _route(broker, records, clock=None):
    with worker_thread(broker.settings, broker.registry) as worker:
        if clock is not None:
            worker.ctx.clock = clock
        report = publish_all(broker.settings, [record_message(r) for r in records])
        assert report.published == len(records)
        _wait(lambda: worker.routed >= report.published)
    _write_audit(broker)


def _write_audit(broker):
    AuditWriter(broker.settings).run(stop_when_idle=True)


def _cli(broker, capsys, *argv) -> tuple[int, str]:
    s = broker.settings
    capsys.readouterr()  # drop what earlier steps printed
    code = cli.main([*s.cli_args(), *argv])
    logs.configure("info", stream=sys.__stderr__)  # main() logs to the captured stderr, closed after the test
    return code, capsys.readouterr().out


def _report(broker, capsys, *extra) -> set[tuple[str, str, str]]:
    code, out = _cli(
        broker,
        capsys,
        "audit",
        "report",
        "--pnc",
        PNC,
        "--format",
        "json",
        "--actor",
        "dpo-test",
        "--reason",
        "subject access request SAR-1",
        *extra,
    )
    assert code == ExitCode.OK
    rows = [json.loads(line) for line in out.splitlines() if line]
    return {(r["record_id"], r["recipient"], r["agreement"]) for r in rows}


def _log(broker) -> list[dict]:
    return list(read_entries(Path(broker.settings.audit_dir) / LOG_NAME))


def test_a_subject_report_lists_exactly_the_allowed_disclosures_and_a_covert_hold_hides_one_until_released(
    broker, capsys
):
    # Given the demo traffic has flowed through the exchange
    records = _examples()
    _route(broker, records)
    # and the disclosures the agreements allow for records about the person with this PNC
    deciding = ruletests.Deciding.load(broker.settings, adapter_class)
    expected = set()
    for record in records:
        if PNC in json.dumps(record):
            for d in deciding.explain(record)["decisions"]:
                if d["outcome"] == "delivered":
                    expected.add((record["id"], d["recipient"], d["agreement"]))
    assert len({r for r, _, _ in expected}) == 4

    # When the DPO asks for the subject's disclosure report
    # Then it lists exactly those disclosures, and the consultation itself is audited
    assert _report(broker, capsys) == expected
    _write_audit(broker)
    consults = [e for e in _log(broker) if e["operation"] == "consult"]
    assert consults and consults[-1]["actor"]["person"] == "dpo-test"
    assert consults[-1]["justification"] == "subject access request SAR-1"
    assert PNC not in json.dumps(consults), "the consultation records the subject's keyed hash, not the PNC"

    # When a covert hold is placed on the case file
    case_file = "01-niche-CF-2026-000045"
    assert any(r == case_file for r, _, _ in expected)
    code, out = _cli(
        broker,
        capsys,
        "audit",
        "hold",
        "--record-id",
        case_file,
        "--reason",
        "Op Example: live",
        "--until-released",
        "--actor",
        "dci-test",
    )
    hold_id = out.strip()
    assert code == ExitCode.OK and hold_id.startswith("hold-")
    _write_audit(broker)
    # Then the subject-facing report hides it, and the internal DPO view still shows it
    assert _report(broker, capsys) == {e for e in expected if e[0] != case_file}
    assert _report(broker, capsys, "--include-held") == expected

    # When the hold is released / Then the disclosure is back, and placing and releasing were both audited
    code, _ = _cli(broker, capsys, "audit", "release", hold_id, "--reason", "case closed", "--actor", "dci-test")
    assert code == ExitCode.OK
    _write_audit(broker)
    assert _report(broker, capsys) == expected
    _write_audit(broker)
    entries = _log(broker)
    assert [e["operation"] for e in entries if e.get("hold", {}).get("id") == hold_id] == ["hold", "release"]
    assert verify(Path(broker.settings.audit_dir) / LOG_NAME).ok


def test_a_school_disclosure_does_not_appear_in_an_adults_report(broker, capsys):
    # Given the Operation Encompass notification was routed (the father has a PNC)
    encompass = json.loads((EXAMPLES / "05-safeguarding.notification-encompass.json").read_text())
    _route(broker, [encompass])
    # When the father's report is produced
    code, out = _cli(
        broker, capsys, "audit", "report", "--pnc", "2009/0412876P", "--format", "csv", "--reason", "SAR-2"
    )
    # Then only the MASH received anything about him: the school and the home-education team got a child only
    assert code == ExitCode.OK
    recipients = [line.split(",")[4] for line in out.splitlines()[1:]]
    assert recipients == ["la-mash-leeds"]


def test_a_correction_reaches_past_recipients_under_an_expired_agreement_and_is_pending_until_acknowledged(
    broker, capsys, tmp_path
):
    # Given a crime report routed in June 2024, while the ASB agreement was in force
    original = json.loads((EXAMPLES / "12-crime.report-open-data-crime-map.json").read_text())
    _route(broker, [original], clock=lambda: dt.datetime(2024, 6, 1, 12, tzinfo=dt.UTC))
    first = {e["recipient"]: e for e in _log(broker) if e["outcome"] == "delivered"}
    assert set(first) == {"crime-map", "la-mash-city-of-london"}

    # When a correction of it is published today, after the ASB agreement expired
    correction = dict(original, id=original["id"] + "-c1", supersedes={"id": original["id"], "kind": "correction"})
    _route(broker, [correction])

    # Then both earlier recipients are sent it; the crime map's copy (public: no record ids) is marked as a
    # correction and repeats the original row's opaque Crime ID
    (_, first_row), (props, second_row) = broker.inbox("crime-map")
    assert props.headers["x-supersedes-kind"] == "correction" and "x-supersedes" not in props.headers
    assert first_row.split(b"\r\n")[1].split(b",")[0] == second_row.split(b"\r\n")[1].split(b",")[0]
    # and the expired agreement's recipient is sent it under that agreement's field list, audited as such
    entry = next(
        e for e in _log(broker) if e["record_id"] == correction["id"] and e["recipient"] == "la-mash-city-of-london"
    )
    assert (entry["operation"], entry["outcome"], entry["reason"]) == (
        "disclose",
        "delivered",
        "correction_to_past_recipient",
    )
    assert entry["agreement"] == "ISA-ASB-CITY-2023"
    assert entry["fields_disclosed"] == first["la-mash-city-of-london"]["fields_disclosed"]

    # When nobody has acknowledged yet / Then both show as pending
    code, out = _cli(broker, capsys, "corrections", "pending", "--json")
    assert code == ExitCode.OK
    assert {json.loads(line)["recipient"] for line in out.splitlines()} == {
        "crime-map",
        "la-mash-city-of-london",
    }

    # When the City's reference subscriber reads its inbox (it acknowledges corrections on its receipts queue)
    counts = receive(broker.settings, "la-mash-city-of-london", tmp_path, idle_seconds=0.5)
    assert counts["written"] == 2 and counts.get("acknowledged") == 1
    lines = [json.loads(line) for line in (tmp_path / "la-mash-city-of-london.ndjson").read_text().splitlines()]
    assert lines[1]["message_id"] == correction["id"] and lines[1]["headers"]["x-supersedes"] == original["id"]
    # Then only the crime map is still pending, and the acknowledgement is audited
    code, out = _cli(broker, capsys, "corrections", "pending", "--json")
    assert [json.loads(line)["recipient"] for line in out.splitlines()] == ["crime-map"]
    _write_audit(broker)
    acks = [e for e in _log(broker) if e["operation"] == "acknowledge"]
    assert [(a["record_id"], a["recipient"]) for a in acks] == [(correction["id"], "la-mash-city-of-london")]
    code, out = _cli(broker, capsys, "corrections", "pending", "--json", "--no-collect")
    assert [json.loads(line)["recipient"] for line in out.splitlines()] == ["crime-map"]
    assert orjson.loads(out.splitlines()[0])["waiting_seconds"] >= 0

"""Governance without RabbitMQ: checkpoints, the audit index, corrections routing, reports, rules diff."""

from __future__ import annotations

import datetime as dt
import json
import shutil
import sys
from pathlib import Path

import pytest

from adapters.registry import adapter_class
from broker import router
from broker.audit import reports as disclosures
from broker.audit.checkpoints import checkpoints_path, verify_beside
from broker.audit.entries import subject_key
from broker.audit.index import AuditIndex, Original, PastDelivery, Query, rebuild
from broker.audit.log import LOG_NAME, AuditLog
from broker.audit.sidecar import Sidecar
from broker.cli import main as cli
from broker.config import Registry, load_settings
from broker.errors import ExitCode
from broker.message import Message
from broker.ops import logs
from broker.ops.metrics import Metrics
from broker.routing import diff as rulesdiff
from broker.routing.rules import Rulebook
from broker.runner import build_context
from tests.support import EXAMPLES

NOW = dt.datetime(2026, 11, 26, 12, tzinfo=dt.UTC)


@pytest.fixture(autouse=True)
def _logs_to_real_stderr():
    """cli.main() logs to the captured stderr, which pytest closes after each test."""
    yield
    logs.configure("info", stream=sys.__stderr__)


def _entry(n: int, **extra) -> dict:
    return {
        "entry_id": f"e{n}",
        "time": f"2026-11-26T12:00:{n:02d}Z",
        "operation": "disclose",
        "outcome": "delivered",
        "record_id": f"r{n}",
        "recipient": "cps",
        "agreement": "ISA-CPS-CASEFILES",
        "subject_keys": [f"k{n}"],
        "source": "13",
    } | extra


def _write(audit_dir: Path, count: int, metrics=None, every: int = 2) -> None:
    log = AuditLog(audit_dir, sidecar=Sidecar.for_writer(audit_dir, metrics, every_entries=every))
    for n in range(1, count + 1):
        log.append([_entry(n)], batch=f"b{n}")
        log.sync()
    log.close()


def test_truncating_the_log_after_a_checkpoint_is_detected(tmp_path):
    # Given a log of six entries with signed checkpoints
    _write(tmp_path, 6)
    log = tmp_path / LOG_NAME
    assert verify_beside(log, checkpoints_path(tmp_path)).ok
    # When the last two entries are cut off (the chain of what is left still verifies)
    lines = log.read_bytes().splitlines(keepends=True)
    log.write_bytes(b"".join(lines[:4]))
    # Then the checkpoints catch it and `audit verify` fails
    verdict = verify_beside(log, checkpoints_path(tmp_path))
    assert not verdict.ok and "truncated" in verdict.problem
    assert cli.main(["--audit-dir", str(tmp_path), "audit", "verify"]) == ExitCode.FAILED


def test_a_rewritten_log_does_not_match_its_signed_checkpoints(tmp_path):
    # Given a log with checkpoints, rewritten whole with a recomputed chain
    _write(tmp_path, 4)
    shutil.move(tmp_path / LOG_NAME, tmp_path / "old.jsonl")
    (tmp_path / "audit.index.sqlite").unlink()
    log = AuditLog(tmp_path)
    for n in range(1, 5):
        log.append([_entry(n, recipient="someone-else")], batch=f"b{n}")
    log.close()
    # When verified / Then the checkpoint signed over the old head no longer matches
    verdict = verify_beside(tmp_path / LOG_NAME, checkpoints_path(tmp_path))
    assert not verdict.ok and "rewritten" in verdict.problem


def test_a_checkpoint_that_cannot_be_written_is_counted_and_appends_carry_on(tmp_path, monkeypatch):
    # Given a checkpoint path whose folder is a plain file (it cannot be written)
    (tmp_path / "blocked").write_text("not a folder")
    monkeypatch.setenv("INTERCHANGE_CHECKPOINTS", str(tmp_path / "blocked" / "checkpoints.jsonl"))
    metrics = Metrics()
    # When the writer appends entries
    _write(tmp_path / "audit", 4, metrics)
    # Then every entry is on disk and each failed checkpoint is counted
    assert len((tmp_path / "audit" / LOG_NAME).read_text().splitlines()) == 4
    assert metrics.registry.get_sample_value("interchange_audit_checkpoint_failures_total") >= 1


def test_the_index_finds_entries_by_subject_and_can_be_rebuilt_from_the_log(tmp_path):
    # Given a log written with its index
    _write(tmp_path, 5)
    index = AuditIndex.beside(tmp_path)
    assert [e["seq"] for e in index.query(Query(subject_keys=("k2", "k4")))] == [2, 4]
    assert index.recipients_of("13", "r3") == [PastDelivery("cps", "ISA-CPS-CASEFILES", "2026-11-26T12:00:03Z", 3)]
    assert index.recipients_of("48", "r3") == []  # lineage is keyed by origin and id
    index.close()
    # When the index is deleted and rebuilt / Then it answers the same
    (tmp_path / "audit.index.sqlite").unlink()
    assert rebuild(tmp_path) == 5
    index = AuditIndex.beside(tmp_path)
    assert [e["record_id"] for e in index.query(Query(recipient="cps", since="2026-11-26T12:00:04Z"))] == [
        "r4",
        "r5",
    ]
    index.close()


def test_reading_the_audit_log_is_refused_when_the_consultation_cannot_be_audited(tmp_path, capsys):
    # Given no RabbitMQ at the configured address
    # When someone asks for a subject report / Then it is refused with the transport exit code
    code = cli.main(
        [
            "--amqp-url",
            "amqp://guest:guest@127.0.0.1:1/",
            "--audit-dir",
            str(tmp_path),
            "audit",
            "report",
            "--pnc",
            "2015/0123457V",
            "--reason",
            "SAR-3",
        ]
    )
    assert code == ExitCode.TRANSPORT
    assert "RabbitMQ" in capsys.readouterr().err


def test_the_html_report_escapes_everything():
    # Given an entry whose values carry markup
    row = disclosures.rows([_entry(1, recipient="<script>x</script>", fields_disclosed=["data.<b>"])], {})
    # When rendered / Then no markup survives
    page = disclosures.as_html(row, "PNC", "now")
    assert "<script>x" not in page and "&lt;script&gt;" in page and "data.&lt;b&gt;" in page


def test_a_report_subject_is_found_by_name_and_date_of_birth():
    # Given the keyed hash the audit stores for a person named with a date of birth
    stored = subject_key("name", "Brierley|Mia|2017-09-08")
    # When a DPO names the subject "Family, Given" / Then the same key is searched
    assert disclosures.Subject(name="Brierley, Mia", dob="2017-09-08").keys() == [stored]


def test_a_correction_goes_to_a_past_recipient_under_the_original_agreement_when_today_no_agreement_would(
    settings,
):
    # Given a crime report the ASB partnership received in 2024 (its agreement has since expired)
    record = json.loads((EXAMPLES / "12-crime.report-open-data-crime-map.json").read_text())
    ctx = build_context(settings)
    ctx.clock = lambda: NOW
    past = {
        (record["origin"]["agency"], record["id"]): Original(
            "known", (PastDelivery("la-mash-city-of-london", "ISA-ASB-CITY-2023", "2024-06-01T12:00:00Z", 7),)
        )
    }
    ctx.original = lambda origin, record_id: past.get((origin, record_id), Original("unknown"))
    # When a correction of it is routed today
    correction = dict(record, id=record["id"] + "-c1", supersedes={"id": record["id"], "kind": "correction"})
    plan = router.route(Message(json.dumps(correction).encode(), "application/json"), ctx)
    # Then the past recipient gets it, marked, and the audit says why
    assert sorted(plan.delivered) == ["crime-map", "la-mash-city-of-london"]
    out = next(o for o in plan.outputs if o.target == "la-mash-city-of-london")
    assert out.headers["x-supersedes"] == record["id"] and out.headers["x-agreement"] == "ISA-ASB-CITY-2023"
    entries = json.loads(plan.audit.body)["entries"]
    [entry] = [e for e in entries if e["recipient"] == "la-mash-city-of-london"]
    assert entry["reason"] == "correction_to_past_recipient"
    # and an ordinary record (no supersedes) is still withheld from that recipient
    plain = router.route(Message(json.dumps(record).encode(), "application/json"), ctx)
    assert plain.withheld == {"la-mash-city-of-london": "agreement_expired"}


def test_rules_diff_shows_the_fields_and_records_a_recipient_would_lose(tmp_path):
    # Given a proposed agreement set: no case-file summary for the CPS, no crime map at all
    new = tmp_path / "agreements"
    shutil.copytree(load_settings(environ={}).agreements_dir, new, ignore=shutil.ignore_patterns("tests"))
    cps = new / "ISA-CPS-CASEFILES.yaml"
    cps.write_text(cps.read_text().replace("    - data.summary\n", "", 1))
    (new / "ISA-CRIME-MAP.yaml").unlink()

    def rulebook(folder: Path) -> Rulebook:
        r = Registry.load(load_settings(environ={}).with_overrides(agreements_dir=folder), adapter_class)
        return Rulebook(r.agreements, r.recipients, r.agencies)

    old_book = rulebook(load_settings(environ={}).agreements_dir)
    records = [json.loads(p.read_text()) for p in sorted(EXAMPLES.glob("*.json"))]
    # When the example traffic is replayed through both
    changes = rulesdiff.diff(old_book, rulebook(new), records, NOW)
    # Then the CPS loses the summary field and the crime map loses its records, and nobody gains anything
    assert any("data.summary" in paths for paths in changes["cps"].lost_fields.values())
    assert changes["crime-map"].lost_records and not changes["crime-map"].gained_records
    assert "- record" in rulesdiff.render(changes)


def test_agreements_list_shows_status_days_to_expiry_and_traffic(tmp_path, capsys):
    # Given an audit log with one delivery under the CPS agreement
    _write(tmp_path, 1)
    capsys.readouterr()
    # When the agreements are listed as at a date
    assert cli.main(["--audit-dir", str(tmp_path), "agreements", "list", "--at", "2026-11-26", "--json"]) == 0
    rows = {r["agreement"]: r for r in map(json.loads, capsys.readouterr().out.splitlines())}
    # Then each shows its status and days left, and traffic comes from the audit log
    assert rows["ISA-ASB-CITY-2023"]["status"] == "expired"
    assert rows["ISA-CUSTODY-LA-13"]["status"] == "suspended"
    assert rows["ISA-CPS-CASEFILES"]["delivered"] == 1
    assert rows["ISA-CPS-CASEFILES"]["days_to_expiry"] == (dt.date(2028, 3, 31) - dt.date(2026, 11, 26)).days


@pytest.mark.parametrize(
    "argv",
    [
        ["agreements", "list"],
        ["audit", "query"],
        ["audit", "report"],
        ["audit", "hold"],
        ["audit", "release"],
        ["audit", "holds"],
        ["audit", "reindex"],
        ["corrections", "pending"],
        ["rules", "diff"],
    ],
)
def test_every_governance_command_has_help(argv, capsys):
    with pytest.raises(SystemExit) as stopped:
        cli.main([*argv, "--help"])
    assert stopped.value.code == 0 and "usage:" in capsys.readouterr().out

"""A disclosure counts only if it took place: an `undelivered` entry cancels its `disclose` entry in the
index, the past-recipient lookup, agreement traffic and subject reports."""

from __future__ import annotations

import orjson

from broker.audit import reports as disclosures
from broker.audit.index import AuditIndex, Query, rebuild
from broker.audit.log import LOG_NAME


def disclose(seq: int, entry_id: str, recipient: str, body: str = "b1") -> dict:
    return {
        "seq": seq,
        "entry_id": entry_id,
        "time": f"2026-11-26T12:00:0{seq}Z",
        "operation": "disclose",
        "outcome": "delivered",
        "record_id": "01-CR-1",
        "source": "01",
        "recipient": recipient,
        "agreement": "ISA-CPS-CASEFILES",
        "subject_keys": ["k1"],
        "body_sha256": body,
    }


def undelivered(seq: int, cancels: str, recipient: str) -> dict:
    return {
        "seq": seq,
        "entry_id": f"u{seq}",
        "time": f"2026-11-26T12:00:0{seq}Z",
        "operation": "undelivered",
        "outcome": "not_delivered",
        "reason": "returned",
        "record_id": "01-CR-1",
        "origin": "01",
        "recipient": recipient,
        "agreement": "ISA-CPS-CASEFILES",
        "cancels": cancels,
    }


ENTRIES = [
    disclose(1, "d1", "cps"),  # the first attempt: its publish was returned
    disclose(2, "d2", "school-100001"),  # delivered to a second recipient, never cancelled
    undelivered(3, "d1", "cps"),
    disclose(4, "d4", "cps"),  # the retry, delivered
    disclose(5, "d5", "cps"),  # a second worker delivered the same bytes again
]


def written(tmp_path) -> AuditIndex:
    index = AuditIndex.beside(tmp_path)
    index.add(ENTRIES)
    index.commit()
    return index


def test_a_cancelled_disclosure_is_no_past_recipient_and_no_traffic(tmp_path):
    # Given a log where cps's first delivery failed and only a second recipient was ever delivered to
    index = AuditIndex.beside(tmp_path)
    index.add([disclose(1, "d1", "cps"), disclose(2, "d2", "school-100001"), undelivered(3, "d1", "cps")])
    index.commit()
    # Then cps is not a past recipient of the record and its cancelled disclosure is not traffic
    assert [p.recipient for p in index.recipients_of("01", "01-CR-1")] == ["school-100001"]
    assert index.traffic() == {"ISA-CPS-CASEFILES": {"delivered": 1, "withheld": 0}}


def test_the_query_marks_a_cancelled_disclosure_with_the_reason(tmp_path):
    index = written(tmp_path)
    found = {e["entry_id"]: e for e in index.query(Query(record_id="01-CR-1"))}
    assert found["d1"]["cancelled_by"] == "returned"
    assert "cancelled_by" not in found["d4"] and "cancelled_by" not in found["d2"]


def test_the_subject_report_counts_each_disclosure_that_took_place_once(tmp_path):
    # Given a cancelled attempt, a retry and a repeat of the same bytes to the same recipient
    index = written(tmp_path)
    # When the subject's report is made
    report = disclosures.subject_report(index.query(Query(subject_keys=("k1",))), index.live_holds())
    # Then cps appears once (the retry) and the school once
    assert [(r["recipient"], r["time"]) for r in report] == [
        ("school-100001", "2026-11-26T12:00:02Z"),
        ("cps", "2026-11-26T12:00:04Z"),
    ]


def test_a_rebuilt_index_still_knows_the_cancellations(tmp_path):
    # Given only the log (the index is derived data)
    (tmp_path / LOG_NAME).write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in ENTRIES))
    # When the index is rebuilt from it
    rebuild(tmp_path)
    index = AuditIndex.beside(tmp_path)
    assert [p.recipient for p in index.recipients_of("01", "01-CR-1")] == ["cps", "school-100001"]
    assert index.recipients_of("01", "01-CR-1")[0].seq == 5
    assert next(e for e in index.query(Query(record_id="01-CR-1")) if e["entry_id"] == "d1")["cancelled_by"]

"""`interchange report usage`: every figure is a count of the audit log, in HTML, CSV and JSON alike.

The audit log here is real: the routing core decides the example records (deliveries, withholdings,
rejections) and `AuditLog` chains them; an `undelivered` entry cancels one disclosure and a retraction
notice counts as a retraction.  An independent count over the log's lines is the reference.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import orjson
import pytest

from broker import router
from broker.audit.log import LOG_NAME, AuditLog, read_entries
from broker.audit.usage import Costs, Period, usage
from broker.config import PROJECT_ROOT
from broker.message import Message
from broker.runner import build_context
from tests.support import EXAMPLES

NOW = dt.datetime(2026, 11, 26, 12, 0, tzinfo=dt.UTC)


@pytest.fixture(scope="module")
def audit_dir(tmp_path_factory, settings_for_tests) -> Path:
    """A real audit log of the example records routed at NOW, plus one cancelled delivery."""
    directory = tmp_path_factory.mktemp("usage-audit")
    ctx = build_context(settings_for_tests)
    ctx.clock = lambda: NOW
    log = AuditLog(directory)
    bodies = [p.read_bytes() for p in sorted(EXAMPLES.glob("*.json"))]
    bodies += [p.read_bytes() for p in sorted((EXAMPLES / "invalid").glob("*.json"))]
    cancelled = None
    for body in bodies:
        plan = router.route(Message(body, "application/json"), ctx)
        log.append(plan.audit_entries)
        delivered = [e for e in plan.audit_entries if e["operation"] == "disclose"]
        if delivered and cancelled is None:
            cancelled = delivered[0]
            log.append(
                [
                    {
                        "entry_id": "undelivered-1",
                        "time": cancelled["time"],
                        "operation": "undelivered",
                        "outcome": "not_delivered",
                        "reason": "publish_nacked",
                        "record_id": cancelled["record_id"],
                        "origin": cancelled["source"],
                        "recipient": cancelled["recipient"],
                        "agreement": cancelled["agreement"],
                        "cancels": cancelled["entry_id"],
                    }
                ]
            )
    log.close()
    return directory


@pytest.fixture(scope="module")
def settings_for_tests():
    from broker.config import load_settings

    return load_settings()


def reference_counts(path: Path) -> dict[str, object]:
    """Counted straight from the log's lines, without broker.audit.usage."""
    entries = list(read_entries(path))
    cancelled = {e["cancels"] for e in entries if e.get("operation") == "undelivered"}
    delivered = [
        e
        for e in entries
        if e.get("operation") == "disclose" and e.get("outcome") == "delivered" and e["entry_id"] not in cancelled
    ]
    return {
        "delivered": len(delivered),
        "withheld": sum(1 for e in entries if e.get("operation") == "withhold"),
        "rejected": sum(1 for e in entries if e.get("operation") == "reject"),
        "bytes_delivered": sum(e.get("body_bytes") or 0 for e in delivered),
        "per_recipient": Counter(e["recipient"] for e in delivered),
        "withheld_by_reason": Counter(e["reason"] for e in entries if e.get("operation") == "withhold"),
        "rejected_by_reason": Counter(e["reason"] for e in entries if e.get("operation") == "reject"),
        "record_ids": {e["record_id"] for e in entries if e.get("record_id")},
        "subject_keys": {k for e in entries for k in e.get("subject_keys") or []},
        "links": {(e["source"], e.get("source_system") or "", e["recipient"]) for e in delivered},
    }


def run_report(audit_dir: Path, fmt: str, out: Path, start: str = "2026-11-01", end: str = "2026-11-30") -> bytes:
    """`interchange report usage` over `audit_dir` for the days start..end, written to `out`; its bytes."""
    result = subprocess.run(
        [sys.executable, "-m", "broker", "--audit-dir", str(audit_dir), "report", "usage"]
        + ["--from", start, "--to", end, "--format", fmt, "--out", str(out)],
        capture_output=True,
        text=True,
        cwd=PROJECT_ROOT,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    return out.read_bytes()


def test_the_json_report_equals_a_count_of_the_audit_log(audit_dir, tmp_path):
    ref = reference_counts(audit_dir / LOG_NAME)
    report = orjson.loads(run_report(audit_dir, "json", tmp_path / "usage.json"))
    totals = report["totals"]
    assert ref["delivered"] > 10 and ref["withheld"] >= 3 and ref["rejected"] >= 3
    assert (totals["delivered"], totals["withheld"], totals["rejected"]) == (
        ref["delivered"],
        ref["withheld"],
        ref["rejected"],
    )
    assert totals["bytes_delivered"] == ref["bytes_delivered"] > 0
    per_recipient = Counter()
    for flow in report["flows"]:
        per_recipient[flow["recipient"]] += flow["delivered"]
    assert +per_recipient == ref["per_recipient"]
    assert report["withheld_by_reason"] == dict(ref["withheld_by_reason"])
    assert report["rejected_by_reason"] == dict(ref["rejected_by_reason"])
    assert {(x["source"], x["source_system"], x["recipient"]) for x in report["integrations"]["links"]} == ref["links"]
    assert report["integrations"]["interfaces_replaced"] == len(ref["links"])
    assert report["source"]["last_seq"] == max(e["seq"] for e in read_entries(audit_dir / LOG_NAME))


def test_a_delivery_cancelled_by_an_undelivered_entry_is_not_counted(audit_dir, tmp_path):
    entries = list(read_entries(audit_dir / LOG_NAME))
    all_disclosed = sum(1 for e in entries if e.get("operation") == "disclose")
    report = orjson.loads(run_report(audit_dir, "json", tmp_path / "usage.json"))
    assert report["totals"]["delivered"] == all_disclosed - 1


def test_the_csv_carries_the_same_numbers_as_the_json(audit_dir, tmp_path):
    report = orjson.loads(run_report(audit_dir, "json", tmp_path / "usage.json"))
    rows = list(csv.DictReader(io.StringIO(run_report(audit_dir, "csv", tmp_path / "usage.csv").decode())))
    totals = {r["metric"]: float(r["value"]) for r in rows if r["section"] == "totals"}
    assert totals == {k: float(v) for k, v in report["totals"].items()}
    flow_delivered = sum(int(r["value"]) for r in rows if r["section"] == "flow" and r["metric"] == "delivered")
    assert flow_delivered == report["totals"]["delivered"]
    withheld = Counter()
    for r in rows:
        if r["section"] == "flow" and r["metric"] == "withheld" and r["reason"]:
            withheld[r["reason"]] += int(r["value"])
    assert dict(withheld) == report["withheld_by_reason"]


def test_a_period_outside_the_traffic_counts_nothing(audit_dir, tmp_path):
    report = orjson.loads(run_report(audit_dir, "json", tmp_path / "empty.json", "2025-01-01", "2025-01-31"))
    assert report["totals"]["delivered"] == 0


def test_no_report_format_holds_a_record_id_subject_key_name_or_identifier(audit_dir, tmp_path):
    ref = reference_counts(audit_dir / LOG_NAME)
    examples = [orjson.loads(p.read_bytes()) for p in EXAMPLES.glob("*.json")]
    people = [p for r in examples for p in (r.get("data") or {}).get("persons", [])]
    names = {p["name"]["family"] for p in people if p.get("name", {}).get("family")}
    identifiers = {i["value"] for p in people for i in p.get("identifiers", [])}
    assert names and identifiers and ref["record_ids"]
    for fmt in ("json", "csv", "html"):
        text = run_report(audit_dir, fmt, tmp_path / f"usage.{fmt}").decode()
        for secret in ref["record_ids"] | ref["subject_keys"] | names | identifiers:
            assert secret not in text, f"{fmt} report holds {secret!r}"


def test_bad_dates_are_a_usage_error(audit_dir):
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "broker",
            "--audit-dir",
            str(audit_dir),
            "report",
            "usage",
            "--from",
            "26/11/2026",
            "--to",
            "2026-11-30",
        ],
        capture_output=True,
        text=True,
        cwd=PROJECT_ROOT,
        timeout=60,
    )
    assert result.returncode == 2 and "YYYY-MM-DD" in result.stderr


def test_money_figures_follow_the_stated_assumptions():
    day = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    entry = {
        "operation": "disclose",
        "outcome": "delivered",
        "time": "2026-01-01T10:00:00Z",
        "entry_id": "a",
        "recipient": "cps",
        "agreement": "x",
        "source": "01",
        "source_system": "rms",
        "record_type": "t",
    }
    report = usage(
        [entry],
        Period(day, day + dt.timedelta(days=365.25)),
        {"cps": "cps-xml"},
        Costs(interface_cost_per_year=1000.0, core_hour_price=3.6, cpu_seconds=7200.0),
    )
    integrations = report["integrations"]
    assert integrations["links"] == [
        {"source": "01", "source_system": "rms", "recipient": "cps", "format": "cps-xml", "deliveries": 1}
    ]
    assert integrations["point_to_point_cost_per_year"] == 1000.0
    assert integrations["exchange_running_cost_in_period"] == pytest.approx(7.2)
    assert integrations["exchange_running_cost_per_year"] == pytest.approx(7.2)


@pytest.mark.slow
def test_the_html_report_loads_in_a_real_browser_with_no_console_error(audit_dir, tmp_path):
    if not shutil.which("chromium") or not shutil.which("chromedriver"):
        pytest.fail("chromium and chromedriver are missing: `make test` installs them (scripts/ensure-chromium.sh)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    page = tmp_path / "usage.html"
    run_report(audit_dir, "html", page)
    options = webdriver.ChromeOptions()
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1200,1800"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(shutil.which("chromedriver")))
    try:
        driver.get(page.as_uri())
        assert driver.title.startswith("Interchange usage")
        assert len(driver.find_elements("css selector", "figure svg")) == 3  # weekly, withheld, latency
        errors = [e for e in driver.get_log("browser") if e["level"] in ("SEVERE", "ERROR")]
        assert errors == []
        assert driver.save_screenshot(str(tmp_path / "usage.png"))
        assert (tmp_path / "usage.png").stat().st_size > 10_000
        # the check itself sees a console error when there is one
        driver.execute_script("console.error('a deliberate error')")
        assert any("deliberate" in e["message"] for e in driver.get_log("browser"))
    finally:
        driver.quit()

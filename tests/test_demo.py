"""`make demo` works end to end: deliveries to at least 5 recipients, at least 3 withheld, audit intact;
and the usage report on its traffic equals a count of its audit log."""

from __future__ import annotations

import datetime as dt
import re
import subprocess
import sys

import orjson
import pytest

from broker.audit.log import LOG_NAME
from broker.config import PROJECT_ROOT
from broker.demo import DEMO_ROOT
from tests.test_usage_report import reference_counts, run_report

pytestmark = [pytest.mark.rabbitmq, pytest.mark.slow]
SUMMARY = re.compile(r"Summary: (\d+) deliveries to (\d+) recipients, (\d+) withheld, (\d+) rejected")


@pytest.fixture(scope="module")
def demo(rabbitmq) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "broker", "demo"], capture_output=True, text=True, cwd=PROJECT_ROOT, timeout=180
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def test_the_demo_delivers_withholds_refuses_and_verifies_its_audit(demo):
    summary = SUMMARY.search(demo)
    assert summary, demo
    deliveries, recipients, withheld, rejected = map(int, summary.groups())
    assert recipients >= 5 and withheld >= 3 and rejected >= 3
    assert "audit log intact" in demo


def test_the_usage_report_on_the_demos_traffic_equals_a_count_of_its_audit_log(demo, tmp_path):
    audit_dir = DEMO_ROOT / "audit"
    today = dt.datetime.now(dt.UTC).date()
    out = tmp_path / "usage.json"
    day, yesterday = str(today), str(today - dt.timedelta(days=1))
    totals = orjson.loads(run_report(audit_dir, "json", out, yesterday, day))["totals"]
    ref = reference_counts(audit_dir / LOG_NAME)
    assert (totals["delivered"], totals["withheld"], totals["rejected"]) == (
        ref["delivered"],
        ref["withheld"],
        ref["rejected"],
    )
    summary = SUMMARY.search(demo)
    assert summary and int(summary.group(1)) == totals["delivered"] and int(summary.group(4)) == totals["rejected"]

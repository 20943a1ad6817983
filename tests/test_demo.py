"""`make demo` works end to end: deliveries to at least 5 recipients, at least 3 withheld, audit intact."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from broker.config import PROJECT_ROOT

pytestmark = [pytest.mark.rabbitmq, pytest.mark.slow]


def test_the_demo_delivers_withholds_refuses_and_verifies_its_audit(rabbitmq):
    result = subprocess.run([sys.executable, "-m", "broker", "demo"], capture_output=True, text=True,
                            cwd=PROJECT_ROOT, timeout=180)
    assert result.returncode == 0, result.stdout + result.stderr
    summary = re.search(r"Summary: (\d+) deliveries to (\d+) recipients, (\d+) withheld, (\d+) rejected",
                        result.stdout)
    assert summary, result.stdout
    deliveries, recipients, withheld, rejected = map(int, summary.groups())
    assert recipients >= 5 and withheld >= 3 and rejected >= 3
    assert "audit log intact" in result.stdout

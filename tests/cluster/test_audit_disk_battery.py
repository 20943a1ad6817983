"""Issue 18's full-length disk fault, in the fault battery because it runs for minutes: the audit directory's
disk (a tmpfs) is full for 90 s while 3,000 records flow.  Workers pause at the audit lag bound (30 s) and
resume when space returns; `audit verify` passes; every delivery, withhold and rejection has exactly one audit
entry; interchange.dead holds only the rejected records.  Uses the single node on 127.0.0.1:5672 (the fault
is the disk, not the cluster); the 15-second run is in the normal suite (tests/test_audit_disk_faults.py)."""

from __future__ import annotations

import pytest

from tests.auditfaults import disk_full_mid_flow
from tests.smalldisk import small_disk

pytestmark = [pytest.mark.cluster, pytest.mark.slow, pytest.mark.rabbitmq]


def test_the_audit_disk_full_for_90_seconds_mid_flow_loses_no_audit_entry(rabbitmq, tmp_path):
    with small_disk(tmp_path / "disk", "256m") as disk:
        facts = disk_full_mid_flow(tmp_path, disk, full_seconds=90, records=3000)
    assert facts["worker_pauses"] >= 1, "the workers never paused although the audit fell 90 s behind"

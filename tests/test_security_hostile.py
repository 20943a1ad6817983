"""Hostile input, counted: the corpus in tests/hostile interleaved with 10,000 valid records.

Common-schema JSON goes through a routing worker run as a subprocess on the real RabbitMQ: every bad
input ends as exactly one rejection with its reason code and audit entry, every valid record is routed,
the worker neither crashes nor restarts, and its peak memory (VmHWM) stays under 256 MB.  The adapters'
hostile inputs are translated directly: no exception, bounded time, no file content read.
"""

from __future__ import annotations

import collections
import json
import os
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import orjson
import pytest

from adapters.base import AdapterError
from adapters.registry import get_adapter
from broker import topology
from broker.audit.entries import bounded_token
from broker.audit.log import LOG_NAME, AuditWriter, read_entries
from broker.config import PROJECT_ROOT
from broker.errors import REJECT_REASONS
from broker.ingress.publisher import publish_all, record_message
from broker.routing.jsonsafe import duplicate_key
from tests.hostile.make_corpus import adapter_cases, big_json_cases, hand_cases, json_cases
from tests.support import EXAMPLES

VALID = 10_000
MAPPINGS = {
    "cjse-spi": "libra-spi",
    "niem-nibrs": "nibrs-sample",
    "police-uk-csv": "city-of-london",
    "custody-csv": "force-a-custody",
    "fixed-width": "force-b",
}
XML_ADAPTERS = ("cjse-spi", "niem-nibrs")


def _valid_records() -> list[dict]:
    examples = [json.loads(p.read_text()) for p in sorted(EXAMPLES.glob("*.json"))]
    examples = [e for e in examples if "supersedes" not in e]
    return [dict(examples[i % len(examples)], id=f"valid-{i:05d}") for i in range(VALID)]


def _hostile_json() -> list:
    return [*json_cases(), *(c for c in hand_cases() if c.format == "common-json"), *big_json_cases()]


def _audited_id(case, message_id: str, settings) -> str:
    """The id a rejection is audited under: the record's own id when it has one (as a digest unless it is a
    short plain token), else the message id."""
    if len(case.body) > settings.max_body_bytes or case.content_type != "application/json":
        return message_id
    try:
        doc = orjson.loads(case.body)
    except orjson.JSONDecodeError:
        return message_id
    if duplicate_key(case.body, doc) is not None or not isinstance(doc, dict):
        return message_id
    return bounded_token(doc["id"]) if isinstance(doc.get("id"), str) and doc["id"] else message_id


def _decided(settings, wanted: set[str]) -> int:
    """How many of the wanted record ids have an audit entry (entries of many records share a message)."""
    AuditWriter(settings).run(stop_when_idle=True)
    log = Path(settings.audit_dir) / LOG_NAME
    return len(wanted & {e.get("record_id") for e in read_entries(log)}) if log.exists() else 0


def _vm_hwm_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM")


@pytest.mark.rabbitmq
def test_every_hostile_input_is_rejected_once_with_its_reason_and_every_valid_record_is_routed(broker):
    # Given the hostile JSON corpus interleaved with 10,000 valid records, and a worker subprocess
    hostile = _hostile_json()
    valid = _valid_records()
    messages, expected = [], {}
    step = VALID // len(hostile)
    for i, record in enumerate(valid):
        messages.append(record_message(record))
        if i % step == 0 and i // step < len(hostile):
            case = hostile[i // step]
            message_id = f"hostile-{case.name}"
            expected[_audited_id(case, message_id, broker.settings)] = case.expected
            messages.append(
                replace(
                    record_message(case.body, routing_key="crime.report", message_id=message_id),
                    content_type=case.content_type,
                )
            )
    assert len(expected) == len(hostile)
    settings = broker.settings
    env = dict(
        os.environ,
        INTERCHANGE_CORE_VHOST=settings.core_vhost,
        INTERCHANGE_VHOST_PREFIX=settings.recipient_vhost_prefix,
        INTERCHANGE_AUDIT_DIR=str(settings.audit_dir),
        INTERCHANGE_PREFETCH="200",
        INTERCHANGE_METRICS_PORT="0",  # any free port: another worker may hold the default
    )
    worker = subprocess.Popen(
        [sys.executable, "-m", "broker", "worker"],
        env=env,
        cwd=PROJECT_ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        # When everything is published and routed
        started = time.monotonic()
        report = publish_all(settings, messages, window=500)
        published = time.monotonic() - started
        assert report.published == len(messages)
        deadline = time.monotonic() + 180
        wanted = set(expected) | {r["id"] for r in valid}
        while (decided := _decided(settings, wanted)) < len(wanted):
            assert worker.poll() is None, worker.stderr.read().decode()[-2000:]
            assert time.monotonic() < deadline, f"only {decided} of {len(wanted)} decided"
            time.sleep(0.2)
        elapsed = time.monotonic() - started
        peak = _vm_hwm_mb(worker.pid)
        alive = worker.poll() is None
    finally:
        worker.terminate()
        worker.wait(timeout=20)
    AuditWriter(settings).run(stop_when_idle=True)
    entries = list(read_entries(Path(settings.audit_dir) / LOG_NAME))

    # Then each hostile input has exactly one audit entry: a rejection with the expected reason
    by_id = collections.defaultdict(list)
    for entry in entries:
        by_id[entry.get("record_id")].append(entry)
    wrong = {}
    for message_id, reason in expected.items():
        got = [(e["outcome"], e.get("reason")) for e in by_id.get(message_id, [])]
        if got != [("rejected", reason)]:
            wrong[message_id] = got
    assert not wrong, wrong
    assert {e["reason"] for e in entries if e["outcome"] == "rejected"} <= set(REJECT_REASONS)
    # And every valid record was routed, none rejected; the dead-letter queue holds only the hostile inputs
    unrouted = [
        r["id"] for r in valid if not by_id.get(r["id"]) or any(e["outcome"] == "rejected" for e in by_id[r["id"]])
    ]
    assert not unrouted, unrouted[:10]
    dead = broker.drain(settings.core_vhost, topology.DEAD_QUEUE)
    assert len(dead) == len(hostile)
    # And the worker never crashed or restarted, and stayed under 256 MB
    assert alive
    reasons = collections.Counter(expected.values())
    print(
        f"\nhostile corpus: {len(hostile)} hostile JSON inputs + {VALID} valid records in {elapsed:.1f}s; "
        f"(published in {published:.1f}s); rejected {len(hostile)} ({dict(sorted(reasons.items()))}); "
        f"valid routed {VALID - len(unrouted)}; "
        f"worker peak memory (VmHWM) {peak:.0f} MB"
    )
    assert peak < 256


def test_every_adapter_refuses_its_hostile_inputs_in_bounded_time_without_reading_files():
    # Given the adapters' hostile inputs (XML attack classes, broken CSV, broken fixed-width)
    cases = [*adapter_cases(), *(c for c in hand_cases() if c.format != "common-json")]
    counts: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    slow = []
    for case in cases:
        # When each is translated directly
        started = time.perf_counter()
        results = list(get_adapter(case.format).translate(case.body, MAPPINGS[case.format]))
        took = time.perf_counter() - started
        errors = [r for r in results if isinstance(r, AdapterError)]
        records = [r for r in results if not isinstance(r, AdapterError)]
        # Then nothing raised, nothing read a local file, and it finished in bounded time
        assert "root:x:0:0" not in json.dumps(records, default=str), case.name
        counts[case.format]["refused" if errors else "nothing translated"] += 1
        counts[case.format]["records alongside errors"] += len(records) if errors else 0
        assert errors or not records, f"{case.format} {case.name}: translated {len(records)} records, no error"
        # And every hostile XML input (wrong root, only processing instructions...) is named by an error
        if case.format in XML_ADAPTERS:
            assert errors, f"{case.format} {case.name}: produced nothing, no AdapterError"
        if took > 10:
            slow.append((case.name, round(took, 1)))
    print(
        f"\nhostile corpus: {len(cases)} adapter inputs: " + "; ".join(f"{fmt} {dict(c)}" for fmt, c in counts.items())
    )
    assert not slow, slow

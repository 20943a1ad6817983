"""`make demo`: the whole exchange on the example records, end to end, on the local RabbitMQ.

It creates its own vhosts (interchange-demo, interchange-demo.<recipient>), starts the audit writer and
a routing worker as child processes (their JSON logs go to var/demo/logs/), publishes every example
record (and the invalid ones), waits until every record is decided, then prints what each recipient
received (and which fields), what was withheld and why, what was refused, and the audit check.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import orjson

from broker.audit.log import LOG_NAME, read_entries, verify
from broker.config import PROJECT_ROOT, Registry, Settings
from broker.contract import FormatLookup
from broker.errors import ExitCode
from broker.ingress.publisher import publish_all, record_message
from broker.ops import provision
from broker.partners.receive import deliveries

EXAMPLES = PROJECT_ROOT / "examples" / "records"
DEMO_ROOT = PROJECT_ROOT / "var" / "demo"


def demo_settings(settings: Settings) -> Settings:
    """The settings with the demo's own vhosts and audit directory."""
    return settings.with_overrides(
        core_vhost="interchange-demo", recipient_vhost_prefix="interchange-demo.", audit_dir=DEMO_ROOT / "audit"
    )


def start_children(settings: Settings, log_dir: Path) -> list[subprocess.Popen[bytes]]:
    """Start the demo's audit writer and worker as child processes, logging to `log_dir`."""
    log_dir.mkdir(parents=True, exist_ok=True)
    common = [
        sys.executable,
        "-m",
        "broker",
        *settings.cli_args(),
        "--agreements",
        str(settings.agreements_dir),
        "--metrics-port",
        "0",
    ]
    children = []
    for role in ("audit-writer", "worker"):
        with (log_dir / f"{role}.log").open("ab") as log:
            children.append(subprocess.Popen(common + [role], stdout=log, stderr=subprocess.STDOUT))
    return children


def stop_children(children: list[subprocess.Popen[bytes]]) -> None:
    """Terminate the children and wait for them (killed if they do not stop)."""
    for child in children:
        if child.poll() is None:
            child.terminate()
    for child in children:
        try:
            child.wait(timeout=20)
        except subprocess.TimeoutExpired:
            child.kill()


def wait_for_audit(path: Path, record_ids: set[str], timeout: float = 60.0) -> list[dict[str, Any]]:
    """Until every published record has at least one audit entry (or the timeout)."""
    deadline = time.monotonic() + timeout
    entries: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        if path.exists():
            entries = list(read_entries(path))
            if record_ids <= {e.get("record_id") for e in entries}:
                return entries
        time.sleep(0.2)
    missing = record_ids - {e.get("record_id") for e in entries}
    raise SystemExit(f"demo: no audit entry after {timeout:.0f}s for {sorted(missing)}; see {DEMO_ROOT}/logs")


def run_demo(base: Settings, keep: bool = False, formats: FormatLookup | None = None) -> int:
    """Run the whole exchange on the example records and print what each partner received; the exit code.

    `formats` as for `Registry.load`."""
    settings = demo_settings(base)
    registry = Registry.load(settings, formats)
    shutil.rmtree(DEMO_ROOT, ignore_errors=True)
    provision.remove(settings, registry)
    provision.apply(settings, registry)
    print(
        f"Interchange demo: {len(registry.agreements)} agreements, {len(registry.recipients)} recipients, "
        f"vhost {settings.core_vhost}"
    )
    children = start_children(settings, DEMO_ROOT / "logs")
    try:
        files = sorted(EXAMPLES.glob("*.json")) + sorted((EXAMPLES / "invalid").glob("*.json"))
        records = [orjson.loads(f.read_bytes()) for f in files]
        report = publish_all(
            settings, [record_message(r, message_id=r.get("id") or f.stem) for r, f in zip(records, files, strict=True)]
        )
        forces = sorted({str(r["origin"].get("agency")) for r in records if isinstance(r.get("origin"), dict)})
        print(f"published {report.published} records (confirmed) from agencies {', '.join(map(str, forces))}")
        ids = {r.get("id") or f.stem for r, f in zip(records, files, strict=True)}
        entries = wait_for_audit(Path(settings.audit_dir) / LOG_NAME, ids)
        received = _drain(settings, registry)
    finally:
        stop_children(children)
    ok = _report(received, entries, registry)
    verdict = verify(Path(settings.audit_dir) / LOG_NAME)
    print(f"\nAudit: {verdict}")
    if not keep:
        provision.remove(settings, registry)
    return ExitCode.OK if ok and verdict.ok else ExitCode.FAILED


def _drain(settings: Settings, registry: Registry) -> dict[str, list[dict[str, Any]]]:
    received: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for recipient in sorted(registry.recipients):
        for delivery, channel, method in deliveries(settings, recipient, idle_seconds=0.5):
            received[recipient].append(delivery.as_json())
            channel.basic_ack(method.delivery_tag)
    return received


def _report(received: dict[str, list[dict[str, Any]]], entries: list[dict[str, Any]], registry: Registry) -> bool:
    print("\nDelivered (each recipient's own view of the record):")
    for recipient in sorted(received):
        print(f"  {recipient}  ({registry.recipients[recipient].name})")
        for item in received[recipient]:
            body = item["body"] if isinstance(item["body"], dict) else {}
            fields = sorted((body.get("data") or {}).keys())
            print(
                f"    {item['message_id']:<36} {body.get('type', ''):<26} under {item['headers'].get('x-agreement')}"
                f"\n      fields: {', '.join(fields) or '(envelope only)'}"
            )
    withheld = [e for e in entries if e.get("outcome") == "withheld"]
    print(f"\nWithheld ({len(withheld)} decisions, each audited):")
    for e in withheld:
        detail = f" ({e['detail']})" if e.get("detail") else ""
        print(f"  {e['record_id']:<36} from {e.get('recipient') or '(anyone)':<24} {e['reason']}{detail}")
    rejected = [e for e in entries if e.get("outcome") == "rejected"]
    print(f"\nRefused at ingress and dead-lettered ({len(rejected)}):")
    for e in rejected:
        paths = ", ".join(f"{x['path'] or '(record)'} [{x['code']}]" for x in e.get("errors", [])[:3])
        print(f"  {e['record_id'] or '?':<36} {e['reason']}: {paths}")
    counts = Counter(e["outcome"] for e in entries)
    print(
        f"\nSummary: {sum(len(v) for v in received.values())} deliveries to {len(received)} recipients, "
        f"{counts['withheld']} withheld, {counts['rejected']} rejected, {len(entries)} audit entries"
    )
    return len(received) >= 5 and counts["withheld"] >= 3

"""Running the routing core: a worker process, the audit writer, and a supervisor for both.

`interchange run` supervises one audit writer and N routing workers as child processes, restarts any
that dies (with backoff), and stops them all on SIGTERM or SIGINT.  Each role can also run on its own
(`interchange worker`, `interchange audit-writer`) for container deployments.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

from broker import logs
from broker.config import Registry, Settings
from broker.exchange import Context, common_json
from broker.metrics import Metrics
from broker.provision import recipient_vhosts
from broker.transport import AmqpTransport
from broker.worker import Worker


def build_context(settings: Settings, registry: Registry | None = None) -> Context:
    from broker.validation import Validator

    registry = registry or Registry.load(settings)
    return Context.build(settings, registry, Validator(), renderers=load_renderers(registry))


def load_renderers(registry: Registry) -> dict[str, Callable[[dict[str, Any]], tuple[bytes, str]]]:
    """Outbound adapters named by recipients' `format`, resolved once at start-up."""
    renderers: dict[str, Callable[[dict[str, Any]], tuple[bytes, str]]] = {"common-json": common_json}
    for recipient in registry.recipients.values():
        if recipient.format not in renderers:
            from adapters.registry import get_adapter
            adapter: Any = get_adapter(recipient.format)
            renderers[recipient.format] = lambda record, a=adapter, r=recipient: a.render(record, r.attributes)
    return renderers


def make_worker(settings: Settings, metrics: Metrics | None = None, registry: Registry | None = None) -> Worker:
    ctx = build_context(settings, registry)
    vhosts = {"core": settings.core_vhost} | recipient_vhosts(settings, ctx.registry)
    transport = AmqpTransport(settings.amqp_url, vhosts, settings.confirm_timeout_seconds,
                              settings.heartbeat_seconds, name="interchange-worker")
    return Worker(ctx, transport, metrics)


def run_worker(settings: Settings, metrics: Metrics | None = None) -> int:
    worker = make_worker(settings, metrics)
    _on_signals(lambda: worker.transport.stop_threadsafe())
    worker.start()
    worker.transport.run()
    logs.get("interchange.worker").info("worker_stopped", routed=worker.routed)
    return 0


def run_audit_writer(settings: Settings) -> int:
    from broker.auditlog import AuditWriter

    writer = AuditWriter(settings)
    _on_signals(writer.stop)
    while True:
        try:
            writer.run()
            return 0
        except Exception as exc:  # connection lost: reconnect and carry on (unacked batches come back)
            if writer._stop:
                return 0
            logs.get("interchange.audit").warning("audit_writer_reconnecting", error=repr(exc))
            time.sleep(1.0)
            writer = AuditWriter(settings)
            _on_signals(writer.stop)


def supervise(commands: dict[str, list[str]], max_backoff: float = 30.0) -> int:
    """Start each named command, restart any that exits, stop all on SIGTERM/SIGINT."""
    log = logs.get("interchange.supervisor")
    children: dict[str, subprocess.Popen[bytes]] = {}
    backoff = {name: 0.5 for name in commands}
    stopping = False

    def stop() -> None:
        nonlocal stopping
        stopping = True

    _on_signals(stop)
    for name, argv in commands.items():
        children[name] = subprocess.Popen(argv)
        log.info("process_started", process=name, pid=children[name].pid)
    while not stopping:
        time.sleep(0.2)
        for name, child in children.items():
            if child.poll() is not None and not stopping:
                log.warning("process_exited", process=name, code=child.returncode, restart_in=backoff[name])
                time.sleep(backoff[name])
                backoff[name] = min(backoff[name] * 2, max_backoff)
                children[name] = subprocess.Popen(commands[name])
    for child in children.values():
        if child.poll() is None:
            child.send_signal(signal.SIGTERM)
    for name, child in children.items():
        try:
            child.wait(timeout=15)
        except subprocess.TimeoutExpired:
            child.kill()
        log.info("process_stopped", process=name, code=child.returncode)
    return 0


def child_commands(workers: int, extra_args: list[str]) -> dict[str, list[str]]:
    base = [sys.executable, "-m", "broker"]
    commands = {"audit-writer": base + ["audit-writer"] + extra_args}
    for i in range(workers):
        commands[f"worker-{i}"] = base + ["worker"] + extra_args
    return commands


def _on_signals(callback: Callable[[], None]) -> None:
    def handler(_signum: int, _frame: Any) -> None:
        callback()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)

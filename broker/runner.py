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
from broker.errors import ConfigError
from broker.exchange import Context, common_json
from broker.metrics import Metrics
from broker.provision import recipient_vhosts
from broker.transport import AmqpTransport
from broker.worker import Worker


def build_context(settings: Settings, registry: Registry | None = None) -> Context:
    from broker.auditindex import Originals
    from broker.validation import Validator

    registry = registry or Registry.load(settings)
    return Context.build(settings, registry, Validator(), renderers=load_renderers(registry, settings),
                         original=Originals(settings.audit_dir))


def load_renderers(registry: Registry, settings: Settings | None = None
                   ) -> dict[str, Callable[[dict[str, Any]], tuple[bytes, str]]]:
    """Outbound adapters named by recipients' `format`, resolved once at start-up.

    An anonymising adapter gets the open-data key (`crime_id_key`) from the settings; without one it renders
    nothing (every delivery through it is withheld as `recipient_format_error`).
    """
    from adapters.registry import get_adapter

    renderers: dict[str, Callable[[dict[str, Any]], tuple[bytes, str]]] = {"common-json": common_json}
    for recipient in registry.recipients.values():
        if recipient.format not in renderers:
            adapter: Any = get_adapter(recipient.format)
            options = dict(recipient.attributes)
            if adapter.anonymising and settings is not None:
                options["crime_id_key"] = settings.open_data_key_or_dev()
                if not options["crime_id_key"]:
                    raise ConfigError("INTERCHANGE_OPEN_DATA_KEY", "open_data_key", (
                        f"recipient {recipient.id!r} receives through {recipient.format!r}, which needs a secret "
                        "key for its opaque ids; set one (development mode alone may run without one)"))
            renderers[recipient.format] = lambda record, a=adapter, o=options: a.render(record, o)
    return renderers


def make_worker(settings: Settings, metrics: Metrics | None = None, registry: Registry | None = None) -> Worker:
    ctx = build_context(settings, registry)
    vhosts = {"core": settings.core_vhost} | recipient_vhosts(settings, ctx.registry)
    transport = AmqpTransport(settings.amqp_url, vhosts, settings.confirm_timeout_seconds,
                              settings.heartbeat_seconds, name="interchange-worker", tls=settings.tls)
    return Worker(ctx, transport, metrics)


def run_worker(settings: Settings, metrics: Metrics | None = None) -> int:
    from broker import health
    from broker.provision import admin_for

    worker = make_worker(settings, metrics)
    server = _serve(settings, worker.metrics, health.worker_readiness(worker, admin_for(settings)),
                    lambda: worker.metrics.observe_agreements(worker.ctx.registry.agreements))
    _on_signals(lambda: worker.transport.stop_threadsafe())
    worker.start()
    worker.transport.run()
    if server is not None:
        server.shutdown()
    logs.get("interchange.worker").info("worker_stopped", routed=worker.routed)
    return 0


def run_audit_writer(settings: Settings) -> int:
    from broker import health
    from broker.auditlog import LOG_NAME, AuditWriter, verify
    from broker.provision import admin_for

    metrics = Metrics()
    writer = AuditWriter(settings, metrics=metrics)
    verdict = verify(writer.log.path.parent / LOG_NAME)
    if not verdict.ok:
        metrics.audit_verify_failures.inc()
        logs.get("interchange.audit").error("audit_chain_broken", line=verdict.first_bad_line,
                                            seq=verdict.first_bad_seq, problem=verdict.problem)
    _serve(settings, metrics, health.audit_writer_readiness(lambda: writer, admin_for(settings), settings))
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
            writer = AuditWriter(settings, metrics=metrics)
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


def child_commands(workers: int, extra_args: list[str], metrics_port: int = 0) -> dict[str, list[str]]:
    """argv of each child; with a metrics port P the audit writer serves on P and worker i on P+1+i."""
    base = [sys.executable, "-m", "broker"]

    def port(offset: int) -> list[str]:
        return ["--metrics-port", str(metrics_port + offset)] if metrics_port else []

    commands = {"audit-writer": base + extra_args + port(0) + ["audit-writer"]}
    for i in range(workers):
        commands[f"worker-{i}"] = base + extra_args + port(1 + i) + ["worker", "--index", str(i), "--of", str(workers)]
    return commands


def _serve(settings: Settings, metrics: Metrics, readiness: Any,
           before_scrape: Callable[[], None] | None = None) -> Any:
    """Serve /metrics, /healthz and /readyz on settings.metrics_port (0 = off)."""
    if not settings.metrics_port:
        return None
    from broker.health import serve

    server = serve(settings.metrics_port, metrics.registry, readiness, before_scrape=before_scrape)
    logs.get("interchange.health").info("metrics_serving", port=server.server_address[1],
                                        paths=["/metrics", "/healthz", "/readyz"])
    return server


def _on_signals(callback: Callable[[], None]) -> None:
    def handler(_signum: int, _frame: Any) -> None:
        callback()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)

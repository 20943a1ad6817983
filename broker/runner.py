"""Running the routing core: a worker process, the audit writer, and a supervisor for both.

`interchange run` supervises one audit writer and N routing workers as child processes, restarts any
that dies (with a back-off that resets after a healthy run), and stops them all on SIGTERM or SIGINT.
Each role can also run on its own (`interchange worker`, `interchange audit-writer`) for container deployments.
"""

from __future__ import annotations

import functools
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from adapters.registry import adapter_class, get_adapter
from broker.audit.index import Originals
from broker.audit.lag import AuditLag, QueueDepthPoller
from broker.audit.log import LOG_NAME, AuditWriteError, AuditWriter, Backoff, verify
from broker.config import Registry, Settings
from broker.errors import ConfigError, ExitCode
from broker.ops import health, logs
from broker.ops.health import serve
from broker.ops.metrics import Metrics
from broker.ops.provision import admin_for, recipient_vhosts
from broker.router import Context, common_json
from broker.routing.validation import Validator
from broker.transports.amqp import AmqpTransport
from broker.worker import Worker


def load_registry(settings: Settings) -> Registry:
    """The configuration, with public recipients' formats checked against the adapters that render them."""
    return Registry.load(settings, adapter_class)


def build_context(settings: Settings, registry: Registry | None = None) -> Context:
    """The routing context (registry, validator, renderers, originals) for these settings."""
    registry = registry or load_registry(settings)
    return Context.build(
        settings,
        registry,
        Validator(),
        renderers=load_renderers(registry, settings),
        original=Originals(settings.audit_dir),
    )


def load_renderers(
    registry: Registry, settings: Settings | None = None
) -> dict[str, Callable[[dict[str, Any]], tuple[bytes, str]]]:
    """Outbound adapters named by recipients' `format`, resolved once at start-up.

    An anonymising adapter gets the open-data key (`crime_id_key`) from the settings; without one it renders
    nothing (every delivery through it is withheld as `recipient_format_error`).
    """
    renderers: dict[str, Callable[[dict[str, Any]], tuple[bytes, str]]] = {"common-json": common_json}
    for recipient in registry.recipients.values():
        if recipient.format not in renderers:
            adapter: Any = get_adapter(recipient.format)
            options = dict(recipient.attributes)
            if adapter.anonymising and settings is not None:
                options["crime_id_key"] = settings.open_data_key_or_dev()
                if not options["crime_id_key"]:
                    raise ConfigError(
                        "INTERCHANGE_OPEN_DATA_KEY",
                        "open_data_key",
                        (
                            f"recipient {recipient.id!r} receives through {recipient.format!r}, which needs a secret "
                            "key for its opaque ids; set one (development mode alone may run without one)"
                        ),
                    )
            renderers[recipient.format] = functools.partial(adapter.render, options=options)
    return renderers


def make_worker(
    settings: Settings, metrics: Metrics | None = None, registry: Registry | None = None, lag: AuditLag | None = None
) -> Worker:
    """A routing worker on an AMQP transport to the core and every recipient vhost."""
    ctx = build_context(settings, registry)
    vhosts = {"core": settings.core_vhost} | recipient_vhosts(settings, ctx.registry)
    transport = AmqpTransport(
        settings.amqp_url,
        vhosts,
        settings.confirm_timeout_seconds,
        settings.heartbeat_seconds,
        name="interchange-worker",
        tls=settings.tls,
    )
    return Worker(ctx, transport, metrics, lag=lag)


def run_worker(settings: Settings, metrics: Metrics | None = None) -> int:
    """Run one routing worker until stopped, with its health endpoint; the exit code."""
    lag = AuditLag(settings.audit_lag_bound_seconds)
    poller = QueueDepthPoller(admin_for(settings), settings.core_vhost, lag).start()
    worker = make_worker(settings, metrics, lag=lag)
    server = _serve(
        settings,
        worker.metrics,
        health.worker_readiness(worker, admin_for(settings)),
        lambda: worker.metrics.observe_agreements(worker.ctx.registry.agreements),
    )
    _on_signals(lambda: worker.transport.stop_threadsafe())
    worker.start()
    worker.transport.run()
    poller.stop()
    if server is not None:
        server.shutdown()
    logs.get("interchange.worker").info("worker_stopped", routed=worker.routed)
    return ExitCode.OK


def run_audit_writer(settings: Settings) -> int:
    """Run the audit writer until stopped, reconnecting with back-off; the exit code."""
    metrics = Metrics()
    events = logs.get("interchange.audit")
    verdict = verify(Path(settings.audit_dir) / LOG_NAME)
    if not verdict.ok:
        metrics.audit_verify_failures.inc()
        events.error(
            "audit_chain_broken", line=verdict.first_bad_line, seq=verdict.first_bad_seq, problem=verdict.problem
        )
    current: dict[str, Any] = {"writer": None, "stop": False}

    def stop() -> None:
        current["stop"] = True
        if current["writer"] is not None:
            current["writer"].stop()

    _on_signals(stop)
    backoff, served = Backoff(first=1.0), False
    while not current["stop"]:
        try:
            writer = current["writer"] = AuditWriter(settings, metrics=metrics)
        except (AuditWriteError, OSError) as exc:  # e.g. a partial line cannot be quarantined on a full disk
            wait = backoff.next()
            events.warning("audit_log_unavailable", error=repr(exc), retry_in_seconds=round(wait, 2))
            _sleep_unless(lambda: current["stop"], wait)
            continue
        if current["stop"]:
            writer.stop()
        if not served:
            _serve(
                settings,
                metrics,
                health.audit_writer_readiness(lambda: current["writer"], admin_for(settings), settings),
            )
            served = True
        started = time.monotonic()
        try:
            writer.run()
            return ExitCode.OK
        except Exception as exc:  # connection lost or log unusable: start afresh (unacked batches come back)
            if current["stop"]:
                return ExitCode.OK
            if time.monotonic() - started > 10:
                backoff.reset()
            wait = backoff.next()
            events.warning("audit_writer_reconnecting", error=repr(exc), retry_in_seconds=round(wait, 2))
            _sleep_unless(lambda: current["stop"], wait)
    return ExitCode.OK


def _sleep_unless(stopping: Callable[[], bool], seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while not stopping() and time.monotonic() < deadline:
        time.sleep(min(0.2, max(0.0, deadline - time.monotonic())))


@dataclass
class _Child:
    argv: list[str]
    process: subprocess.Popen[bytes] | None = None
    started: float = 0.0
    restart_at: float | None = None  # set while waiting to restart
    delay: float = 0.0


def supervise(
    commands: dict[str, list[str]],
    first_backoff: float = 0.5,
    max_backoff: float = 30.0,
    healthy_seconds: float = 10.0,
    tick: float = 0.2,
) -> int:
    """Start each named command, restart any that exits, stop all on SIGTERM/SIGINT.

    A child's restart delay doubles on each exit up to `max_backoff` and goes back to `first_backoff`
    once it has run `healthy_seconds`; a child waiting for its restart keeps no other child and no
    shutdown waiting.
    """
    log = logs.get("interchange.supervisor")
    children = {name: _Child(argv, delay=first_backoff) for name, argv in commands.items()}
    stopping = False

    def stop() -> None:
        nonlocal stopping
        stopping = True

    _on_signals(stop)
    for name, child in children.items():
        _start(log, name, child)
    while not stopping:
        time.sleep(tick)
        now = time.monotonic()
        for name, child in children.items():
            if stopping:
                break
            if child.restart_at is not None:
                if now >= child.restart_at:
                    _start(log, name, child)
                continue
            assert child.process is not None
            if child.process.poll() is None:
                continue
            ran = now - child.started
            if ran >= healthy_seconds:
                child.delay = first_backoff
            child.restart_at = now + child.delay
            log.warning(
                "process_exited",
                process=name,
                code=child.process.returncode,
                ran_seconds=round(ran, 1),
                restart_in=round(child.delay, 2),
            )
            child.delay = min(child.delay * 2, max_backoff)
    running = [c.process for c in children.values() if c.process is not None and c.restart_at is None]
    for process in running:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    for name, child in children.items():
        if child.process is None or child.restart_at is not None:
            continue
        try:
            child.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            child.process.kill()
            child.process.wait()
        log.info("process_stopped", process=name, code=child.process.returncode)
    return ExitCode.OK


def _start(log: Any, name: str, child: _Child) -> None:
    child.process, child.started, child.restart_at = subprocess.Popen(child.argv), time.monotonic(), None
    log.info("process_started", process=name, pid=child.process.pid)


def child_commands(workers: int, extra_args: list[str], metrics_port: int = 0) -> dict[str, list[str]]:
    """argv of each child; with a metrics port P the audit writer serves on P and worker i on P+1+i.

    With port 0 every child is told `--metrics-port 0` (no endpoint), whatever the settings file says.
    """
    base = [sys.executable, "-m", "broker"]

    def port(offset: int) -> list[str]:
        return ["--metrics-port", str(metrics_port + offset) if metrics_port else "0"]

    commands = {"audit-writer": base + extra_args + port(0) + ["audit-writer"]}
    for i in range(workers):
        commands[f"worker-{i}"] = base + extra_args + port(1 + i) + ["worker", "--index", str(i), "--of", str(workers)]
    return commands


def _serve(
    settings: Settings, metrics: Metrics, readiness: Any, before_scrape: Callable[[], None] | None = None
) -> Any:
    """Serve /metrics, /healthz and /readyz on settings.metrics_port (0 = off)."""
    if not settings.metrics_port:
        return None
    server = serve(settings.metrics_port, metrics.registry, readiness, before_scrape=before_scrape)
    logs.get("interchange.health").info(
        "metrics_serving", port=server.server_address[1], paths=["/metrics", "/healthz", "/readyz"]
    )
    return server


def _on_signals(callback: Callable[[], None]) -> None:
    def handler(_signum: int, _frame: Any) -> None:
        callback()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)

"""`/metrics`, `/healthz` and `/readyz` on one port, for every long-running process.

    server = serve(port, metrics, Readiness({"rabbitmq": ..., "topology": ...}))

- `/metrics`: the process's Prometheus registry (text exposition, `promtool check metrics` clean).
- `/healthz`: 200 while the process is alive and its HTTP thread answers (a liveness probe).
- `/readyz`: 200 only when every readiness check passes, else 503; the JSON body names each check and,
  for a failing one, why (not connected, a queue missing, configuration not loaded).

Checks are plain callables returning `(ok, detail)`; slow ones (the topology check asks the management
API) are cached for a few seconds so a probe every second costs little.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import orjson
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from broker import topology
from broker.errors import ConfigError, TransportError
from broker.ops.provision import recipient_vhosts

Check = Callable[[], tuple[bool, str]]


class Readiness:
    """Named readiness checks; `status()` runs them all and never raises."""

    def __init__(self, checks: dict[str, Check] | None = None) -> None:
        self.checks: dict[str, Check] = dict(checks or {})

    def status(self) -> tuple[bool, dict[str, dict[str, Any]]]:
        """Whether every check passes, and each check's result."""
        results: dict[str, dict[str, Any]] = {}
        for name, check in self.checks.items():
            try:
                ok, detail = check()
            except Exception as exc:  # a probe must answer, whatever a check does
                ok, detail = False, f"check failed: {exc!r}"
            results[name] = {"ok": ok, "detail": detail}
        return all(r["ok"] for r in results.values()), results


def cached(check: Check, seconds: float = 5.0) -> Check:
    """A check whose result is reused for `seconds` (for checks that call out over the network)."""
    state: dict[str, Any] = {"at": -1e9, "result": (False, "not checked yet")}
    lock = threading.Lock()

    def run() -> tuple[bool, str]:
        with lock:
            if time.monotonic() - state["at"] >= seconds:
                state["result"], state["at"] = check(), time.monotonic()
            return state["result"]

    return run


def flag(getter: Callable[[], bool], ok_text: str, bad_text: str) -> Check:
    """A check that reads a boolean the process keeps (e.g. `transport.ready`)."""
    return lambda: (True, ok_text) if getter() else (False, bad_text)


def queues_present(admin: Any, expected: list[tuple[str, str]]) -> Check:
    """Every (vhost, queue) exists, asked of the management API in one call."""

    def check() -> tuple[bool, str]:
        try:
            found = {(q["vhost"], q["name"]) for q in admin.all_queues()}
        except TransportError as exc:
            return False, f"cannot verify topology: {exc}"
        missing = [f"{vhost}/{queue}" for vhost, queue in expected if (vhost, queue) not in found]
        if missing:
            return False, f"missing queues: {', '.join(missing[:10])}" + (" …" if len(missing) > 10 else "")
        return True, f"{len(expected)} queues present"

    return check


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        path = self.path.split("?")[0]
        if path == "/metrics":
            if self.server.before_scrape is not None:
                self.server.before_scrape()
            self._send(200, generate_latest(self.server.registry), CONTENT_TYPE_LATEST)
        elif path == "/healthz":
            self._send(200, b'{"status":"alive"}\n', "application/json")
        elif path == "/readyz":
            ok, checks = self.server.readiness.status()
            body = orjson.dumps({"status": "ready" if ok else "not_ready", "checks": checks}) + b"\n"
            self._send(200 if ok else 503, body, "application/json")
        else:
            self._send(404, b'{"error":"not found: try /metrics, /healthz or /readyz"}\n', "application/json")

    def _send(self, code: int, body: bytes, content_type: str) -> None:
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - probes are not worth a log line
        return


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    registry: Any
    readiness: Readiness
    before_scrape: Callable[[], None] | None


def serve(
    port: int,
    registry: Any,
    readiness: Readiness,
    host: str = "0.0.0.0",
    before_scrape: Callable[[], None] | None = None,
) -> _Server:
    """Start the server on a daemon thread; `server.shutdown()` stops it. Port 0 picks a free port."""
    try:
        server = _Server((host, port), _Handler)
    except OSError as exc:
        raise ConfigError(
            "metrics.port",
            str(port),
            f"cannot serve /metrics on port {port}: {exc.strerror}; "
            "give each process its own port (INTERCHANGE_METRICS_PORT, --metrics-port)",
        ) from exc
    server.registry, server.readiness, server.before_scrape = registry, readiness, before_scrape
    threading.Thread(target=server.serve_forever, name="interchange-health", daemon=True).start()
    return server


# ---------------------------------------------------------------- the checks of each process


def worker_readiness(worker: Any, admin: Any) -> Readiness:
    """A routing worker is ready when connected to every vhost, its queues exist and its config loaded."""

    settings, registry = worker.ctx.settings, worker.ctx.registry
    partitions = getattr(settings, "partitions", 1)
    core_queues = (*topology.route_queues(partitions), topology.AUDIT_QUEUE, topology.DEAD_QUEUE)
    expected = [(settings.core_vhost, q) for q in core_queues]
    expected += [(vhost, topology.INBOX_QUEUE) for vhost in recipient_vhosts(settings, registry).values()]
    loaded = (
        f"{len(registry.agencies)} agencies, {len(registry.recipients)} recipients, "
        f"{len(registry.agreements)} agreements, {len(worker.ctx.renderers)} outbound formats loaded"
    )
    return Readiness(
        {
            "configuration": lambda: (True, loaded),
            "rabbitmq": flag(
                lambda: bool(worker.ready and worker.transport.ready),
                "connected to the core and every recipient vhost",
                "not connected to RabbitMQ (starting, or reconnecting after a lost connection)",
            ),
            "topology": cached(queues_present(admin, expected)),
        }
    )


def audit_writer_readiness(writer: Callable[[], Any], admin: Any, settings: Any) -> Readiness:
    """The audit writer is ready when it consumes the audit queue and can append to its log."""
    return Readiness(
        {
            "rabbitmq": flag(
                lambda: bool(writer().connected),
                "consuming interchange.audit",
                "not connected to RabbitMQ (starting, or reconnecting after a lost connection)",
            ),
            "topology": cached(queues_present(admin, [(settings.core_vhost, topology.AUDIT_QUEUE)])),
            "audit_log": lambda: _audit_log_state(writer()),
        }
    )


def _audit_log_state(writer: Any) -> tuple[bool, str]:
    if writer.log.closed:
        return False, f"{writer.log.path} is closed"
    if writer.waiting_for:
        return False, f"cannot write {writer.log.path}: waiting for {writer.waiting_for} (retrying with back-off)"
    return True, str(writer.log.path)

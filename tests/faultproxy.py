"""A fault-injecting TCP proxy for transport tests: forwards 127.0.0.1:<port> to RabbitMQ and can add
latency, stall the connections it holds (bytes stop flowing, sockets stay open) or reset them (RST).

Threads, not asyncio: each connection is two pump threads, which keeps stalls and resets simple to reason
about.  New connections made during a stall flow normally, as they would through a recovered network.
"""

from __future__ import annotations

import socket
import struct
import threading
import time
from dataclasses import dataclass, field
from typing import Any


@dataclass
class _Pair:
    client: socket.socket
    server: socket.socket
    stalled: threading.Event = field(default_factory=threading.Event)
    closed: bool = False

    def close(self, reset: bool = False) -> None:
        self.closed = True
        for sock in (self.client, self.server):
            try:
                if reset:  # SO_LINGER 0: close sends RST, as a dropped NAT entry or a dead peer would
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                sock.close()
            except OSError:
                pass


class FaultProxy:
    def __init__(self, upstream: tuple[str, int] = ("127.0.0.1", 5672)) -> None:
        self.upstream = upstream
        self.latency = 0.0
        self.pairs: list[_Pair] = []
        self.accepted = 0
        self._lock = threading.Lock()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._running = True

    def url(self, user: str = "guest", password: str = "guest") -> str:
        return f"amqp://{user}:{password}@127.0.0.1:{self.port}/"

    def __enter__(self) -> FaultProxy:
        threading.Thread(target=self._accept, daemon=True, name="faultproxy-accept").start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._running = False
        self._listener.close()
        self.reset()

    # ---- faults
    def reset(self) -> int:
        """Reset every connection now; returns how many."""
        with self._lock:
            pairs, self.pairs = self.pairs, []
        for pair in pairs:
            pair.close(reset=True)
        return len(pairs)

    def stall(self) -> None:
        """Stop forwarding on every open connection (they stay open, silent, like a black-holed route)."""
        with self._lock:
            for pair in self.pairs:
                pair.stalled.set()

    def release(self) -> None:
        with self._lock:
            for pair in self.pairs:
                pair.stalled.clear()

    # ---- forwarding
    def _accept(self) -> None:
        while self._running:
            try:
                client, _ = self._listener.accept()
                server = socket.create_connection(self.upstream, timeout=5)
                server.settimeout(None)
            except OSError:
                continue
            pair = _Pair(client, server)
            with self._lock:
                self.pairs.append(pair)
                self.accepted += 1
            for src, dst in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(pair, src, dst), daemon=True).start()

    def _pump(self, pair: _Pair, src: socket.socket, dst: socket.socket) -> None:
        while not pair.closed:
            try:
                data = src.recv(65536)
            except OSError:
                break
            if not data:
                break
            while pair.stalled.is_set() and not pair.closed:
                time.sleep(0.05)
            if self.latency:
                time.sleep(self.latency)
            try:
                dst.sendall(data)
            except OSError:
                break
        if not pair.closed:
            pair.close()

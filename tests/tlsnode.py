"""A throw-away certificate authority and a RabbitMQ node of the test's own that speaks only TLS.

The node (`tls<random>@localhost`) never touches the shared node: its data, logs, configuration,
plug-in list, pid file and Erlang cookie all live under one temporary folder.  HOME points there too,
because the Erlang cookie is read from `$HOME/.erlang.cookie` and we must neither read nor create a
cookie anywhere else.  Certificates are made with the openssl command line (no extra dependency).
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

DEPLOYED_TLS_CONF = Path(__file__).resolve().parent.parent / "deploy" / "rabbitmq" / "rabbitmq-tls.conf"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=30)


class Authority:
    """A certificate authority in `folder`: `issue(cn)` returns (certificate, key) paths."""

    def __init__(self, folder: Path, name: str) -> None:
        self.folder, self.name = folder, name
        folder.mkdir(parents=True, exist_ok=True)
        self.cert, self.key = folder / f"{name}.pem", folder / f"{name}.key"
        _openssl(
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            self.key.name,
            "-out",
            self.cert.name,
            "-days",
            "2",
            "-subj",
            f"/CN={name}",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
            cwd=folder,
        )

    def issue(self, cn: str, server: bool = False) -> tuple[Path, Path]:
        stem = f"{self.name}-{cn}"
        ext = self.folder / f"{stem}.ext"
        usage = "serverAuth" if server else "clientAuth"
        ext.write_text(
            "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\n"
            f"extendedKeyUsage={usage}\nsubjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n"
            + (f"subjectAltName=DNS:{cn}\n" if server else "")
        )
        _openssl(
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            f"{stem}.key",
            "-out",
            f"{stem}.csr",
            "-subj",
            f"/CN={cn}",
            cwd=self.folder,
        )
        _openssl(
            "x509",
            "-req",
            "-in",
            f"{stem}.csr",
            "-CA",
            self.cert.name,
            "-CAkey",
            self.key.name,
            "-CAcreateserial",
            "-out",
            f"{stem}.pem",
            "-days",
            "2",
            "-extfile",
            ext.name,
            cwd=self.folder,
        )
        return self.folder / f"{stem}.pem", self.folder / f"{stem}.key"


def _rabbit_bin(tool: str) -> str:
    """The real RabbitMQ scripts: Debian's wrappers on the PATH switch to the rabbitmq user and its
    files (HOME, cookie), which a node of our own must not use."""
    found = shutil.which(tool)
    if found is None:
        raise RuntimeError(f"{tool} is not installed")
    packaged = Path("/usr/lib/rabbitmq/bin") / tool  # the Debian package's own copy
    return str(packaged) if packaged.exists() else found


@dataclass
class TlsNode:
    """A detached RabbitMQ node with an AMQPS listener, EXTERNAL login and `verify_peer`."""

    base: Path
    ca: Path
    cert: Path
    key: Path
    name: str = field(default_factory=lambda: f"tls{secrets.token_hex(4)}@localhost")
    amqp_port: int = field(default_factory=free_port)
    tls_port: int = field(default_factory=free_port)
    dist_port: int = field(default_factory=free_port)

    @property
    def env(self) -> dict[str, str]:
        b = self.base
        return dict(
            os.environ,
            HOME=str(b / "home"),
            RABBITMQ_NODENAME=self.name,
            RABBITMQ_NODE_IP_ADDRESS="127.0.0.1",
            RABBITMQ_NODE_PORT=str(self.amqp_port),
            RABBITMQ_DIST_PORT=str(self.dist_port),
            RABBITMQ_MNESIA_BASE=str(b / "mnesia"),
            RABBITMQ_LOG_BASE=str(b / "log"),
            RABBITMQ_CONFIG_FILE=str(b / "rabbitmq.conf"),
            RABBITMQ_ENABLED_PLUGINS_FILE=str(b / "enabled_plugins"),
            RABBITMQ_PID_FILE=str(b / "pid"),
            RABBITMQ_CONF_ENV_FILE=str(b / "rabbitmq-env.conf"),
            RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1}",
        )

    def prepare(self) -> None:
        for sub in ("home", "mnesia", "log"):
            (self.base / sub).mkdir(parents=True, exist_ok=True)
        cookie = self.base / "home" / ".erlang.cookie"
        cookie.write_text(secrets.token_hex(20).upper())
        cookie.chmod(0o400)
        (self.base / "rabbitmq-env.conf").write_text("")
        (self.base / "enabled_plugins").write_text("[rabbitmq_auth_mechanism_ssl].\n")
        (self.base / "rabbitmq.conf").write_text(
            f"listeners.tcp.1 = 127.0.0.1:{self.amqp_port}\n"
            f"listeners.ssl.default = {self.tls_port}\n"
            + "".join(f"{line}\n" for line in self.deployed_tls_lines())
            + "loopback_users = none\n"
            "vm_memory_high_watermark.relative = 0.1\n"
            "disk_free_limit.absolute = 50MB\n"
            "log.file.level = warning\n"
            "log.console = false\n"
        )

    def deployed_tls_lines(self) -> list[str]:
        """The ssl_options and authentication lines of deploy/rabbitmq/rabbitmq-tls.conf, with this
        node's certificate files: the example configuration is what the tests prove."""
        files = {"ssl_options.cacertfile": self.ca, "ssl_options.certfile": self.cert, "ssl_options.keyfile": self.key}
        lines = []
        for line in DEPLOYED_TLS_CONF.read_text().splitlines():
            key = line.split("=")[0].strip()
            if key.startswith(("ssl_options.", "auth_mechanisms.", "ssl_cert_login_from")):
                lines.append(f"{key} = {files[key]}" if key in files else line)
        return lines

    def start(self, timeout: float = 90.0) -> None:
        self.prepare()
        subprocess.run(
            [_rabbit_bin("rabbitmq-server"), "-detached"], env=self.env, check=True, capture_output=True, timeout=60
        )
        deadline = time.monotonic() + timeout
        while True:  # await_startup fails at once until the node has registered with epmd
            try:
                self.ctl("await_startup", "--timeout", str(int(timeout)), timeout=timeout + 10)
                return
            except RuntimeError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)

    def ctl(self, *args: str, timeout: float = 60.0) -> str:
        done = subprocess.run(
            [_rabbit_bin("rabbitmqctl"), "-n", self.name, *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if done.returncode != 0:
            raise RuntimeError(
                f"rabbitmqctl {' '.join(args)} failed: {done.stdout}{done.stderr}\nlog: {self.log_tail()}"
            )
        return done.stdout

    def add_certificate_user(self, user: str, vhost: str) -> None:
        """A user with no password (EXTERNAL only) and full permissions on `vhost`."""
        self.ctl("add_user", user, "")
        self.ctl("clear_password", user)
        self.ctl("set_permissions", "-p", vhost, user, ".*", ".*", ".*")

    def stop(self) -> None:
        try:
            self.ctl("stop", timeout=60)
        except (RuntimeError, subprocess.TimeoutExpired):
            pid = (self.base / "pid").read_text().strip() if (self.base / "pid").exists() else ""
            if pid.isdigit():
                os.kill(int(pid), 9)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and _port_open(self.tls_port):
            time.sleep(0.2)

    def log_tail(self, lines: int = 30) -> str:
        logs = sorted((self.base / "log").glob("*.log"))
        return "\n".join(p.read_text(errors="replace").splitlines()[-lines:] for p in logs)[-4000:]


def _port_open(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
        return True
    except OSError:
        return False

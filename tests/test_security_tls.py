"""TLS with client certificates and EXTERNAL authentication, against a RabbitMQ node of the test's own.

The node (tests/tlsnode.py) listens for AMQPS with `verify_peer`, `fail_if_no_peer_cert` and only the
EXTERNAL mechanism; the login is the client certificate's CN.  A throw-away CA issues the server
certificate (CN and SAN localhost) and the client certificates.
"""

from __future__ import annotations

import shutil
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pika
import pika.credentials
import pytest

from broker.config import TlsOptions, load_settings
from broker.errors import ConfigError, TransportError
from broker.message import Outgoing
from broker.transports.amqp import AmqpTransport, blocking_channel, connection_parameters
from tests.tlsnode import Authority, TlsNode

VHOST = "interchange-tls"
USER = "interchange-router"  # a certificate-only RabbitMQ user: the CN of the good client certificate
QUEUE = "tls.proof"


@dataclass
class TlsWorld:
    node: TlsNode
    ca: Authority
    good: TlsOptions
    url: str


@pytest.fixture(scope="module")
def tls_world() -> Iterator[TlsWorld]:
    base = Path(tempfile.mkdtemp(prefix="interchange-tls-"))
    node = None
    try:
        ca = Authority(base / "pki", "interchange-test-ca")
        server_cert, server_key = ca.issue("localhost", server=True)
        cert, key = ca.issue(USER)
        node = TlsNode(base / "node", ca.cert, server_cert, server_key)
        node.start()
        node.ctl("add_vhost", VHOST)
        node.add_certificate_user(USER, VHOST)
        yield TlsWorld(node, ca, TlsOptions(ca.cert, cert, key), f"amqps://localhost:{node.tls_port}/")
    finally:
        if node is not None:
            node.stop()
        shutil.rmtree(base, ignore_errors=True)


# ---------------------------------------------------------------- configuration (no broker)


def test_tls_files_come_from_the_environment_and_make_every_connection_use_external(tmp_path: Path) -> None:
    # Given the three TLS variables and an amqps URL without a user
    env = {
        "INTERCHANGE_AMQP_URL": "amqps://rabbit.example:5671/",
        "INTERCHANGE_TLS_CA_FILE": "/pki/ca.pem",
        "INTERCHANGE_TLS_CERT_FILE": "/pki/me.pem",
        "INTERCHANGE_TLS_KEY_FILE": "/pki/me.key",
    }
    # When the settings are loaded
    settings = load_settings(tmp_path / "absent.yaml", environ=env)
    # Then the TLS options carry the files and authentication is decided per URL
    assert settings.tls == TlsOptions(Path("/pki/ca.pem"), Path("/pki/me.pem"), Path("/pki/me.key"))
    assert load_settings(tmp_path / "absent.yaml", environ={}).tls is None


def test_tls_keys_in_the_settings_file_are_resolved_beside_the_file(tmp_path: Path) -> None:
    # Given a settings file with amqp.tls and relative paths
    (tmp_path / "interchange.yaml").write_text(
        "amqp:\n  url: amqps://rabbit.example:5671/\n  tls:\n    ca_file: pki/ca.pem\n"
        "    cert_file: pki/me.pem\n    key_file: pki/me.key\n    auth: external\n"
        "    server_hostname: rabbit.internal\n"
    )
    # When it is loaded
    tls = load_settings(tmp_path / "interchange.yaml", environ={}).tls
    # Then the paths are relative to the file, and the options are kept
    assert tls is not None and tls.ca_file == (tmp_path / "pki" / "ca.pem").resolve()
    assert (tls.auth, tls.server_hostname) == ("external", "rabbit.internal")


def test_an_unknown_tls_key_in_the_settings_file_is_a_config_error(tmp_path: Path) -> None:
    (tmp_path / "interchange.yaml").write_text("amqp:\n  tls:\n    certfile: me.pem\n")
    with pytest.raises(ConfigError, match="certfile"):
        load_settings(tmp_path / "interchange.yaml", environ={})


@pytest.mark.rabbitmq
def test_tls_files_with_a_plain_amqp_url_are_refused_rather_than_sent_in_clear(tls_world: TlsWorld) -> None:
    with pytest.raises(ConfigError, match="not amqps"):
        connection_parameters("amqp://127.0.0.1:5672/", "/", tls=tls_world.good)


@pytest.mark.rabbitmq
def test_a_url_with_a_password_keeps_plain_login_over_tls_unless_external_is_asked(tls_world: TlsWorld) -> None:
    # Given the client certificate and a URL with a user and password
    url = "amqps://someone:secret@localhost:5671/"
    # When parameters are built with auth auto, and with auth external
    auto = connection_parameters(url, "/", tls=tls_world.good)
    good = tls_world.good
    external = connection_parameters(url, "/", tls=TlsOptions(good.ca_file, good.cert_file, good.key_file, "external"))
    # Then auto keeps the URL's credentials and external uses the certificate
    assert isinstance(auto.credentials, pika.credentials.PlainCredentials)
    assert isinstance(external.credentials, pika.credentials.ExternalCredentials)
    assert isinstance(
        connection_parameters(tls_world.url, "/", tls=tls_world.good).credentials, pika.credentials.ExternalCredentials
    )
    assert auto.ssl_options is not None and auto.ssl_options.server_hostname == "localhost"


# ---------------------------------------------------------------- against the TLS node


@pytest.mark.rabbitmq
def test_records_are_published_with_confirms_and_consumed_over_amqps_with_external_login(tls_world: TlsWorld) -> None:
    # Given a queue on the TLS node, declared over a blocking channel authenticated by certificate
    connection, channel = blocking_channel(tls_world.url, VHOST, "tls-test-setup", tls_world.good)
    channel.queue_declare(QUEUE, durable=True)
    connection.close()
    # When the AmqpTransport publishes 50 records over amqps and waits for every confirm
    results = _publish_with_transport(tls_world, 50)
    # Then every publish was confirmed
    assert results == [(True, "")] * 50
    # And a blocking channel over amqps consumes all 50
    connection, channel = blocking_channel(tls_world.url, VHOST, "tls-test-consumer", tls_world.good)
    bodies = []
    for method, _props, body in channel.consume(QUEUE, inactivity_timeout=2):
        if method is None:
            break
        bodies.append(body)
        channel.basic_ack(method.delivery_tag)
    user = connection._impl.params.credentials  # the login was the certificate, not a password
    connection.close()
    assert sorted(bodies) == sorted(f"record-{i}".encode() for i in range(50))
    assert isinstance(user, pika.credentials.ExternalCredentials)
    print(f"\nTLS: 50 published with confirms by AmqpTransport, 50 consumed by blocking_channel, EXTERNAL login {USER}")


def _publish_with_transport(world: TlsWorld, count: int) -> list[tuple[bool, str]]:
    transport = AmqpTransport(world.url, {"core": VHOST}, confirm_timeout=10, name="tls-test", tls=world.good)
    results: list[tuple[bool, str]] = []
    lost: list[str] = []

    def publish_all() -> None:
        for i in range(count):
            out = Outgoing("core", "", QUEUE, f"record-{i}".encode(), f"m-{i}", f"c-{i}", {})
            transport.publish(
                out, lambda ok, reason: (results.append((ok, reason)), len(results) == count and transport.stop())
            )

    transport.start(publish_all, lambda reason: (lost.append(reason), transport.stop()))
    timer = threading.Timer(20, transport.stop_threadsafe)
    timer.start()
    try:
        transport.run()
    finally:
        timer.cancel()
    assert not lost, lost
    return results


@pytest.mark.rabbitmq
def test_a_client_certificate_from_an_unknown_authority_is_refused(tls_world: TlsWorld) -> None:
    # Given a certificate with the right CN, issued by a CA the node does not trust
    rogue = Authority(tls_world.node.base.parent / "rogue", "rogue-ca")
    cert, key = rogue.issue(USER)
    # When it connects, Then the TLS handshake fails and the transport says so
    with pytest.raises(TransportError, match="client certificate") as refused:
        blocking_channel(tls_world.url, VHOST, "tls-test-rogue", TlsOptions(tls_world.ca.cert, cert, key))
    print(f"\nunknown CA refused: {refused.value}")


@pytest.mark.rabbitmq
def test_a_connection_without_a_client_certificate_is_refused(tls_world: TlsWorld) -> None:
    # Given the CA only (the server is trusted) and no client certificate, with the guest login in the URL
    url = f"amqps://guest:guest@localhost:{tls_world.node.tls_port}/"
    # When it connects, Then the node refuses it (fail_if_no_peer_cert)
    with pytest.raises(TransportError, match="cannot connect") as refused:
        blocking_channel(url, VHOST, "tls-test-nocert", TlsOptions(tls_world.ca.cert))
    print(f"\nno client certificate refused: {refused.value}")


@pytest.mark.rabbitmq
def test_a_valid_certificate_whose_cn_is_not_a_user_is_refused(tls_world: TlsWorld) -> None:
    # Given a certificate from the trusted CA for a CN that is no RabbitMQ user
    cert, key = tls_world.ca.issue("nobody-here")
    # When it connects with EXTERNAL, Then RabbitMQ refuses the login
    with pytest.raises(TransportError, match="refused") as refused:
        blocking_channel(tls_world.url, VHOST, "tls-test-stranger", TlsOptions(tls_world.ca.cert, cert, key))
    print(f"\nCN not a user refused: {refused.value}")


@pytest.mark.rabbitmq
def test_a_server_certificate_for_another_host_name_is_refused_by_the_client(tls_world: TlsWorld) -> None:
    # Given the right certificates but a host name the server certificate does not carry
    options = TlsOptions(
        tls_world.good.ca_file, tls_world.good.cert_file, tls_world.good.key_file, server_hostname="rabbit.elsewhere"
    )
    # When it connects, Then the client refuses the server (check_hostname)
    started = time.monotonic()
    with pytest.raises(TransportError, match="TLS refused") as refused:
        blocking_channel(tls_world.url, VHOST, "tls-test-hostname", options)
    print(f"\nwrong server host name refused: {refused.value}")
    assert time.monotonic() - started < 10

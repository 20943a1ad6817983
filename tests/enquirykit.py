"""Helpers for the enquiry tests: a throwaway PostgreSQL database, signing keys, a gateway in-process."""

from __future__ import annotations

import copy
import datetime as dt
import json
import secrets
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import jwt
import psycopg
from cryptography.hazmat.primitives.asymmetric import ec

from broker.config import PROJECT_ROOT, load_agencies
from broker.enquiry import index
from broker.enquiry.agreements import EnquiryAgreement, load_enquiry_agreements
from broker.enquiry.gateway import Gateway, GatewayConfig
from broker.enquiry.identity import AUDIENCE, Verifier
from broker.enquiry.responder import Responder

EXAMPLES = PROJECT_ROOT / "examples" / "records"
ISSUER = "https://idp.force01.example/"
PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"


@contextmanager
def scratch_database() -> Iterator[str]:
    """A PostgreSQL database of its own for one test module, dropped afterwards; yields its DSN."""
    name = f"enquiry_test_{secrets.token_hex(4)}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"postgresql://postgres@127.0.0.1:5432/{name}"
    finally:
        with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


class Signer:
    """A local identity provider: an EC P-256 key that signs officers' tokens."""

    def __init__(self) -> None:
        self.key = ec.generate_private_key(ec.SECP256R1())

    def verifier(self) -> Verifier:
        return Verifier([self.key.public_key()], issuer=ISSUER)

    def token(
        self,
        officer: str = "PC-0101",
        force: str = "01",
        role: str = "constable",
        expires_in: float = 300,
        key: Any = None,
    ) -> str:
        now = dt.datetime.now(dt.UTC)
        claims = {
            "sub": officer,
            "force": force,
            "role": role,
            "iss": ISSUER,
            "aud": AUDIENCE,
            "iat": now,
            "exp": now + dt.timedelta(seconds=expires_in),
        }
        return jwt.encode(claims, key or self.key, algorithm="ES256")

    def header(self, **claims: Any) -> dict[str, str]:
        return {"Authorization": "Bearer " + self.token(**claims)}


def person_records() -> dict[str, list[dict[str, Any]]]:
    """Force 13 holds custody and intelligence on Kieran Oldroyd; force 48 a custody record; force 01 other."""
    custody = json.loads((EXAMPLES / "04-custody.record-arrest.json").read_text())
    person = copy.deepcopy(custody["data"]["persons"][0])
    intel = json.loads((EXAMPLES / "10-intelligence.report-3x5x2-c-force13.json").read_text())
    intel.update(id="13-connect-IR-2026-000311", origin={"agency": "13", "system": "connect"})
    intel["data"]["persons"] = [person]
    custody48 = copy.deepcopy(custody)
    custody48.update(id="48-niche-CU-2026-000077", origin={"agency": "48", "system": "niche-rms"})
    custody48["data"]["custody_number"] = "48CL/26/000077"
    crime01 = json.loads((EXAMPLES / "01-crime.report-burglary-victim-suspect.json").read_text())
    return {"13": [custody, intel], "48": [custody48], "01": [crime01]}


def agreements_with(directory: Path, **changes: Any) -> Path:
    """A copy of the enquiry agreements with top-level keys changed (e.g. rate_limit)."""
    import yaml

    (directory / "enquiry").mkdir(parents=True, exist_ok=True)
    for path in (PROJECT_ROOT / "deploy" / "agreements" / "enquiry").glob("*.yaml"):
        doc = yaml.safe_load(path.read_text())
        doc.update(changes)
        (directory / "enquiry" / path.name).write_text(yaml.safe_dump(doc, sort_keys=False))
    return directory


def gateway(
    settings: Any,
    signer: Signer,
    audit: Callable[[list[dict[str, Any]]], None],
    agreements: list[EnquiryAgreement] | None = None,
    deadline: float = 2.0,
) -> Gateway:
    agencies = load_agencies(PROJECT_ROOT / "deploy" / "config" / "agencies.yaml")
    config = GatewayConfig(
        signer.verifier(),
        agreements or load_enquiry_agreements(PROJECT_ROOT / "deploy" / "agreements"),
        agencies,
        audit,
        deadline,
    )
    return Gateway(settings, config)


class RunningResponder:
    """A reference responder on its own thread with its own PostgreSQL connection."""

    def __init__(self, settings: Any, force: str, dsn: str, delay: float = 0.0) -> None:
        import time

        self.conn = index.connect(dsn)

        def find(keys: list[tuple[str, str]], types: list[str]) -> list[dict[str, Any]]:
            if delay:
                time.sleep(delay)
            return index.find(self.conn, force, keys, types)

        self.responder = Responder(
            settings, force, find, load_enquiry_agreements(PROJECT_ROOT / "deploy" / "agreements")
        )
        self.thread = threading.Thread(target=self.responder.run, name=f"responder-{force}", daemon=True)
        self.thread.start()
        if not self.responder.ready.wait(15):
            raise AssertionError(f"responder {force} did not start")

    def stop(self) -> None:
        self.responder.stop()
        self.thread.join(timeout=10)
        self.conn.close()


class ServedGateway:
    """The gateway's app served by uvicorn on a free local port, on a thread."""

    def __init__(self, app: Any) -> None:
        import socket

        import uvicorn

        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, name="enquiry-gateway-http", daemon=True)
        self.thread.start()
        import time

        deadline = time.monotonic() + 15
        while not self.server.started and time.monotonic() < deadline:
            time.sleep(0.05)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


def phone_browser() -> Any:
    """Debian's headless Chromium at a phone's viewport (390 x 844), driven by Debian's chromedriver."""
    import shutil

    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage"):
        options.add_argument(arg)
    # a window is at least 500 px wide; device emulation gives the page a phone's viewport
    options.add_experimental_option(
        "mobileEmulation", {"deviceMetrics": {"width": 390, "height": 844, "pixelRatio": 2}}
    )
    options.binary_location = shutil.which("chromium") or "/usr/bin/chromium"
    return webdriver.Chrome(options=options, service=Service(shutil.which("chromedriver") or "/usr/bin/chromedriver"))

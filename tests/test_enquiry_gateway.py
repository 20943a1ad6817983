"""The enquiry gateway's refusals and surfaces, without any force being asked (audit captured in memory)."""

from __future__ import annotations

import subprocess
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from fastapi.testclient import TestClient

from broker.config import load_settings
from broker.enquiry.gateway import create_app
from tests.enquirykit import Signer, gateway

BODY = {
    "subject": {"pnc": "2019/0088231R"},
    "purpose": "protect-life-and-property",
    "justification": "Stopped at the roadside",
}


@pytest.fixture
def setup():
    signer, entries = Signer(), []
    gw = gateway(load_settings(environ={}), signer, entries.extend)
    try:
        yield TestClient(create_app(gw)), signer, entries, gw
    finally:
        gw.close()


def refused(response: Any, status: int, reason: str) -> None:
    assert response.status_code == status, response.text
    assert response.json()["error"] == reason and response.json()["message"]


def test_no_token_is_refused_and_counted(setup) -> None:
    client, _, entries, gw = setup
    refused(client.post("/v1/enquiries", json=BODY), 401, "no_identity")
    assert gw.metrics.registry.get_sample_value("interchange_enquiry_refusals_total", {"reason": "no_identity"}) == 1
    assert entries == []  # nobody to name in the audit: logged and counted


def test_a_token_signed_by_another_key_is_refused(setup) -> None:
    client, signer, _, _ = setup
    forged = signer.token(key=ec.generate_private_key(ec.SECP256R1()))
    refused(client.post("/v1/enquiries", json=BODY, headers={"Authorization": f"Bearer {forged}"}), 401, "bad_token")


def test_an_expired_token_is_refused(setup) -> None:
    client, signer, _, _ = setup
    refused(client.post("/v1/enquiries", json=BODY, headers=signer.header(expires_in=-60)), 401, "token_expired")


def test_a_purpose_the_role_may_not_use_is_refused_and_audited(setup) -> None:
    client, signer, entries, _ = setup
    body = dict(BODY, purpose="prevent-offences")
    refused(
        client.post("/v1/enquiries", json=body, headers=signer.header(role="custody-officer", officer="CO-9")),
        403,
        "purpose_not_permitted_for_role",
    )
    [entry] = entries
    assert (entry["operation"], entry["channel"], entry["outcome"]) == ("consult", "enquiry", "refused")
    assert entry["actor"]["person"] == "CO-9" and entry["purposes"] == ["prevent-offences"]
    assert entry["subject_keys"] and "0088231" not in str(entry)


def test_a_force_in_no_enquiry_agreement_is_refused(setup) -> None:
    client, signer, entries, _ = setup
    refused(client.post("/v1/enquiries", json=BODY, headers=signer.header(force="93")), 403, "no_enquiry_agreement")
    assert entries[0]["reason"] == "no_enquiry_agreement"


def test_no_purpose_and_no_justification_are_refused(setup) -> None:
    client, signer, _, _ = setup
    refused(client.post("/v1/enquiries", json=dict(BODY, purpose=None), headers=signer.header()), 400, "no_purpose")
    refused(
        client.post("/v1/enquiries", json=dict(BODY, justification=" "), headers=signer.header()),
        400,
        "no_justification",
    )


def test_openapi_health_and_the_page_are_served(setup) -> None:
    client, _, _, _ = setup
    assert "/v1/enquiries/{enquiry_id}/details" in client.get("/openapi.json").json()["paths"]
    assert client.get("/healthz").status_code == 200 and client.get("/readyz").status_code == 200
    assert 'name="viewport"' in client.get("/").text


def test_the_metrics_exposition_passes_promtool(setup) -> None:
    client, _, _, _ = setup
    text = client.get("/metrics").text
    assert "interchange_enquiry_unusual_officers" in text
    result = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_an_officer_far_above_peers_is_flagged() -> None:
    from broker.enquiry.review import Usage, unusual_officers

    usage = {f"PC-{i}": Usage(5, 0) for i in range(10)} | {"PC-odd": Usage(60, 0), "PC-fishing": Usage(6, 4)}
    assert unusual_officers(usage) == {"PC-odd": ["rate"], "PC-fishing": ["purpose_refusals"]}


def test_tokens_are_verified_against_the_identity_providers_jwks_endpoint() -> None:
    """In deployment the gateway trusts the keys the force's identity provider publishes (JWKS)."""
    import json
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    import jwt

    from broker.enquiry.identity import Verifier
    from broker.enquiry.model import EnquiryRefused
    from tests.enquirykit import ISSUER

    signer = Signer()
    jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(signer.key.public_key())) | {"kid": "idp-1", "use": "sig"}

    class Keys(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (the http.server hook's name)
            body = json.dumps({"keys": [jwk]}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Keys)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        verifier = Verifier(jwks_url=f"http://127.0.0.1:{server.server_address[1]}/jwks", issuer=ISSUER)
        token = jwt.encode(
            jwt.decode(signer.token(officer="PC-7"), options={"verify_signature": False}),
            signer.key,
            algorithm="ES256",
            headers={"kid": "idp-1"},
        )
        assert verifier.identity(f"Bearer {token}").officer == "PC-7"
        forged = jwt.encode(
            jwt.decode(token, options={"verify_signature": False}),
            ec.generate_private_key(ec.SECP256R1()),
            algorithm="ES256",
            headers={"kid": "idp-1"},
        )
        with pytest.raises(EnquiryRefused) as refused:
            verifier.identity(f"Bearer {forged}")
        assert refused.value.reason == "bad_token"
    finally:
        server.shutdown()

"""Publisher identity holds in every deployment and every replay: production settings are the default,
development mode is explicit and says so, keys must be real outside it, and a replayed spoof stays refused."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from types import SimpleNamespace

import orjson
import pytest
import yaml

from broker import router
from broker.audit import entries as audit
from broker.cli import main as cli
from broker.config import PROJECT_ROOT, ConfigError, check_start, load_agencies, load_settings
from broker.errors import ExitCode
from broker.message import Message
from broker.ops import dlq, logs
from broker.runner import build_context
from tests.support import EXAMPLES

DEPLOY = PROJECT_ROOT / "deploy"
PRODUCTION = DEPLOY / "interchange.production.yaml"
RECORD_OF_13 = json.loads((EXAMPLES / "09-intelligence.report-3x5x2-p.json").read_text())
REAL_KEYS = {"INTERCHANGE_AUDIT_KEY": "a-real-audit-secret"}


@pytest.fixture(autouse=True)
def _logs_back_to_stderr():
    """cli.main() points the logs at this test's captured stream: point them back when it is closed."""
    yield
    logs.configure("info", stream=sys.__stderr__)


def _image_config() -> Path:
    [line] = [
        line
        for line in (PROJECT_ROOT / "Dockerfile").read_text().splitlines()
        if line.startswith("ENV INTERCHANGE_CONFIG=")
    ]
    return DEPLOY / Path(line.split("=", 1)[1]).relative_to("/app/deploy")


# ---------------------------------------------------------------- production is the default everywhere


def test_the_image_defaults_to_the_production_settings_which_require_proven_publishers():
    settings = load_settings(_image_config(), environ={})
    assert _image_config() == PRODUCTION
    assert settings.require_publisher is True and settings.development is False


def test_compose_and_kubernetes_run_the_production_settings_with_every_key_from_the_environment():
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())["x-interchange"]["environment"]
    assert compose["INTERCHANGE_CONFIG"] == "/app/deploy/interchange.production.yaml"
    assert compose["INTERCHANGE_DEVELOPMENT"] == "${INTERCHANGE_DEVELOPMENT:-0}"
    docs = list(yaml.safe_load_all((DEPLOY / "k8s" / "interchange.yaml").read_text()))
    config_map = next(d for d in docs if d["kind"] == "ConfigMap")["data"]
    assert config_map["INTERCHANGE_CONFIG"] == "/app/deploy/interchange.production.yaml"
    assert config_map["INTERCHANGE_DEVELOPMENT"] == "0"
    for doc in docs:
        for container in doc.get("spec", {}).get("template", {}).get("spec", {}).get("containers") or []:
            names = {e["name"] for e in container.get("env", [])}
            assert {"INTERCHANGE_AUDIT_KEY", "INTERCHANGE_OPEN_DATA_KEY"} <= names
            if container["name"] == "audit-writer":  # the only process that signs checkpoints
                assert "INTERCHANGE_CHECKPOINT_SIGNING_KEY" in names


def test_without_any_settings_file_publishers_are_required(tmp_path):
    settings = load_settings(tmp_path / "absent.yaml", environ={})
    assert settings.require_publisher is True and settings.development is False


def test_the_publisher_check_can_be_turned_off_only_in_development_mode(tmp_path):
    # Given a settings file turning the check off without development mode
    path = tmp_path / "interchange.yaml"
    path.write_text(yaml.safe_dump({"identity": {"require_publisher": False}}))
    # Then it is refused, naming the file and the key
    with pytest.raises(ConfigError) as refused:
        load_settings(path, environ={})
    assert (refused.value.file, refused.value.key) == (str(path), "identity.require_publisher")
    # and so is the environment variable alone
    with pytest.raises(ConfigError):
        load_settings(tmp_path / "absent.yaml", environ={"INTERCHANGE_REQUIRE_PUBLISHER": "0"})
    # but with the explicit development flag (file or environment) it loads
    assert load_settings(path, environ={"INTERCHANGE_DEVELOPMENT": "1"}).require_publisher is False
    path.write_text(yaml.safe_dump({"development": True, "identity": {"require_publisher": False}}))
    assert load_settings(path, environ={}).development is True


def test_a_record_claiming_another_origin_without_a_user_id_is_refused_under_the_image_settings(registry):
    # Given the routing core under the image's settings / When force 48 claims origin 13 with no user_id
    ctx = build_context(load_settings(_image_config(), environ={"INTERCHANGE_OPEN_DATA_KEY": "k"}), registry)
    plan = router.route(Message(orjson.dumps(RECORD_OF_13), "application/json", RECORD_OF_13["id"]), ctx)
    # Then it is refused
    assert (plan.outcome, plan.reason) == ("rejected", "publisher_not_origin")


# ---------------------------------------------------------------- keys


@pytest.mark.parametrize(
    "var, value",
    [
        ("INTERCHANGE_AUDIT_KEY", ""),
        ("INTERCHANGE_AUDIT_KEY", "  "),
        ("INTERCHANGE_AUDIT_KEY", audit.DEV_KEY.decode()),
    ],
)
def test_an_empty_or_development_key_refuses_to_start_outside_development_mode(var, value):
    settings = load_settings(PRODUCTION, environ={})
    with pytest.raises(ConfigError) as refused:
        check_start(settings, REAL_KEYS | {var: value})
    assert refused.value.file == var


def test_an_audit_writer_without_a_checkpoint_signing_key_refuses_to_start_outside_development_mode(tmp_path):
    settings = load_settings(PRODUCTION, environ={})
    assert settings.checkpoints_required  # mandatory outside development mode
    with pytest.raises(ConfigError) as refused:
        check_start(settings, REAL_KEYS, role="audit-writer")
    assert refused.value.file == "INTERCHANGE_CHECKPOINT_SIGNING_KEY"
    assert check_start(settings, REAL_KEYS, role="worker") == []  # a worker signs nothing
    keyed = load_settings(PRODUCTION, environ={"INTERCHANGE_CHECKPOINT_SIGNING_KEY": str(tmp_path / "k.pem")})
    assert check_start(keyed, REAL_KEYS, role="audit-writer") == []


def test_real_keys_start_quietly_and_development_mode_names_what_it_relaxes():
    assert check_start(load_settings(PRODUCTION, environ={}), REAL_KEYS) == []
    relaxed = check_start(load_settings(environ={}), {})
    assert any("publisher check off" in r for r in relaxed)
    assert any("INTERCHANGE_AUDIT_KEY" in r for r in relaxed)


def test_a_worker_without_keys_exits_3_outside_development(monkeypatch, capsys):
    for var in ("INTERCHANGE_CONFIG", "INTERCHANGE_DEVELOPMENT", *REAL_KEYS):
        monkeypatch.delenv(var, raising=False)
    assert cli.main(["--config", str(PRODUCTION), "worker"]) == ExitCode.CONFIG
    assert "INTERCHANGE_AUDIT_KEY" in capsys.readouterr().err


def test_a_process_started_in_development_mode_logs_a_warning(monkeypatch, capsys):
    monkeypatch.delenv("INTERCHANGE_CONFIG", raising=False)
    monkeypatch.setitem(cli.COMMANDS, "worker", lambda args, settings: ExitCode.OK)
    assert cli.main(["--config", str(DEPLOY / "interchange.yaml"), "worker"]) == ExitCode.OK
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    warnings = [line for line in lines if line["event"] == "development_mode"]
    assert warnings and all(w["level"] == "warning" for w in warnings)
    assert any(re.search("publisher check off", w["relaxed"]) for w in warnings)


# ---------------------------------------------------------------- replay


def _letter(publisher: str, record: dict | None = None) -> dlq.DeadLetter:
    record = record or RECORD_OF_13
    props = SimpleNamespace(
        message_id=record["id"],
        correlation_id=None,
        content_type="application/json",
        timestamp=None,
        user_id=None,
        headers={"x-interchange-reason": "publisher_not_origin", "x-original-user-id": publisher},
    )
    return dlq.dead_letter(1, props, orjson.dumps(record))


def test_a_replay_of_a_spoof_is_refused_and_an_honest_record_is_not():
    agencies = load_agencies(load_settings(environ={}).agencies_file)
    assert dlq.publisher_refusal(_letter("force-48"), agencies, require_publisher=False) is not None
    assert dlq.publisher_refusal(_letter("force-13"), agencies, require_publisher=True) is None
    assert dlq.publisher_refusal(_letter(""), agencies, require_publisher=False) is None
    assert dlq.publisher_refusal(_letter(""), agencies, require_publisher=True) is not None


def test_a_replay_carries_the_original_publisher():
    properties = dlq._replay_properties(_letter("force-48"))
    assert properties.headers[dlq.PUBLISHER_HEADER] == "force-48"


def test_a_record_whose_first_publisher_may_not_publish_as_its_origin_is_refused_even_without_a_user_id(settings):
    # Given development settings (no user_id required) / When a record of 13 arrives naming its first
    # publisher, force 48, as a replay does
    ctx = build_context(settings)
    body = orjson.dumps(RECORD_OF_13)
    spoof = Message(body, "application/json", RECORD_OF_13["id"], headers={router.PUBLISHER_HEADER: "force-48"})
    honest = Message(body, "application/json", RECORD_OF_13["id"], headers={router.PUBLISHER_HEADER: b"force-13"})
    # Then the spoof stays refused and the honest one routes
    assert router.route(spoof, ctx).reason == "publisher_not_origin"
    assert router.route(honest, ctx).outcome == "routed"


def test_the_supervisor_refuses_to_start_without_the_open_data_key_outside_development(monkeypatch, capsys, tmp_path):
    # Given real audit and checkpoint keys but no open-data key, and the crime map configured as public
    monkeypatch.delenv("INTERCHANGE_CONFIG", raising=False)
    monkeypatch.delenv("INTERCHANGE_OPEN_DATA_KEY", raising=False)
    for var, value in REAL_KEYS.items():
        monkeypatch.setenv(var, value)
    monkeypatch.setenv("INTERCHANGE_CHECKPOINT_SIGNING_KEY", str(tmp_path / "signing-key.pem"))
    monkeypatch.setattr("broker.runner.supervise", lambda *_a, **_k: pytest.fail("the children were started"))
    # When `interchange run` starts / Then it stops before any child starts, with a configuration error
    assert cli.main(["--config", str(PRODUCTION), "run"]) == ExitCode.CONFIG
    assert "INTERCHANGE_OPEN_DATA_KEY" in capsys.readouterr().err

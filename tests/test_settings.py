"""Settings: each declared once (file key, environment variable), the documented precedence, the derived schema."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from broker.cli.main import main
from broker.config import ENV_VARS, SCHEMA_DIR, SETTINGS, Settings, load_settings, settings_schema, settings_table
from broker.errors import ConfigError
from broker.ops import logs

# every environment variable that docs and deploy files name before settings were declared once
DOCUMENTED_ENV = {
    "INTERCHANGE_AMQP_URL": "amqp_url",
    "INTERCHANGE_CORE_VHOST": "core_vhost",
    "INTERCHANGE_VHOST_PREFIX": "recipient_vhost_prefix",
    "INTERCHANGE_MANAGEMENT_URL": "management_url",
    "INTERCHANGE_AUDIT_DIR": "audit_dir",
    "INTERCHANGE_AGREEMENTS": "agreements_dir",
    "INTERCHANGE_AGENCIES": "agencies_file",
    "INTERCHANGE_RECIPIENTS": "recipients_file",
    "INTERCHANGE_METRICS_PORT": "metrics_port",
    "INTERCHANGE_AUDIT_LAG_BOUND": "audit_lag_bound_seconds",
    "INTERCHANGE_PREFETCH": "prefetch",
    "INTERCHANGE_PARTITIONS": "partitions",
    "INTERCHANGE_WORKER_INDEX": "worker_index",
    "INTERCHANGE_WORKERS": "workers",
    "INTERCHANGE_CONFIRM_TIMEOUT": "confirm_timeout_seconds",
    "INTERCHANGE_CORRECTION_WAIT_SECONDS": "correction_wait_seconds",
    "INTERCHANGE_CORRECTION_WAIT_ATTEMPTS": "correction_wait_attempts",
    "INTERCHANGE_REQUIRE_PUBLISHER": "require_publisher",
    "INTERCHANGE_DEVELOPMENT": "development",
    "INTERCHANGE_OPEN_DATA_KEY": "open_data_key",
    "INTERCHANGE_TLS_CA_FILE": "tls_ca_file",
    "INTERCHANGE_TLS_CERT_FILE": "tls_cert_file",
    "INTERCHANGE_TLS_KEY_FILE": "tls_key_file",
    "INTERCHANGE_TLS_AUTH": "tls_auth",
    "INTERCHANGE_CHECKPOINTS_REQUIRED": "checkpoints_required",
    "INTERCHANGE_CHECKPOINT_SIGNING_KEY": "checkpoint_signing_key",
    "INTERCHANGE_CHECKPOINT_PUBLIC_KEY": "checkpoint_public_key",
    "INTERCHANGE_ENQUIRY_DSN": "enquiry_dsn",
}


@pytest.fixture
def in_process_logs():
    """main() binds the logs to this test's captured stderr, closed after the test: point them back."""
    yield
    logs.configure("info", stream=sys.__stderr__)


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_every_documented_environment_variable_still_sets_its_setting():
    assert {var: ENV_VARS[var][0] for var in DOCUMENTED_ENV} == DOCUMENTED_ENV


def test_every_setting_has_its_own_environment_variable():
    assert len({s.env for s in SETTINGS}) == len(SETTINGS)
    assert all(s.env.startswith("INTERCHANGE_") for s in SETTINGS)


def test_settings_not_in_the_file_are_only_the_per_process_ones_and_the_secret():
    assert {s.attr for s in SETTINGS if s.file_key is None} == {"worker_index", "workers", "open_data_key"}


@pytest.mark.parametrize("spec", [s for s in SETTINGS if s.file_key], ids=lambda s: s.file_key)
def test_each_file_key_sets_its_setting(tmp_path, spec):
    *sections, leaf = spec.file_key.split(".")
    value = {
        "bool": True,
        "int": spec.schema.get("minimum", 0) + 2,
        "float": 2.5,
        "Path": "sub/x.pem",
        "str": "amqps://x",
    }[spec.kind]
    if spec.kind == "bool" and getattr(Settings(), spec.attr) is True:
        value = False
    if spec.attr == "management_url":
        value = "https://x/"
    if "enum" in spec.schema:
        value = spec.schema["enum"][-1]
    doc: dict = {leaf: value}
    for section in reversed(sections):
        doc = {section: doc}
    if spec.attr == "require_publisher":
        doc["development"] = True  # the publisher check may be off only in development mode
    settings = load_settings(_write(tmp_path / "s.yaml", json.dumps(doc)), environ={})
    expected = (tmp_path / "sub" / "x.pem").resolve() if spec.kind == "Path" else value
    assert getattr(settings, spec.attr) == expected


@pytest.mark.parametrize("spec", SETTINGS, ids=lambda s: s.env)
def test_each_environment_variable_sets_its_setting(tmp_path, spec):
    text = {"bool": "1", "int": "2048", "float": "2.5", "Path": "/tmp/x", "str": "amqps://x"}[spec.kind]
    if spec.kind == "bool" and getattr(Settings(), spec.attr) is True:
        text = "0"
    environ = {spec.env: text}
    if spec.attr == "require_publisher":
        environ["INTERCHANGE_DEVELOPMENT"] = "1"
    settings = load_settings(tmp_path / "absent.yaml", environ=environ)
    assert getattr(settings, spec.attr) == spec.convert(text)


def test_a_bad_environment_value_names_the_variable():
    with pytest.raises(ConfigError) as caught:
        load_settings(Path("absent.yaml"), environ={"INTERCHANGE_HEARTBEAT_SECONDS": "soon"})
    assert caught.value.file == "INTERCHANGE_HEARTBEAT_SECONDS" and caught.value.key == "heartbeat_seconds"


def test_precedence_defaults_file_environment_command_line(tmp_path):
    file = _write(tmp_path / "s.yaml", "amqp: {core_vhost: from-file, prefetch: 9}\n")
    assert load_settings(tmp_path / "absent.yaml", environ={}).core_vhost == "interchange"
    assert load_settings(file, environ={}).core_vhost == "from-file"
    env = {"INTERCHANGE_CORE_VHOST": "from-env"}
    assert load_settings(file, environ=env).core_vhost == "from-env"
    assert load_settings(file, environ=env).prefetch == 9  # the file still sets what the environment leaves
    assert load_settings(file, environ=env, core_vhost="from-cli").core_vhost == "from-cli"


def test_config_on_the_command_line_beats_interchange_config(tmp_path):
    from_env = _write(tmp_path / "env.yaml", "amqp: {core_vhost: from-env-file}\n")
    from_cli = _write(tmp_path / "cli.yaml", "amqp: {core_vhost: from-cli-file}\n")
    environ = {"INTERCHANGE_CONFIG": str(from_env)}
    assert load_settings(environ=environ).core_vhost == "from-env-file"
    assert load_settings(from_cli, environ=environ).core_vhost == "from-cli-file"


def test_the_cli_reads_the_config_it_is_given_over_interchange_config(tmp_path, monkeypatch, capsys, in_process_logs):
    monkeypatch.setenv("INTERCHANGE_CONFIG", str(_write(tmp_path / "env.yaml", "amqp: {core_vhost: from-env}\n")))
    given = _write(tmp_path / "cli.yaml", "development: true\namqp: {core_vhost: from-cli}\n")
    monkeypatch.delenv("INTERCHANGE_CORE_VHOST", raising=False)
    assert main(["--config", str(given), "topology", "export"]) == 0
    vhosts = {v["name"] for v in json.loads(capsys.readouterr().out)["vhosts"]}
    assert "from-cli" in vhosts and "from-env" not in vhosts


def test_the_settings_schema_file_is_the_one_derived_from_the_declarations():
    written = json.loads((SCHEMA_DIR / "settings.schema.json").read_text())
    assert written == settings_schema(), "regenerate: python -m broker.config > broker/schemas/settings.schema.json"


def test_the_deploy_settings_files_pass_the_derived_schema():
    root = Path(__file__).resolve().parent.parent / "deploy"
    for name in ("interchange.yaml", "interchange.production.yaml"):
        load_settings(root / name, environ={})


def test_every_setting_says_what_it_is():
    assert [s.attr for s in SETTINGS if not s.help] == []


def test_the_design_document_lists_every_setting_as_declared():
    design = (Path(__file__).resolve().parent.parent / "docs" / "DESIGN.md").read_text()
    assert settings_table() in design, "regenerate the table in docs/DESIGN.md: python -m broker.config --table"

"""Configuration as data: settings, agencies, recipients and agreements, each checked against a schema.

Precedence for settings: defaults < file (deploy/interchange.yaml) < environment (INTERCHANGE_*) <
command line.  A bad file stops start-up with a ConfigError naming the file, the key and the reason.

The defaults are production's: publishers must be proven and every key must be a real secret.  Development
mode (`development: true` in the file, or INTERCHANGE_DEVELOPMENT=1) is the only way to turn the publisher
check off or to run on the built-in development keys, and every process started in it logs a warning.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from dataclasses import dataclass, field, replace
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from broker.contract import FormatLookup
from broker.errors import ConfigError
from broker.routing.projection import Projector

SCHEMA_DIR = Path(__file__).parent / "schemas"
PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_SETTINGS_FILE = PROJECT_ROOT / "deploy" / "interchange.yaml"

DEV_AUDIT_KEY = b"interchange-development-key-not-for-production"
"""The development key for audit subject hashes; refused outside development mode (`check_start`)."""
CLASSIFICATION_LEVELS = {"OFFICIAL": 1, "OFFICIAL-SENSITIVE": 2, "SECRET": 3, "TOP SECRET": 4}


@cache
def _schema_validator(name: str) -> jsonschema.Draft202012Validator:
    schema = json.loads((SCHEMA_DIR / f"{name}.schema.json").read_text())
    return jsonschema.Draft202012Validator(schema, format_checker=jsonschema.FormatChecker())


def check_against_schema(name: str, document: Any, file: str) -> None:
    """Raise ConfigError for the first (most relevant) schema error of a configuration document."""
    error = jsonschema.exceptions.best_match(_schema_validator(name).iter_errors(document))
    if error is not None:
        key = ".".join(str(p) for p in error.absolute_path)
        raise ConfigError(file, key, error.message)


def load_yaml(path: Path) -> Any:
    try:
        with path.open("rb") as fh:
            return yaml.safe_load(fh)
    except OSError as exc:
        raise ConfigError(str(path), "", f"cannot read: {exc.strerror}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(str(path), "", f"not valid YAML: {exc}") from exc


# ---------------------------------------------------------------- settings


@dataclass(frozen=True)
class TlsOptions:
    """TLS for AMQP connections: CA to trust, client certificate and key, and how to authenticate
    (`external`: the certificate is the login; `plain`: the URL's user and password over TLS; `auto`)."""

    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    auth: str = "auto"
    server_hostname: str | None = None


@dataclass(frozen=True)
class Settings:
    amqp_url: str = "amqp://guest:guest@127.0.0.1:5672/"
    core_vhost: str = "interchange"
    recipient_vhost_prefix: str = "interchange."
    prefetch: int = 500
    partitions: int = 1  # >1: route queues split by case, one active worker each (SCALING.md)
    worker_index: int = 0  # this worker's number among `workers` (which partitions it owns)
    workers: int = 1
    standby_delay_seconds: float = 3.0
    confirm_timeout_seconds: float = 30.0
    heartbeat_seconds: int = 30
    management_url: str = "http://127.0.0.1:15672/"
    audit_dir: Path = PROJECT_ROOT / "var" / "audit"
    audit_batch: int = 500
    audit_lag_bound_seconds: float = 30.0  # workers take no new records while the audit is this far behind
    agencies_file: Path = PROJECT_ROOT / "deploy" / "config" / "agencies.yaml"
    recipients_file: Path = PROJECT_ROOT / "deploy" / "config" / "recipients.yaml"
    agreements_dir: Path = PROJECT_ROOT / "deploy" / "agreements"
    metrics_port: int = 0
    max_body_bytes: int = 4 * 1024 * 1024
    require_publisher: bool = True  # false only in development mode (check_development)
    development: bool = False  # explicit development mode: see the module docstring
    open_data_key: str = field(default="", repr=False)  # secret for open-data Crime IDs (crime-map-csv)
    # a correction whose original is not yet known is decided again every `correction_wait_seconds`, at most
    # `correction_wait_attempts` times, then dead-lettered (broker.routing.corrections)
    correction_wait_seconds: float = 0.5
    correction_wait_attempts: int = 20
    tls_ca_file: Path | None = None  # TLS (docs/SECURITY.md section 3); used with amqps:// URLs
    tls_cert_file: Path | None = None  # client certificate: its CN is the RabbitMQ user (EXTERNAL)
    tls_key_file: Path | None = None
    tls_auth: str = "auto"  # auto: EXTERNAL when a certificate is set, the URL has no password
    tls_server_hostname: str | None = None  # name checked in the server certificate (default the URL host)
    # audit checkpoints (docs/SECURITY.md section 6): required outside development; keys never on the audit disk
    checkpoints_required: bool = False
    checkpoint_signing_key: Path | None = None  # Ed25519 private key (PEM), for the audit writer
    checkpoint_public_key: Path | None = None  # Ed25519 public key (PEM), for `audit verify`
    enquiry_dsn: str = "postgresql://127.0.0.1:5432/interchange"  # the enquiry index (docs/ENQUIRY.md)

    @property
    def tls(self) -> TlsOptions | None:
        """The TLS options for every connection, or None when no TLS file is configured."""
        if not (self.tls_ca_file or self.tls_cert_file or self.tls_key_file):
            return None
        return TlsOptions(
            self.tls_ca_file, self.tls_cert_file, self.tls_key_file, self.tls_auth, self.tls_server_hostname
        )

    def recipient_vhost(self, recipient: str) -> str:
        return f"{self.recipient_vhost_prefix}{recipient}"

    def cli_args(self) -> list[str]:
        """The global `interchange` options that point a child process at these vhosts and audit log."""
        return [
            "--amqp-url",
            self.amqp_url,
            "--vhost",
            self.core_vhost,
            "--vhost-prefix",
            self.recipient_vhost_prefix,
            "--audit-dir",
            str(self.audit_dir),
        ]

    def with_overrides(self, **changes: Any) -> Settings:
        return replace(self, **{k: v for k, v in changes.items() if v is not None})

    def open_data_key_or_dev(self) -> str:
        """The open-data key; in development mode a fixed development key when none is set."""
        return self.open_data_key or (DEV_OPEN_DATA_KEY if self.development else "")


DEV_OPEN_DATA_KEY = "interchange-development-open-data-key-not-for-production"


def _flag(value: str) -> bool:
    return value.strip().lower() in ("1", "true", "yes")


ENV_VARS = {
    "INTERCHANGE_AMQP_URL": ("amqp_url", str),
    "INTERCHANGE_CORE_VHOST": ("core_vhost", str),
    "INTERCHANGE_VHOST_PREFIX": ("recipient_vhost_prefix", str),
    "INTERCHANGE_MANAGEMENT_URL": ("management_url", str),
    "INTERCHANGE_AUDIT_DIR": ("audit_dir", Path),
    "INTERCHANGE_AGREEMENTS": ("agreements_dir", Path),
    "INTERCHANGE_AGENCIES": ("agencies_file", Path),
    "INTERCHANGE_RECIPIENTS": ("recipients_file", Path),
    "INTERCHANGE_METRICS_PORT": ("metrics_port", int),
    "INTERCHANGE_AUDIT_LAG_BOUND": ("audit_lag_bound_seconds", float),
    "INTERCHANGE_PREFETCH": ("prefetch", int),
    "INTERCHANGE_PARTITIONS": ("partitions", int),
    "INTERCHANGE_WORKER_INDEX": ("worker_index", int),
    "INTERCHANGE_WORKERS": ("workers", int),
    "INTERCHANGE_CONFIRM_TIMEOUT": ("confirm_timeout_seconds", float),
    "INTERCHANGE_CORRECTION_WAIT_SECONDS": ("correction_wait_seconds", float),
    "INTERCHANGE_CORRECTION_WAIT_ATTEMPTS": ("correction_wait_attempts", int),
    "INTERCHANGE_REQUIRE_PUBLISHER": ("require_publisher", _flag),
    "INTERCHANGE_DEVELOPMENT": ("development", _flag),
    "INTERCHANGE_OPEN_DATA_KEY": ("open_data_key", str),
    "INTERCHANGE_TLS_CA_FILE": ("tls_ca_file", Path),
    "INTERCHANGE_TLS_CERT_FILE": ("tls_cert_file", Path),
    "INTERCHANGE_TLS_KEY_FILE": ("tls_key_file", Path),
    "INTERCHANGE_TLS_AUTH": ("tls_auth", str),
    "INTERCHANGE_CHECKPOINTS_REQUIRED": ("checkpoints_required", lambda v: v.lower() in ("1", "true", "yes")),
    "INTERCHANGE_CHECKPOINT_SIGNING_KEY": ("checkpoint_signing_key", Path),
    "INTERCHANGE_CHECKPOINT_PUBLIC_KEY": ("checkpoint_public_key", Path),
    "INTERCHANGE_ENQUIRY_DSN": ("enquiry_dsn", str),
}


def load_settings(file: Path | None = None, environ: dict[str, str] | None = None, **overrides: Any) -> Settings:
    """Defaults < file < environment < keyword overrides (the command line)."""
    environ = dict(os.environ if environ is None else environ)
    file = Path(environ.get("INTERCHANGE_CONFIG", file or DEFAULT_SETTINGS_FILE))
    settings = Settings()
    if file.exists():
        doc = load_yaml(file) or {}
        check_against_schema("settings", doc, str(file))
        settings = _apply_file(settings, doc, file.parent)
    for var, (attr, convert) in ENV_VARS.items():
        if var in environ:
            try:
                settings = replace(settings, **{attr: convert(environ[var])})
            except ValueError as exc:
                raise ConfigError(var, attr, f"bad value {environ[var]!r}: {exc}") from exc
    settings = settings.with_overrides(**overrides)
    check_development(settings, str(file))
    if not settings.development and not settings.checkpoints_required:  # mandatory outside development
        settings = replace(settings, checkpoints_required=True)
    return settings


def check_development(settings: Settings, file: str) -> None:
    """Refuse settings that relax a production safeguard without development mode."""
    if not settings.require_publisher and not settings.development:
        raise ConfigError(
            file,
            "identity.require_publisher",
            (
                "the publisher check may be off only in development mode (development: true or "
                "INTERCHANGE_DEVELOPMENT=1)"
            ),
        )


def check_start(settings: Settings, environ: dict[str, str] | None = None, role: str = "worker") -> list[str]:
    """Before a worker, audit writer or supervisor starts: outside development mode refuse an empty or
    development audit key, and an audit writer (or `run`) without a checkpoint signing key.  Returns the
    safeguards development mode relaxes (to log)."""
    environ = dict(os.environ if environ is None else environ)
    writes_audit = role in ("audit-writer", "run")
    if settings.development:
        relaxed = ["development mode: development keys accepted"]
        if not settings.require_publisher:
            relaxed.append("publisher check off: a record's AMQP user_id is not checked against its origin")
        if not environ.get("INTERCHANGE_AUDIT_KEY"):
            relaxed.append("INTERCHANGE_AUDIT_KEY not set: using the development key")
        if writes_audit and settings.checkpoint_signing_key is None:
            relaxed.append(
                "INTERCHANGE_CHECKPOINT_SIGNING_KEY not set: checkpoints signed with the public development key"
            )
        return relaxed
    value = environ.get("INTERCHANGE_AUDIT_KEY", "")
    if not value.strip() or value.encode() == DEV_AUDIT_KEY:
        raise ConfigError(
            "INTERCHANGE_AUDIT_KEY",
            "",
            f"{'empty' if not value.strip() else 'the development key'}"
            ": set a secret key (development mode alone may run "
            "without one)",
        )
    if writes_audit and settings.checkpoint_signing_key is None:
        raise ConfigError(
            "INTERCHANGE_CHECKPOINT_SIGNING_KEY",
            "",
            "not set: checkpoints are required outside "
            "development mode; point it at an Ed25519 private key (PEM) kept off the audit disk",
        )
    return []


def _apply_file(settings: Settings, doc: dict[str, Any], base: Path) -> Settings:
    amqp, audit, paths = doc.get("amqp", {}), doc.get("audit", {}), doc.get("paths", {})
    tls = amqp.get("tls", {})
    changes: dict[str, Any] = {
        "amqp_url": amqp.get("url"),
        "core_vhost": amqp.get("core_vhost"),
        "recipient_vhost_prefix": amqp.get("recipient_vhost_prefix"),
        "prefetch": amqp.get("prefetch"),
        "partitions": amqp.get("partitions"),
        "confirm_timeout_seconds": amqp.get("confirm_timeout_seconds"),
        "heartbeat_seconds": amqp.get("heartbeat_seconds"),
        "management_url": doc.get("management_url"),
        "audit_dir": _resolve(base, audit.get("dir")),
        "audit_batch": audit.get("batch"),
        "audit_lag_bound_seconds": audit.get("lag_bound_seconds"),
        "agencies_file": _resolve(base, paths.get("agencies")),
        "recipients_file": _resolve(base, paths.get("recipients")),
        "agreements_dir": _resolve(base, paths.get("agreements")),
        "metrics_port": doc.get("metrics", {}).get("port"),
        "max_body_bytes": doc.get("limits", {}).get("max_body_bytes"),
        "require_publisher": doc.get("identity", {}).get("require_publisher"),
        "correction_wait_seconds": doc.get("corrections", {}).get("wait_seconds"),
        "correction_wait_attempts": doc.get("corrections", {}).get("wait_attempts"),
        "development": doc.get("development"),
        "tls_ca_file": _resolve(base, tls.get("ca_file")),
        "tls_cert_file": _resolve(base, tls.get("cert_file")),
        "tls_key_file": _resolve(base, tls.get("key_file")),
        "tls_auth": tls.get("auth"),
        "tls_server_hostname": tls.get("server_hostname"),
        "checkpoints_required": audit.get("checkpoints", {}).get("required"),
        "checkpoint_signing_key": _resolve(base, audit.get("checkpoints", {}).get("signing_key")),
        "checkpoint_public_key": _resolve(base, audit.get("checkpoints", {}).get("public_key")),
        "enquiry_dsn": doc.get("enquiry", {}).get("dsn"),
    }
    return settings.with_overrides(**changes)


def _resolve(base: Path, value: str | None) -> Path | None:
    if value is None:
        return None
    path = Path(value)
    return path if path.is_absolute() else (base / path).resolve()


# ---------------------------------------------------------------- agencies and recipients


@dataclass(frozen=True)
class Agency:
    code: str
    name: str
    kind: str
    groups: tuple[str, ...] = ()
    publishers: tuple[str, ...] = ()


@dataclass(frozen=True)
class Recipient:
    id: str
    name: str
    cls: str
    max_classification: str
    format: str = "common-json"
    attributes: dict[str, str] = field(default_factory=dict)
    public: bool = False  # open data: receives only through an anonymising renderer

    def as_condition_subject(self) -> dict[str, Any]:
        return {"id": self.id, "class": self.cls, "attributes": self.attributes}


def load_agencies(path: Path) -> dict[str, Agency]:
    doc = load_yaml(path)
    check_against_schema("agencies", doc, str(path))
    agencies: dict[str, Agency] = {}
    for i, item in enumerate(doc["agencies"]):
        if item["code"] in agencies:
            raise ConfigError(str(path), f"agencies.{i}.code", f"duplicate agency code {item['code']!r}")
        agencies[item["code"]] = Agency(
            item["code"], item["name"], item["kind"], tuple(item.get("groups", ())), tuple(item.get("publishers", ()))
        )
    return agencies


def load_recipients(path: Path) -> dict[str, Recipient]:
    doc = load_yaml(path)
    check_against_schema("recipients", doc, str(path))
    recipients: dict[str, Recipient] = {}
    for i, item in enumerate(doc["recipients"]):
        if item["id"] in recipients:
            raise ConfigError(str(path), f"recipients.{i}.id", f"duplicate recipient id {item['id']!r}")
        recipients[item["id"]] = Recipient(
            item["id"],
            item["name"],
            item["class"],
            item["max_classification"],
            item.get("format", "common-json"),
            dict(item.get("attributes", {})),
            bool(item.get("public", False)),
        )
    return recipients


def check_public_recipients(
    recipients: dict[str, Recipient], agreements: list[Agreement], file: str, formats: FormatLookup | None = None
) -> None:
    """Refuse a public (open-data) recipient that some agreement feeds through a format that does not anonymise.

    Its format must be an outbound adapter marked `anonymising` that renders every record type of every
    agreement naming the recipient; otherwise the recipient would receive the common JSON.  `formats` looks a
    format's adapter class up (the composition root passes `adapters.registry.adapter_class`); without it no
    format can be shown to anonymise, so any public recipient an agreement feeds is refused (deny by default).
    """
    for i, recipient in enumerate(recipients.values()):
        feeding = [a for a in agreements if a.recipient == recipient.id]
        if not recipient.public or not feeding:
            continue
        cls = formats(recipient.format) if recipient.format != "common-json" and formats is not None else None
        if cls is None or not getattr(cls, "anonymising", False):
            raise ConfigError(
                file,
                f"recipients.{i}.format",
                (
                    f"recipient {recipient.id!r} is public (open data) and agreement {feeding[0].id} "
                    f"({feeding[0].file}) sends it records, but format {recipient.format!r} is not an anonymising "
                    "renderer" + ("" if formats is not None else " (no adapter lookup was given to check it)")
                ),
            )
        for agreement in feeding:
            missing = [t for t in agreement.record_types if t not in cls.record_types]
            if missing:
                raise ConfigError(
                    agreement.file,
                    "record_types",
                    (
                        f"public recipient {recipient.id!r} receives through {recipient.format!r}, which cannot "
                        f"anonymise {', '.join(missing)}"
                    ),
                )


# ---------------------------------------------------------------- agreements


@dataclass(frozen=True)
class Agreement:
    id: str
    title: str
    controller: str
    providers: tuple[str, ...]
    recipient: str
    record_types: tuple[str, ...]
    purposes: tuple[str, ...]
    lawful_basis: str
    max_classification: str
    permitted_codes: tuple[str, ...]
    legacy_max_handling: int
    fields: dict[str, Projector]
    conditions: tuple[dict[str, Any], ...]
    valid_from: dt.date
    valid_until: dt.date
    review_by: dt.date
    status: str
    file: str = ""
    scope: dict[str, Any] = field(default_factory=dict)  # record type -> {"persons": element condition}

    def status_on(self, today: dt.date) -> str:
        """`active`, `suspended`, `not_yet_valid` or `expired` on a given day."""
        if self.status == "suspended":
            return "suspended"
        if today < self.valid_from:
            return "not_yet_valid"
        if today > self.valid_until:
            return "expired"
        return "active"


def agreement_from_doc(doc: dict[str, Any], file: str = "") -> Agreement:
    """Build an Agreement from an already schema-checked document."""
    dates = {}
    for key in ("valid_from", "valid_until", "review_by"):
        try:
            dates[key] = dt.date.fromisoformat(str(doc[key]))
        except ValueError as exc:
            raise ConfigError(file, key, f"not a date: {doc[key]!r}") from exc
    if dates["valid_until"] < dates["valid_from"]:
        raise ConfigError(file, "valid_until", "is before valid_from")
    missing = [t for t in doc["record_types"] if t not in doc["fields"]]
    if missing:
        raise ConfigError(file, "fields", f"no field allow-list for record type(s) {', '.join(missing)}")
    handling = doc.get("handling", {})
    return Agreement(
        id=doc["id"],
        title=doc["title"],
        controller=doc["controller"],
        providers=tuple(doc["providers"]),
        recipient=doc["recipient"],
        record_types=tuple(doc["record_types"]),
        purposes=tuple(doc["purposes"]),
        lawful_basis=doc["lawful_basis"],
        max_classification=doc["max_classification"],
        permitted_codes=tuple(handling.get("permitted_codes", ["P"])),
        legacy_max_handling=int(handling.get("legacy_max_handling", "1")),
        fields={t: Projector(paths) for t, paths in doc["fields"].items()},
        conditions=tuple(doc.get("conditions", ())),
        status=doc["status"],
        file=file,
        scope=dict(doc.get("scope") or {}),
        **dates,
    )


def load_agreements(directory: Path, recipients: dict[str, Recipient] | None = None) -> list[Agreement]:
    """Every `*.yaml` directly in `directory`, checked and sorted by id."""
    if not directory.is_dir():
        raise ConfigError(str(directory), "", "agreements directory does not exist")
    agreements: dict[str, Agreement] = {}
    for path in sorted(directory.glob("*.yaml")):
        doc = load_yaml(path)
        # YAML turns unquoted dates into date objects; the schema speaks strings.
        if isinstance(doc, dict):
            doc = {k: (v.isoformat() if isinstance(v, dt.date) else v) for k, v in doc.items()}
        check_against_schema("agreement", doc, str(path))
        agreement = agreement_from_doc(doc, str(path))
        if agreement.id in agreements:
            raise ConfigError(str(path), "id", f"duplicate agreement id {agreement.id!r}")
        if recipients is not None and agreement.recipient not in recipients:
            raise ConfigError(str(path), "recipient", f"unknown recipient {agreement.recipient!r}")
        agreements[agreement.id] = agreement
    return sorted(agreements.values(), key=lambda a: a.id)


@dataclass(frozen=True)
class Registry:
    """Everything the routing core needs to decide: loaded once at start-up."""

    agencies: dict[str, Agency]
    recipients: dict[str, Recipient]
    agreements: list[Agreement]

    @classmethod
    def load(cls, settings: Settings, formats: FormatLookup | None = None) -> Registry:
        """Agencies, recipients and agreements from the configured files, checked.

        `formats` looks an adapter class up by format name, to check public recipients' formats
        (`check_public_recipients`); the composition root's `broker.runner.load_registry` passes it.
        """
        recipients = load_recipients(settings.recipients_file)
        agreements = load_agreements(settings.agreements_dir, recipients)
        check_public_recipients(recipients, agreements, str(settings.recipients_file), formats)
        return cls(load_agencies(settings.agencies_file), recipients, agreements)

    def publishers_of(self, agency: str) -> tuple[str, ...]:
        found = self.agencies.get(agency)
        return found.publishers if found else ()

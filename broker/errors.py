"""One error tree for Interchange, split by who must act.

- ConfigError: an operator must fix a configuration file (names the file, the key and the reason).
- DataError: the sender must fix a record (names the record id, the field path and the reason code).
- TransportError: RabbitMQ or the network failed; retrying may help.
- UsageError: the command line is wrong (the `interchange` command exits with ExitCode.USAGE).

Each kind maps to one exit code of the `interchange` command (ExitCode), in one place: broker.cli.main.

Reason codes are a fixed list so that metrics, dead-letter headers and audit entries stay bounded.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum, StrEnum


class RejectReason(StrEnum):
    """Why a record was refused at ingress (dead-lettered and audited with this reason)."""

    MALFORMED_JSON = "malformed_json"
    UNSUPPORTED_CONTENT_TYPE = "unsupported_content_type"
    BODY_TOO_LARGE = "body_too_large"
    SCHEMA_INVALID = "schema_invalid"
    IDENTIFIER_INVALID = "identifier_invalid"
    UNKNOWN_AGENCY = "unknown_agency"
    CLASSIFICATION_NOT_PERMITTED = "classification_not_permitted"
    PUBLISHER_NOT_ORIGIN = "publisher_not_origin"
    SUPERSEDES_UNKNOWN = "supersedes_unknown"  # a correction of a record its origin never had decided
    SUPERSEDES_FOREIGN_RECORD = "supersedes_foreign_record"  # a correction of another origin's record
    SUPERSEDES_ORIGINAL_PENDING = "supersedes_original_pending"  # its original's failed delivery never redone
    ADAPTER_ERROR = "adapter_error"
    INTERNAL_ERROR = "internal_error"  # the routing core failed in a way it did not expect (a defect)


class WithholdReason(StrEnum):
    """Why a recipient did not receive a record (audited as withheld)."""

    NO_AGREEMENT = "no_agreement"
    AGREEMENT_NOT_YET_VALID = "agreement_not_yet_valid"
    AGREEMENT_EXPIRED = "agreement_expired"
    AGREEMENT_SUSPENDED = "agreement_suspended"
    CLASSIFICATION_ABOVE_CEILING = "classification_above_ceiling"
    HANDLING_CODE_NOT_PERMITTED = "handling_code_not_permitted"
    HANDLING_CONDITIONS_EXCLUDE_RECIPIENT = "handling_conditions_exclude_recipient"
    INTELLIGENCE_UNGRADED = "intelligence_ungraded"
    LEGACY_HANDLING_NO_ONWARD_SHARING = "legacy_handling_no_onward_sharing"
    CONDITION_NOT_MET = "condition_not_met"
    RECIPIENT_FORMAT_ERROR = "recipient_format_error"
    AGREEMENT_REMOVED = "agreement_removed"  # a past recipient's agreement is gone: a retraction notice only


# The fixed lists, for metrics (label values pre-initialised) and documentation checks.
REJECT_REASONS = tuple(RejectReason)
WITHHOLD_REASONS = tuple(WithholdReason)
INTERNAL_ERROR = RejectReason.INTERNAL_ERROR


class InterchangeError(Exception):
    """Base of every error Interchange raises on purpose."""


class ConfigError(InterchangeError):
    """A configuration file is wrong: names the file, the key path and the reason."""

    def __init__(self, file: str, key: str, reason: str) -> None:
        self.file, self.key, self.reason = file, key, reason
        super().__init__(f"{file}: {key or '(top)'}: {reason}")


@dataclass(frozen=True, slots=True)
class FieldError:
    """One problem with one field of one record."""

    record_id: str | None
    path: str
    code: str
    message: str

    def __str__(self) -> str:
        where = self.path or "(record)"
        return f"{where}: {self.message}"

    def as_dict(self) -> dict[str, str | None]:
        """The error as a JSON-ready dict."""
        return {"record_id": self.record_id, "path": self.path, "code": self.code, "message": self.message}


class DataError(InterchangeError):
    """A record cannot be accepted. Carries the record id, a reason code and every field error."""

    def __init__(
        self,
        reason: str,
        errors: list[FieldError] | tuple[FieldError, ...],
        record_id: str | None = None,
        location: str | None = None,
    ) -> None:
        self.reason = reason
        self.errors = tuple(errors)
        self.record_id = record_id if record_id is not None else (self.errors[0].record_id if self.errors else None)
        self.location = location
        first = str(self.errors[0]) if self.errors else reason
        where = f" at {location}" if location else ""
        super().__init__(f"record {self.record_id or '?'}{where}: {reason}: {first}")


class TransportError(InterchangeError):
    """RabbitMQ refused, returned, nacked or did not confirm a publish, or the connection failed."""


class UsageError(InterchangeError):
    """The command line is wrong: says which option and what it needs."""


class ExitCode(IntEnum):
    """Exit codes of the `interchange` command (documented in README.md)."""

    OK = 0  # success; for verify/test/validate: everything checked out
    FAILED = 1  # the command ran and found a problem (invalid record, failed rule test, broken audit chain)
    USAGE = 2  # bad command line (UsageError, or argparse's own)
    CONFIG = 3  # a configuration file is wrong (ConfigError: names file, key and reason)
    TRANSPORT = 4  # RabbitMQ could not be reached or refused the operation (TransportError)

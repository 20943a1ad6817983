"""The nouns of an enquiry: who asks (Identity), about whom (Subject), why (purpose), and refusal codes.

Purposes are the policing purposes of the Code of Practice on the Management of Police Information (2005),
which the PND Code of Practice also applies: every enquiry names one.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from typing import Any

from broker.audit.entries import name_reference, subject_key
from broker.identifiers import normalise

PURPOSES = (
    "protect-life-and-property",
    "preserve-order",
    "prevent-offences",
    "bring-offenders-to-justice",
    "legal-duty",
)

# Refusal reason codes (docs/ENQUIRY.md): each names who must act.
NO_IDENTITY = "no_identity"  # no token: the client must sign in
BAD_TOKEN = "bad_token"  # signature, issuer, audience or claims wrong
TOKEN_EXPIRED = "token_expired"
NO_PURPOSE = "no_purpose"  # purpose missing or not on the fixed list
NO_JUSTIFICATION = "no_justification"
BAD_SUBJECT = "bad_subject"
NO_ENQUIRY_AGREEMENT = "no_enquiry_agreement"  # the officer's force is in no enquiry agreement in force
PURPOSE_NOT_PERMITTED = "purpose_not_permitted_for_role"
RATE_LIMITED = "rate_limited"
UNKNOWN_HIT = "unknown_hit"  # step two asked for a hit step one did not return
REASONS = (
    NO_IDENTITY,
    BAD_TOKEN,
    TOKEN_EXPIRED,
    NO_PURPOSE,
    NO_JUSTIFICATION,
    BAD_SUBJECT,
    NO_ENQUIRY_AGREEMENT,
    PURPOSE_NOT_PERMITTED,
    RATE_LIMITED,
    UNKNOWN_HIT,
)

# How each force answered one step.
ANSWERED, TIMEOUT, UNAVAILABLE, PENDING = "answered", "timeout", "unavailable", "pending"


class EnquiryRefused(Exception):
    """An enquiry refused before any force was asked: a reason code and a message for the officer."""

    def __init__(self, reason: str, message: str, field: str = "") -> None:
        super().__init__(message)
        self.reason, self.message, self.field = reason, message, field


@dataclass(frozen=True)
class Identity:
    """The officer asking, as their force's identity provider vouches for them."""

    officer: str
    force: str
    role: str

    def actor(self) -> dict[str, str]:
        """The officer as an audit entry's actor."""
        return {"person": self.officer, "organisation": self.force, "role": self.role, "tool": "enquiry-gateway"}


def fold(text: str) -> str:
    """NFC, case-folded, single-spaced: how names and house names are compared."""
    return " ".join(unicodedata.normalize("NFC", text).casefold().split())


_HOUSE_NUMBER = re.compile(r"^(\d+[a-z]?)\b")


def house_key(text: str) -> str:
    """A house number (`12`, `12a`) when the line starts with one, else the whole folded line (a house name)."""
    folded = fold(text)
    found = _HOUSE_NUMBER.match(folded)
    return found.group(1) if found else folded


@dataclass(frozen=True)
class Subject:
    """What the officer asks about: exactly one of PNC ID, name + date of birth, VRM, postcode + house."""

    pnc: str | None = None
    family: str | None = None
    given: str | None = None
    birth_date: str | None = None
    vrm: str | None = None
    postcode: str | None = None
    house: str | None = None

    @classmethod
    def from_doc(cls, doc: Any) -> Subject:
        """A subject from the request's JSON; EnquiryRefused when it is not a complete subject."""
        if not isinstance(doc, dict):
            raise EnquiryRefused(BAD_SUBJECT, "subject must be an object", "subject")
        known = {k: str(v).strip() for k, v in doc.items() if k in cls.__dataclass_fields__ and v}
        subject = cls(**known)
        subject.lookup_keys()  # refuses an incomplete subject
        return subject

    def kind(self) -> str:
        """Which kind of subject this is (pnc, name, vrm, ...)."""
        if self.pnc:
            return "pnc"
        if self.family or self.given or self.birth_date:
            return "name"
        if self.vrm:
            return "vrm"
        if self.postcode or self.house:
            return "address"
        raise EnquiryRefused(
            BAD_SUBJECT, "give a PNC ID, a name with date of birth, a VRM, or a postcode and house", "subject"
        )

    def lookup_keys(self) -> list[tuple[str, str]]:
        """(kind, normalised value) pairs an index is searched by."""
        kind = self.kind()
        if kind == "pnc":
            return [("pnc", normalise("pnc", self.pnc or ""))]
        if kind == "vrm":
            return [("vrm", normalise("vrm", self.vrm or ""))]
        if kind == "name":
            if not (self.family and self.given and self.birth_date):
                raise EnquiryRefused(
                    BAD_SUBJECT, "a name enquiry needs family name, given name and date of birth", "subject"
                )
            if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", self.birth_date):
                raise EnquiryRefused(BAD_SUBJECT, "birth_date must be YYYY-MM-DD", "subject.birth_date")
            return [("name", name_key(self.family, self.given, self.birth_date))]
        if not (self.postcode and self.house):
            raise EnquiryRefused(BAD_SUBJECT, "an address enquiry needs postcode and house", "subject")
        return [("address", address_key(self.postcode, self.house))]

    def audit_keys(self) -> list[str]:
        """Keyed hashes in the audit log's subject_keys convention, so subject reports find the enquiry."""
        kind = self.kind()
        if kind == "pnc":
            return [subject_key("pnc", self.pnc or "")]
        if kind == "name":
            given = (self.given or "").split()[0]
            return [subject_key("name", name_reference(self.family or "", given, self.birth_date or ""))]
        value = self.lookup_keys()[0][1]
        return [subject_key(kind, value)]


def name_key(family: str, given: str, birth_date: str) -> str:
    """The index key of a name with date of birth (folded family, first given name, date)."""
    return f"{fold(family)}|{fold(given.split()[0] if given.split() else given)}|{birth_date.strip()}"


def address_key(postcode: str, house: str) -> str:
    """The index key of an address (normalised postcode and house)."""
    return f"{normalise('postcode', postcode)}|{house_key(house)}"

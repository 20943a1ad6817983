"""Enquiry agreements and the pure decisions made with them.

An enquiry agreement (`deploy/agreements/enquiry/<id>.yaml`, schema `enquiry-agreement.schema.json`) says
which requesting forces may ask one responding force, which roles may ask for which purpose, about which
record types, which fields step two returns and how many enquiries one officer may make in a window.
Deny by default: a force is asked only through an agreement in force today that names the officer's force,
and lets the officer's role ask for the stated purpose.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from broker.config import Agency, agreement_dates, check_against_schema, load_yaml
from broker.enquiry.model import NO_ENQUIRY_AGREEMENT, PURPOSE_NOT_PERMITTED, EnquiryRefused, Identity
from broker.errors import ConfigError
from broker.routing.projection import Projector

ENQUIRY_DIR = "enquiry"  # beside the sharing agreements: deploy/agreements/enquiry/


@dataclass(frozen=True)
class EnquiryAgreement:
    """One enquiry agreement: which forces may ask which responder, for which purposes, roles and record types."""

    id: str
    title: str
    controller: str
    requesters: tuple[str, ...]
    responder: str
    record_types: tuple[str, ...]
    purposes: dict[str, tuple[str, ...]]  # purpose -> roles
    lawful_basis: str
    fields: dict[str, Projector]
    per_officer: int
    window_seconds: int
    valid_from: dt.date
    valid_until: dt.date
    review_by: dt.date
    status: str
    file: str = ""

    def in_force(self, today: dt.date) -> bool:
        """Whether the agreement is active on a day."""
        return self.status == "active" and self.valid_from <= today <= self.valid_until

    def names_force(self, force: str, agencies: dict[str, Agency]) -> bool:
        """Whether a force is one of the requesters (by code or by group)."""
        groups = agencies[force].groups if force in agencies else ()
        return any(r == force or (r.startswith("group:") and r[6:] in groups) for r in self.requesters)

    def permits(self, role: str, purpose: str) -> bool:
        """Whether an officer's role may ask for a purpose."""
        return role in self.purposes.get(purpose, ())


def agreement_from_doc(doc: dict[str, Any], file: str = "") -> EnquiryAgreement:
    """Build an EnquiryAgreement from an already schema-checked document."""
    dates = agreement_dates(doc, file)
    return EnquiryAgreement(
        id=doc["id"],
        title=doc["title"],
        controller=doc["controller"],
        requesters=tuple(doc["requesters"]),
        responder=doc["responder"],
        record_types=tuple(doc["record_types"]),
        purposes={p: tuple(roles) for p, roles in doc["purposes"].items()},
        lawful_basis=doc["lawful_basis"],
        fields={t: Projector(paths) for t, paths in doc["fields"].items()},
        per_officer=doc["rate_limit"]["per_officer"],
        window_seconds=doc["rate_limit"]["window_seconds"],
        status=doc["status"],
        file=file,
        **dates,
    )


def load_enquiry_agreements(agreements_dir: Path) -> list[EnquiryAgreement]:
    """Every `*.yaml` in `<agreements>/enquiry/` (none when the folder is absent), checked and sorted by id."""
    directory = agreements_dir / ENQUIRY_DIR
    found: dict[str, EnquiryAgreement] = {}
    for path in sorted(directory.glob("*.yaml")) if directory.is_dir() else []:
        doc = load_yaml(path)
        if isinstance(doc, dict):  # YAML turns unquoted dates into date objects; the schema speaks strings
            doc = {k: (v.isoformat() if isinstance(v, dt.date) else v) for k, v in doc.items()}
        check_against_schema("enquiry-agreement", doc, str(path))
        agreement = agreement_from_doc(doc, str(path))
        if agreement.id in found:
            raise ConfigError(str(path), "id", f"duplicate agreement id {agreement.id!r}")
        found[agreement.id] = agreement
    return sorted(found.values(), key=lambda a: a.id)


@dataclass(frozen=True)
class Ask:
    """One force to ask, and under which agreement each record type may come back."""

    force: str
    by_type: dict[str, EnquiryAgreement]

    @property
    def record_types(self) -> tuple[str, ...]:
        """The record types this ask may return."""
        return tuple(self.by_type)


def plan(
    identity: Identity, purpose: str, agreements: list[EnquiryAgreement], agencies: dict[str, Agency], today: dt.date
) -> list[Ask]:
    """Which forces this officer may ask for this purpose today; refuses (EnquiryRefused) when none.

    The officer's own force is never asked through the exchange (its own systems answer it).  When two
    agreements cover one responder and record type, the first by id governs it.
    """
    naming = [
        a
        for a in agreements
        if a.in_force(today) and a.names_force(identity.force, agencies) and a.responder != identity.force
    ]
    if not naming:
        raise EnquiryRefused(NO_ENQUIRY_AGREEMENT, f"force {identity.force} is in no enquiry agreement in force today")
    permitted = [a for a in naming if a.permits(identity.role, purpose)]
    if not permitted:
        raise EnquiryRefused(
            PURPOSE_NOT_PERMITTED, f"role {identity.role!r} may not enquire for purpose {purpose!r}", "purpose"
        )
    by_force: dict[str, dict[str, EnquiryAgreement]] = {}
    for agreement in permitted:
        for record_type in agreement.record_types:
            by_force.setdefault(agreement.responder, {}).setdefault(record_type, agreement)
    return [Ask(force, by_force[force]) for force in sorted(by_force)]


def rate_limits(asks: list[Ask]) -> list[tuple[str, int, int]]:
    """(agreement id, per officer, window seconds) of every agreement an enquiry goes through."""
    seen = {a.id: a for ask in asks for a in ask.by_type.values()}
    return [(a.id, a.per_officer, a.window_seconds) for a in seen.values()]


def project_details(record: dict[str, Any], agreement: EnquiryAgreement) -> tuple[dict[str, Any], list[str]]:
    """Step two's view of one record: only the agreement's fields; returns (view, paths disclosed)."""
    projector = agreement.fields.get(str(record.get("type")))
    if projector is None:
        return {}, []
    projection = projector.project(record)
    return projection.record, list(projection.disclosed)


def run_case(case: dict[str, Any], agreements: list[EnquiryAgreement], agencies: dict[str, Agency]) -> list[str]:
    """One test-as-data case (deploy/agreements/enquiry/tests): the differences from its expectation."""
    identity = Identity(
        str(case.get("officer", {}).get("id", "test-officer")),
        str(case["officer"]["force"]),
        str(case["officer"]["role"]),
    )
    at = case["at"] if isinstance(case["at"], dt.datetime) else dt.datetime.fromisoformat(str(case["at"]))
    expect = case["expect"]
    try:
        asked = {
            a.force: list(a.record_types)
            for a in plan(identity, case["purpose"], agreements, agencies, at.astimezone(dt.UTC).date())
        }
    except EnquiryRefused as refused:
        if expect.get("refused") == refused.reason:
            return []
        return [f"refused {refused.reason}, expected {expect}"]
    if "refused" in expect:
        return [f"asked {asked}, expected refusal {expect['refused']}"]
    wanted = {str(k): list(v) for k, v in expect["asked"].items()}
    return [] if asked == wanted else [f"asked {asked}, expected {wanted}"]

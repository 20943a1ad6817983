"""The s.62 consultation audit entries of the enquiry gateway (pure builders).

Every step of an enquiry is a consultation in its own right: operation `consult`, channel `enquiry`, the
officer as actor (person, force, role), the purpose and justification, the subject's keyed hashes (the
disclosure log's convention, so a subject report finds it), the forces asked, answered, timed out and
unavailable, and for step two the records disclosed with their fields.  A refused enquiry is an entry too
(outcome `refused`, reason code).
"""

from __future__ import annotations

from typing import Any

from broker.audit.publish import entry
from broker.enquiry.model import Identity
from broker.enquiry.review import CHANNEL


def consultation(
    identity: Identity,
    enquiry_id: str,
    step: str,
    purpose: str,
    justification: str,
    subject_keys: list[str],
    statuses: dict[str, str],
    agreements: list[str],
    lawful_basis: list[str],
    hits: dict[str, dict[str, int]] | None = None,
    records: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """The entry for one step that asked forces; `statuses` maps force -> answered/timeout/unavailable."""

    def forces(status: str) -> list[str]:
        return sorted(f for f, s in statuses.items() if s == status)

    fields = sorted({p for r in records or [] for p in r.get("fields_disclosed") or []})
    return entry(
        "consult",
        identity.actor(),
        justification,
        channel=CHANNEL,
        step=step,
        enquiry_id=enquiry_id,
        recipient=f"force-{identity.force}",
        fields_disclosed=fields,
        correlation_id=enquiry_id,
        purposes=[purpose],
        subject_keys=sorted(subject_keys),
        forces_asked=sorted(statuses),
        forces_answered=forces("answered"),
        forces_timed_out=forces("timeout"),
        forces_unavailable=forces("unavailable"),
        agreements=sorted(set(agreements)),
        agreement=",".join(sorted(set(agreements))) or None,
        lawful_basis="; ".join(sorted(set(lawful_basis))) or None,
        hits=hits or {},
        records=records or [],
    )


def refusal(
    identity: Identity,
    step: str,
    reason: str,
    purpose: str | None,
    justification: str | None,
    subject_keys: list[str],
    enquiry_id: str | None = None,
) -> dict[str, Any]:
    """The entry for an enquiry refused before any force was asked."""
    return dict(
        entry(
            "consult",
            identity.actor(),
            justification or "",
            channel=CHANNEL,
            step=step,
            enquiry_id=enquiry_id,
            purposes=[purpose] if purpose else [],
            subject_keys=sorted(subject_keys),
            forces_asked=[],
            forces_answered=[],
            forces_timed_out=[],
            forces_unavailable=[],
            records=[],
        ),
        outcome="refused",
        reason=reason,
    )

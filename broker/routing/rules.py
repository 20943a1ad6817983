"""Deciding who receives a record: a pure function of (record, agreements, time).

Deny by default.  A recipient receives a record only through an agreement that names the record's
provider, type and recipient, is in force on the day (a Europe/London calendar day: `agreement_day`),
allows the record's classification and handling, and whose conditions all hold.  The result is one
Decision per recipient that some agreement covers for this provider and record type; a record that no
agreement covers gets one `no_agreement` withholding.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

from broker.config import CLASSIFICATION_LEVELS, Agency, Agreement, Recipient
from broker.errors import WithholdReason
from broker.routing import conditions, scope
from broker.routing.paths import leaf_paths
from broker.routing.projection import Projection

LONDON = ZoneInfo("Europe/London")


def agreement_day(moment: dt.datetime) -> dt.date:
    """The Europe/London calendar day an instant falls on: agreements run from and to UK days.

    A naive datetime is taken as UTC.
    """
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return moment.astimezone(LONDON).date()


@dataclass(frozen=True, slots=True)
class Deliver:
    """A decision to send `projection` of the record to `recipient` under `agreement`."""

    recipient: str
    agreement: Agreement
    projection: Projection
    scoped: dict[str, Any] | None = None  # the record after entity scoping, when the agreement scopes it
    reason: str | None = None  # e.g. correction_to_past_recipient (broker.routing.corrections)

    outcome = "delivered"


@dataclass(frozen=True, slots=True)
class Withhold:
    """A decision not to send the record to `recipient`, with the reason code and a detail."""

    recipient: str | None
    agreement: Agreement | None
    reason: str
    detail: str = ""

    outcome = "withheld"


Decision = Deliver | Withhold


def _deliver(
    record: dict[str, Any],
    view: dict[str, Any],
    recipient_id: str,
    agreement: Agreement,
    data_paths: Sequence[str] | None = None,
) -> Deliver:
    """Project the (scoped) view; withheld paths are counted against the whole record."""
    if data_paths is None:
        data_paths = leaf_paths(record.get("data"), "data")
    if view is record:
        return Deliver(recipient_id, agreement, agreement.fields[record["type"]].project(view, data_paths))
    projection = agreement.fields[record["type"]].project(view)
    shown = set(projection.disclosed)
    withheld = tuple(p for p in projection.withheld if not p.startswith("data")) + tuple(
        p for p in data_paths if p not in shown
    )
    return Deliver(recipient_id, agreement, Projection(projection.record, projection.disclosed, withheld), view)


def classification_level(record: dict[str, Any]) -> int:
    """The record's marking as a level; a marking that is not one of the tiers counts as the highest."""
    marking = record.get("classification") or {}
    if not isinstance(marking, dict):
        return 4
    tier = marking.get("tier", "OFFICIAL")
    level = CLASSIFICATION_LEVELS.get(tier, 4) if isinstance(tier, str) else 4
    return 2 if tier == "OFFICIAL" and marking.get("sensitive") else level


LEVEL_NAMES = {level: name for name, level in CLASSIFICATION_LEVELS.items()}


def classification_label(record: dict[str, Any]) -> str:
    """The record's marking as a label: `OFFICIAL`, `OFFICIAL-SENSITIVE`, `SECRET` or `TOP SECRET`."""
    return LEVEL_NAMES[classification_level(record)]


# an agreement not in force on the day (Agreement.status_on) -> why its recipient is withheld
LIFECYCLE_REASONS = {
    "suspended": WithholdReason.AGREEMENT_SUSPENDED,
    "not_yet_valid": WithholdReason.AGREEMENT_NOT_YET_VALID,
    "expired": WithholdReason.AGREEMENT_EXPIRED,
}


class Rulebook:
    """Agreements compiled for fast deciding.

    At load: agreements indexed by record type, each agreement's classification ceiling (with its
    recipient's) and each recipient's condition subject resolved once.  On first sight of a (provider,
    record type): its candidate agreements grouped by recipient, in recipient order, kept for every later
    record of that pair.
    """

    def __init__(
        self, agreements: Iterable[Agreement], recipients: dict[str, Recipient], agencies: dict[str, Agency]
    ) -> None:
        self.agreements = list(agreements)
        self.recipients = recipients
        self.agencies = agencies
        self._by_type: dict[str, list[Agreement]] = defaultdict(list)
        for agreement in self.agreements:
            for record_type in agreement.record_types:
                self._by_type[record_type].append(agreement)
        # compiled per recipient and per agreement; each kept with the recipient it was compiled for, so a
        # recipient replaced later is compiled afresh rather than judged by stale data
        self._subjects = {rid: (r, r.as_condition_subject()) for rid, r in recipients.items()}
        self._ceilings = {
            id(a): (
                recipients[a.recipient],
                min(
                    CLASSIFICATION_LEVELS[a.max_classification],
                    CLASSIFICATION_LEVELS[recipients[a.recipient].max_classification],
                ),
            )
            for a in self.agreements
            if a.recipient in recipients
        }
        self._candidates: dict[
            tuple[str, str], tuple[Agency | None, tuple[tuple[str, tuple[Agreement, ...]], ...]]
        ] = {}

    def provides(self, agreement: Agreement, agency_code: str) -> bool:
        """Whether agency `agency_code` is a provider the agreement names (by code or by group)."""
        if agency_code in agreement.providers:
            return True
        agency = self.agencies.get(agency_code)
        return agency is not None and any(f"group:{g}" in agreement.providers for g in agency.groups)

    def candidates(self, agency: str, record_type: str) -> tuple[tuple[str, tuple[Agreement, ...]], ...]:
        """(recipient, its agreements in load order) for every recipient some agreement from this provider
        and record type names, sorted by recipient; compiled once per (provider, record type) and kept with
        the provider's registration it was compiled for (a provider re-registered is compiled afresh)."""
        key = (agency, record_type)
        registered = self.agencies.get(agency)
        compiled = self._candidates.get(key)
        if compiled is not None and compiled[0] is registered:
            return compiled[1]
        grouped: dict[str, list[Agreement]] = defaultdict(list)
        for agreement in self._by_type.get(record_type, ()):
            if self.provides(agreement, agency):
                grouped[agreement.recipient].append(agreement)
        found = tuple((recipient, tuple(grouped[recipient])) for recipient in sorted(grouped))
        if len(self._candidates) >= 4096:  # unregistered providers cannot grow it without bound
            self._candidates.clear()
        self._candidates[key] = (registered, found)
        return found

    def decide(self, record: dict[str, Any], now: dt.datetime) -> list[Decision]:
        """For each recipient an agreement covers: Deliver (with its view) or Withhold (with a reason)."""
        agency = (record.get("origin") or {}).get("agency", "")
        record_type = record.get("type", "")
        candidates = self.candidates(
            agency if isinstance(agency, str) else repr(agency),
            record_type if isinstance(record_type, str) else repr(record_type),
        )
        if not candidates:
            return [Withhold(None, None, WithholdReason.NO_AGREEMENT)]
        today = agreement_day(now)
        level = classification_level(record)
        data_paths = tuple(leaf_paths(record.get("data"), "data"))  # walked once, shared by every projection
        return [
            self._decide_for(record, recipient, agreements, today, data_paths, level)
            for recipient, agreements in candidates
        ]

    def _decide_for(
        self,
        record: dict[str, Any],
        recipient_id: str,
        agreements: Iterable[Agreement],
        today: dt.date,
        data_paths: Sequence[str] | None = None,
        level: int | None = None,
    ) -> Decision:
        recipient = self.recipients.get(recipient_id)
        first_refusal: Withhold | None = None
        for agreement in agreements:
            refusal = (
                self._refusal(record, recipient, agreement, today, level)
                if recipient
                else Withhold(recipient_id, agreement, WithholdReason.NO_AGREEMENT, "recipient is not configured")
            )
            if refusal is None:
                assert recipient is not None
                view, in_scope = scope.apply(agreement.scope.get(record["type"]), record, self._subject(recipient))
                if in_scope != 0:
                    return _deliver(record, view, recipient_id, agreement, data_paths)
                refusal = Withhold(
                    recipient_id, agreement, WithholdReason.CONDITION_NOT_MET, "no person in the agreement's scope"
                )
            first_refusal = first_refusal or refusal
        assert first_refusal is not None
        return first_refusal

    def _subject(self, recipient: Recipient) -> dict[str, Any]:
        compiled = self._subjects.get(recipient.id)
        return compiled[1] if compiled is not None and compiled[0] is recipient else recipient.as_condition_subject()

    def refusal_to_past_recipient(
        self, record: dict[str, Any], recipient: Recipient, agreement: Agreement
    ) -> Withhold | None:
        """Every check a new record takes under `agreement` except its lifecycle (a correction reaches a
        recipient of the original even after the agreement expired): provider, record type, classification
        ceiling, handling, conditions and entity scope."""
        if (
            not self.provides(agreement, (record.get("origin") or {}).get("agency", ""))
            or record.get("type") not in agreement.fields
            or agreement.recipient != recipient.id
        ):
            return Withhold(
                recipient.id, agreement, WithholdReason.NO_AGREEMENT, "the agreement does not cover this record"
            )
        refusal = self._refusal(record, recipient, agreement, None)
        if refusal is None:
            _view, in_scope = scope.apply(agreement.scope.get(record["type"]), record, self._subject(recipient))
            if in_scope == 0:
                return Withhold(
                    recipient.id, agreement, WithholdReason.CONDITION_NOT_MET, "no person in the agreement's scope"
                )
        return refusal

    def _refusal(
        self,
        record: dict[str, Any],
        recipient: Recipient,
        agreement: Agreement,
        today: dt.date | None,
        level: int | None = None,
    ) -> Withhold | None:
        def refuse(reason: str, detail: str = "") -> Withhold:
            return Withhold(recipient.id, agreement, reason, detail)

        status = agreement.status_on(today) if today is not None else "active"
        if status != "active":
            return refuse(LIFECYCLE_REASONS[status])
        if level is None:
            level = classification_level(record)
        compiled = self._ceilings.get(id(agreement))
        if compiled is not None and compiled[0] is recipient:
            ceiling = compiled[1]
        else:
            ceiling = min(
                CLASSIFICATION_LEVELS[agreement.max_classification],
                CLASSIFICATION_LEVELS[recipient.max_classification],
            )
        if level > ceiling:
            return refuse(WithholdReason.CLASSIFICATION_ABOVE_CEILING, classification_label(record))
        handling_refusal = self._handling_refusal(record, recipient, agreement)
        if handling_refusal:
            return refuse(*handling_refusal)
        if agreement.conditions:
            unmet = conditions.failed(list(agreement.conditions), record, self._subject(recipient))
            if unmet:
                return refuse(WithholdReason.CONDITION_NOT_MET, unmet)
        return None

    @staticmethod
    def _handling_refusal(record: dict[str, Any], recipient: Recipient, agreement: Agreement) -> tuple[str, str] | None:
        handling = record.get("handling")
        if not handling:
            return (WithholdReason.INTELLIGENCE_UNGRADED, "") if record.get("type") == "intelligence.report" else None
        if handling.get("scheme") == "5x5x5":
            level = int(handling.get("handling", "5"))
            if level >= 4:
                return WithholdReason.LEGACY_HANDLING_NO_ONWARD_SHARING, f"5x5x5 handling {level}"
            if level > agreement.legacy_max_handling:
                return WithholdReason.HANDLING_CODE_NOT_PERMITTED, f"5x5x5 handling {level}"
            return None
        code = handling.get("code")
        if code not in agreement.permitted_codes:
            return WithholdReason.HANDLING_CODE_NOT_PERMITTED, f"3x5x2 handling code {code}"
        if code == "C":
            named = handling.get("conditions") or {}
            if recipient.id not in named.get("recipients", ()) and recipient.cls not in named.get(
                "recipient_classes", ()
            ):
                return WithholdReason.HANDLING_CONDITIONS_EXCLUDE_RECIPIENT, ""
        return None

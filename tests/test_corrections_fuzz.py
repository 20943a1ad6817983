"""No leak, no miss for corrections: broker.routing.corrections against the simple reference of test_security_fuzz.

Hypothesis draws an agreement set; a seeded Random draws pairs of records (an original and its
correction from the same origin, each with its own type, classification, handling and data).  The
original's holders are whoever the reference sends it to.  The agreements are then changed "since"
(suspended, expired, narrowed to OFFICIAL, a condition added, removed from configuration) and the
correction is decided.  For every recipient the reference expects: what today's agreements give it; else,
for a holder of the original, the correction under the original's agreement if that agreement permits
it apart from its lifecycle, else a retraction notice; else nothing.
"""

from __future__ import annotations

import copy
import datetime as dt
from random import Random
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from test_security_fuzz import (
    FUZZ_SETTINGS,
    NOW,
    RECIPIENT_IDS,
    REGISTRY,
    agreement_docs,
    random_record,
    reference,
)

from broker.audit.index import Original, PastDelivery
from broker.config import agreement_from_doc
from broker.routing.corrections import Retract, reach_past_recipients
from broker.routing.rules import Deliver, Rulebook

PAIRS_PER_SET = 100
SETS = 40
TOTALS = {"corrections": 0, "holders": 0, "to_past": 0, "notices": 0}


def changed_since(rnd: Random, docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The agreement set today: some agreements suspended, expired, narrowed, conditioned or removed."""
    today = []
    for doc in docs:
        doc = copy.deepcopy(doc)
        change = rnd.choice(["none", "none", "suspended", "expired", "official", "condition", "removed"])
        if change == "removed":
            continue
        if change == "suspended":
            doc["status"] = "suspended"
        elif change == "expired":
            doc["valid_until"] = doc["review_by"] = (NOW.date() - dt.timedelta(days=1)).isoformat()
            doc["valid_from"] = min(doc["valid_from"], doc["valid_until"])
        elif change == "official":
            doc["max_classification"] = "OFFICIAL"
        elif change == "condition":
            doc["conditions"] = [
                *doc["conditions"],
                {"name": "consent_given", "equals": {"path": "data.consent.given", "value": True}},
            ]
        today.append(doc)
    return today


def timeless(doc: dict[str, Any]) -> dict[str, Any]:
    """The agreement with its lifecycle ignored (in force on every day)."""
    return dict(doc, status="active", valid_from="0001-01-01", valid_until="9999-12-31")


def expected(
    then: list[dict[str, Any]],
    today: list[dict[str, Any]],
    original: dict[str, Any],
    correction: dict[str, Any],
    recipient: str,
) -> tuple[str, str | None] | None:
    """("deliver", agreement id) | ("notice", None) | None, decided from the agreement documents."""
    now = reference(today, correction, recipient)
    if now is not None:
        return "deliver", now[0]
    held = reference(then, original, recipient)
    if held is None:
        return None
    doc = next((d for d in today if d["id"] == held[0]), None)
    if doc is not None and reference([timeless(doc)], correction, recipient) is not None:  # permits, and in scope
        return "deliver", doc["id"]
    return "notice", None


def _check(docs: list[dict[str, Any]], seed: int) -> list[str]:
    rnd = Random(seed)
    today = changed_since(rnd, docs)
    rulebook = Rulebook([agreement_from_doc(d, d["id"]) for d in today], REGISTRY.recipients, REGISTRY.agencies)
    problems: list[str] = []
    for n in range(PAIRS_PER_SET):
        original = random_record(rnd, n, docs)
        correction = random_record(rnd, n + PAIRS_PER_SET, docs)
        correction["origin"] = dict(original["origin"])
        correction["id"] = original["id"] + "-c"
        correction["supersedes"] = {"id": original["id"], "kind": rnd.choice(["correction", "retraction"])}
        holders = tuple(
            PastDelivery(r, ref[0], "2026-05-01T00:00:00Z", i)
            for i, r in enumerate(RECIPIENT_IDS)
            if (ref := reference(docs, original, r)) is not None
        )
        decisions = reach_past_recipients(
            correction, rulebook.decide(correction, NOW), Original("known", holders), rulebook
        )
        got = {d.recipient: d for d in decisions if isinstance(d, (Deliver, Retract))}
        TOTALS["corrections"] += 1
        TOTALS["holders"] += len(holders)
        for recipient in RECIPIENT_IDS:
            want = expected(docs, today, original, correction, recipient)
            decision = got.get(recipient)
            where = f"{correction['id']} -> {recipient}"
            if want is None:
                if decision is not None:
                    problems.append(f"leak: {where}: {decision!r}, reference sends nothing")
            elif want[0] == "notice":
                if not isinstance(decision, Retract):
                    problems.append(f"{'leak' if decision else 'miss'}: {where}: {decision!r}, reference: notice")
                else:
                    TOTALS["notices"] += 1
            elif not isinstance(decision, Deliver) or decision.agreement.id != want[1]:
                problems.append(f"miss: {where}: {decision!r}, reference delivers under {want[1]}")
            else:
                if decision.reason == "correction_to_past_recipient":
                    TOTALS["to_past"] += 1
                doc = next(d for d in today if d["id"] == want[1])
                fields = reference([timeless(doc)], correction, recipient)  # that agreement's field list
                assert fields is not None
                if decision.projection.record["data"] != fields[1]:
                    problems.append(
                        f"leak: {where}: data {decision.projection.record['data']!r}, reference {fields[1]!r}"
                    )
    return problems


@settings(max_examples=SETS, **FUZZ_SETTINGS)
@given(docs=agreement_docs(), seed=st.integers(0, 2**32 - 1))
def test_corrections_reach_exactly_the_recipients_and_fields_the_reference_allows(docs, seed) -> None:
    # Given an agreement set, records delivered under it, then changed, and a correction of each record
    # When the correction is decided / Then the reference agrees on every recipient, notice and field
    assert _check(docs, seed)[:5] == []


def test_the_generated_corrections_exercised_every_path() -> None:
    # Given the run above / Then corrections reached past recipients under old agreements and as notices
    print(f"\ncorrections: {TOTALS}")
    assert TOTALS["corrections"] >= SETS * PAIRS_PER_SET
    assert TOTALS["to_past"] > 0 and TOTALS["notices"] > 0

"""intelligence.report says where it came from (schema v1.1 `data.provenance`) without identifying the source."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from broker.routing.validation import Validator

EXAMPLE = json.loads(
    (Path(__file__).resolve().parents[1] / "examples" / "records" / "09-intelligence.report-3x5x2-p.json").read_text()
)
CAPTURED = {
    "medium": "social-media",
    "platform": "facebook",
    "captured": "2026-11-22T18:40:00Z",
    "item_sha256": "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
}


@pytest.fixture(scope="module")
def validator() -> Validator:
    return Validator()


def with_provenance(provenance: dict) -> dict:
    record = copy.deepcopy(EXAMPLE)
    record["data"]["provenance"] = provenance
    return record


def paths(validator: Validator, record: dict) -> list[str]:
    return [e.path for e in validator.validate(record)]


@pytest.mark.parametrize(
    "provenance",
    [
        {"source_type": "human"},
        {"source_type": "technical"},
        {"source_type": "partner", "partner": "48"},
        {"source_type": "open-source", "open_source": CAPTURED},
        {
            "source_type": "open-source",
            "open_source": {**{k: v for k, v in CAPTURED.items() if k != "platform"}, "medium": "news"},
        },
    ],
    ids=["human", "technical", "partner", "social-media", "news"],
)
def test_each_source_type_is_a_valid_provenance(validator, provenance):
    assert paths(validator, with_provenance(provenance)) == []


def test_a_record_without_provenance_stays_valid(validator):
    assert paths(validator, EXAMPLE) == []


@pytest.mark.parametrize(
    ("provenance", "why"),
    [
        ({"source_type": "human", "source_ref": "CHIS-0042"}, "a human source's reference"),
        ({"source_type": "human", "name": "Jo Bloggs"}, "a human source's name"),
        ({"source_type": "open-source", "open_source": {**CAPTURED, "account": "@someone"}}, "an account"),
        ({"source_type": "open-source", "open_source": {**CAPTURED, "url": "https://example.org/p/1"}}, "a link"),
        (
            {"source_type": "open-source", "open_source": {**CAPTURED, "platform": "https://x.com/someone"}},
            "a link as platform",
        ),
        ({"source_type": "open-source", "open_source": {**CAPTURED, "platform": "@someone"}}, "a handle as platform"),
        ({"source_type": "technical", "device": "IMEI 490154203237518"}, "a device"),
    ],
    ids=lambda value: value if isinstance(value, str) else "",
)
def test_provenance_that_would_identify_the_source_is_refused(validator, provenance, why):
    assert any(p.startswith("data.provenance") for p in paths(validator, with_provenance(provenance))), why


@pytest.mark.parametrize(
    "provenance",
    [
        {"source_type": "open-source"},  # what was captured?
        {"source_type": "open-source", "open_source": {**CAPTURED, "item_sha256": "not-a-hash"}},
        {"source_type": "open-source", "open_source": {k: v for k, v in CAPTURED.items() if k != "platform"}},
        {"source_type": "open-source", "open_source": {k: v for k, v in CAPTURED.items() if k != "captured"}},
        {"source_type": "human", "open_source": CAPTURED},  # a capture from a human source
        {"source_type": "partner"},  # which partner?
        {"source_type": "rumour"},
    ],
)
def test_incomplete_or_inconsistent_provenance_is_refused(validator, provenance):
    assert paths(validator, with_provenance(provenance)) != []

"""Dead-letter views are pure: reason and time from headers, a redacted body, ages, summaries."""

from __future__ import annotations

import datetime as dt
import json
from types import SimpleNamespace

import orjson
import pytest

from broker.ops import dlq
from tests.support import EXAMPLES


def letter(body: bytes, **headers):
    props = SimpleNamespace(
        headers=headers,
        message_id="m-1",
        correlation_id="c-1",
        content_type="application/json",
        timestamp=None,
    )
    return dlq.dead_letter(7, props, body)


def test_a_redacted_dead_letter_keeps_paths_and_codes_but_no_personal_values():
    # Given a dead-lettered record whose error message quotes an identifier
    record = json.loads((EXAMPLES / "01-crime.report-burglary-victim-suspect.json").read_text())
    person = record["data"]["persons"][0]
    ident = (person.get("identifiers") or [{"value": "2001/0171310S"}])[0]["value"]
    errors = [
        {
            "path": "data.persons[0].identifiers[0]",
            "code": "identifier_invalid",
            "message": f"PNC ID {ident} has check letter S, expected W",
        }
    ]
    view = dlq.redacted(
        letter(
            orjson.dumps(record),
            **{"x-interchange-reason": "identifier_invalid", "x-interchange-errors": json.dumps(errors)},
        )
    )
    text = json.dumps(view)
    # Then the reason, path and code are there, and no name, date of birth or identifier
    assert view["reason"] == "identifier_invalid" and view["errors"][0]["path"] == errors[0]["path"]
    for value in [person["name"]["family"], *person["name"]["given"], person.get("birth_date", "zz"), ident]:
        assert value not in text


def test_a_dead_letter_without_interchange_headers_takes_its_reason_from_x_death():
    moment = dt.datetime(2026, 1, 2, tzinfo=dt.UTC)
    found = letter(
        b"{}",
        **{
            "x-death": [{"reason": "delivery_limit", "time": moment}],
            "x-first-death-queue": "interchange.audit",
        },
    )
    assert (found.reason, found.rejected_at, found.died_in) == (
        "rabbitmq_delivery_limit",
        moment,
        "interchange.audit",
    )


def test_ages_parse_and_bad_ages_are_refused():
    assert dlq.parse_age("30d") == dt.timedelta(days=30)
    assert dlq.parse_age("12h") == dt.timedelta(hours=12)
    with pytest.raises(ValueError):
        dlq.parse_age("thirty days")


def test_the_summary_counts_by_reason_and_source():
    letters = [
        letter(orjson.dumps({"origin": {"agency": "13"}}), **{"x-interchange-reason": "unknown_agency"}),
        letter(orjson.dumps({"origin": {"agency": "13"}}), **{"x-interchange-reason": "unknown_agency"}),
        letter(b"junk", **{"x-interchange-reason": "malformed_json"}),
    ]
    report = dlq.summary(letters)
    assert report["by_reason"] == {"unknown_agency": 2, "malformed_json": 1}
    assert {"reason": "malformed_json", "source": "unknown", "count": 1} in report["by_reason_and_source"]

"""The routing core refuses JSON objects with duplicate keys (orjson would silently keep the last)."""

from __future__ import annotations

import json

import orjson
import pytest

from broker import router
from broker.message import Message
from broker.routing.jsonsafe import duplicate_key
from broker.runner import build_context
from tests.support import EXAMPLES

HIDDEN = [
    (b'{"a":1,"a":2}', "a"),
    (b'{"a":{"b":1, "b" :2}}', "b"),
    (b'{"a":1,"a"\n:2}', "a"),
    (b'{"a":"\\u0022:","a":"\\u0022:"}', "a"),
    (b'[{"x":1},{"x":2,"y":{"x":3,"x":4}}]', "x"),
]
CLEAN = [b'{"a":"x\\":y"}', b'{"a":1}', b'[{"x":1},{"x":2}]', b'{"a" : "b \\" : c", "c": [] }']


@pytest.mark.parametrize(("body", "key"), HIDDEN)
def test_a_duplicated_key_is_found_however_it_is_spelled(body, key):
    assert duplicate_key(body, orjson.loads(body)) == key


@pytest.mark.parametrize("body", CLEAN)
def test_objects_without_duplicates_pass(body):
    assert duplicate_key(body, orjson.loads(body)) is None


def test_a_record_naming_its_origin_twice_is_refused_as_malformed_json(settings, registry):
    # Given a valid record whose body names origin twice: 48 first, then 01
    record = json.loads((EXAMPLES / "01-crime.report-burglary-victim-suspect.json").read_text())
    body = orjson.dumps(record).replace(b'"origin":', b'"origin":{"agency":"48","system":"x"},"origin":', 1)
    # When routed
    plan = router.route(Message(body, "application/json", record["id"]), build_context(settings, registry))
    # Then it is rejected as malformed JSON, not routed as either origin
    assert (plan.outcome, plan.reason) == ("rejected", "malformed_json")


def test_a_duplicated_agency_hidden_by_an_escaped_quote_and_colon_is_found():
    # Given a body whose string holds \"\u003a (a quote and an escaped colon): orjson writes it back as \":,
    # which a count of `":` pairs mistakes for the key the duplicate dropped
    body = b'{"origin":{"agency":"01","agency":"48"},"note":"x\\"\\u003a"}'
    parsed = orjson.loads(body)
    assert parsed["origin"] == {"agency": "48"}
    # When checked / Then the duplicated agency is named
    assert duplicate_key(body, parsed) == "agency"


def test_a_record_hiding_a_second_agency_behind_an_escaped_colon_is_refused(settings, registry):
    record = json.loads((EXAMPLES / "01-crime.report-burglary-victim-suspect.json").read_text())
    # Given a record naming agency 48 then 01 in its origin, and a string spelling a quote and colon \"\u003a
    record = dict(record, correlation_id='quote":')
    body = orjson.dumps(record).replace(b'"agency":"01"', b'"agency":"48","agency":"01"', 1)
    body = body.replace(b'quote\\":', b'quote\\"\\u003a', 1)
    assert b'\\"\\u003a' in body and orjson.loads(body)["origin"]["agency"] == "01"
    # When routed / Then it is refused as malformed JSON
    plan = router.route(Message(body, "application/json", record["id"]), build_context(settings, registry))
    assert (plan.outcome, plan.reason) == ("rejected", "malformed_json")
    assert "agency" in plan.outputs[0].headers["x-interchange-errors"]

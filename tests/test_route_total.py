"""route() returns a Plan for every input: a record with any field of any JSON type is decided or rejected.

The property test replaces every field path of every example record with a value of every JSON type;
route() must never raise, a rejection must carry a known reason, and its audit entry must stay bounded.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from broker.audit import entries as audit
from broker.config import load_settings
from broker.errors import REJECT_REASONS
from broker.message import Message
from broker.router import Context, route
from broker.routing.validation import Validator
from tests.support import EXAMPLES

NOW = dt.datetime(2026, 11, 26, 12, 0, tzinfo=dt.UTC)
EXAMPLE_RECORDS = {p.name: json.loads(p.read_text()) for p in sorted(EXAMPLES.glob("*.json"))}


def field_paths(node: Any, at: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path to a value in a JSON document, the document itself included."""
    found = [at]
    if isinstance(node, dict):
        for key, value in node.items():
            found += field_paths(value, (*at, key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            found += field_paths(value, (*at, i))
    return found


def replaced(record: Any, path: tuple[Any, ...], value: Any) -> Any:
    if not path:
        return value
    copy = json.loads(json.dumps(record))
    node = copy
    for step in path[:-1]:
        node = node[step]
    node[path[-1]] = value
    return copy


CASES = [(name, path) for name, record in EXAMPLE_RECORDS.items() for path in field_paths(record)]
JSON_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**63), 2**63 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=20),
)
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=8), inner, max_size=3)),
    max_leaves=6,
)
# One value of each JSON type, the shapes the issue found (true, {}, [7], []) among them
EVERY_TYPE = [None, True, False, 0, 7, -1.5, "", "x", [], [7], ["x"], [{}], {}, {"a": 1}]


@pytest.fixture(scope="module")
def ctx(registry):
    return Context.build(load_settings(environ={}), registry, Validator(), clock=lambda: NOW)


def assert_a_plan(plan) -> None:
    assert plan.outcome in ("routed", "rejected", "duplicate")
    if plan.outcome == "rejected":
        assert plan.reason in REJECT_REASONS and plan.reason != "internal_error", plan.reason
        [dead] = plan.outputs
        assert dead.headers["x-interchange-reason"] == plan.reason
    for entry in plan.audit_entries:
        assert len(orjson.dumps(entry)) <= audit.MAX_ENTRY_BYTES


def test_every_field_path_of_every_example_holding_every_json_type_gives_a_plan(ctx):
    # Given every example record, every path in it and one value of every JSON type
    routed = 0
    for name, path in CASES:
        for value in EVERY_TYPE:
            # When the field is replaced and the record routed
            plan = route(Message(orjson.dumps(replaced(EXAMPLE_RECORDS[name], path, value)), "application/json"), ctx)
            # Then route() returns a plan with a known reason (no field path raises, none is an internal error)
            assert_a_plan(plan)
            routed += 1
    assert routed == len(CASES) * len(EVERY_TYPE) > 10_000


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=st.sampled_from(CASES), value=JSON_VALUES)
def test_any_field_replaced_by_any_json_value_gives_a_plan(ctx, case, value):
    name, path = case
    assert_a_plan(route(Message(orjson.dumps(replaced(EXAMPLE_RECORDS[name], path, value)), "application/json"), ctx))


@pytest.mark.parametrize(
    "path, value",
    [
        (("data", "persons", 0, "birth_date"), True),
        (("data", "persons", 0, "name", "given"), {}),
        (("data", "persons", 0, "name", "given"), [7]),
        (("classification", "tier"), []),
        (("data", "persons", 0, "identifiers"), 5),
    ],
)
def test_the_wrong_types_the_review_found_are_rejected_as_schema_invalid(ctx, path, value):
    record = replaced(EXAMPLE_RECORDS["01-crime.report-burglary-victim-suspect.json"], path, value)
    plan = route(Message(orjson.dumps(record), "application/json"), ctx)
    assert (plan.outcome, plan.reason) == ("rejected", "schema_invalid")


def test_an_unexpected_failure_is_a_dead_letter_naming_only_the_exception_type(registry):
    # Given a routing context whose lookup of a correction's original fails with a message quoting the payload
    def broken(_origin: str, _record_id: str) -> list:
        raise RuntimeError("Jane Doe, 14 Acacia Row")

    ctx = Context.build(load_settings(environ={}), registry, Validator(), clock=lambda: NOW, original=broken)
    record = dict(
        EXAMPLE_RECORDS["01-crime.report-burglary-victim-suspect.json"],
        supersedes={"id": "01-CR-OLD", "kind": "correction"},
    )
    # When a correction is routed
    plan = route(Message(orjson.dumps(record), "application/json", message_id="m-1"), ctx)
    # Then it is dead-lettered as internal_error with the exception's type, and nothing else of the failure
    assert (plan.outcome, plan.reason, plan.error_type) == ("rejected", "internal_error", "RuntimeError")
    [dead] = plan.outputs
    assert dead.routing_key == "internal_error" and dead.headers["x-interchange-error-type"] == "RuntimeError"
    [entry] = plan.audit_entries
    assert entry["reason"] == "internal_error" and entry["error_type"] == "RuntimeError"
    assert "Jane" not in orjson.dumps(entry).decode() and "Jane" not in dead.headers["x-interchange-errors"]

"""The partner contract (issue 13): every delivery is valid against the view schema it names, the AsyncAPI
documents pass the official parser, and a contract diff tells breaking changes from additive ones."""

from __future__ import annotations

import copy
import dataclasses
import datetime as dt
import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import orjson
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from lxml import etree

from broker.audit.index import Original, PastDelivery
from broker.cli import main as cli
from broker.cli.contract import formats_of
from broker.config import PROJECT_ROOT, Registry, agreement_from_doc, check_against_schema, load_settings
from broker.message import Message
from broker.ops import logs
from broker.partners import contract
from broker.router import Context, route
from broker.routing.validation import Validator, _format_checker
from broker.routing.views import notice_id, view_id
from broker.runner import load_registry, load_renderers
from tests.test_security_fuzz import FUZZ_SETTINGS, REGISTRY, agreement_docs, handling_marks

NOW = dt.datetime(2026, 6, 1, 12, 0, tzinfo=dt.UTC)
EXAMPLES = PROJECT_ROOT / "examples" / "records"
SETTINGS = load_settings(environ={}).with_overrides(open_data_key="contract-test-key", require_publisher=False)
COMMON = contract.load_common()
VALIDATOR = Validator()
CHECKER = _format_checker()


@pytest.fixture(autouse=True)
def _logs_to_stderr() -> Iterator[None]:
    """`interchange` commands log to the stdout of their moment, which pytest closes after a test: log to
    the real stderr before and after each test so a later worker thread never writes to a closed file."""
    logs.configure("info", stream=sys.__stderr__)
    yield
    logs.configure("info", stream=sys.__stderr__)


def examples() -> list[dict[str, Any]]:
    return [orjson.loads(f.read_bytes()) for f in sorted(EXAMPLES.glob("*.json"))]


EXAMPLE_RECORDS = examples()


def all_schemas(registry: Registry) -> dict[str, dict[str, Any]]:
    formats = formats_of(registry)
    schemas = {v.id: v.schema for r in registry.recipients for v in contract.views_of(registry, r, COMMON, formats)}
    for public in (True, False):
        schemas[notice_id(public)] = contract.notice_schema(public)
    return schemas


def body_of(out: Any) -> Any:
    return orjson.loads(out.body) if out.content_type.endswith("json") else out.body.decode("utf-8")


def invalid_deliveries(
    registry: Registry, records: list[dict[str, Any]]
) -> tuple[list[tuple[str, str, str]], list[str]]:
    """Route every record (in order, so corrections find their originals); validate each delivery against
    the schema its x-dataschema header names.  Returns ([(record id, recipient, schema id)], problems)."""
    known: dict[tuple[str, str], Original] = {}

    def original(origin: str, record_id: str) -> Original:
        return known.get((origin, record_id), Original("unknown"))

    ctx = Context.build(
        SETTINGS,
        registry,
        VALIDATOR,
        renderers=load_renderers(registry, SETTINGS),
        clock=lambda: NOW,
        original=original,
    )
    schemas = all_schemas(registry)
    delivered: list[tuple[str, str, str]] = []
    problems: list[str] = []
    for record in records:
        body = orjson.dumps(record)
        plan = route(Message(body, "application/json", record.get("id")), ctx)
        if plan.outcome == "routed":
            known[(record["origin"]["agency"], record["id"])] = _original_of(plan)
        for out in plan.outputs:
            if out.target == "core":
                continue
            named = out.headers.get("x-dataschema")
            delivered.append((record["id"], out.target, named))
            payload = body_of(out)
            if isinstance(payload, dict) and payload.get("dataschema", named) != named:  # (views require it)
                problems.append(
                    f"{record['id']} -> {out.target}: body names {payload.get('dataschema')}, header {named}"
                )
            if named not in schemas:
                problems.append(f"{record['id']} -> {out.target}: no view schema {named}")
                continue
            validator = jsonschema.Draft202012Validator(schemas[named], format_checker=CHECKER)
            problems += [
                f"{record['id']} -> {out.target} ({named}): {'.'.join(map(str, e.absolute_path))}: {e.message[:200]}"
                for e in validator.iter_errors(payload)
            ]
    return delivered, problems


def _original_of(plan: Any) -> Original:
    """What the audit index would say of a routed record: known, with each recipient it reached."""
    return Original(
        "known",
        tuple(PastDelivery(r, plan.agreements.get(r), NOW.isoformat(), i) for i, r in enumerate(plan.delivered)),
    )


# ---------------------------------------------------------------- view schemas


def test_the_school_and_crime_map_views_leave_out_what_their_agreements_withhold(registry) -> None:
    # Given the Encompass notification the school receives (no adults, no incident reference)
    [view] = contract.views_of(registry, "school-100001", COMMON)
    schema = view.schema
    # Then its view requires neither, while the common schema does (the defect of issue 13)
    data = schema["properties"]["data"]
    assert set(data["properties"]) == {"scheme", "incident", "child_present", "children", "persons"}
    assert "adults" not in data.get("required", []) and "incident" not in data.get("required", [])
    assert "ref" not in data["properties"]["incident"]["properties"]
    common = COMMON["https://interchange.police.uk/schemas/v1/safeguarding.notification.json"]
    assert {"adults", "incident"} <= set(common["$defs"]["data"]["required"])
    # and its $id is stable and names recipient, agreement and record type; its body names it too
    assert view.id == view_id("school-100001", "ISA-ENCOMPASS-13-SCHOOLS", "safeguarding.notification")
    assert schema["properties"]["dataschema"] == {"const": view.id}
    assert schema["$comment"] == f"view version {contract.version_of(schema)}"
    # and the crime map's contract is the CSV row with data.police.uk's header, not a JSON schema
    [csv_view] = contract.views_of(registry, "crime-map", COMMON, formats_of(registry))
    assert csv_view.schema["type"] == "string" and csv_view.schema["pattern"].startswith("^Crime ID,Month,")


def test_a_delivery_carrying_a_withheld_field_or_missing_a_kept_required_one_is_invalid(registry) -> None:
    # Given the view of what force 13 receives of intelligence, and a valid delivery to it
    ctx = Context.build(SETTINGS, registry, VALIDATOR, clock=lambda: NOW)
    record = orjson.loads((EXAMPLES / "10-intelligence.report-3x5x2-c-force13.json").read_bytes())
    plan = route(Message(orjson.dumps(record), "application/json", record["id"]), ctx)
    [out] = [o for o in plan.outputs if o.target == "force-13"]
    schema = all_schemas(registry)[out.headers["x-dataschema"]]
    validator = jsonschema.Draft202012Validator(schema, format_checker=CHECKER)
    delivered = orjson.loads(out.body)
    assert list(validator.iter_errors(delivered)) == []
    # When a field the agreement does not list is added, or the envelope's id is dropped
    extra = copy.deepcopy(delivered) | {"internal_notes": "x"}
    extra["data"]["not_in_the_agreement"] = 1
    missing = {k: v for k, v in delivered.items() if k != "id"}
    # Then the view refuses both
    assert list(validator.iter_errors(extra)) and list(validator.iter_errors(missing))


def test_every_delivery_of_the_demo_records_is_valid_against_the_view_schema_it_names(registry) -> None:
    # Given every example record, then a correction of the burglary and of the Encompass notification (the
    # child moved school: the school gets a retraction notice)
    records = examples()
    burglary = copy.deepcopy(records[0])
    burglary["id"] += "-c1"
    burglary["supersedes"] = {"id": records[0]["id"], "kind": "correction"}
    encompass = next(r for r in records if r["id"].startswith("13-") and r["type"] == "safeguarding.notification")
    moved = copy.deepcopy(encompass)
    moved["id"] += "-c1"
    moved["supersedes"] = {"id": encompass["id"], "kind": "correction"}
    for person in moved["data"]["persons"]:
        if "school" in person:
            person["school"] = {"urn": "100002", "name": "Another Primary School"}
    # When each is routed
    delivered, problems = invalid_deliveries(registry, [*records, burglary, moved])
    # Then every delivery and notice is valid against the schema its x-dataschema names
    assert problems == []
    # (every recipient of the demo had some, the school a retraction notice, the crime map a CSV row)
    assert {target for _, target, _ in delivered} == set(registry.recipients)
    assert (moved["id"], "school-100001", notice_id()) in delivered
    assert any(target == "crime-map" and schema.endswith(".crime-map-csv.json") for _, target, schema in delivered)
    print(f"\ndemo records: {len(delivered)} deliveries, 0 invalid against their named view schema")


@settings(max_examples=60, **FUZZ_SETTINGS)
@given(docs=agreement_docs(), data=st.data())
def test_every_delivery_under_the_no_leak_property_tests_agreements_is_valid_against_its_view(docs, data) -> None:
    # Given an agreement set drawn by the no-leak property test's generator (its field lists, handling
    # rules and the handling text), and for each agreement the example records of the types it covers, sent
    # by an agency it names and re-marked by that test's handling generator (examples stay schema-valid)
    for doc in docs:
        check_against_schema("agreement", doc, doc["id"])
    registry = dataclasses.replace(REGISTRY, agreements=[agreement_from_doc(d, d["id"]) for d in docs])
    records = property_records(docs, data.draw)
    # When every record is routed under those agreements
    delivered, problems = invalid_deliveries(registry, records)
    # Then every delivery is valid against the view schema it names
    assert problems == []
    TALLY["deliveries"] += len(delivered)


def property_records(docs: list[dict[str, Any]], draw: Any) -> list[dict[str, Any]]:
    """For each generated agreement, the example records of the types it covers, sent by an agency it names
    and re-marked by the no-leak test's handling generator (so they stay valid against the common schema)."""
    records = []
    for n, doc in enumerate(docs):
        providers = [
            c
            for c, a in REGISTRY.agencies.items()
            if c in doc["providers"] or any(f"group:{g}" in doc["providers"] for g in a.groups)
        ]
        for record in (r for r in EXAMPLE_RECORDS if r["type"] in doc["record_types"]):
            record = copy.deepcopy(record)
            record["id"] = f"{record['id']}-p{n}"
            if providers:
                record["origin"]["agency"] = draw(st.sampled_from(providers))
            mark = draw(handling_marks())
            if mark is not None:
                record["handling"] = mark
            elif record["type"] != "intelligence.report":
                record.pop("handling", None)
            records.append(record)
    return records


TALLY = {"deliveries": 0}


def test_the_property_run_above_delivered_something() -> None:
    # Given the property run above (pytest runs this module in order), Then it validated real deliveries
    print(f"\nproperty run: {TALLY['deliveries']} deliveries, 0 invalid against their named view schema")
    assert TALLY["deliveries"] > 200, TALLY


# ---------------------------------------------------------------- AsyncAPI and the CLI


def test_contract_export_all_writes_asyncapi_documents_the_official_parser_accepts(tmp_path: Path) -> None:
    # Given the demo configuration, When `interchange contract export --all` writes every recipient's contract
    assert cli.main(["contract", "export", "--all", "--out", str(tmp_path)]) == 0
    registry = load_registry(load_settings(environ={}))
    docs = sorted(tmp_path.glob("*/asyncapi.yaml"))
    assert {d.parent.name for d in docs} == set(registry.recipients)
    # Then each names the recipient's vhost, inbox, receipts and headers, and ships the schemas it references
    cps = yaml.safe_load((tmp_path / "cps" / "asyncapi.yaml").read_text())
    assert cps["asyncapi"] == "3.0.0" and cps["servers"]["interchange"]["pathname"] == "/interchange.cps"
    assert cps["channels"]["inbox"]["bindings"]["amqp"]["queue"]["vhost"] == "interchange.cps"
    assert cps["channels"]["receipts"]["address"] == "interchange.receipts"
    headers = cps["components"]["messages"]["ISA-CPS-CASEFILES.case.file"]["headers"]["properties"]
    assert {"x-agreement", "x-lawful-basis", "x-purposes", "x-classification", "x-supersedes", "x-dataschema"} <= set(
        headers
    )
    assert (tmp_path / "cps" / "schemas" / "cps" / "ISA-CPS-CASEFILES" / "case.file.json").exists()
    # and the official AsyncAPI parser accepts every document without an error
    assert shutil.which("node"), "Node.js 20+ is needed (make test installs the parser: scripts/ensure-node.sh)"
    done = subprocess.run(
        ["node", str(PROJECT_ROOT / "tests" / "asyncapi" / "parse.mjs"), *map(str, docs)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    results = [json.loads(line) for line in done.stdout.splitlines()]
    assert done.returncode == 0, done.stdout + done.stderr
    assert len(results) == len(docs) and all(r["ok"] and r["version"] == "3.0.0" for r in results)
    print(f"\nAsyncAPI parser: {len(results)} documents, 0 errors")


def test_contract_export_refuses_an_unknown_recipient_and_a_missing_one(tmp_path: Path, capsys) -> None:
    assert cli.main(["contract", "export", "nobody", "--out", str(tmp_path)]) == 2
    assert "no recipient 'nobody'" in capsys.readouterr().err
    assert cli.main(["contract", "export", "--out", str(tmp_path)]) == 2


# ---------------------------------------------------------------- contract diff


def test_contract_diff_reports_breaking_changes_apart_from_additive_ones(tmp_path: Path, capsys) -> None:
    # Given the demo agreements, and a copy where the school loses the child's date of birth but gains the
    # incident reference, and the CPS agreement is gone
    old, new = PROJECT_ROOT / "deploy" / "agreements", tmp_path / "new"
    shutil.copytree(old, new)
    school = yaml.safe_load((new / "ISA-ENCOMPASS-13-SCHOOLS.yaml").read_text())
    fields = school["fields"]["safeguarding.notification"]
    fields.remove("data.persons[].birth_date")
    fields.append("data.incident.ref")
    (new / "ISA-ENCOMPASS-13-SCHOOLS.yaml").write_text(yaml.safe_dump(school))
    (new / "ISA-CPS-CASEFILES.yaml").unlink()
    # When the contracts are compared
    code = cli.main(["contract", "diff", str(old), str(new), "--json"])
    changes = json.loads(capsys.readouterr().out)
    # Then the removed field and the removed view are breaking, the added field additive, per recipient
    got = {(c["recipient"], c["kind"], c["what"], c["path"]) for c in changes}
    assert ("school-100001", "breaking", "field_removed", "data.persons[].birth_date") in got
    assert ("school-100001", "additive", "field_added_required", "data.incident.ref") in got
    assert ("cps", "breaking", "view_removed", "") in got
    assert {c["recipient"] for c in changes} == {"school-100001", "cps"}
    assert code == 1
    # and the same agreements give no change and exit 0
    assert cli.main(["contract", "diff", str(old), str(old)]) == 0
    assert capsys.readouterr().out == "no contract change\n"


def test_contract_diff_sees_a_type_change_and_a_field_becoming_required() -> None:
    view = contract.View("r", "A", "crime.report", {"properties": {"data": {"properties": {"n": {"type": "string"}}}}})
    changed = contract.View(
        "r",
        "A",
        "crime.report",
        {"properties": {"data": {"properties": {"n": {"type": "integer"}}, "required": ["n"]}}},
    )
    whats = {(c.kind, c.what, c.path) for c in contract.diff([view], [changed])}
    assert whats == {("breaking", "type_changed", "data.n"), ("breaking", "became_required", "data.n")}


@pytest.mark.parametrize("allowed", [(), ("data",), ("data.persons[].name.family", "handling.conditions.text")])
def test_a_view_is_derived_for_any_field_list(allowed) -> None:
    schema = contract.view_schema("r", "A", "crime.report", allowed, COMMON)
    jsonschema.Draft202012Validator.check_schema(schema)


def test_recipients_with_outbound_formats_get_deliveries_valid_against_their_rendered_contract(tmp_path: Path) -> None:
    # Given the demo configuration with the CPS on its XML format (with an XSD), Leeds MASH on its CSV format
    # and the school on the Encompass notice
    doc = yaml.safe_load((PROJECT_ROOT / "deploy" / "config" / "recipients.yaml").read_text())
    formats = {"cps": "cps-xml", "la-mash-leeds": "mash-csv", "school-100001": "encompass"}
    for recipient in doc["recipients"]:
        recipient["format"] = formats.get(recipient["id"], recipient.get("format", "common-json"))
    (tmp_path / "recipients.yaml").write_text(yaml.safe_dump(doc))
    registry = load_registry(load_settings(environ={}).with_overrides(recipients_file=tmp_path / "recipients.yaml"))
    # When every example record is routed and each recipient's contract exported
    delivered, problems = invalid_deliveries(registry, EXAMPLE_RECORDS)
    for recipient in formats:
        contract.export(contract.contract(registry, SETTINGS, recipient, COMMON, formats_of(registry)), tmp_path / "c")
    # Then each rendered delivery is valid against the schema it names (JSON Schema of the rendered body)
    assert problems == []
    exported = {v.id for r in formats for v in contract.views_of(registry, r, COMMON, formats_of(registry))}
    named = {schema for _, target, schema in delivered if target in formats}
    assert named <= exported and {target for _, target, _ in delivered if target in formats} == set(formats)
    assert all(any(f".{fmt}.json" in schema for fmt in formats.values()) for schema in named)
    # and the CPS's XML against the XSD its contract ships
    xsd_path = tmp_path / "c" / "cps" / "schemas" / "xsd" / "cps-case-file.xsd"
    xsd = etree.XMLSchema(etree.parse(str(xsd_path)))
    ctx = Context.build(SETTINGS, registry, VALIDATOR, renderers=load_renderers(registry, SETTINGS), clock=lambda: NOW)
    case = next(r for r in EXAMPLE_RECORDS if r["type"] == "case.file")
    plan = route(Message(orjson.dumps(case), "application/json", case["id"]), ctx)
    [out] = [o for o in plan.outputs if o.target == "cps"]
    assert xsd.validate(etree.fromstring(out.body)), xsd.error_log
    cps = yaml.safe_load((tmp_path / "c" / "cps" / "asyncapi.yaml").read_text())
    assert cps["components"]["messages"]["ISA-CPS-CASEFILES.case.file"]["contentType"] == "application/xml"

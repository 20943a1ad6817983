"""The open-data crime map is anonymous: it receives only the data.police.uk street layout, under an opaque
Crime ID, and a configuration that would send a public recipient anything else does not load."""

from __future__ import annotations

import copy
import csv
import io
import json
import re
import shutil
import sys
from pathlib import Path
from random import Random

import orjson
import pytest
import yaml

from adapters.crime_map_csv.outbound import CATEGORY_LABELS, COLUMNS, OUTCOME_LABELS, map_points
from adapters.registry import adapter_class
from broker import router
from broker.audit.index import AuditIndex
from broker.cli import main as cli
from broker.config import PROJECT_ROOT, ConfigError, Registry, load_settings
from broker.errors import ExitCode
from broker.identifiers import force_name
from broker.message import Message
from broker.ops import logs
from broker.runner import build_context

FIXTURE = PROJECT_ROOT / "adapters" / "crime_map_csv" / "fixtures" / "exact-point-with-victim.json"
NOW_DAY = "2026-12-01T10:00:00+00:00"


@pytest.fixture(autouse=True)
def _logs_back_to_stderr():
    """cli.main() points the logs at this test's captured stream: point them back when it is closed."""
    yield
    logs.configure("info", stream=sys.__stderr__)


def exact_point_record() -> dict:
    """A crime at a victim's exact point, with a known reference, correlation id, handling text and a name."""
    record = json.loads(FIXTURE.read_text())
    record["correlation_id"] = "case-CR-48-2026-003311"
    record["handling"] = {
        "scheme": "3x5x2",
        "source": "1",
        "intelligence": "B",
        "code": "P",
        "conditions": {"text": "Victim Jane Example, 14 Example Row, is a protected witness"},
    }
    return record


# every string that would identify the crime, the victim or the force's reference
SECRETS = (
    "48-niche-CR-2026-003311",
    "CR-48-2026-003311",
    "003311",
    "51.51401",
    "-0.08903",
    "51.514010",
    "-0.089030",
    "Jane",
    "Example",
    "1990-01-01",
    "2026-11-30T23",
    "2026-11-03",
    "08:05",
    "case-CR-48",
    "protected witness",
    "Outside 12",
    "PERSONAL",
    "niche-rms",
)


def every_byte(outgoing: router.Outgoing) -> bytes:
    """Body, message id, correlation id, content type and headers of one delivery, as one byte string."""
    return b"\n".join(
        [
            outgoing.body,
            (outgoing.message_id or "").encode(),
            (outgoing.correlation_id or "").encode(),
            outgoing.content_type.encode(),
            orjson.dumps(outgoing.headers),
        ]
    )


def crime_map_delivery(plan: router.Plan) -> router.Outgoing:
    [out] = [o for o in plan.outputs if o.target == "crime-map"]
    return out


def route(record: dict, settings) -> router.Plan:
    ctx = build_context(settings)
    return router.route(
        Message(orjson.dumps(record), "application/json", record["id"], correlation_id=record.get("correlation_id")),
        ctx,
    )


def test_the_crime_map_receives_only_the_street_layout_with_nothing_that_names_the_crime(settings):
    # Given a crime at an exact point with a known reference, a named victim and handling text
    record = exact_point_record()
    # When it is routed
    plan = route(record, settings)
    # Then the crime map gets one data.police.uk street row
    out = crime_map_delivery(plan)
    header, row = out.body.decode().splitlines()
    assert header.split(",") == COLUMNS and out.content_type.startswith("text/csv")
    cells = dict(zip(COLUMNS, row.split(","), strict=True))
    assert cells["Month"] == "2026-11" and cells["Reported by"] == "City of London Police"
    assert cells["Location"].startswith("On or near ") and cells["LSOA code"].startswith("E01")
    assert len(cells["Crime ID"]) == 64 and cells["Crime type"] == "Theft from the person"
    # and no byte of the delivery (body, properties, headers) holds the point, the reference or the victim
    delivered = every_byte(out)
    assert [s for s in SECRETS if s.encode() in delivered] == []
    assert out.correlation_id is None and "x-handling" not in out.headers and "x-origin-agency" not in out.headers


def test_the_crime_id_is_a_keyed_hash_stable_for_a_crime_and_its_corrections(settings, tmp_path):
    record = exact_point_record()
    correction = copy.deepcopy(record) | {
        "id": record["id"] + "-c1",
        "supersedes": {"id": record["id"], "kind": "correction"},
    }
    correction["data"]["outcome"] = "charged"
    # the original is decided and audited first (a correction is never routed blind)
    index = AuditIndex(tmp_path / "audit.index.sqlite")
    ctx = build_context(settings)
    ctx.original = index.original
    plans = []
    for seq, r in enumerate((record, correction)):
        plan = router.route(Message(orjson.dumps(r), "application/json", r["id"]), ctx)
        index.add([dict(e, seq=seq * 100 + i + 1) for i, e in enumerate(plan.audit_entries)])
        index.commit()
        plans.append(plan)
    index.close()
    first, second = (crime_map_delivery(p) for p in plans)
    crime_id = first.body.decode().splitlines()[1].split(",")[0]
    # Then the correction repeats the Crime ID, is marked as one, and names neither record id
    assert second.body.decode().splitlines()[1].split(",")[0] == crime_id
    assert second.headers["x-supersedes-kind"] == "correction" and "x-supersedes" not in second.headers
    assert record["id"].encode() not in every_byte(second)
    # and another deployment key gives another Crime ID: without the key the id cannot be recomputed
    other = crime_map_delivery(route(record, settings.with_overrides(open_data_key="another-secret")))
    assert other.body.decode().splitlines()[1].split(",")[0] != crime_id


def test_without_an_open_data_key_outside_development_the_worker_does_not_start(settings):
    production = settings.with_overrides(development=False, require_publisher=True)
    with pytest.raises(ConfigError) as refused:
        build_context(production)
    assert refused.value.file == "INTERCHANGE_OPEN_DATA_KEY"


# ---------------------------------------------------------------- configuration refuses a public leak


def _config_with(tmp_path: Path, change) -> tuple[Path, Path]:
    """A copy of deploy/ recipients and agreements, with `change(recipients_doc)` applied."""
    base = load_settings(environ={})
    doc = yaml.safe_load(base.recipients_file.read_text())
    change(doc)
    recipients = tmp_path / "recipients.yaml"
    recipients.write_text(yaml.safe_dump(doc))
    agreements = tmp_path / "agreements"
    shutil.copytree(base.agreements_dir, agreements, ignore=shutil.ignore_patterns("tests"))
    return recipients, agreements


def _crime_map(doc: dict) -> dict:
    return next(r for r in doc["recipients"] if r["id"] == "crime-map")


@pytest.mark.parametrize("fmt", [None, "common-json", "mash-csv"])
def test_a_public_recipient_fed_through_a_format_that_does_not_anonymise_is_refused(tmp_path, fmt):
    # Given the crime map, public, with no format (common JSON) or a non-anonymising one
    def change(doc):
        entry = _crime_map(doc)
        entry.pop("format", None)
        if fmt:
            entry["format"] = fmt

    recipients, agreements = _config_with(tmp_path, change)
    settings = load_settings(environ={}).with_overrides(recipients_file=recipients, agreements_dir=agreements)
    # When the configuration loads / Then it is refused, naming the file, the key and the reason
    with pytest.raises(ConfigError) as refused:
        Registry.load(settings, adapter_class)
    index = [r["id"] for r in yaml.safe_load(recipients.read_text())["recipients"]].index("crime-map")
    assert refused.value.file == str(recipients) and refused.value.key == f"recipients.{index}.format"
    assert "public" in refused.value.reason and "ISA-CRIME-MAP" in refused.value.reason


def test_the_command_line_exits_3_on_a_public_recipient_without_an_anonymising_format(tmp_path, capsys):
    recipients, agreements = _config_with(tmp_path, lambda doc: _crime_map(doc).pop("format"))
    settings_file = tmp_path / "interchange.yaml"
    doc = yaml.safe_load((PROJECT_ROOT / "deploy" / "interchange.yaml").read_text())
    doc["paths"] = {
        "agencies": str(PROJECT_ROOT / "deploy" / "config" / "agencies.yaml"),
        "recipients": str(recipients),
        "agreements": str(agreements),
    }
    settings_file.write_text(yaml.safe_dump(doc))
    code = cli.main(["--config", str(settings_file), "rules", "test"])
    assert code == ExitCode.CONFIG
    assert "is public (open data)" in capsys.readouterr().err


def test_a_public_recipient_whose_agreement_sends_a_type_its_format_cannot_anonymise_is_refused(tmp_path):
    recipients, agreements = _config_with(tmp_path, lambda doc: None)
    path = agreements / "ISA-CRIME-MAP.yaml"
    doc = yaml.safe_load(path.read_text())
    doc["record_types"].append("case.file")
    doc["fields"]["case.file"] = ["data.urn"]
    path.write_text(yaml.safe_dump(doc))
    settings = load_settings(environ={}).with_overrides(recipients_file=recipients, agreements_dir=agreements)
    with pytest.raises(ConfigError) as refused:
        Registry.load(settings, adapter_class)
    assert refused.value.file == str(path) and refused.value.key == "record_types"


def test_the_sample_configuration_marks_the_crime_map_public_with_the_anonymising_renderer(registry):
    crime_map = registry.recipients["crime-map"]
    assert crime_map.public and crime_map.format == "crime-map-csv"


# ---------------------------------------------------------------- generated records: the output's domain

GENERATED = 2_000


def _random_record(rnd: Random, n: int, forces: list[str]) -> dict:
    """A crime report with a random origin, reference, place, category, outcome, victim and handling text."""
    record = exact_point_record()
    agency = rnd.choice(forces)
    reference = f"CR-{agency}-2026-{rnd.randrange(10**6):06d}"
    record.update(
        id=f"{agency}-niche-{reference}-{n}",
        source=f"urn:interchange:{agency}:niche-rms",
        correlation_id=f"case-{reference}-{rnd.randrange(10**4)}",
        origin={"agency": agency, "system": "niche-rms"},
    )
    if rnd.random() < 0.2:
        record["supersedes"] = {"id": f"{agency}-niche-{reference}-{n}-original", "kind": "correction"}
    if rnd.random() < 0.1:
        record["classification"] = {"tier": "OFFICIAL", "sensitive": True, "descriptors": ["PERSONAL"]}
    data = record["data"]
    data["crime_ref"] = reference
    data["category"] = rnd.choice([*CATEGORY_LABELS, "not-a-category"])
    data["outcome"] = rnd.choice([*OUTCOME_LABELS, None])
    if data["outcome"] is None:
        del data["outcome"]
    data["month"] = f"2026-{rnd.randrange(1, 13):02d}"
    near = rnd.random() < 0.8  # near the published points, or far away (Leeds): No Location
    lat = round(rnd.uniform(51.5, 51.53) if near else rnd.uniform(53.7, 53.9), 5)
    lon = round(rnd.uniform(-0.12, -0.07) if near else rnd.uniform(-1.6, -1.4), 5)
    data["locations"][0]["point"] = {"lat": lat, "lon": lon}
    data["locations"][0]["description"] = f"Outside {rnd.randrange(1, 300)} Hidden Street"
    data["summary"] = f"Victim {rnd.choice(['Amara', 'Jakub', 'Siobhan'])} Witheridge reported it"
    data["persons"][0]["name"] = {"given": [rnd.choice(["Amara", "Jakub", "Siobhan"])], "family": "Witheridge"}
    record["handling"]["conditions"]["text"] = f"Protected witness at {rnd.randrange(1, 99)} Hidden Street"
    return record


def _forbidden(record: dict) -> set[str]:
    """Every string of the record that must not reach the crime map (published values excepted)."""
    published = {"type", "category", "outcome", "month", "kind", "specversion"}
    out: set[str] = set()

    def walk(node, key=""):
        if isinstance(node, dict):
            for k, v in node.items():
                walk(v, k)
        elif isinstance(node, list):
            for v in node:
                walk(v, key)
        elif isinstance(node, str) and key not in published and len(node) >= 6:
            out.add(node)

    walk(record)  # the exact point is checked apart: a snapped coordinate may share its leading digits
    return out


def _check_row(row: dict[str, str], record: dict, points: set[tuple[str, ...]]) -> list[str]:
    problems = []
    if row["Crime ID"] and not re.fullmatch(r"[0-9a-f]{64}", row["Crime ID"]):
        problems.append("Crime ID is not 64 hex characters")
    if row["Month"] != record["data"]["month"] or row["Reported by"] != force_name(record["origin"]["agency"]):
        problems.append("month or force")
    place = (row["Latitude"], row["Longitude"], row["Location"], row["LSOA code"], row["LSOA name"])
    point = record["data"]["locations"][0]["point"]
    if (row["Latitude"], row["Longitude"]) == (f"{point['lat']:.6f}", f"{point['lon']:.6f}"):
        problems.append("the exact point was delivered")
    if place not in points and place != ("", "", "No Location", "", ""):
        problems.append(f"place {place} is not a published map point")
    if row["Crime type"] not in CATEGORY_LABELS.values() or row["Context"]:
        problems.append("category or context")
    asb = record["data"]["category"] == "anti-social-behaviour"  # ASB: no Crime ID, no outcome
    if row["Last outcome category"] != ("" if asb else OUTCOME_LABELS.get(record["data"].get("outcome"), "")):
        problems.append("outcome")
    if asb != (row["Crime ID"] == ""):
        problems.append("Crime ID present on ASB or missing on a crime")
    return problems


def test_generated_crime_reports_reach_the_crime_map_only_as_published_values(settings, tmp_path):
    # Given 2,000 generated crime reports (random forces, references, places in and far from the mapped area,
    # categories including an unknown one, victims, handling text, corrections, OFFICIAL-SENSITIVE ones);
    # each correction's original is routed and audited first, into a real index
    rnd = Random(20261201)
    forces = [a.code for a in build_context(settings).registry.agencies.values() if "territorial-forces" in a.groups]
    points = {(f"{p.lat:.6f}", f"{p.lon:.6f}", p.location, p.lsoa_code, p.lsoa_name) for p in map_points()}
    ctx = build_context(settings)
    index = AuditIndex(tmp_path / "audit.index.sqlite")
    ctx.original = index.original
    seq = [0]

    def routed(record: dict) -> router.Plan:
        plan = router.route(
            Message(orjson.dumps(record), "application/json", record["id"], correlation_id=record["correlation_id"]),
            ctx,
        )
        for entry in plan.audit_entries:
            seq[0] += 1
            index.add([dict(entry, seq=seq[0])])
        index.commit()
        return plan

    leaks, delivered, no_location, retractions = [], 0, 0, 0
    for n in range(GENERATED):
        record = _random_record(rnd, n, forces)
        original_row = None
        if record.get("supersedes"):
            original = copy.deepcopy(record) | {
                "id": record["supersedes"]["id"],
                "classification": exact_point_record()["classification"],
            }
            del original["supersedes"]
            original_row = next((o for o in routed(original).outputs if o.target == "crime-map"), None)
        plan = routed(record)
        outs = [o for o in plan.outputs if o.target == "crime-map"]
        expected = not record["classification"].get("sensitive") and record["data"]["category"] in CATEGORY_LABELS
        if outs and outs[0].headers.get("x-notice") == "retraction":
            # a correction today's checks withhold: the row it withdraws, by its Crime ID alone
            retractions += 1
            notice = orjson.loads(outs[0].body)
            withdrawn = list(csv.reader(io.StringIO(original_row.body.decode())))[1][0] if original_row else None
            if expected or original_row is None or notice != {"notice": "retraction", "crime_id": withdrawn}:
                leaks.append(f"{record['id']}: retraction {notice} (expected a row: {expected})")
            leaks += [
                f"{record['id']}: {s!r} in the retraction"
                for s in _forbidden(record)
                if s.encode() in every_byte(outs[0])
            ]
            continue
        if bool(outs) != expected:
            leaks.append(f"{record['id']}: delivered {bool(outs)}, expected {expected}")
            continue
        if not outs:
            continue
        delivered += 1
        # Then every cell is a published value, and no byte of the delivery holds a string of the record
        [header, row] = list(csv.reader(io.StringIO(outs[0].body.decode())))
        cells = dict(zip(header, row, strict=True))
        no_location += cells["Location"] == "No Location"
        leaks += [f"{record['id']}: {p}" for p in _check_row(cells, record, points)]
        delivered_bytes = every_byte(outs[0])
        leaks += [f"{record['id']}: {s!r} delivered" for s in _forbidden(record) if s.encode() in delivered_bytes]
    index.close()
    print(
        f"\nopen data: {GENERATED} records, {delivered} rows to the crime map ({no_location} No Location), "
        f"{retractions} retractions, leaks {len(leaks)}"
    )
    assert leaks[:5] == [] and delivered > GENERATED // 2 and no_location > 0 and retractions > 0


def test_two_identical_asb_rows_keep_distinct_message_ids_and_a_redelivery_keeps_its_own(settings):
    # Given two anti-social behaviour reports of one month at one place (their rows are byte-identical)
    first = exact_point_record() | {"id": "48-niche-ASB-1"}
    second = exact_point_record() | {"id": "48-niche-ASB-2"}
    for record in (first, second):
        record["data"] = dict(record["data"], category="anti-social-behaviour")
    a, b, again = (crime_map_delivery(route(r, settings)) for r in (first, second, first))
    assert a.body == b.body
    # Then the partner can tell them apart, and drop a redelivered copy of the first
    assert a.message_id != b.message_id and again.message_id == a.message_id
    assert len(a.message_id) == 64 and b"ASB-1" not in every_byte(a)


def test_without_an_adapter_lookup_a_public_recipient_is_refused_not_trusted():
    # Given the sample configuration, whose crime map is public and fed by ISA-CRIME-MAP
    settings = load_settings(environ={})
    # When it is loaded without the composition root's adapter lookup / Then nothing vouches for its format
    with pytest.raises(ConfigError) as refused:
        Registry.load(settings)
    assert "crime-map" in refused.value.reason and "no adapter lookup" in refused.value.reason
    # and with the lookup it loads
    assert Registry.load(settings, adapter_class).recipients["crime-map"].public

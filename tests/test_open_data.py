"""The open-data crime map is anonymous: it receives only the data.police.uk street layout, under an opaque
Crime ID, and a configuration that would send a public recipient anything else does not load."""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path

import orjson
import pytest
import yaml

from adapters.crime_map_csv.outbound import COLUMNS
from broker import cli, exchange
from broker.config import PROJECT_ROOT, ConfigError, Registry, load_settings
from broker.exchange import Message
from broker.runner import build_context

FIXTURE = PROJECT_ROOT / "adapters" / "crime_map_csv" / "fixtures" / "exact-point-with-victim.json"
NOW_DAY = "2026-12-01T10:00:00+00:00"


def exact_point_record() -> dict:
    """A crime at a victim's exact point, with a known reference, correlation id, handling text and a name."""
    record = json.loads(FIXTURE.read_text())
    record["correlation_id"] = "case-CR-48-2026-003311"
    record["handling"] = {"scheme": "3x5x2", "source": "1", "intelligence": "B", "code": "P",
                          "conditions": {"text": "Victim Jane Example, 14 Example Row, is a protected witness"}}
    return record


# every string that would identify the crime, the victim or the force's reference
SECRETS = ("48-niche-CR-2026-003311", "CR-48-2026-003311", "003311", "51.51401", "-0.08903", "51.514010",
           "-0.089030", "Jane", "Example", "1990-01-01", "2026-11-30T23", "2026-11-03", "08:05",
           "case-CR-48", "protected witness", "Outside 12", "PERSONAL", "niche-rms")


def every_byte(outgoing: exchange.Outgoing) -> bytes:
    """Body, message id, correlation id, content type and headers of one delivery, as one byte string."""
    return b"\n".join([outgoing.body, (outgoing.message_id or "").encode(), (outgoing.correlation_id or "").encode(),
                       outgoing.content_type.encode(), orjson.dumps(outgoing.headers)])


def crime_map_delivery(plan: exchange.Plan) -> exchange.Outgoing:
    [out] = [o for o in plan.outputs if o.target == "crime-map"]
    return out


def route(record: dict, settings) -> exchange.Plan:
    ctx = build_context(settings)
    return exchange.route(Message(orjson.dumps(record), "application/json", record["id"],
                                  correlation_id=record.get("correlation_id")), ctx)


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


def test_the_crime_id_is_a_keyed_hash_stable_for_a_crime_and_its_corrections(settings):
    record = exact_point_record()
    correction = copy.deepcopy(record) | {"id": record["id"] + "-c1",
                                          "supersedes": {"id": record["id"], "kind": "correction"}}
    correction["data"]["outcome"] = "charged"
    first, second = (crime_map_delivery(route(r, settings)) for r in (record, correction))
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
        Registry.load(settings)
    index = [r["id"] for r in yaml.safe_load(recipients.read_text())["recipients"]].index("crime-map")
    assert refused.value.file == str(recipients) and refused.value.key == f"recipients.{index}.format"
    assert "public" in refused.value.reason and "ISA-CRIME-MAP" in refused.value.reason


def test_the_command_line_exits_3_on_a_public_recipient_without_an_anonymising_format(tmp_path, capsys):
    recipients, agreements = _config_with(tmp_path, lambda doc: _crime_map(doc).pop("format"))
    settings_file = tmp_path / "interchange.yaml"
    doc = yaml.safe_load((PROJECT_ROOT / "deploy" / "interchange.yaml").read_text())
    doc["paths"] = {"agencies": str(PROJECT_ROOT / "deploy" / "config" / "agencies.yaml"),
                    "recipients": str(recipients), "agreements": str(agreements)}
    settings_file.write_text(yaml.safe_dump(doc))
    code = cli.main(["--config", str(settings_file), "rules", "test"])
    assert code == cli.EXIT_CONFIG
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
        Registry.load(settings)
    assert refused.value.file == str(path) and refused.value.key == "record_types"


def test_the_sample_configuration_marks_the_crime_map_public_with_the_anonymising_renderer(registry):
    crime_map = registry.recipients["crime-map"]
    assert crime_map.public and crime_map.format == "crime-map-csv"

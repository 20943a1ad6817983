"""Enquiry agreements (deploy/agreements/enquiry) and the pure decisions: who may ask whom, what comes back."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
import yaml

from broker.config import PROJECT_ROOT, ConfigError, load_agencies
from broker.enquiry import agreements as ea
from broker.enquiry.limits import RateLimiter
from broker.enquiry.model import BAD_SUBJECT, EnquiryRefused, Identity, Subject

AGREEMENTS = PROJECT_ROOT / "deploy" / "agreements"
CASES = sorted((AGREEMENTS / "enquiry" / "tests").glob("*.yaml"))
TODAY = dt.date(2026, 11, 26)


@pytest.fixture(scope="module")
def loaded():
    return ea.load_enquiry_agreements(AGREEMENTS), load_agencies(PROJECT_ROOT / "deploy" / "config" / "agencies.yaml")


@pytest.mark.parametrize("case_file", CASES, ids=[c.stem for c in CASES])
def test_enquiry_agreement_cases_as_data(case_file: Path, loaded) -> None:
    agreements, agencies = loaded
    assert ea.run_case(yaml.safe_load(case_file.read_text()), agreements, agencies) == []


def test_an_enquiry_agreement_breaking_its_schema_is_refused_with_file_and_key(tmp_path: Path) -> None:
    (tmp_path / "enquiry").mkdir()
    doc = yaml.safe_load((AGREEMENTS / "enquiry" / "ISA-ENQ-FORCE-13.yaml").read_text())
    doc["purposes"]["idle-curiosity"] = ["constable"]
    (tmp_path / "enquiry" / "bad.yaml").write_text(yaml.safe_dump(doc))
    with pytest.raises(ConfigError) as error:
        ea.load_enquiry_agreements(tmp_path)
    assert "bad.yaml" in str(error.value) and "idle-curiosity" in str(error.value)


def test_the_sharing_agreement_loader_does_not_read_enquiry_agreements() -> None:
    from broker.config import load_agreements

    assert all(not a.id.startswith("ISA-ENQ") for a in load_agreements(AGREEMENTS))


def test_step_two_returns_only_the_agreements_fields(loaded) -> None:
    agreements, _ = loaded
    agreement = next(a for a in agreements if a.responder == "13")
    record = {
        "id": "13-c-1",
        "type": "custody.record",
        "origin": {"agency": "13"},
        "data": {
            "custody_number": "13/1",
            "arrest": {"time": "2026-11-01T10:00:00Z", "reason": "theft", "location": "l1"},
            "persons": [
                {
                    "id": "p1",
                    "name": {"family": "Smith", "given": ["Ann"]},
                    "birth_date": "1980-01-31",
                    "ethnicity": {"self_defined": "W1"},
                }
            ],
        },
    }
    view, disclosed = ea.project_details(record, agreement)
    assert view["data"]["persons"] == [{"name": {"family": "Smith", "given": ["Ann"]}, "birth_date": "1980-01-31"}]
    assert "location" not in view["data"]["arrest"]
    assert "data.persons[].ethnicity.self_defined" not in disclosed


def test_an_officer_over_the_rate_limit_is_refused_until_the_window_passes() -> None:
    limiter, limits = RateLimiter(), [("ISA-X", 2, 60)]
    assert limiter.admit("o1", limits, 0.0) is None
    assert limiter.admit("o1", limits, 1.0) is None
    assert limiter.admit("o1", limits, 2.0) == "ISA-X"
    assert limiter.admit("o2", limits, 2.0) is None  # another officer has their own count
    assert limiter.admit("o1", limits, 60.5) is None


def test_names_match_after_nfc_and_case_folding() -> None:
    composed = Subject(family="Zoë", given="ANN Marie", birth_date="1980-01-31").lookup_keys()
    decomposed = Subject(family="ZOE\u0308", given="ann", birth_date="1980-01-31").lookup_keys()
    assert composed == decomposed


def test_identifiers_are_normalised_before_lookup() -> None:
    assert Subject(pnc="01/171310W").lookup_keys() == Subject(pnc="2001/0171310W").lookup_keys()
    assert Subject(postcode="sw1a1aa", house="10 Downing Street").lookup_keys() == [("address", "SW1A 1AA|10")]


def test_an_incomplete_name_subject_is_refused() -> None:
    with pytest.raises(EnquiryRefused) as refused:
        Subject.from_doc({"family": "Smith", "given": "Ann"})
    assert refused.value.reason == BAD_SUBJECT


def test_a_subjects_audit_key_equals_the_disclosure_logs_key() -> None:
    from broker.audit.entries import subject_keys

    record = {
        "data": {
            "persons": [
                {
                    "id": "p1",
                    "name": {"family": "Smith", "given": ["Ann"]},
                    "birth_date": "1980-01-31",
                    "identifiers": [{"scheme": "pnc", "value": "2001/0171310W"}],
                }
            ]
        }
    }
    keys = set(subject_keys(record))
    assert set(Subject(pnc="01/171310W").audit_keys()) <= keys
    assert set(Subject(family="Smith", given="Ann", birth_date="1980-01-31").audit_keys()) <= keys


def test_identity_actor_names_officer_force_and_role() -> None:
    assert Identity("PC123", "01", "constable").actor()["role"] == "constable"


def test_an_enquiry_that_disclosed_a_held_record_is_kept_out_of_the_subject_report_until_released() -> None:
    from broker.audit import reports as disclosures
    from broker.enquiry.consult import consultation

    officer = Identity("PC1", "01", "constable")
    entry = consultation(
        officer,
        "e1",
        "details",
        "preserve-order",
        "why",
        ["k"],
        {"13": "answered"},
        ["ISA-ENQ-FORCE-13"],
        ["basis"],
        records=[
            {
                "origin": "13",
                "record_id": "13-R-1",
                "record_type": "custody.record",
                "fields_disclosed": ["data.custody_number"],
            }
        ],
    )
    assert disclosures.subject_report([entry], {"13-R-1": ["hold-1"]}) == []
    [held] = disclosures.subject_report([entry], {"13-R-1": ["hold-1"]}, include_held=True)
    assert held["held"] == "hold-1" and held["record_id"] == "13/13-R-1"
    [shown] = disclosures.subject_report([entry], {})
    assert (shown["recipient"], shown["fields_disclosed"]) == ("force-01", "data.custody_number")


def test_the_index_connection_comes_from_settings_file_then_environment(tmp_path: Path) -> None:
    from broker.config import load_settings

    settings_file = tmp_path / "interchange.yaml"
    settings_file.write_text("enquiry:\n  dsn: postgresql://db.force13.example/enquiry\n")
    assert load_settings(settings_file, environ={}).enquiry_dsn == "postgresql://db.force13.example/enquiry"
    assert (
        load_settings(settings_file, environ={"INTERCHANGE_ENQUIRY_DSN": "postgresql:///x"}).enquiry_dsn
        == "postgresql:///x"
    )


def test_an_unreachable_index_is_a_configuration_error_naming_the_setting(capsys) -> None:
    import sys

    from broker.cli.main import main
    from broker.ops import logs

    try:
        assert main(["enquiry-index", "13", "/dev/null", "--dsn", "postgresql://nobody@127.0.0.1:1/none"]) == 3
    finally:
        logs.configure("info", stream=sys.__stderr__)  # main() logs to the captured stream, closed after the test
    assert "enquiry.dsn" in capsys.readouterr().err


def test_each_forces_vhost_and_no_other_holds_an_enquiry_queue_in_the_topology(registry) -> None:
    from broker import topology
    from broker.config import load_settings
    from broker.ops import provision

    definitions = topology.definitions("interchange", provision.recipient_vhosts(load_settings(environ={}), registry))
    holders = {q["vhost"] for q in definitions["queues"] if q["name"] == topology.ENQUIRY_QUEUE}
    assert holders == {f"interchange.{r}" for r in registry.recipients if r.startswith("force-")}

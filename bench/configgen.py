"""Write the benchmark's recipients and agreements under bench/config/ (checked in; rerun to regenerate).

    python -m bench.configgen

8 recipients and 24 agreements.  Each of the three benchmark sources (court results from HMCTS through
cjse-spi, street crime from force 48 through police-uk-csv, crime reports from force 53 through
fixed-width) reaches 4 recipients through 4 agreements with different field allow-lists; one more
agreement per source is suspended or conditional so every record also gets a withholding decision, and
the rest cover record types or providers the benchmark does not send (they still cost a look-up).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

HERE = Path(__file__).resolve().parent / "config"

RECIPIENTS = [
    ("bench-cps", "Benchmark prosecutor", "prosecutor"),
    ("bench-force-01", "Benchmark force 01", "police"),
    ("bench-force-48", "Benchmark force 48", "police"),
    ("bench-force-53", "Benchmark force 53", "police"),
    ("bench-probation", "Benchmark probation service", "probation"),
    ("bench-la-mash", "Benchmark safeguarding hub", "local-authority"),
    ("bench-victims", "Benchmark victim service", "victim-service"),
    ("bench-analytics", "Benchmark crime analysis unit", "police"),
]

COURT_FULL = [
    "data.urn",
    "data.asn",
    "data.court",
    "data.hearing",
    "data.defendant",
    "data.offences",
    "data.persons",
    "data.locations",
    "data.links",
]
COURT_OUTCOME = [
    "data.urn",
    "data.court",
    "data.hearing",
    "data.offences[].cjs_code",
    "data.offences[].verdict",
    "data.offences[].results",
]
CRIME_FULL = [
    "data.crime_ref",
    "data.category",
    "data.recorded",
    "data.month",
    "data.outcome",
    "data.offences",
    "data.persons",
    "data.locations",
    "data.events",
    "data.links",
]
CRIME_NO_PERSONS = ["data.crime_ref", "data.category", "data.month", "data.outcome", "data.locations", "data.events"]
CRIME_STATS = ["data.category", "data.month", "data.outcome", "data.locations[].area"]

# (id, providers, recipient, record type, fields, extra)
AGREEMENTS: list[tuple[str, list[str], str, str, list[str], dict[str, Any]]] = [
    # court results from HMCTS (cjse-spi): 4 deliveries + 1 suspended
    ("BENCH-COURT-CPS", ["hmcts"], "bench-cps", "court.result", COURT_FULL, {}),
    (
        "BENCH-COURT-F01",
        ["hmcts"],
        "bench-force-01",
        "court.result",
        COURT_FULL,
        {"conditions": [{"name": "urn_of_force_01", "prefix": {"path": "data.urn", "value": "01"}}]},
    ),
    ("BENCH-COURT-PROBATION", ["hmcts"], "bench-probation", "court.result", COURT_FULL, {}),
    ("BENCH-COURT-ANALYTICS", ["hmcts"], "bench-analytics", "court.result", COURT_OUTCOME, {}),
    ("BENCH-COURT-VICTIMS", ["hmcts"], "bench-victims", "court.result", COURT_OUTCOME, {"status": "suspended"}),
    # street crime from force 48 (police-uk-csv): 4 deliveries + 1 condition not met
    ("BENCH-STREET-F48", ["48"], "bench-force-48", "crime.report", CRIME_FULL, {}),
    ("BENCH-STREET-F01", ["48"], "bench-force-01", "crime.report", CRIME_NO_PERSONS, {}),
    ("BENCH-STREET-MASH", ["48"], "bench-la-mash", "crime.report", CRIME_NO_PERSONS, {}),
    ("BENCH-STREET-ANALYTICS", ["48"], "bench-analytics", "crime.report", CRIME_STATS, {}),
    (
        "BENCH-STREET-VICTIMS",
        ["48"],
        "bench-victims",
        "crime.report",
        CRIME_FULL,
        {"conditions": [{"name": "has_victim", "exists": "data.persons"}]},
    ),
    # crime reports from force 53 (fixed-width): 4 deliveries + 1 expired
    ("BENCH-FW-F53", ["53"], "bench-force-53", "crime.report", CRIME_FULL, {}),
    ("BENCH-FW-CPS", ["53"], "bench-cps", "crime.report", CRIME_FULL, {}),
    ("BENCH-FW-VICTIMS", ["53"], "bench-victims", "crime.report", CRIME_FULL, {}),
    ("BENCH-FW-ANALYTICS", ["53"], "bench-analytics", "crime.report", CRIME_STATS, {}),
    (
        "BENCH-FW-MASH",
        ["53"],
        "bench-la-mash",
        "crime.report",
        CRIME_FULL,
        {"valid_from": "2020-01-01", "valid_until": "2021-01-01", "review_by": "2020-06-01"},
    ),
    # record types and providers the benchmark does not send
    ("BENCH-CASEFILE-CPS", ["group:territorial-forces"], "bench-cps", "case.file", ["data.urn", "data.charges"], {}),
    (
        "BENCH-CUSTODY-MASH",
        ["group:territorial-forces"],
        "bench-la-mash",
        "custody.record",
        ["data.custody_number", "data.arrest"],
        {},
    ),
    ("BENCH-CUSTODY-F01", ["13"], "bench-force-01", "custody.record", ["data.custody_number"], {}),
    (
        "BENCH-VICTIM-REF",
        ["group:territorial-forces"],
        "bench-victims",
        "victim.referral",
        ["data.crime_ref", "data.victim", "data.consent"],
        {},
    ),
    (
        "BENCH-SAFEGUARDING",
        ["group:territorial-forces"],
        "bench-la-mash",
        "safeguarding.notification",
        ["data.scheme", "data.incident", "data.children"],
        {},
    ),
    (
        "BENCH-INTEL-F01",
        ["group:territorial-forces"],
        "bench-force-01",
        "intelligence.report",
        ["data.intel_ref", "data.summary"],
        {},
    ),
    (
        "BENCH-INTEL-F48",
        ["group:territorial-forces"],
        "bench-force-48",
        "intelligence.report",
        ["data.intel_ref", "data.summary"],
        {},
    ),
    ("BENCH-CRIME-13", ["13"], "bench-analytics", "crime.report", CRIME_STATS, {}),
    ("BENCH-CRIME-01", ["01"], "bench-force-48", "crime.report", CRIME_NO_PERSONS, {}),
]


def agreement(
    agreement_id: str, providers: list[str], recipient: str, record_type: str, fields: list[str], extra: dict[str, Any]
) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "id": agreement_id,
        "title": f"Benchmark agreement {agreement_id}",
        "controller": "Benchmark controller",
        "providers": providers,
        "recipient": recipient,
        "record_types": [record_type],
        "purposes": ["benchmark"],
        "lawful_basis": "benchmark only (synthetic data)",
        "max_classification": "OFFICIAL-SENSITIVE",
        "fields": {record_type: fields},
        "valid_from": "2024-01-01",
        "valid_until": "2099-12-31",
        "review_by": "2098-12-31",
        "status": "active",
    }
    doc.update(extra)
    return doc


def main() -> None:
    recipients = [
        {"id": rid, "name": name, "class": cls, "max_classification": "OFFICIAL-SENSITIVE"}
        for rid, name, cls in RECIPIENTS
    ]
    (HERE / "agreements").mkdir(parents=True, exist_ok=True)
    header = "# Generated by `python -m bench.configgen`: benchmark recipients (synthetic).\n"
    (HERE / "recipients.yaml").write_text(header + yaml.safe_dump({"recipients": recipients}, sort_keys=False))
    for old in (HERE / "agreements").glob("*.yaml"):
        old.unlink()
    for spec in AGREEMENTS:
        doc = agreement(*spec)
        (HERE / "agreements" / f"{doc['id']}.yaml").write_text(
            "# Generated by `python -m bench.configgen` (synthetic benchmark agreement).\n"
            + yaml.safe_dump(doc, sort_keys=False)
        )


if __name__ == "__main__":
    main()

"""NIEM NIBRS 4.2 incident report XML -> `crime.report` records, one per `nibrs:Report`.

Identity is kept apart from role: each `nc:Person` becomes a person (its NIEM `s:id` is the entity id);
`j:Victim`, `j:Subject` and `j:Arrestee` roles and the NIEM associations become typed links.  Items and
substances become objects, `nc:Location` a location, offenses events (and offences when the mapping
knows the matching CJS code).  See README.md.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from lxml import etree

from adapters.base import AdapterError, InboundAdapter, Result, envelope, make_id, number, problem, utc
from adapters.mapping import Mapping
from adapters.xmlsafe import Limits, iterparse
from broker.errors import FieldError

NS = {
    "nibrs": "http://fbi.gov/cjis/nibrs/4.2",
    "cjis": "http://fbi.gov/cjis/1.0",
    "j": "http://release.niem.gov/niem/domains/jxdm/5.2/",
    "nc": "http://release.niem.gov/niem/niem-core/3.0/",
    "s": "http://release.niem.gov/niem/structures/3.0/",
}
S_ID, S_REF = f"{{{NS['s']}}}id", f"{{{NS['s']}}}ref"
_SAFE_ID = re.compile(r"[^A-Za-z0-9._:-]")


def _x(expression: str) -> etree.XPath:
    return etree.XPath(expression, namespaces=NS, smart_strings=False)


INCIDENT_ID = _x("string(nc:Incident/nc:ActivityIdentification/nc:IdentificationID)")
INCIDENT_DATETIME = _x("string(nc:Incident/nc:ActivityDate/nc:DateTime)")
INCIDENT_DATE = _x("string(nc:Incident/nc:ActivityDate/nc:Date)")
CLEARANCE = _x("string(nc:Incident/j:IncidentAugmentation/j:IncidentExceptionalClearanceCode)")
ACTION = _x("string(nibrs:ReportHeader/nibrs:ReportActionCategoryCode)")
OFFENSES = _x("j:Offense")
UCR_CODE = _x("string(nibrs:OffenseUCRCode)")
ATTEMPTED = _x("string(j:OffenseAttemptedIndicator)")
LOCATIONS = _x("nc:Location")
LOCATION_TYPE = _x("string(nibrs:LocationCategoryCode)")
ITEMS = _x("nc:Item|nc:Substance")
ITEM_STATUS = _x("string(nc:ItemStatus/cjis:ItemStatusCode)")
ITEM_VALUE = _x("string(nc:ItemValue/nc:ItemValueAmount/nc:Amount)")
ITEM_CATEGORY = _x("string(j:ItemCategoryNIBRSPropertyCategoryCode)")
ITEM_QUANTITY = _x("string(nc:ItemQuantity)")
DRUG_TYPE = _x("string(j:DrugCategoryCode)")
DRUG_QUANTITY = _x("string(nc:SubstanceQuantityMeasure/nc:MeasureDecimalValue)")
DRUG_UNIT = _x("string(nc:SubstanceQuantityMeasure/j:SubstanceUnitCode)")
PERSONS = _x("nc:Person")
AGE_VALUE = _x("string(nc:PersonAgeMeasure/nc:MeasureIntegerValue)")
AGE_TEXT = _x("string(nc:PersonAgeMeasure/nc:MeasureValueText)")
AGE_MAX = _x("string(nc:PersonAgeMeasure/nc:MeasureIntegerRange/nc:RangeMaximumIntegerValue)")
SEX = _x("string(j:PersonSexCode)")
RACE = _x("string(j:PersonRaceNDExCode)")
ROLES = _x("j:Victim|j:Subject|j:Arrestee")
ROLE_PERSON = _x("string(nc:RoleOfPerson/@s:ref)")
OFFENSE_LOCATION = _x("j:OffenseLocationAssociation")
OFFENSE_VICTIM = _x("j:OffenseVictimAssociation")
SUBJECT_VICTIM = _x("j:SubjectVictimAssociation")
REF_OFFENSE = _x("string(j:Offense/@s:ref)")
REF_LOCATION = _x("string(nc:Location/@s:ref)")
REF_VICTIM = _x("string(j:Victim/@s:ref)")
REF_SUBJECT = _x("string(j:Subject/@s:ref)")
RELATIONSHIP = _x("string(nibrs:VictimToSubjectRelationshipCode)")

REPORT = f"{{{NS['nibrs']}}}Report"
ROOTS = (f"{{{NS['nibrs']}}}Submission",)
MESSAGE_TIME = f"{{{NS['cjis']}}}MessageDateTime"
ROLE_LINK = {"Victim": "victim-of", "Subject": "suspect-in", "Arrestee": "arrested-in"}


class NibrsIncidentAdapter(InboundAdapter):
    name = "niem-nibrs"
    description = (
        "NIEM NIBRS 4.2 Group A incident report XML -> crime.report with persons, roles, items, location"
    )
    folder = Path(__file__).resolve().parent
    # A 32 MB submission holds about 550,000 elements (60 bytes each); a flood of tiny elements is
    # stopped after 100,000 by the density floor instead of after 2 million.
    limits = Limits(max_bytes=32 * 1024 * 1024, max_elements=1_000_000, min_bytes_per_element=16)

    def _translate(self, stream: IO[bytes], mapping: Mapping) -> Iterator[Result]:
        sent: str | None = None
        reports = 0
        for element in iterparse(stream, (REPORT, MESSAGE_TIME), self.limits, roots=ROOTS):
            if element.tag == MESSAGE_TIME:
                sent = utc(element.text or "")
                continue
            reports += 1
            problems: list[FieldError] = []
            record = _report(element, sent, mapping, problems)
            if problems:
                yield AdapterError.of(problems, location=f"//nibrs:Report[{reports}]", record_id=record["id"])
            else:
                yield record
        if not reports:
            yield AdapterError(
                "xml_no_records",
                "the submission holds no nibrs:Report (expected a nibrs:Submission with reports)",
                location="//nibrs:Report[1]",
            )


def _eid(element: etree._Element, fallback: str) -> str:
    return _SAFE_ID.sub("_", element.get(S_ID) or fallback)[:64]


def _report(
    report: etree._Element, sent: str | None, mapping: Mapping, problems: list[FieldError]
) -> dict[str, Any]:
    number = INCIDENT_ID(report).strip()
    if not number:
        problems.append(
            problem("data.crime_ref", "incident_number_missing", "nc:ActivityIdentification is empty")
        )
    when = utc(INCIDENT_DATETIME(report)) or utc(INCIDENT_DATE(report))
    if when is None:
        problems.append(problem("data.recorded", "incident_date_missing", "no usable nc:ActivityDate"))
    events, offences, category = _offenses(report, mapping, problems)
    events.insert(0, {"id": "incident", "kind": "incident", "start": when})
    persons, role_person = _persons(report, mapping)
    links = _links(report, role_person, mapping)
    data = {
        "crime_ref": number,
        "category": category,
        "recorded": when,
        "month": (when or "")[:7],
        "outcome": mapping.code("clearance", CLEARANCE(report).strip()),
        "persons": persons,
        "objects": _objects(report, mapping),
        "locations": _locations(report, mapping),
        "events": events,
        "offences": offences,
        "links": links,
    }
    record_id = make_id(mapping.agency, mapping.system, "incident", number or "unnumbered")
    subjects = [p["id"] for p in persons]
    return envelope(
        mapping,
        "crime.report",
        record_id,
        sent or when or "1970-01-01T00:00:00Z",
        data,
        correlation_id=f"incident-{number}" if number else None,
        subjects=subjects,
    )


def _offenses(
    report: etree._Element, mapping: Mapping, problems: list[FieldError]
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], str | None]:
    events: list[dict[str, Any]] = []
    offences: list[dict[str, Any]] = []
    category: str | None = None
    for index, offense in enumerate(OFFENSES(report)):
        ucr = UCR_CODE(offense).strip()
        found = mapping.code("ucr_category", ucr)
        if found is None:
            problems.append(
                problem(
                    f"data.events[{index + 1}]",
                    "offense_code_unknown",
                    f"NIBRS offense code {ucr!r} is not in the mapping's ucr_category table",
                )
            )
        category = category or found
        attempted = ATTEMPTED(offense).strip() == "true"
        events.append(
            {
                "id": _eid(offense, f"offense{index + 1}"),
                "kind": "offence",
                "description": f"NIBRS {ucr} {mapping.code('ucr_label', ucr) or ''}".strip()
                + (" (attempted)" if attempted else ""),
            }
        )
        if cjs := mapping.code("ucr_cjs", ucr):
            offences.append(
                {
                    "id": f"o{len(offences) + 1}",
                    "sequence": len(offences) + 1,
                    "cjs_code": cjs + ("A" if attempted and len(cjs) == 7 else ""),
                }
            )
    if not events:
        problems.append(problem("data.category", "offense_missing", "the report has no j:Offense"))
    return events, offences, category


def _persons(
    report: etree._Element, mapping: Mapping
) -> tuple[list[dict[str, Any]], dict[str, tuple[str, str]]]:
    placeholder = mapping.get("unnamed_person") or {"given": [], "family": "Not known"}
    persons = []
    for index, element in enumerate(PERSONS(report)):
        race = mapping.code("race", RACE(element).strip())
        persons.append(
            {
                "id": _eid(element, f"person{index + 1}"),
                "name": dict(placeholder),
                "gender": mapping.code("sex", SEX(element).strip()),
                "ethnicity": {"officer_defined": race} if race else None,
                "under18": _under18(element),
            }
        )
    role_person = {}
    for role in ROLES(report):
        person = ROLE_PERSON(role)
        if person and role.get(S_ID):
            role_person[role.get(S_ID)] = (etree.QName(role).localname, _SAFE_ID.sub("_", person)[:64])
    return persons, role_person


def _under18(person: etree._Element) -> bool | None:
    for text in (AGE_VALUE(person), AGE_MAX(person)):
        if text.strip().isdigit():
            return int(text) < 18
    return True if AGE_TEXT(person).strip() in ("NEONATAL", "NEWBORN", "BABY") else None


def _links(
    report: etree._Element, role_person: dict[str, tuple[str, str]], mapping: Mapping
) -> list[dict[str, str]]:
    links: list[dict[str, str]] = []
    for association in OFFENSE_LOCATION(report):
        links.append(
            {"from": REF_OFFENSE(association), "to": REF_LOCATION(association), "type": "occurred-at"}
        )
    victims_linked = set()
    for association in OFFENSE_VICTIM(report):
        role, person = role_person.get(REF_VICTIM(association), ("", ""))
        if person:
            links.append({"from": person, "to": REF_OFFENSE(association), "type": "victim-of"})
            victims_linked.add(person)
    for role, person in role_person.values():
        if not (role == "Victim" and person in victims_linked):
            links.append({"from": person, "to": "incident", "type": ROLE_LINK[role]})
    for association in SUBJECT_VICTIM(report):
        kind = mapping.code("relationship", RELATIONSHIP(association).strip())
        subject = role_person.get(REF_SUBJECT(association), ("", ""))[1]
        victim = role_person.get(REF_VICTIM(association), ("", ""))[1]
        if kind and kind != "none" and subject and victim:
            links.append({"from": subject, "to": victim, "type": kind})
    return [link for link in links if link["from"] and link["to"]]


def _objects(report: etree._Element, mapping: Mapping) -> list[dict[str, Any]]:
    objects = []
    for index, item in enumerate(ITEMS(report)):
        category = ITEM_CATEGORY(item).strip()
        substance = etree.QName(item).localname == "Substance"
        description = mapping.code("property", category) or (
            f"NIBRS property {category}" if category else None
        )
        if substance and DRUG_TYPE(item).strip():
            drug = mapping.code("drug", DRUG_TYPE(item).strip()) or DRUG_TYPE(item).strip()
            description = f"{drug}, {DRUG_QUANTITY(item).strip()} {DRUG_UNIT(item).strip()}".strip(", ")
        objects.append(
            {
                "id": _eid(item, f"item{index + 1}"),
                "kind": "drug" if substance else (mapping.code("property_kind", category) or "item"),
                "description": description,
                "status": mapping.code("item_status", ITEM_STATUS(item).strip()),
                "value": number(ITEM_VALUE(item)),
                "quantity": number(DRUG_QUANTITY(item) if substance else ITEM_QUANTITY(item)),
            }
        )
    return objects


def _locations(report: etree._Element, mapping: Mapping) -> list[dict[str, Any]]:
    locations = []
    for index, element in enumerate(LOCATIONS(report)):
        code = LOCATION_TYPE(element).strip()
        name = mapping.code("location_type", code)
        locations.append(
            {
                "id": _eid(element, f"location{index + 1}"),
                "kind": "area",
                "area": {"scheme": "nibrs-location-type", "code": code or "unknown", "name": name},
                "description": name,
            }
        )
    return locations



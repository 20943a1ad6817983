"""NIEM NIBRS 4.2 submission XML -> `crime.report` records, one per `nibrs:Report`.

Identity is kept apart from role: each `nc:Person` becomes a person (its NIEM `s:id` is the entity id);
`j:Victim`, `j:Subject` and `j:Arrestee` roles and the NIEM associations become typed links.  Items and
substances become objects, `nc:Location` a location, offenses events (and offences when the mapping
knows the matching CJS code).  Group B arrest reports become a crime.report keyed on the arrest
transaction number.  The report action decides lineage: I/A/W is the original (plain id), R a new version
that supersedes the one before, D a retraction.  See README.md.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from lxml import etree

from adapters.base import AdapterError, InboundAdapter, Result, envelope, make_id, number, problem, zoned_utc
from adapters.lineage import Lineage, Stateless
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
CATEGORY = _x("string(nibrs:ReportHeader/nibrs:NIBRSReportCategoryCode)")
ARRESTS = _x("j:Arrest")
ARREST_ID = _x("string(nc:ActivityIdentification/nc:IdentificationID)")
ARREST_DATE = _x("string(nc:ActivityDate/nc:Date)")
ARREST_DATETIME = _x("string(nc:ActivityDate/nc:DateTime)")
ARREST_CHARGE = _x("string(j:ArrestCharge/nibrs:ChargeUCRCode)")
ARREST_TYPE = _x("string(j:ArrestCategoryCode)")
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
AGE_MIN = _x("string(nc:PersonAgeMeasure/nc:MeasureIntegerRange/nc:RangeMinimumIntegerValue)")
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
ORIGINAL, REPLACE, DELETE = frozenset({"I", "A", "W"}), "R", "D"
INFANT_AGES = frozenset({"NEONATAL", "NEWBORN", "BABY"})


class NibrsIncidentAdapter(InboundAdapter):
    name = "niem-nibrs"
    description = "NIEM NIBRS 4.2 Group A incident report XML -> crime.report with persons, roles, items, location"
    folder = Path(__file__).resolve().parent
    # A 32 MB submission holds about 550,000 elements (60 bytes each); a flood of tiny elements is
    # stopped after 100,000 by the density floor instead of after 2 million.
    limits = Limits(max_bytes=32 * 1024 * 1024, max_elements=1_000_000, min_bytes_per_element=16)

    def _translate(self, stream: IO[bytes], mapping: Mapping) -> Iterator[Result]:
        lineage = self.lineage or Stateless()
        sent: str | None = None
        reports = 0
        for element in iterparse(stream, (REPORT, MESSAGE_TIME), self.limits, roots=ROOTS):
            if element.tag == MESSAGE_TIME:
                sent = _local(mapping, element.text or "")
                continue
            reports += 1
            yield _one(element, sent, mapping, lineage, f"//nibrs:Report[{reports}]")
        if not reports:
            yield AdapterError(
                "xml_no_records",
                "the submission holds no nibrs:Report (expected a nibrs:Submission with reports)",
                location="//nibrs:Report[1]",
            )


def _one(report: etree._Element, sent: str | None, mapping: Mapping, lineage: Lineage, where: str) -> Result:
    """One report as a record (an original, a replacing version or a retraction) or its coded refusal."""
    category, action = " ".join(CATEGORY(report).split()).upper(), ACTION(report).strip().upper()
    if category == "ZERO REPORT":
        return AdapterError(
            "zero_report",
            "a zero report says the agency had no incident that month: no record to share",
            location=where,
            path="nibrs:ReportHeader/nibrs:NIBRSReportCategoryCode",
        )
    if action not in ORIGINAL | {REPLACE, DELETE}:
        return AdapterError(
            "report_action_unknown",
            f"report action {action!r} is not I, A, W, R or D",
            location=where,
            path="nibrs:ReportHeader/nibrs:ReportActionCategoryCode",
        )
    problems: list[FieldError] = []
    arrest = category.startswith("GROUP B")
    if action == DELETE:
        record, key = _retraction(report, sent, mapping, problems, arrest=arrest)
    else:
        record, key = _arrest(report, sent, mapping, problems) if arrest else _report(report, sent, mapping, problems)
    if problems:
        return AdapterError.of(problems, location=where, record_id=record["id"])
    if action == DELETE:
        return lineage.stamp(
            record, key, record_id=make_id(record["id"], "deleted"), original=record["id"], kind="retraction"
        )
    if action == REPLACE:
        return lineage.stamp(record, key, original=record["id"])
    return lineage.stamp(record, key, record_id=record["id"])


def _local(mapping: Mapping, text: str) -> str | None:
    """A NIBRS date or date-time (no offset: the reporting agency's local time, the mapping's `timezone`)."""
    return zoned_utc(text, mapping.get("timezone", "Europe/London")) if text.strip() else None


def _eid(element: etree._Element, fallback: str) -> str:
    return _SAFE_ID.sub("_", element.get(S_ID) or fallback)[:64]


def _report(
    report: etree._Element, sent: str | None, mapping: Mapping, problems: list[FieldError]
) -> tuple[dict[str, Any], str]:
    number = INCIDENT_ID(report).strip()
    if not number:
        problems.append(problem("data.crime_ref", "incident_number_missing", "nc:ActivityIdentification is empty"))
    when = _local(mapping, INCIDENT_DATETIME(report)) or _local(mapping, INCIDENT_DATE(report))
    if when is None:
        problems.append(problem("data.recorded", "incident_date_missing", "no usable nc:ActivityDate"))
    events, offences, category = _offenses(report, mapping, problems)
    events.insert(0, {"id": "incident", "kind": "incident", "start": when})
    persons, role_person = _persons(report, mapping, problems)
    links = _links(report, role_person, mapping, problems, anchor="incident")
    data = {
        "crime_ref": number,
        "category": category,
        "recorded": when,
        "month": (when or "")[:7],
        "outcome": _coded(mapping, "clearance", CLEARANCE(report), "data.outcome", problems),
        "persons": persons,
        "objects": _objects(report, mapping, problems),
        "locations": _locations(report, mapping),
        "events": events,
        "offences": offences,
        "links": links,
    }
    record_id = make_id(mapping.agency, mapping.system, "incident", number or "unnumbered")
    return envelope(
        mapping,
        "crime.report",
        record_id,
        sent or when or "1970-01-01T00:00:00Z",
        data,
        correlation_id=f"incident-{number}" if number else None,
        subjects=[p["id"] for p in persons],
    ), f"incident-{number}"


def _arrest(
    report: etree._Element, sent: str | None, mapping: Mapping, problems: list[FieldError]
) -> tuple[dict[str, Any], str]:
    """A Group B arrest report: the arrest is the only record of the offence, keyed on its transaction number."""
    arrest = next(iter(ARRESTS(report)), None)
    number = ARREST_ID(arrest).strip() if arrest is not None else ""
    if not number:
        problems.append(problem("data.crime_ref", "arrest_number_missing", "j:Arrest has no transaction number"))
    when = None
    if arrest is not None:
        when = _local(mapping, ARREST_DATETIME(arrest)) or _local(mapping, ARREST_DATE(arrest))
    if when is None:
        problems.append(problem("data.recorded", "arrest_date_missing", "no usable j:Arrest/nc:ActivityDate"))
    charge = ARREST_CHARGE(arrest).strip() if arrest is not None else ""
    category = _coded(mapping, "ucr_category", charge, "data.category", problems, required=True)
    event_id = _eid(arrest, "arrest1") if arrest is not None else "arrest1"
    kind = _coded(mapping, "arrest_type", ARREST_TYPE(arrest) if arrest is not None else "", "data.events[0]", problems)
    label = mapping.code("ucr_label", charge)
    description = "; ".join(
        part for part in (f"NIBRS {charge} {label or ''}".strip() if charge else "", kind and f"arrest: {kind}") if part
    )
    persons, role_person = _persons(report, mapping, problems)
    data = {
        "crime_ref": number,
        "category": category,
        "recorded": when,
        "month": (when or "")[:7],
        "persons": persons,
        "events": [{"id": event_id, "kind": "arrest", "start": when, "description": description}],
        "offences": _cjs(mapping, charge, attempted=False, offences=[]),
        "links": _links(report, role_person, mapping, problems, anchor=event_id),
    }
    record_id = make_id(mapping.agency, mapping.system, "arrest", number or "unnumbered")
    return envelope(
        mapping,
        "crime.report",
        record_id,
        sent or when or "1970-01-01T00:00:00Z",
        data,
        correlation_id=f"arrest-{number}" if number else None,
        subjects=[p["id"] for p in persons],
    ), f"arrest-{number}"


def _retraction(
    report: etree._Element, sent: str | None, mapping: Mapping, problems: list[FieldError], *, arrest: bool
) -> tuple[dict[str, Any], str]:
    """A Delete report: a record naming the incident (or arrest) that the source withdrew, and nothing else."""
    element = next(iter(ARRESTS(report)), None) if arrest else report
    number = "" if element is None else (ARREST_ID(element) if arrest else INCIDENT_ID(element)).strip()
    kind = "arrest" if arrest else "incident"
    if not number:
        problems.append(problem("data.crime_ref", f"{kind}_number_missing", f"the Delete names no {kind} number"))
    if element is None:
        when = None
    elif arrest:
        when = _local(mapping, ARREST_DATETIME(element)) or _local(mapping, ARREST_DATE(element))
    else:
        when = _local(mapping, INCIDENT_DATETIME(element)) or _local(mapping, INCIDENT_DATE(element))
    data = {
        "crime_ref": number,
        "category": mapping.get("retraction_category", "other-crime"),
        "recorded": when or sent,
        "summary": f"Withdrawn by the reporting agency (NIBRS Delete of {kind} {number}).",
    }
    if data["recorded"] is None:
        problems.append(problem("data.recorded", f"{kind}_date_missing", "no usable date in the Delete"))
    record_id = make_id(mapping.agency, mapping.system, kind, number or "unnumbered")
    return envelope(
        mapping,
        "crime.report",
        record_id,
        sent or when or "1970-01-01T00:00:00Z",
        data,
        correlation_id=f"{kind}-{number}" if number else None,
    ), f"{kind}-{number}"


def _coded(
    mapping: Mapping, table: str, value: str, path: str, problems: list[FieldError], *, required: bool = False
) -> str | None:
    """A code looked up in the mapping: absent stays absent (or is refused when required); unknown is refused.

    A table entry mapped to "" means the code is known and carries nothing to share (NIBRS clearance N).
    """
    code = value.strip()
    if not code:
        if required:
            problems.append(problem(path, f"{table}_missing", f"no {table.replace('_', ' ')} code"))
        return None
    found = mapping.code(table, code)
    if found is None:
        problems.append(problem(path, f"{table}_unknown", f"NIBRS code {code!r} is not in the mapping's {table} table"))
    return found or None


def _cjs(mapping: Mapping, ucr: str, *, attempted: bool, offences: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The nearest CJS offence for a UCR code, appended to `offences` when the mapping knows one."""
    if cjs := mapping.code("ucr_cjs", ucr):
        offences.append(
            {
                "id": f"o{len(offences) + 1}",
                "sequence": len(offences) + 1,
                "cjs_code": cjs + ("A" if attempted and len(cjs) == 7 else ""),
            }
        )
    return offences


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
        _cjs(mapping, ucr, attempted=attempted, offences=offences)
    if not events:
        problems.append(problem("data.category", "offense_missing", "the report has no j:Offense"))
    return events, offences, category


def _persons(
    report: etree._Element, mapping: Mapping, problems: list[FieldError]
) -> tuple[list[dict[str, Any]], dict[str, tuple[str, str]]]:
    placeholder = mapping.get("unnamed_person") or {"given": [], "family": "Not known"}
    persons = []
    for index, element in enumerate(PERSONS(report)):
        path = f"data.persons[{index}]"
        race = _coded(mapping, "race", RACE(element), f"{path}.ethnicity.officer_defined", problems)
        age = _age(element, f"{path}.age_range", problems)
        persons.append(
            {
                "id": _eid(element, f"person{index + 1}"),
                "name": dict(placeholder),
                "gender": _coded(mapping, "sex", SEX(element), f"{path}.gender", problems),
                "ethnicity": {"officer_defined": race} if race else None,
                "age_range": age,
                "under18": _under18(element, age),
            }
        )
    role_person = {}
    for role in ROLES(report):
        person = ROLE_PERSON(role)
        if person and role.get(S_ID):
            role_person[role.get(S_ID)] = (etree.QName(role).localname, _SAFE_ID.sub("_", person)[:64])
    return persons, role_person


def _age(person: etree._Element, path: str, problems: list[FieldError]) -> dict[str, int] | None:
    """The age in years as a range: an exact age is min = max; NEONATAL/NEWBORN/BABY are under one year."""
    exact, low, high = AGE_VALUE(person).strip(), AGE_MIN(person).strip(), AGE_MAX(person).strip()
    text = AGE_TEXT(person).strip().upper()
    if exact:
        low = high = exact
    elif text in INFANT_AGES:
        return {"min": 0, "max": 0}
    elif text and text != "UNKNOWN":
        problems.append(problem(path, "age_unknown", f"age text {text!r} is not NEONATAL, NEWBORN, BABY or UNKNOWN"))
        return None
    if not (low or high):
        return None
    if not all(part.isdigit() and int(part) <= 200 for part in (low, high) if part):
        problems.append(problem(path, "age_invalid", f"age {low or '?'}-{high or '?'} is not whole years 0-200"))
        return None
    age = {key: int(part) for key, part in (("min", low), ("max", high)) if part}
    if age.get("min", 0) > age.get("max", 200):
        problems.append(problem(path, "age_invalid", f"age range {low}-{high} runs backwards"))
        return None
    return age


def _under18(person: etree._Element, age: dict[str, int] | None) -> bool | None:
    """True below 18, False from 18, None when the range straddles 18 or the age is not known."""
    if age is None:
        return None
    if age.get("max", 200) < 18:
        return True
    if age.get("min", 0) >= 18:
        return False
    return None


def _links(
    report: etree._Element,
    role_person: dict[str, tuple[str, str]],
    mapping: Mapping,
    problems: list[FieldError],
    *,
    anchor: str,
) -> list[dict[str, str]]:
    links: list[dict[str, str]] = []
    for association in OFFENSE_LOCATION(report):
        links.append({"from": REF_OFFENSE(association), "to": REF_LOCATION(association), "type": "occurred-at"})
    victims_linked = set()
    for association in OFFENSE_VICTIM(report):
        role, person = role_person.get(REF_VICTIM(association), ("", ""))
        if person:
            links.append({"from": person, "to": REF_OFFENSE(association), "type": "victim-of"})
            victims_linked.add(person)
    for role, person in role_person.values():
        if not (role == "Victim" and person in victims_linked):
            links.append({"from": person, "to": anchor, "type": ROLE_LINK[role]})
    for index, association in enumerate(SUBJECT_VICTIM(report)):
        kind = _coded(mapping, "relationship", RELATIONSHIP(association), f"data.links[{index}].type", problems)
        subject = role_person.get(REF_SUBJECT(association), ("", ""))[1]
        victim = role_person.get(REF_VICTIM(association), ("", ""))[1]
        if kind and kind != "none" and subject and victim:
            links.append({"from": subject, "to": victim, "type": kind})
    return [link for link in links if link["from"] and link["to"]]


def _objects(report: etree._Element, mapping: Mapping, problems: list[FieldError]) -> list[dict[str, Any]]:
    objects = []
    for index, item in enumerate(ITEMS(report)):
        category = ITEM_CATEGORY(item).strip()
        substance = etree.QName(item).localname == "Substance"
        description = mapping.code("property", category) or (f"NIBRS property {category}" if category else None)
        if substance and DRUG_TYPE(item).strip():
            drug = mapping.code("drug", DRUG_TYPE(item).strip()) or DRUG_TYPE(item).strip()
            description = f"{drug}, {DRUG_QUANTITY(item).strip()} {DRUG_UNIT(item).strip()}".strip(", ")
        objects.append(
            {
                "id": _eid(item, f"item{index + 1}"),
                "kind": "drug" if substance else (mapping.code("property_kind", category) or "item"),
                "description": description,
                "status": _coded(mapping, "item_status", ITEM_STATUS(item), f"data.objects[{index}].status", problems),
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

"""CJSE SPIResults (Libra ResultedCaseMessage) XML -> `court.result` records, one per defendant.

Streams the message with the hardened parser: each `DC:CourtHearing` sets the court and hearing for
the `DC:Case` elements that follow it; each case's defendants become records.  Every code is read
through the national standing data (codes.py); see README.md for what is mapped and what is dropped.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import IO, Any

from lxml import etree

from adapters.base import AdapterError, InboundAdapter, Result, digest, envelope, london_utc, make_id, number, problem
from adapters.cjse_spi import codes
from adapters.lineage import Lineage
from adapters.mapping import Mapping
from adapters.xmlsafe import Limits, iterparse
from broker import identifiers
from broker.errors import FieldError

DC = "http://www.dca.gov.uk/xmlschemas/libra"
MM = "http://schemas.cjse.gov.uk/messages/metadata/2006-05"
NS = {"DC": DC, "mm": MM}
CLOCK = re.compile(r"^([01][0-9]|2[0-3]):[0-5][0-9](:[0-5][0-9])?$")


def _x(expression: str) -> etree.XPath:
    return etree.XPath(expression, namespaces=NS, smart_strings=False)


# Precompiled once: every path below is relative to the element it is applied to.
HEARING_OU = _x("string(DC:Hearing/DC:CourtHearingLocation)")
HEARING_DATE = _x("string(DC:Hearing/DC:DateOfHearing)")
HEARING_TIME = _x("string(DC:Hearing/DC:TimeOfHearing)")
PSA_CODE = _x("string(DC:PSAcode)")
CASE_URN = _x("string(DC:PTIURN)")
DEFENDANTS = _x("DC:Defendant")
ASN = _x("string(DC:ProsecutorReference)")
PERSON = _x("DC:CourtIndividualDefendant/DC:PersonDefendant/DC:BasePersonDetails")
PNC_ID = _x(
    "string(DC:CourtIndividualDefendant/DC:PersonDefendant/DC:PNCidentifier"
    "|DC:CourtCorporateDefendant/DC:PNCidentifier)"
)
BAIL_STATUS = _x("string(DC:CourtIndividualDefendant/DC:BailStatus|DC:CourtCorporateDefendant/DC:BailStatus)")
BAIL_CONDITIONS = _x("string(DC:CourtIndividualDefendant/DC:PersonDefendant/DC:BailConditions)")
BAIL_REASON = _x("string(DC:CourtIndividualDefendant/DC:ReasonForBailConditionsOrCustody)")
TITLE = _x("string(DC:PersonName/DC:PersonTitle)")
GIVEN = _x("DC:PersonName/DC:PersonGivenName1|DC:PersonName/DC:PersonGivenName2|DC:PersonName/DC:PersonGivenName3")
FAMILY = _x("string(DC:PersonName/DC:PersonFamilyName)")
BIRTH = _x("string(DC:Birthdate)")
GENDER = _x("string(DC:Gender)")
ADDRESS_LINES = _x("DC:CourtIndividualDefendant/DC:Address/DC:SimpleAddress/*")
ORG_NAME = _x("string(DC:CourtCorporateDefendant/DC:OrganisationName/DC:OrganisationName)")
OFFENCES = _x("DC:Offence")
SEQUENCE = _x("string(DC:BaseOffenceDetails/DC:OffenceSequenceNumber)")
OFFENCE_CODE = _x("string(DC:BaseOffenceDetails/DC:OffenceCode)")
WORDING = _x("string(DC:BaseOffenceDetails/DC:OffenceWording)")
START = _x("string(DC:BaseOffenceDetails/DC:OffenceTiming/DC:OffenceStart/DC:OffenceDateStartDate)")
END = _x("string(DC:BaseOffenceDetails/DC:OffenceTiming/DC:OffenceEnd/DC:OffenceEndDate)")
ARREST_DATE = _x("string(DC:BaseOffenceDetails/DC:ArrestDate)")
CHARGE_DATE = _x("string(DC:BaseOffenceDetails/DC:ChargeDate)")
LOCATION = _x("string(DC:BaseOffenceDetails/DC:LocationOfOffence)")
CONVICTION_DATE = _x("string(DC:ConvictionDate|DC:BaseOffenceDetails/DC:ConvictionDate)")
CONVICTING_COURT = _x("string(DC:ConvictingCourt)")
MODE_OF_TRIAL = _x("string(DC:ModeOfTrial)")
FINAL_DISPOSAL = _x("string(DC:FinalDisposalIndicator)")
PLEA = _x("string(DC:Plea)")
FINDING = _x("string(DC:Finding)")
RESULTS = _x("DC:Result")
RESULT_CODE = _x("string(DC:ResultCode)")
RESULT_TEXT = _x("string(DC:ResultText)")
QUALIFIERS = _x("DC:ResultCodeQualifier")
AMOUNT = _x("string(DC:Outcome/DC:ResultAmountSterling)")
PENALTY_POINTS = _x("string(DC:Outcome/DC:PenaltyPoints)")
DURATION_VALUE = _x("string(DC:Outcome/DC:Duration/DC:DurationValue)")
DURATION_UNIT = _x("string(DC:Outcome/DC:Duration/DC:DurationUnit)")
NEXT_BAIL = _x("string(DC:NextHearing/DC:BailStatusOffence)")
NEXT_OU = _x("string(DC:NextHearing/DC:NextHearingDetails/DC:CourtHearingLocation)")
NEXT_DATE = _x("string(DC:NextHearing/DC:NextHearingDetails/DC:DateOfHearing)")
NEXT_TIME = _x("string(DC:NextHearing/DC:NextHearingDetails/DC:TimeOfHearing)")

TAGS = (f"{{{DC}}}CourtHearing", f"{{{DC}}}Case", f"{{{MM}}}CreationDateTime")
DELIVER = "http://schemas.cjse.gov.uk/messages/deliver/2006-05"
ROOTS = (f"{{{DELIVER}}}DeliverRequest", f"{{{DC}}}ResultedCaseMessage")


class SpiResultsAdapter(InboundAdapter):
    name = "cjse-spi"
    description = "CJSE SPIResults / Libra ResultedCaseMessage XML (magistrates' court results) -> court.result"
    folder = Path(__file__).resolve().parent
    # A 16 MB message holds about 300,000 elements (54 bytes each); a flood of tiny elements is stopped
    # after 100,000 by the density floor instead of after 2 million.
    limits = Limits(max_bytes=16 * 1024 * 1024, max_elements=500_000, min_bytes_per_element=16)

    def __init__(self) -> None:
        # Without a store given to translate(), the versions this instance has seen: a later, different
        # result for the same defendant and hearing supersedes the earlier one (across every file and raw
        # message one instance translates).
        self._seen = Lineage()

    def _translate(self, stream: IO[bytes], mapping: Mapping) -> Iterator[Result]:
        hearing: dict[str, str] = {}
        created: str | None = None
        cases = 0
        for element in iterparse(stream, TAGS, self.limits, roots=ROOTS):
            tag = etree.QName(element).localname
            if tag == "CreationDateTime":
                created = london_utc(element.text or "")
            elif tag == "CourtHearing":
                hearing = {
                    "ou": HEARING_OU(element).strip(),
                    "date": HEARING_DATE(element).strip(),
                    "time": HEARING_TIME(element).strip(),
                    "psa": PSA_CODE(element).strip(),
                }
            else:
                cases += 1
                for result in _case(element, cases, hearing, created, mapping):
                    yield self._link(result)
        if not cases:
            yield AdapterError(
                "xml_no_records",
                "the message holds no DC:Case (expected a ResultedCaseMessage with hearings and cases)",
                location="//DC:Case[1]",
            )

    def _link(self, result: Result) -> Result:
        """The result's version id is already a content digest: the store adds `supersedes` for a new version."""
        if isinstance(result, dict):
            key = f"{result['origin']['agency']}|{result.pop('_lineage')}"
            result = (self.lineage or self._seen).stamp(result, key, record_id=result["id"])
        return result


def _case(
    case: etree._Element, number: int, hearing: dict[str, str], created: str | None, mapping: Mapping
) -> Iterator[Result]:
    urn = identifiers.normalise("urn", CASE_URN(case)) if CASE_URN(case).strip() else ""
    for index, defendant in enumerate(DEFENDANTS(case), start=1):
        location = f"//DC:Case[{number}]/DC:Defendant[{index}]"
        problems: list[FieldError] = []
        record = _record(defendant, urn, hearing, created, mapping, problems)
        if problems:
            yield AdapterError.of(problems, location=location, record_id=record["id"])
        else:
            yield record


def _record(
    defendant: etree._Element,
    urn: str,
    hearing: dict[str, str],
    created: str | None,
    mapping: Mapping,
    problems: list[FieldError],
) -> dict[str, Any]:
    asn = _asn(ASN(defendant).strip(), problems)
    if not urn:
        problems.append(problem("data.urn", "urn_missing", "the case has no PTIURN"))
    elif message := identifiers.check("urn", urn):
        problems.append(problem("data.urn", "urn_invalid", message))
    if not hearing.get("ou") or not hearing.get("date"):
        problems.append(
            problem("data.hearing", "hearing_missing", "no court hearing (location and date) precedes the case")
        )
    person, locations, links = _person(defendant, asn, problems)
    offences = [_offence(o, i, mapping, problems) for i, o in enumerate(OFFENCES(defendant))]
    if not offences:
        problems.append(problem("data.offences", "offences_missing", "the defendant has no offences"))
    court = _court(mapping, hearing.get("ou", ""), "data.court", problems)
    data: dict[str, Any] = {
        "urn": urn,
        "asn": asn,
        "court": court,
        "hearing": {
            "date": _date(hearing.get("date", ""), "data.hearing.date", problems),
            "time": _time(hearing.get("time", ""), "data.hearing.time", problems),
        },
        "defendant": "p1",
        "bail": _bail(defendant, problems),
        "persons": [person],
        "locations": locations,
        "links": links,
        "offences": offences,
    }
    if court and hearing.get("psa"):
        court.setdefault("psa_code", hearing["psa"])
    base = make_id(mapping.agency, mapping.system, urn or "no-urn", asn or "no-asn", hearing.get("date", ""))
    version = digest(json.dumps(data, sort_keys=True, ensure_ascii=False), size=12)
    time = created or london_utc(f"{hearing.get('date')}T{hearing.get('time') or '00:00:00'}") or "1970-01-01T00:00:00Z"
    record = envelope(
        mapping,
        "court.result",
        make_id(base, version),
        time,
        data,
        correlation_id=f"case-{urn}" if urn else None,
        subjects=["p1"],
    )
    record["_lineage"] = base
    return record


def _asn(raw: str, problems: list[FieldError]) -> str:
    if not raw:
        problems.append(problem("data.asn", "asn_missing", "the defendant has no ProsecutorReference (ASN)"))
        return ""
    message = identifiers.check("asn", raw)
    if message:
        problems.append(problem("data.asn", "asn_invalid", message))
        return re.sub(r"[^A-Z0-9]", "", raw.upper())[:21]
    return identifiers.normalise("asn", raw)


def _date(value: str, path: str, problems: list[FieldError]) -> str | None:
    if not value:
        return None
    try:
        date.fromisoformat(value)
    except ValueError:
        problems.append(problem(path, "date_invalid", f"{value[:40]!r} is not a date (YYYY-MM-DD)"))
        return None
    return value


def _time(value: str, path: str, problems: list[FieldError]) -> str | None:
    if value and not CLOCK.match(value):
        problems.append(problem(path, "time_invalid", f"{value[:40]!r} is not a time of day (HH:MM[:SS])"))
        return None
    return value or None


def _unknown(path: str, what: str, code: str) -> FieldError:
    return problem(path, f"{what}_unknown", f"{what.replace('_', ' ')} {code[:40]!r} is not in the national table")


def _court(mapping: Mapping, ou: str, path: str, problems: list[FieldError]) -> dict[str, Any] | None:
    if not ou:
        return None
    found = codes.court(mapping, ou)
    if found is None:
        problems.append(_unknown(f"{path}.ou_code", "court", ou))
    return found


def _bail(defendant: etree._Element, problems: list[FieldError]) -> dict[str, Any]:
    status = BAIL_STATUS(defendant).strip()
    bail: dict[str, Any] = codes.coded("remand-status", status, "status") or {} if status else {}
    if status and not bail:
        problems.append(_unknown("data.bail.status", "bail_status", status))
    bail["conditions"] = BAIL_CONDITIONS(defendant).strip()
    bail["reason"] = BAIL_REASON(defendant).strip()
    return bail


def _person(
    defendant: etree._Element, asn: str, problems: list[FieldError]
) -> tuple[dict[str, Any], list[dict[str, Any]], list[dict[str, str]]]:
    details = PERSON(defendant)
    base = details[0] if details else None
    family = FAMILY(base).strip() if base is not None else ""
    given = [g.text.strip() for g in GIVEN(base) if g.text and g.text.strip()] if base is not None else []
    if not family:
        what = "a corporate defendant" if ORG_NAME(defendant).strip() else "the defendant"
        problems.append(
            problem("data.persons[0].name.family", "defendant_name_missing", f"{what} has no PersonFamilyName")
        )
    gender = GENDER(base).strip() if base is not None else ""
    slug = codes.slug("gender", gender) if gender else None
    if gender and slug is None:
        problems.append(_unknown("data.persons[0].gender", "gender_code", gender))
    ids = [{"scheme": "asn", "value": asn}] if asn else []
    pnc = PNC_ID(defendant).strip()
    if pnc:
        if message := identifiers.check("pnc", pnc):
            problems.append(problem("data.persons[0].identifiers", "pnc_invalid", message))
        else:
            ids.insert(0, {"scheme": "pnc", "value": identifiers.normalise("pnc", pnc)})
    person: dict[str, Any] = {
        "id": "p1",
        "name": {
            "title": TITLE(base).strip() if base is not None else None,
            "given": given,
            "family": family,
        },
        "birth_date": _date(BIRTH(base).strip(), "data.persons[0].birth_date", problems) if base is not None else None,
        "gender": slug,
        "identifiers": ids,
    }
    lines = [
        e.text.strip()
        for e in ADDRESS_LINES(defendant)
        if e.text and e.text.strip() and etree.QName(e).localname.startswith("AddressLine")
    ]
    postcode = [e.text.strip() for e in ADDRESS_LINES(defendant) if etree.QName(e).localname == "PostCode" and e.text]
    if not lines:
        return person, [], []
    person["addresses"] = ["l1"]
    location = {
        "id": "l1",
        "kind": "address",
        "address": {"lines": lines, "postcode": postcode[0] if postcode else None},
    }
    return person, [location], [{"from": "p1", "to": "l1", "type": "resides-at"}]


def _offence(offence: etree._Element, index: int, mapping: Mapping, problems: list[FieldError]) -> dict[str, Any]:
    path = f"data.offences[{index}]"
    local = OFFENCE_CODE(offence).strip()
    cjs, title = codes.offence(mapping, local)
    if title is None:
        problems.append(_unknown(f"{path}.cjs_code", "offence_code", local))
    sequence = SEQUENCE(offence).strip()
    mode = MODE_OF_TRIAL(offence).strip()
    mode_of_trial = codes.coded("mode-of-trial-reason", mode, "reason") if mode else None
    if mode and mode_of_trial is None:
        problems.append(_unknown(f"{path}.mode_of_trial", "mode_of_trial", mode))
    final = FINAL_DISPOSAL(offence).strip().upper()
    return {
        "id": f"o{index + 1}",
        "sequence": int(sequence) if sequence.isdigit() and 0 < int(sequence) < 1000 else index + 1,
        "cjs_code": cjs,
        "title": title,
        "wording": WORDING(offence).strip(),
        "start": _date(START(offence).strip(), f"{path}.start", problems),
        "end": _date(END(offence).strip(), f"{path}.end", problems),
        "location_text": LOCATION(offence).strip(),
        "arrest_date": _date(ARREST_DATE(offence).strip(), f"{path}.arrest_date", problems),
        "charge_date": _date(CHARGE_DATE(offence).strip(), f"{path}.charge_date", problems),
        "mode_of_trial": mode_of_trial,
        "plea": _slug("plea-status", "plea_code", PLEA(offence).strip(), f"{path}.plea", problems),
        "verdict": _slug("verdict", "verdict_code", FINDING(offence).strip(), f"{path}.verdict", problems),
        "conviction_date": _date(CONVICTION_DATE(offence).strip(), f"{path}.conviction_date", problems),
        "convicting_court": CONVICTING_COURT(offence).strip(),
        "final_disposal": {"Y": True, "N": False}.get(final),
        "results": [_result(r, i, mapping, f"{path}.results[{i}]", problems) for i, r in enumerate(RESULTS(offence))],
    }


def _slug(table: str, what: str, value: str, path: str, problems: list[FieldError]) -> str | None:
    if not value:
        return None
    found = codes.slug(table, value)
    if found is None:
        problems.append(_unknown(path, what, value))
    return found


def _result(
    result: etree._Element, index: int, mapping: Mapping, path: str, problems: list[FieldError]
) -> dict[str, Any]:
    local = RESULT_CODE(result).strip()
    cjs, row = codes.result(mapping, local)
    if row is None:
        problems.append(_unknown(f"{path}.code", "result_code", local))
    text = RESULT_TEXT(result).strip()
    qualifiers = []
    for element in QUALIFIERS(result):
        code = (element.text or "").strip()
        found = codes.qualifier(code)
        if found is None:
            problems.append(_unknown(f"{path}.qualifiers", "result_qualifier", code))
        qualifiers.append(found)
    amount, points = AMOUNT(result).strip(), PENALTY_POINTS(result).strip()
    if points and not points.isdigit():
        problems.append(problem(f"{path}.penalty_points", "penalty_points_invalid", f"{points[:40]!r} is not a number"))
    description = row.description if row else None
    return {
        "code": int(cjs) if cjs.isdigit() else None,
        "description": description,
        "text": text,
        "qualifiers": qualifiers,
        "amount": number(amount) if amount else None,
        "penalty_points": int(points) if points.isdigit() else None,
        "duration": _duration(result, path, problems),
        "next_hearing": _next_hearing(
            result, mapping, text if cjs == codes.UNCODED_RESULT else description, path, problems
        ),
    }


def _duration(result: etree._Element, path: str, problems: list[FieldError]) -> dict[str, Any] | None:
    value, unit_code = DURATION_VALUE(result).strip(), DURATION_UNIT(result).strip()
    if not value and not unit_code:
        return None
    unit = codes.slug("duration-unit", unit_code) if unit_code else None
    if unit is None:
        problems.append(_unknown(f"{path}.duration.unit", "duration_unit", unit_code))
    if value and not value.isdigit():
        problems.append(problem(f"{path}.duration.value", "duration_invalid", f"{value[:40]!r} is not a number"))
    elif not value and unit != "life":
        problems.append(problem(f"{path}.duration.value", "duration_invalid", f"a duration in {unit} has no value"))
    return {"value": int(value) if value.isdigit() else None, "unit": unit}


def _next_hearing(
    result: etree._Element, mapping: Mapping, reason: str | None, path: str, problems: list[FieldError]
) -> dict[str, Any] | None:
    ou, when, at = NEXT_OU(result).strip(), NEXT_DATE(result).strip(), NEXT_TIME(result).strip()
    bail = NEXT_BAIL(result).strip()
    if not (ou or when or at or bail):
        return None
    path = f"{path}.next_hearing"
    status = codes.coded("remand-status", bail, "status") if bail else None
    if bail and status is None:
        problems.append(_unknown(f"{path}.bail", "bail_status", bail))
    return {
        "court": _court(mapping, ou, f"{path}.court", problems),
        "date": _date(when, f"{path}.date", problems),
        "time": _time(at, f"{path}.time", problems),
        "reason": reason,
        "bail": status,
    }

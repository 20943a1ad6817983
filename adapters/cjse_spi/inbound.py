"""CJSE SPIResults (Libra ResultedCaseMessage) XML -> `court.result` records, one per defendant.

Streams the message with the hardened parser: each `DC:CourtHearing` sets the court and hearing for
the `DC:Case` elements that follow it; each case's defendants become records.  See README.md.
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
from broker import identifiers
from broker.errors import FieldError

DC = "http://www.dca.gov.uk/xmlschemas/libra"
MM = "http://schemas.cjse.gov.uk/messages/metadata/2006-05"
NS = {"DC": DC, "mm": MM}
CJS_OFFENCE = re.compile(r"^[A-Z]{2}\d{5}[A-Z]?$")


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
TITLE = _x("string(DC:PersonName/DC:PersonTitle)")
GIVEN = _x(
    "DC:PersonName/DC:PersonGivenName1|DC:PersonName/DC:PersonGivenName2|DC:PersonName/DC:PersonGivenName3"
)
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
PLEA = _x("string(DC:Plea)")
FINDING = _x("string(DC:Finding)")
RESULTS = _x("DC:Result")
RESULT_CODE = _x("string(DC:ResultCode)")
RESULT_TEXT = _x("string(DC:ResultText)")
AMOUNT = _x("string(DC:Outcome/DC:ResultAmountSterling)")
DURATION_VALUE = _x("string(DC:Outcome/DC:Duration/DC:DurationValue)")
DURATION_UNIT = _x("string(DC:Outcome/DC:Duration/DC:DurationUnit)")

TAGS = (f"{{{DC}}}CourtHearing", f"{{{DC}}}Case", f"{{{MM}}}CreationDateTime")
DELIVER = "http://schemas.cjse.gov.uk/messages/deliver/2006-05"
ROOTS = (f"{{{DELIVER}}}DeliverRequest", f"{{{DC}}}ResultedCaseMessage")


class SpiResultsAdapter(InboundAdapter):
    name = "cjse-spi"
    description = (
        "CJSE SPIResults / Libra ResultedCaseMessage XML (magistrates' court results) -> court.result"
    )
    folder = Path(__file__).resolve().parent
    # A 16 MB message holds about 300,000 elements (54 bytes each); a flood of tiny elements is stopped
    # after 100,000 by the density floor instead of after 2 million.
    limits = Limits(max_bytes=16 * 1024 * 1024, max_elements=500_000, min_bytes_per_element=16)

    def _translate(self, stream: IO[bytes], mapping: Mapping) -> Iterator[Result]:
        hearing: dict[str, str] = {}
        created: str | None = None
        cases = 0
        for element in iterparse(stream, TAGS, self.limits, roots=ROOTS):
            tag = etree.QName(element).localname
            if tag == "CreationDateTime":
                created = utc(element.text or "")
            elif tag == "CourtHearing":
                hearing = {
                    "ou": HEARING_OU(element).strip(),
                    "date": HEARING_DATE(element).strip(),
                    "time": HEARING_TIME(element).strip(),
                    "psa": PSA_CODE(element).strip(),
                }
            else:
                cases += 1
                yield from _case(element, cases, hearing, created, mapping)
        if not cases:
            yield AdapterError(
                "xml_no_records",
                "the message holds no DC:Case (expected a ResultedCaseMessage with hearings and cases)",
                location="//DC:Case[1]",
            )


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
            problem(
                "data.hearing", "hearing_missing", "no court hearing (location and date) precedes the case"
            )
        )
    person, locations, links = _person(defendant, asn, mapping, problems)
    offences = [_offence(o, i, mapping, problems) for i, o in enumerate(OFFENCES(defendant))]
    if not offences:
        problems.append(problem("data.offences", "offences_missing", "the defendant has no offences"))
    data = {
        "urn": urn,
        "asn": asn,
        "court": {"ou_code": hearing.get("ou"), "name": mapping.code("court", hearing.get("ou"))},
        "hearing": {"date": hearing.get("date"), "time": hearing.get("time")},
        "defendant": "p1",
        "persons": [person],
        "locations": locations,
        "links": links,
        "offences": offences,
    }
    record_id = make_id(
        mapping.agency, mapping.system, urn or "no-urn", asn or "no-asn", hearing.get("date", "")
    )
    time = (
        created
        or utc(f"{hearing.get('date')}T{hearing.get('time') or '00:00:00'}")
        or "1970-01-01T00:00:00Z"
    )
    return envelope(
        mapping,
        "court.result",
        record_id,
        time,
        data,
        correlation_id=f"case-{urn}" if urn else None,
        subjects=["p1"],
    )


def _asn(raw: str, problems: list[FieldError]) -> str:
    if not raw:
        problems.append(problem("data.asn", "asn_missing", "the defendant has no ProsecutorReference (ASN)"))
        return ""
    message = identifiers.check("asn", raw)
    if message:
        problems.append(problem("data.asn", "asn_invalid", message))
        return re.sub(r"[^A-Z0-9]", "", raw.upper())[:21]
    return identifiers.normalise("asn", raw)


def _person(
    defendant: etree._Element, asn: str, mapping: Mapping, problems: list[FieldError]
) -> tuple[dict[str, Any], list[dict[str, Any]], list[dict[str, str]]]:
    details = PERSON(defendant)
    base = details[0] if details else None
    family = FAMILY(base).strip() if base is not None else ""
    given = [g.text.strip() for g in GIVEN(base) if g.text and g.text.strip()] if base is not None else []
    if not family:
        what = "a corporate defendant" if ORG_NAME(defendant).strip() else "the defendant"
        problems.append(
            problem(
                "data.persons[0].name.family", "defendant_name_missing", f"{what} has no PersonFamilyName"
            )
        )
    person: dict[str, Any] = {
        "id": "p1",
        "name": {
            "title": TITLE(base).strip() if base is not None else None,
            "given": given,
            "family": family,
        },
        "birth_date": BIRTH(base).strip() if base is not None else None,
        "gender": mapping.code("gender", GENDER(base).strip()) if base is not None else None,
        "identifiers": [{"scheme": "asn", "value": asn}] if asn else [],
    }
    lines = [
        e.text.strip()
        for e in ADDRESS_LINES(defendant)
        if e.text and e.text.strip() and etree.QName(e).localname.startswith("AddressLine")
    ]
    postcode = [
        e.text.strip() for e in ADDRESS_LINES(defendant) if etree.QName(e).localname == "PostCode" and e.text
    ]
    if not lines:
        return person, [], []
    person["addresses"] = ["l1"]
    location = {
        "id": "l1",
        "kind": "address",
        "address": {"lines": lines, "postcode": postcode[0] if postcode else None},
    }
    return person, [location], [{"from": "p1", "to": "l1", "type": "resides-at"}]


def _offence(
    offence: etree._Element, index: int, mapping: Mapping, problems: list[FieldError]
) -> dict[str, Any]:
    path = f"data.offences[{index}]"
    local = OFFENCE_CODE(offence).strip()
    cjs = mapping.code("offence", local) or local
    if not CJS_OFFENCE.match(cjs):
        problems.append(
            problem(
                f"{path}.cjs_code",
                "offence_code_unknown",
                f"offence code {local!r} is neither in the mapping's offence table nor a CJS code",
            )
        )
    sequence = SEQUENCE(offence).strip()
    plea, finding = PLEA(offence).strip(), FINDING(offence).strip()
    return {
        "id": f"o{index + 1}",
        "sequence": int(sequence) if sequence.isdigit() else index + 1,
        "cjs_code": cjs,
        "wording": WORDING(offence).strip(),
        "start": START(offence).strip(),
        "end": END(offence).strip(),
        "plea": _coded(mapping, "plea", plea, f"{path}.plea", problems),
        "verdict": _coded(mapping, "verdict", finding, f"{path}.verdict", problems),
        "results": [_result(r, mapping) for r in RESULTS(offence)],
    }


def _coded(mapping: Mapping, table: str, value: str, path: str, problems: list[FieldError]) -> str | None:
    if not value:
        return None
    found = mapping.code(table, value)
    if found is None:
        problems.append(
            problem(path, f"{table}_code_unknown", f"{table} code {value!r} is not in the mapping")
        )
    return found


def _result(result: etree._Element, mapping: Mapping) -> dict[str, Any]:
    code = RESULT_CODE(result).strip()
    amount, value = AMOUNT(result).strip(), DURATION_VALUE(result).strip()
    unit = mapping.code("duration_unit", DURATION_UNIT(result).strip())
    cjs = mapping.code("result", code) or code
    return {
        "code": int(cjs) if cjs.isdigit() else cjs,
        "text": RESULT_TEXT(result).strip(),
        "amount": number(amount),
        "duration": {"value": int(value), "unit": unit} if value.isdigit() and unit else None,
    }



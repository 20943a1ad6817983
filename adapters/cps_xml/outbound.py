"""`case.file` -> MG5-style case summary XML for the CPS, validated against cps-case-file.xsd.

Carries the URN, the anticipated plea, the officer in case, defendants (name, date of birth,
identifiers, which charges), the charges (CJS code, wording, dates), the MG9-style witness list (names
and dates of birth only) and the MG5 summary.  Every output is validated before it is returned.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

from lxml import etree

from adapters.base import AdapterError, OutboundAdapter, Record
from adapters.xmlsafe import make_parser

HERE = Path(__file__).resolve().parent
NS = "urn:interchange:cps:case-file:v1"
XSD = HERE / "cps-case-file.xsd"


@lru_cache(maxsize=1)
def schema() -> etree.XMLSchema:
    """The XSD every output is checked against (parsed with the hardened parser)."""
    return etree.XMLSchema(etree.parse(str(XSD), make_parser()))


class CpsXmlAdapter(OutboundAdapter):
    name = "cps-xml"
    description = "case.file -> MG5-style case summary XML for the CPS (validated against the shipped XSD)"
    folder = HERE
    content_type = "application/xml"
    xsd = XSD  # every rendered delivery is valid against it (the partner contract ships it)
    record_types = ("case.file",)

    def _render(self, record: Record, options: dict[str, Any]) -> tuple[bytes, str]:
        root = build(record)
        if not schema().validate(root):
            error = schema().error_log.last_error
            raise AdapterError(
                "xsd_invalid", f"{error.message} (line {error.line})", path="data", record_id=record.get("id")
            )
        body = etree.tostring(root, xml_declaration=True, encoding="UTF-8", pretty_print=True)
        return body, self.content_type


def _el(parent: etree._Element, tag: str, text: Any = None, **attrs: Any) -> etree._Element:
    element = etree.SubElement(parent, f"{{{NS}}}{tag}", {k: str(v) for k, v in attrs.items()})
    if text is not None:
        element.text = str(text)
    return element


def build(record: Record) -> etree._Element:
    """The CaseFile element for a case.file record; AdapterError when a required part is missing."""
    data = record.get("data") or {}
    persons = {p.get("id"): p for p in data.get("persons") or []}
    for field in ("urn", "defendants", "charges", "summary", "anticipated_plea"):
        if not data.get(field):
            raise AdapterError(
                "field_missing",
                f"a CPS case file needs data.{field}",
                path=f"data.{field}",
                record_id=record.get("id"),
            )
    root = etree.Element(f"{{{NS}}}CaseFile", nsmap={None: NS}, version="1")
    marking = record.get("classification") or {}
    _el(root, "ProtectiveMarking", "OFFICIAL-SENSITIVE" if marking.get("sensitive") else "OFFICIAL")
    _el(root, "URN", data["urn"].replace(" ", "").replace("/", "").upper())
    _el(root, "SourceRecord", record.get("id"))
    _el(root, "AnticipatedPlea", data["anticipated_plea"])
    _officer(root, data.get("officer_in_case"))
    _defendants(_el(root, "Defendants"), data, persons, record.get("id"))
    charges = _el(root, "Charges")
    for charge in data["charges"]:
        _charge(charges, charge)
    witnesses = _el(root, "WitnessList")
    for number, ref in enumerate(data.get("witnesses") or [], start=1):
        witness = _el(witnesses, "Witness", number=number, ref=ref)
        _person(witness, _lookup(persons, ref, "data.witnesses", record.get("id")), identifiers=False)
    _el(root, "CaseSummary", data["summary"])
    return root


def _officer(root: etree._Element, officer: dict[str, Any] | None) -> None:
    if not officer:
        return
    element = _el(root, "OfficerInCase")
    _el(element, "Name", officer["name"])
    for key, tag in (("rank", "Rank"), ("collar_number", "CollarNumber")):
        if officer.get(key):
            _el(element, tag, officer[key])


def _defendants(parent: etree._Element, data: dict[str, Any], persons: dict[str, Any], record_id: Any) -> None:
    sequence = {c.get("id"): c.get("sequence") for c in data["charges"]}
    charged: dict[str, list[int]] = {}
    for link in data.get("links") or []:
        if link.get("type") == "offender-in" and link.get("to") in sequence:
            charged.setdefault(link["from"], []).append(sequence[link["to"]])
    for ref in data["defendants"]:
        element = _el(parent, "Defendant", ref=ref)
        _person(element, _lookup(persons, ref, "data.defendants", record_id), identifiers=True)
        for number in sorted(charged.get(ref) or sequence.values()):
            _el(element, "ChargeRef", sequence=number)


def _charge(parent: etree._Element, charge: dict[str, Any]) -> None:
    element = _el(parent, "Charge", sequence=charge["sequence"])
    _el(element, "CJSOffenceCode", charge["cjs_code"])
    for key, tag in (("wording", "Wording"), ("start", "OffenceStartDate"), ("end", "OffenceEndDate")):
        if charge.get(key):
            _el(element, tag, charge[key])


def _person(parent: etree._Element, person: dict[str, Any], *, identifiers: bool) -> None:
    name = _el(parent, "Name")
    if person["name"].get("title"):
        _el(name, "Title", person["name"]["title"])
    for given in person["name"].get("given") or []:
        _el(name, "GivenName", given)
    _el(name, "FamilyName", person["name"]["family"])
    if person.get("birth_date"):
        _el(parent, "BirthDate", person["birth_date"])
    if identifiers:
        for identifier in person.get("identifiers") or []:
            _el(parent, "Identifier", identifier["value"], scheme=identifier["scheme"])


def _lookup(persons: dict[str, Any], ref: str, path: str, record_id: Any) -> dict[str, Any]:
    if ref not in persons:
        raise AdapterError(
            "person_missing",
            f"{path} names {ref!r}, which is not in data.persons",
            path=path,
            record_id=record_id,
        )
    return persons[ref]

"""Build SPIResults messages for tests: the public 034a message with chosen offences, results and hearings.

spi_message(offences=[offence(plea="1", finding="G", results=[result("1015", amount="45.00")])])
"""

from __future__ import annotations

from xml.sax.saxutils import escape

HEAD = """<?xml version="1.0" encoding="UTF-8"?>
<DeliverRequest xmlns="http://schemas.cjse.gov.uk/messages/deliver/2006-05"
 xmlns:mm="http://schemas.cjse.gov.uk/messages/metadata/2006-05"><mm:MessageMetadata>{created}</mm:MessageMetadata>
<Message><DC:ResultedCaseMessage xmlns:DC="http://www.dca.gov.uk/xmlschemas/libra" Flow="ResultedCasesForThePolice">
<DC:Session><DC:CourtHearing><DC:Hearing><DC:CourtHearingLocation>{court}</DC:CourtHearingLocation>
<DC:DateOfHearing>{date}</DC:DateOfHearing><DC:TimeOfHearing>{time}</DC:TimeOfHearing></DC:Hearing>
<DC:PSAcode>2576</DC:PSAcode></DC:CourtHearing>
<DC:Case><DC:PTIURN>01ZD0305408</DC:PTIURN><DC:Defendant><DC:ProsecutorReference>1101ZD01410791W</DC:ProsecutorReference>
<DC:CourtIndividualDefendant><DC:PersonDefendant>{pnc}<DC:BailConditions>{conditions}</DC:BailConditions>
<DC:BasePersonDetails><DC:PersonName><DC:PersonTitle>Mr</DC:PersonTitle><DC:PersonGivenName1>Philip</DC:PersonGivenName1>
<DC:PersonFamilyName>Screwdriver</DC:PersonFamilyName></DC:PersonName><DC:Birthdate>1948-11-11</DC:Birthdate>
<DC:Gender>{gender}</DC:Gender></DC:BasePersonDetails></DC:PersonDefendant><DC:BailStatus>{bail}</DC:BailStatus>
<DC:Address><DC:SimpleAddress><DC:AddressLine1>1 Test Street</DC:AddressLine1></DC:SimpleAddress></DC:Address>
<DC:PresentAtHearing>A</DC:PresentAtHearing></DC:CourtIndividualDefendant>"""
TAIL = "</DC:Defendant></DC:Case></DC:Session></DC:ResultedCaseMessage></Message></DeliverRequest>"


def _el(name: str, value: str | None) -> str:
    return "" if value is None else f"<DC:{name}>{escape(value)}</DC:{name}>"


def result(
    code: str | None = "1015",
    text: str = "Result text",
    *,
    amount: str | None = None,
    points: str | None = None,
    duration: tuple[str | None, str] | None = None,
    qualifiers: tuple[str, ...] = (),
    next_hearing: dict[str, str] | None = None,
) -> str:
    """One DC:Result; `code=None` leaves the result code out."""
    outcome = _el("ResultAmountSterling", amount) + _el("PenaltyPoints", points)
    if duration:
        outcome += f"<DC:Duration>{_el('DurationValue', duration[0])}{_el('DurationUnit', duration[1])}</DC:Duration>"
    nxt = ""
    if next_hearing:
        keys = ("CourtHearingLocation", "DateOfHearing", "TimeOfHearing")
        details = "".join(_el(k, next_hearing.get(k)) for k in keys)
        nxt = (
            f"<DC:NextHearing>{_el('BailStatusOffence', next_hearing.get('bail'))}"
            f"<DC:NextHearingDetails>{details}</DC:NextHearingDetails></DC:NextHearing>"
        )
    return (
        f"<DC:Result>{_el('ResultCode', code)}{_el('ResultText', text)}"
        + "".join(_el("ResultCodeQualifier", q) for q in qualifiers)
        + (f"<DC:Outcome>{outcome}</DC:Outcome>" if outcome else "")
        + nxt
        + "</DC:Result>"
    )


def offence(
    code: str = "RT88191",
    *,
    sequence: int = 1,
    plea: str | None = "1",
    finding: str | None = "G",
    mode: str | None = "01",
    results: list[str] | None = None,
    conviction: str | None = None,
) -> str:
    """One DC:Offence with its results (a fine of 45 by default)."""
    return (
        f"<DC:Offence><DC:BaseOffenceDetails>{_el('OffenceSequenceNumber', f'{sequence:03d}')}"
        f"{_el('OffenceCode', code)}<DC:OffenceWording>Wording</DC:OffenceWording><DC:OffenceTiming>"
        "<DC:OffenceDateCode>1</DC:OffenceDateCode><DC:OffenceStart><DC:OffenceDateStartDate>2010-11-28"
        "</DC:OffenceDateStartDate></DC:OffenceStart></DC:OffenceTiming><DC:ChargeDate>2010-12-02</DC:ChargeDate>"
        "<DC:ArrestDate>2010-12-01</DC:ArrestDate><DC:LocationOfOffence>Kingston High Street</DC:LocationOfOffence>"
        f"</DC:BaseOffenceDetails><DC:InitiatedDate>2008-07-11</DC:InitiatedDate>{_el('Plea', plea)}"
        f"{_el('ModeOfTrial', mode)}<DC:FinalDisposalIndicator>N</DC:FinalDisposalIndicator>"
        f"{_el('ConvictionDate', conviction)}{_el('Finding', finding)}"
        + "".join(results if results is not None else [result("1015", "Fined 45.", amount="45.00")])
        + "</DC:Offence>"
    )


def spi_message(
    offences: list[str] | None = None,
    *,
    court: str = "B01EF01",
    date: str = "2011-09-25",
    time: str = "10:00:00",
    created: str | None = None,
    bail: str = "U",
    gender: str = "1",
    pnc: str | None = None,
    conditions: str = "",
) -> bytes:
    """A whole SPIResults message for one defendant of case 01ZD0305408."""
    created_el = f"<mm:CreationDateTime>{created}</mm:CreationDateTime>" if created else ""
    head = HEAD.format(
        created=created_el,
        court=court,
        date=date,
        time=time,
        bail=bail,
        gender=gender,
        pnc=_el("PNCidentifier", pnc),
        conditions=escape(conditions),
    )
    return (head + "".join(offences if offences is not None else [offence()]) + TAIL).encode()

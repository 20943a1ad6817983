"""Normalise and check the identifiers that criminal-justice records carry.

Pure functions, no I/O.  Two entry points cover every scheme:

- ``check(scheme, value) -> str | None``: ``None`` when the value is fine, otherwise one sentence a person
  can act on, e.g. ``PNC ID 2001/0171310S has check letter S, expected W``.
- ``normalise(scheme, value) -> str``: the canonical form (``pnc`` ``79/163001B`` -> ``1979/0163001B``).
  It never raises for a string: a value that cannot be parsed comes back trimmed (and upper-cased where the
  scheme is case-insensitive), so call ``check`` first when the difference matters.

Rules and test vectors: REFERENCE.md section 2.  Decisions taken here:

- PNC ID, CRO number and ASN share the mod-23 check alphabet ``ZABCDEFGHJKLMNPQRTUVWXY``.
- Two-digit PNC years expand to 20YY when YY is at most the current year's YY, otherwise 19YY (MoJ's rule).
- CRO ``SF`` numbers: two published conventions disagree for serials under six digits.  The worked examples
  (REFERENCE 2.3: ``SF93/2294N``, ``SF83/50058Z``) check ``YY + serial.zfill(5)``; MoJ's prison-api
  ``IdentifierValidation`` and its test vectors (``SF88/1234P``, ``SF11/1X``) check ``YY + serial.zfill(6)``,
  as for standard CRO numbers.  Both are real numbers in circulation, so either letter is accepted (they agree
  for six-digit serials).  The canonical SF form is ``SFYY/`` + the serial's value padded to 5 digits.
- Postcodes use the strict BS 7666 pattern: pseudo-postcodes (``ZZ99 9ZZ``) and ``BFPO`` are refused.
- NINO: older suffixes F, M, P or a missing suffix are accepted (data quality, not an error).
- VRM: current, prefix and suffix formats are recognised; dateless, Northern Ireland and personalised
  marks are accepted when plausible (2-7 letters and digits with at least one of each).
- ASN force codes are not checked against the force table: dummy ASNs (force 00, 50, 63...) are real data.
"""

from __future__ import annotations

import datetime as _dt
import re

CHECK_ALPHABET = "ZABCDEFGHJKLMNPQRTUVWXY"  # index 0..22; I, O and S never appear

# PNC force code -> (name, data.police.uk slug).  The 43 territorial forces of England and Wales + BTP.
FORCES: dict[str, tuple[str, str]] = {
    "01": ("Metropolitan Police Service", "metropolitan"),
    "03": ("Cumbria Constabulary", "cumbria"),
    "04": ("Lancashire Constabulary", "lancashire"),
    "05": ("Merseyside Police", "merseyside"),
    "06": ("Greater Manchester Police", "greater-manchester"),
    "07": ("Cheshire Constabulary", "cheshire"),
    "10": ("Northumbria Police", "northumbria"),
    "11": ("Durham Constabulary", "durham"),
    "12": ("North Yorkshire Police", "north-yorkshire"),
    "13": ("West Yorkshire Police", "west-yorkshire"),
    "14": ("South Yorkshire Police", "south-yorkshire"),
    "16": ("Humberside Police", "humberside"),
    "17": ("Cleveland Police", "cleveland"),
    "20": ("West Midlands Police", "west-midlands"),
    "21": ("Staffordshire Police", "staffordshire"),
    "22": ("West Mercia Police", "west-mercia"),
    "23": ("Warwickshire Police", "warwickshire"),
    "30": ("Derbyshire Constabulary", "derbyshire"),
    "31": ("Nottinghamshire Police", "nottinghamshire"),
    "32": ("Lincolnshire Police", "lincolnshire"),
    "33": ("Leicestershire Police", "leicestershire"),
    "34": ("Northamptonshire Police", "northamptonshire"),
    "35": ("Cambridgeshire Constabulary", "cambridgeshire"),
    "36": ("Norfolk Constabulary", "norfolk"),
    "37": ("Suffolk Constabulary", "suffolk"),
    "40": ("Bedfordshire Police", "bedfordshire"),
    "41": ("Hertfordshire Constabulary", "hertfordshire"),
    "42": ("Essex Police", "essex"),
    "43": ("Thames Valley Police", "thames-valley"),
    "44": ("Hampshire and Isle of Wight Constabulary", "hampshire"),
    "45": ("Surrey Police", "surrey"),
    "46": ("Kent Police", "kent"),
    "47": ("Sussex Police", "sussex"),
    "48": ("City of London Police", "city-of-london"),
    "50": ("Devon and Cornwall Police", "devon-and-cornwall"),
    "52": ("Avon and Somerset Constabulary", "avon-and-somerset"),
    "53": ("Gloucestershire Constabulary", "gloucestershire"),
    "54": ("Wiltshire Police", "wiltshire"),
    "55": ("Dorset Police", "dorset"),
    "60": ("North Wales Police", "north-wales"),
    "61": ("Gwent Police", "gwent"),
    "62": ("South Wales Police", "south-wales"),
    "63": ("Dyfed-Powys Police", "dyfed-powys"),
    "93": ("British Transport Police", "btp"),
}

# Schemes whose values are checked beyond their schema pattern, and those accepted as opaque references.
CHECKED_SCHEMES = ("pnc", "cro", "asn", "nhs", "nino", "urn", "vrm", "postcode", "force", "uprn", "police-uk")
OPAQUE_SCHEMES = ("local", "crime-ref", "custody", "school-urn")
SCHEMES = CHECKED_SCHEMES + OPAQUE_SCHEMES

_PNC_INPUT = re.compile(r"(\d{2}|\d{4})/(\d{1,7})([A-Z])|(\d{4})(\d{7})([A-Z])|(\d{2})(\d{1,7})([A-Z])")
_CRO_STD = re.compile(r"(\d{1,6})/(\d{2})([A-Z])")
_CRO_SF = re.compile(r"SF(\d{2})/(\d{1,6})([A-Z])")
_ASN_LONG = re.compile(r"(\d{2})([A-Z]?)([A-Z0-9]{2})([A-Z0-9]{2})([A-Z0-9]{2})(\d{11})([A-Z])")
_ASN_DISPLAY = re.compile(r"(\d{2})/([A-Z]?)([A-Z0-9]{2})([A-Z0-9]{2})/([A-Z0-9]{2})/(\d{1,11})([A-Z])")
_ASN_SHORT = re.compile(r"(\d{2})([A-Z0-9]{2})([A-Z0-9]{2})([A-Z0-9]{2})(\d{1,11})([A-Z])")
_URN = re.compile(r"[0-9]{2}[A-Z0-9]{2}[0-9]{5}[0-9]{2}")
_POSTCODE = re.compile(
    r"GIR 0AA|(?:[A-PR-UWYZ][0-9][0-9]?|[A-PR-UWYZ][A-HK-Y][0-9][0-9]?|[A-PR-UWYZ][0-9][A-HJKPSTUW]"
    r"|[A-PR-UWYZ][A-HK-Y][0-9][ABEHMNPRVWXY]) [0-9][ABD-HJLNP-UW-Z]{2}"
)
_NINO = re.compile(r"(?!BG|GB|KN|NK|NT|TN|ZZ)[A-CEGHJ-PR-TW-Z][A-CEGHJ-NPR-TW-Z][0-9]{6}[A-DFMP]?")
_VRM_FORMATS = (
    ("current", re.compile(r"[A-HJ-PR-Y]{2}(?!00|01|50)[0-9]{2}[A-HJ-PR-Z]{3}")),
    ("prefix", re.compile(r"[A-HJ-NPR-Y](?!0)[0-9]{1,3}[A-HJ-PR-Y]{3}")),
    ("suffix", re.compile(r"[A-HJ-PR-Y]{3}(?!0)[0-9]{1,3}[A-HJ-NPR-Y]")),
)
_VRM_PLAUSIBLE = re.compile(r"(?=.*[A-Z])(?=.*[0-9])[A-Z0-9]{2,7}")
_UPRN = re.compile(r"[0-9]{1,12}")
_POLICE_UK = re.compile(r"[0-9a-f]{64}")


def mod23(number: int) -> str:
    """The mod-23 check letter shared by PNC IDs, CRO numbers and ASNs."""
    return CHECK_ALPHABET[number % 23]


# --- PNC ID -------------------------------------------------------------------------------------------------


def _expand_year(yy: str, pivot: int | None = None) -> str:
    """Two-digit year -> four digits: 20YY when YY <= the current YY, else 19YY."""
    current = (_dt.date.today().year if pivot is None else pivot) % 100
    return ("20" if int(yy) <= current else "19") + yy


def _pnc_parts(value: str, pivot: int | None = None) -> tuple[str, str, str] | None:
    """(four-digit year, seven-digit serial, check letter) or None when the value is not a PNC ID."""
    m = _PNC_INPUT.fullmatch(_compact(value, keep="/-"))
    if not m:
        return None
    year, serial, letter = [g for g in m.groups() if g is not None]
    if len(year) == 2:
        year = _expand_year(year, pivot)
    return year, serial.zfill(7), letter


def pnc_check_char(year: str | int, serial: str | int) -> str:
    """Check letter of a PNC ID from its year (2 or 4 digits) and serial number."""
    return mod23(int(f"{int(year) % 100:02d}{int(serial):07d}"))


def pnc_canonical(value: str, *, pivot: int | None = None) -> str | None:
    """``YYYY/NNNNNNNC`` from any long or short form, or None when the value is not a PNC ID."""
    parts = _pnc_parts(value, pivot)
    return None if parts is None else f"{parts[0]}/{parts[1]}{parts[2]}"


def _check_pnc(value: str) -> str | None:
    parts = _pnc_parts(value)
    if parts is None:
        return f"PNC ID {value} is not in the form YYYY/NNNNNNNC (or short YY/NNNNNNC)"
    expected = pnc_check_char(parts[0], parts[1])
    return None if expected == parts[2] else f"PNC ID {value} has check letter {parts[2]}, expected {expected}"


# --- CRO number ---------------------------------------------------------------------------------------------


def cro_check_char(serial: str | int, year: str | int, *, sf: bool = False) -> str:
    """Check letter of a CRO number: serial padded to 6 digits (standard) or 5 (``SF`` form)."""
    return mod23(int(f"{int(year) % 100:02d}{int(serial):0{5 if sf else 6}d}"))


def _cro_parts(value: str) -> tuple[bool, str, str, str] | None:
    """(is SF form, serial, two-digit year, check letter) or None."""
    text = _compact(value, keep="/-")
    if m := _CRO_SF.fullmatch(text):
        return True, m.group(2), m.group(1), m.group(3)
    if m := _CRO_STD.fullmatch(text):
        return False, m.group(1), m.group(2), m.group(3)
    return None


def cro_canonical(value: str) -> str | None:
    """``NNNNNN/YYC`` (serial padded to 6) or ``SFYY/NNNNNC`` (padded to 5), or None."""
    parts = _cro_parts(value)
    if parts is None:
        return None
    sf, serial, year, letter = parts
    return f"SF{year}/{int(serial):05d}{letter}" if sf else f"{serial.zfill(6)}/{year}{letter}"


def cro_check_chars(serial: str | int, year: str | int, *, sf: bool = False) -> tuple[str, ...]:
    """Every check letter a CRO number may carry: one for the standard form, the pad-5 and pad-6 letters for SF."""
    if not sf:
        return (cro_check_char(serial, year),)
    letters = (cro_check_char(serial, year, sf=True), cro_check_char(serial, year))
    return letters[:1] if letters[0] == letters[1] else letters


def _check_cro(value: str) -> str | None:
    parts = _cro_parts(value)
    if parts is None:
        return f"CRO number {value} is not in the form NNNNNN/YYC or SFYY/NNNNNC"
    sf, serial, year, letter = parts
    expected = cro_check_chars(serial, year, sf=sf)
    if letter in expected:
        return None
    return f"CRO number {value} has check letter {letter}, expected {' or '.join(expected)}"


# --- Arrest/Summons Number ----------------------------------------------------------------------------------


def _asn_parts(value: str) -> tuple[str, str, str, str, str, str, str] | None:
    """(YY, org letter or '', FF, UU, SS, 11-digit sequence, check letter) from any accepted form, or None."""
    text = _compact(value, keep="/-")
    if "/" in text:
        m = _ASN_DISPLAY.fullmatch(text)
        if not m:
            return None
        yy, org, ff, uu, ss, seq, letter = m.groups()
        return yy, org, ff, uu, ss, seq.zfill(11), letter
    if m := _ASN_LONG.fullmatch(text):
        return m.groups()  # type: ignore[return-value]
    if m := _ASN_SHORT.fullmatch(text):
        yy, ff, uu, ss, seq, letter = m.groups()
        return yy, "", ff, uu, ss, seq.zfill(11), letter
    return None


def asn_check_char(year: str, force: str, system: str, sequence: str | int) -> str:
    """Check letter of an ASN: ``CHECK[int(digits(FF) + digits(SS) + YY + sequence.zfill(11)) mod 23]``."""
    digits = "".join(c for c in force + system if c.isdigit())
    return mod23(int(f"{digits}{year}{int(sequence):011d}"))


def asn_expand(value: str) -> str | None:
    """The long (20-character, or 21 with an organisation letter) form of an ASN in any form, or None."""
    parts = _asn_parts(value)
    return None if parts is None else "".join(parts)


def asn_display(value: str) -> str | None:
    """The PNC display form ``YY/FFUU/SS/N…C`` (sequence without leading zeros), or None."""
    parts = _asn_parts(value)
    if parts is None:
        return None
    yy, org, ff, uu, ss, seq, letter = parts
    return f"{yy}/{org}{ff}{uu}/{ss}/{int(seq)}{letter}"


def _check_asn(value: str) -> str | None:
    parts = _asn_parts(value)
    if parts is None:
        return f"ASN {value} is not in the form YYFFUUSSNNNNNNNNNNNC or YY/FFUU/SS/NC"
    yy, _org, ff, _uu, ss, seq, letter = parts
    expected = asn_check_char(yy, ff, ss, seq)
    return None if expected == letter else f"ASN {value} has check letter {letter}, expected {expected}"


# --- NHS number ---------------------------------------------------------------------------------------------


def nhs_check_digit(first_nine: str) -> int | None:
    """Mod-11 check digit for the first nine digits, or None when none exists (11 - remainder is 10)."""
    total = sum(int(d) * w for d, w in zip(first_nine, range(10, 1, -1), strict=True))
    check = 11 - total % 11
    return 0 if check == 11 else None if check == 10 else check


def _check_nhs(value: str) -> str | None:
    digits = re.sub(r"[\s-]", "", value)
    if not re.fullmatch(r"[0-9]{10}", digits):
        return f"NHS number {value} is not 10 digits"
    expected = nhs_check_digit(digits[:9])
    if expected is None:
        return f"NHS number {value} cannot be valid: its first nine digits have no mod-11 check digit"
    if expected != int(digits[9]):
        return f"NHS number {value} has check digit {digits[9]}, expected {expected}"
    return None


# --- Other schemes ------------------------------------------------------------------------------------------


def force_name(code: str) -> str | None:
    """Name of the territorial force (or BTP) with this PNC force code, or None."""
    entry = FORCES.get(code.strip())
    return entry[0] if entry else None


def force_slug(code: str) -> str | None:
    """data.police.uk slug of the force with this PNC force code, or None."""
    entry = FORCES.get(code.strip())
    return entry[1] if entry else None


def _postcode_form(value: str) -> str:
    text = " ".join(value.upper().split())
    if " " not in text and 5 <= len(text) <= 7:
        text = f"{text[:-3]} {text[-3:]}"
    return text


def vrm_format(value: str) -> str | None:
    """``current``, ``prefix``, ``suffix``, ``plausible`` (dateless, NI, personalised) or None."""
    text = _compact(value)
    for name, pattern in _VRM_FORMATS:
        if pattern.fullmatch(text):
            return name
    return "plausible" if _VRM_PLAUSIBLE.fullmatch(text) else None


def _check_simple(scheme: str, value: str) -> str | None:
    if scheme == "urn":
        ok, what = _URN.fullmatch(_compact(value)) is not None, "FFUUNNNNNYY (force, unit, 5 digits, year)"
    elif scheme == "postcode":
        ok, what = _POSTCODE.fullmatch(_postcode_form(value)) is not None, "a UK postcode such as SW1A 1AA"
    elif scheme == "nino":
        ok, what = _NINO.fullmatch(_compact(value)) is not None, "two letters, six digits and A-D"
    elif scheme == "vrm":
        ok, what = vrm_format(value) is not None, "a UK registration mark"
    elif scheme == "force":
        ok, what = value.strip() in FORCES, "one of the 43 territorial force codes or 93 (BTP)"
    elif scheme == "uprn":
        ok, what = _UPRN.fullmatch(value.strip()) is not None, "1 to 12 digits"
    elif scheme == "police-uk":
        ok, what = _POLICE_UK.fullmatch(value.strip().lower()) is not None, "64 hexadecimal characters"
    else:
        return None
    return None if ok else f"{_LABELS[scheme]} {value} is not {what}"


_LABELS = {
    "pnc": "PNC ID",
    "cro": "CRO number",
    "asn": "ASN",
    "nhs": "NHS number",
    "nino": "National Insurance number",
    "urn": "CPS URN",
    "vrm": "VRM",
    "postcode": "postcode",
    "force": "PNC force code",
    "uprn": "UPRN",
    "police-uk": "data.police.uk crime id",
}
_CHECKERS = {"pnc": _check_pnc, "cro": _check_cro, "asn": _check_asn, "nhs": _check_nhs}


def _compact(value: str, keep: str = "") -> str:
    """Upper-case with spaces, hyphens and (unless kept) slashes removed."""
    drop = "".join(c for c in " -/" if c not in keep)
    return re.sub(f"[\\s{re.escape(drop)}]", "", value.upper())


# --- Public entry points ------------------------------------------------------------------------------------


def check(scheme: str, value: object) -> str | None:
    """None when ``value`` is a well-formed ``scheme`` identifier, else a message naming value and fault."""
    if scheme not in SCHEMES:
        return f"unknown identifier scheme {str(scheme)[:40]!r}"
    if not isinstance(value, str) or not value.strip():
        return f"{_LABELS.get(scheme, scheme)} value must be a non-empty string"
    if len(value) > 64:
        return f"{_LABELS.get(scheme, scheme)} value is longer than 64 characters"
    value = value.strip()
    checker = _CHECKERS.get(scheme)
    return checker(value) if checker else _check_simple(scheme, value)


def normalise(scheme: str, value: str) -> str:
    """Canonical form of an identifier; unparseable values come back trimmed (upper-cased if no case)."""
    text = value.strip()
    if scheme in OPAQUE_SCHEMES or scheme not in SCHEMES or scheme in ("uprn", "force"):
        return text
    if scheme == "police-uk":
        return text.lower()
    canonical = {
        "pnc": pnc_canonical,
        "cro": cro_canonical,
        "asn": asn_expand,
    }.get(scheme)
    if canonical is not None:
        return canonical(text) or text.upper()
    if scheme == "postcode":
        return _postcode_form(text)
    if scheme == "nhs":
        return re.sub(r"[\s-]", "", text)
    return _compact(text)  # urn, nino, vrm

"""Identifier checks against every test vector in REFERENCE.md section 2."""

from __future__ import annotations

import pytest

from broker import identifiers
from broker.identifiers import (
    FORCES,
    asn_check_char,
    asn_display,
    asn_expand,
    check,
    cro_check_char,
    force_name,
    force_slug,
    nhs_check_digit,
    normalise,
    pnc_canonical,
    pnc_check_char,
    vrm_format,
)

PNC_VALID = [
    "2008/0056560Z",
    "1981/0154257C",
    "2003/0062845E",
    "2001/0171310W",
    "20030011985X",
    "20120052494Q",
    "20230583843L",
    "79/163001B",
    "02/73319Z",
    "81/34U",
]
PNC_CANONICAL = [
    ("79/163001B", "1979/0163001B"),
    ("02/73319Z", "2002/0073319Z"),
    ("81/34U", "1981/0000034U"),
    ("20030011985X", "2003/0011985X"),
    ("2008/0056560Z", "2008/0056560Z"),
]
PNC_INVALID = [
    ("2001/0171310S", "PNC ID 2001/0171310S has check letter S, expected W"),
    ("20030011985Z", "PNC ID 20030011985Z has check letter Z, expected X"),
]

CRO_VALID_MOJ_SAMPLE = ["265416/21G", "65656/91H"]
CRO_SF_VALID = ["SF05/482703J", "SF83/50058Z", "SF93/2294N", "SF94/5431U"]

ASN_VALID = [
    "1101ZD0100000448754K",
    "1101ZD0100000410857T",
    "2005FF0500000000555P",
    "9700000000000123456K",
    "22FD112200001234560X",
    "1101ZD01410791W",
    "1101ZD0100000410848H",
    "2202XC0200000000021R",
]
ASN_DISPLAY = [("97/0000/00/123456K", "9700000000000123456K"), ("11/01ZD/01/448754K", "1101ZD0100000448754K")]

NHS_VALID = ["9434765919", "4010232137", "6716689966"]
NHS_INVALID = ["9434765918", "9991234560"]


# --- mod 23 and PNC ID --------------------------------------------------------------------------------------


def test_the_mod23_alphabet_never_uses_i_o_or_s():
    # Given the shared check alphabet / Then it has 23 letters and none of I, O, S
    assert len(identifiers.CHECK_ALPHABET) == 23
    assert not set("IOS") & set(identifiers.CHECK_ALPHABET)


@pytest.mark.parametrize("value", PNC_VALID)
def test_published_pnc_ids_pass_the_check(value):
    # Given a PNC ID from REFERENCE 2.2 / When checked / Then no problem is reported
    assert check("pnc", value) is None


@pytest.mark.parametrize(("value", "canonical"), PNC_CANONICAL)
def test_pnc_ids_in_short_or_unslashed_form_are_canonicalised(value, canonical):
    # Given a short or long PNC ID / When normalised / Then it is YYYY/NNNNNNNC
    assert normalise("pnc", value) == canonical
    assert pnc_canonical(value) == canonical


@pytest.mark.parametrize(("value", "message"), PNC_INVALID)
def test_a_pnc_id_with_the_wrong_check_letter_names_the_expected_letter(value, message):
    # Given a PNC ID with a wrong check letter / When checked / Then the message names both letters
    assert check("pnc", value) == message


@pytest.mark.parametrize("value", ["12345", "2001-0171310W", "201/0171310W", "2001/01713101W", "ABCD/0171310W", ""])
def test_values_that_are_not_pnc_ids_are_refused_with_the_expected_form(value):
    # Given a malformed PNC ID / When checked / Then the message says what form was expected
    message = check("pnc", value)
    assert message is not None
    assert "PNC ID" in message


def test_pnc_check_char_takes_the_last_two_digits_of_the_year():
    # Given year 2001 and serial 171310 / Then the letter is W whatever the year's width
    assert pnc_check_char(2001, 171310) == "W"
    assert pnc_check_char("01", "0171310") == "W"


def test_two_digit_pnc_years_expand_against_the_pivot():
    # Given a pivot year of 2026 / When 26 and 27 are expanded / Then 26 is 2026 and 27 is 1927
    assert pnc_canonical("26/1A", pivot=2026).startswith("2026/")
    assert pnc_canonical("27/1A", pivot=2026).startswith("1927/")


# --- CRO ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("value", CRO_VALID_MOJ_SAMPLE)
def test_standard_cro_numbers_pass_the_check(value):
    assert check("cro", value) is None


def test_a_standard_cro_serial_is_padded_to_six_digits():
    # Given 65656/91H / When normalised / Then the serial has six digits
    assert normalise("cro", "65656/91H") == "065656/91H"


def test_a_cro_number_with_the_wrong_letter_names_the_right_one():
    # Given 85227/65G (REFERENCE: correct letter is L) / When checked / Then L is named
    assert check("cro", "85227/65G") == "CRO number 85227/65G has check letter G, expected L"


@pytest.mark.parametrize("value", CRO_SF_VALID)
def test_sf_prefixed_cro_numbers_pass_the_check_with_serials_padded_to_five(value):
    assert check("cro", value) is None


def test_sf_cro_numbers_with_a_wrong_letter_are_refused():
    # Given SF93/2294N with its letter changed / Then the expected letter N is named
    assert check("cro", "SF93/2294P") == "CRO number SF93/2294P has check letter P, expected N or Z"
    assert cro_check_char("2294", "93", sf=True) == "N"


# MoJ prison-api IdentifierValidationTest: SF serials checked padded to six digits, as standard CRO numbers
CRO_SF_PRISON_API = ["SF99/123456L", "SF88/001234P", "SF88/1234P", "SF11/1X"]


@pytest.mark.parametrize("value", CRO_SF_PRISON_API)
def test_sf_cro_numbers_checked_on_a_six_digit_serial_pass_too(value):
    assert check("cro", value) is None


def test_an_sf_cro_number_has_one_canonical_form_however_its_serial_is_padded():
    assert normalise("cro", "SF88/001234P") == normalise("cro", "SF88/1234P") == "SF88/01234P"


@pytest.mark.parametrize("value", ["SF99/123456Z", "SF88/1234A", "SF11/1A"])
def test_sf_cro_numbers_matching_neither_convention_are_refused(value):
    assert check("cro", value) is not None


@pytest.mark.parametrize("value", ["1234567/91H", "65656-91H", "SF9/2294N", "/91H", "65656/91"])
def test_malformed_cro_numbers_are_refused(value):
    assert check("cro", value) is not None


# --- ASN ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("value", ASN_VALID)
def test_published_asns_pass_the_check(value):
    assert check("asn", value) is None


def test_an_asn_with_the_wrong_check_letter_names_the_right_one():
    # Given 2202XC0200000000021D (REFERENCE: the letter should be R) / Then R is named
    assert check("asn", "2202XC0200000000021D") == "ASN 2202XC0200000000021D has check letter D, expected R"


@pytest.mark.parametrize(("display", "long"), ASN_DISPLAY)
def test_asn_display_forms_expand_to_the_long_form(display, long):
    # Given a PNC display form / When expanded / Then it is the 20-character form and passes the check
    assert asn_expand(display) == long
    assert normalise("asn", display) == long
    assert check("asn", display) is None
    assert asn_display(long) == display


def test_a_short_asn_has_its_sequence_padded_back_to_eleven_digits():
    assert asn_expand("1101ZD01410791W") == "1101ZD0100000410791W"


def test_asn_check_char_drops_non_numeric_force_and_system_parts():
    # Given force FD (letters) / Then only the system code digits count
    assert asn_check_char("22", "FD", "22", "1234560") == "X"


@pytest.mark.parametrize(
    "value",
    [
        "22FD112200001234560A",
        "22/FD11/22/1234560A",
        "22FD11221234560A",
        "2201ZDAB00000448754K",
        "22A01ZD0100000448754K",
        "11/A01ZD/01/448754A",
    ],
)
def test_asns_with_letters_in_the_force_or_system_part_still_have_their_check_letter_checked(value):
    # Given an ASN whose force or system code holds letters, with a wrong check letter / Then it is refused
    assert "has check letter" in (check("asn", value) or "")


@pytest.mark.parametrize("value", ["1101ZD01", "AB01ZD0100000448754K", "1101ZD0100000448754", "11/01ZD/448754K"])
def test_malformed_asns_are_refused(value):
    assert check("asn", value) is not None


# --- NHS number ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("value", NHS_VALID)
def test_valid_nhs_numbers_pass_mod_11(value):
    assert check("nhs", value) is None


@pytest.mark.parametrize("value", NHS_INVALID)
def test_nhs_numbers_failing_mod_11_are_refused(value):
    # Given 9434765918 or the widely copied 9991234560 / Then both are refused
    assert check("nhs", value) is not None


def test_nhs_numbers_are_accepted_in_display_form_and_stored_compact():
    assert check("nhs", "943 476 5919") is None
    assert normalise("nhs", "943-476-5919") == "9434765919"


def test_a_remainder_giving_ten_means_no_valid_check_digit():
    assert nhs_check_digit("999123456") is None


@pytest.mark.parametrize("value", ["943476591", "94347659190", "94347A5919"])
def test_nhs_numbers_that_are_not_ten_digits_are_refused(value):
    assert check("nhs", value) == f"NHS number {value} is not 10 digits"


# --- NINO ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["AB123456C", "JG 10 37 59 A", "ce123456d", "AB123456", "AB123456F"])
def test_well_formed_ninos_are_accepted_including_legacy_suffixes(value):
    assert check("nino", value) is None


@pytest.mark.parametrize(
    "value",
    [
        "QQ123456C",
        "BG123456A",
        "GB123456A",
        "NK123456A",
        "TN123456A",
        "ZZ123456A",
        "DA123456A",
        "AO123456A",
        "AB12345C",
        "AB123456E",
    ],
)
def test_ninos_with_unallocated_prefixes_or_bad_shape_are_refused(value):
    assert check("nino", value) is not None


# --- postcode -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        "SW1A 1AA",
        "EC1A 1BB",
        "W1A 0AX",
        "M1 1AE",
        "B33 8TH",
        "CR2 6XH",
        "DN55 1PT",
        "GIR 0AA",
        "LS6 2QT",
        "sw1a1aa",
        "  EC1A   1BB ",
    ],
)
def test_postcodes_matching_bs7666_are_accepted(value):
    assert check("postcode", value) is None


@pytest.mark.parametrize(
    "value",
    [
        "QA1 1AA",
        "VA1 1AA",
        "AI1 1AA",
        "A1I 1AA",
        "AA1C 1AA",
        "SW1A 1AC",
        "ZZ99 9ZZ",
        "BFPO 1234",
        "SW1A",
        "12345",
    ],
)
def test_postcodes_breaking_the_letter_rules_or_pseudo_postcodes_are_refused(value):
    assert check("postcode", value) is not None


def test_postcodes_are_normalised_to_upper_case_with_one_space():
    assert normalise("postcode", "sw1a1aa") == "SW1A 1AA"


# --- VRM ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "kind"),
    [
        ("AB51 ABC", "current"),
        ("YH19KTD", "current"),
        ("A123 BCD", "prefix"),
        ("ABC 123D", "suffix"),
        ("1 A", "plausible"),
        ("AAZ 1234", "plausible"),
        ("AB01 CDE", "plausible"),
        ("RAC 1", "plausible"),
    ],
)
def test_current_prefix_suffix_and_plausible_vrms_are_accepted(value, kind):
    # Given a VRM / Then it is accepted and its format named; personalised and dateless marks are plausible
    assert check("vrm", value) is None
    assert vrm_format(value) == kind


@pytest.mark.parametrize("value", ["ABCDEFG", "1234567", "AB12CDEF", "A", "AB_12"])
def test_implausible_vrms_are_refused(value):
    assert check("vrm", value) is not None


def test_vrms_are_stored_compact_and_upper_case():
    assert normalise("vrm", "ab51 abc") == "AB51ABC"


# --- CPS URN, force codes, opaque schemes -------------------------------------------------------------------


@pytest.mark.parametrize("value", ["01ZD1600008", "01ZD0305408", "01 ZD 16000 08", "01zd/16000/08"])
def test_cps_urns_are_accepted_with_spaces_or_slashes_and_stored_compact(value):
    assert check("urn", value) is None
    assert normalise("urn", value) in {"01ZD1600008", "01ZD0305408"}


@pytest.mark.parametrize("value", ["01ZD160000", "01ZD16000080", "AAZD1600008", "01ZD16A0008"])
def test_malformed_cps_urns_are_refused(value):
    assert check("urn", value) is not None


def test_the_force_table_holds_the_43_territorial_forces_and_btp():
    # Given the force table / Then it has 44 entries and agrees with the REFERENCE regex
    import re

    assert len(FORCES) == 44
    pattern = re.compile(r"^(0[13-7]|1[0-467]|2[0-3]|3[0-7]|4[0-8]|5[02-5]|6[0-3]|93)$")
    assert all(pattern.match(code) for code in FORCES)
    assert sum(1 for n in range(100) if pattern.match(f"{n:02d}")) == 44


@pytest.mark.parametrize(
    ("code", "name", "slug"),
    [
        ("01", "Metropolitan Police Service", "metropolitan"),
        ("48", "City of London Police", "city-of-london"),
        ("13", "West Yorkshire Police", "west-yorkshire"),
        ("93", "British Transport Police", "btp"),
    ],
)
def test_force_codes_have_names_and_police_uk_slugs(code, name, slug):
    assert check("force", code) is None
    assert force_name(code) == name
    assert force_slug(code) == slug


@pytest.mark.parametrize("code", ["00", "02", "08", "15", "24", "91", "98", "1", "XX"])
def test_non_territorial_force_codes_are_not_in_the_force_table(code):
    assert check("force", code) is not None
    assert force_name(code) is None


@pytest.mark.parametrize("scheme", ["local", "crime-ref", "custody", "school-urn"])
def test_opaque_schemes_accept_any_non_empty_value(scheme):
    assert check(scheme, "anything / at all") is None


def test_uprns_must_be_one_to_twelve_digits():
    assert check("uprn", "72011234567") is None
    assert check("uprn", "1234567890123") is not None
    assert check("uprn", "12A") is not None


def test_police_uk_crime_ids_must_be_64_hex_characters():
    good = "a" * 32 + "0123456789abcdef" * 2
    assert check("police-uk", good) is None
    assert check("police-uk", good[:-1]) is not None
    assert check("police-uk", good[:-1] + "g") is not None


@pytest.mark.parametrize("value", [None, 42, "", "   ", "9" * 65])
def test_empty_non_string_or_overlong_values_are_refused_without_raising(value):
    assert check("pnc", value) is not None


def test_an_unknown_scheme_is_reported_not_raised():
    assert check("passport", "123456789") == "unknown identifier scheme 'passport'"


def test_normalise_never_raises_for_an_unparseable_value():
    # Given garbage / When normalised / Then it comes back trimmed and upper-cased
    assert normalise("pnc", " not a pnc ") == "NOT A PNC"
    assert normalise("local", " Abc ") == "Abc"

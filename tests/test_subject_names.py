"""A subject report by name finds the person however the name was stored: NFC or NFD, any case, given
names as one element or several."""

from __future__ import annotations

import unicodedata

import pytest

from broker.audit import entries as audit
from broker.audit import reports as disclosures

KEY = b"test-audit-key"
DOB = "1990-05-17"


def stored_keys(family: str, given: list[str]) -> list[str]:
    record = {"data": {"persons": [{"name": {"family": family, "given": given}, "birth_date": DOB}]}}
    return audit.subject_keys(record, KEY)


def searched_keys(name: str) -> list[str]:
    return disclosures.Subject(name=name, dob=DOB).keys(KEY)


def test_a_name_stored_decomposed_is_found_when_typed_composed():
    # Given "Zoë Brontë" stored in NFD (e + combining diaeresis) / When the DPO types it composed (NFC)
    stored = stored_keys(unicodedata.normalize("NFD", "Brontë"), [unicodedata.normalize("NFD", "Zoë")])
    # Then the same key is searched
    assert set(searched_keys(unicodedata.normalize("NFC", "Brontë, Zoë"))) <= set(stored)


def test_a_name_stored_composed_is_found_when_typed_decomposed():
    stored = stored_keys("Brontë", ["Zoë"])
    assert set(searched_keys(unicodedata.normalize("NFD", "Brontë, Zoë"))) <= set(stored)


@pytest.mark.parametrize("given", [["Mary Ann"], ["Mary", "Ann"], ["  mary   ann "]])
@pytest.mark.parametrize("typed", ["Smith, Mary Ann", "SMITH, mary", "smith,Mary  Ann"])
def test_given_names_stored_as_one_element_or_several_are_found_in_any_case(given, typed):
    assert set(searched_keys(typed)) <= set(stored_keys("Smith", given))


def test_case_folding_matches_names_whose_capitals_are_not_a_simple_upper_case():
    # Given "Straße" stored / When typed "STRASSE" / Then it is the same name after case-folding
    assert set(searched_keys("STRASSE, Anna")) <= set(stored_keys("Straße", ["Anna"]))


def test_a_different_first_name_is_a_different_person():
    assert not set(searched_keys("Smith, Ann")) & set(stored_keys("Smith", ["Mary Ann"]))

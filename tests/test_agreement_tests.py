"""Every agreement test as data (deploy/agreements/tests/*.yaml) passes, as `interchange rules test` runs it."""

from __future__ import annotations

import pytest

from adapters.registry import adapter_class
from broker.config import load_settings
from broker.routing.agreement_tests import Deciding, run_file

SETTINGS = load_settings(environ={})
CASES = sorted((SETTINGS.agreements_dir / "tests").glob("*.yaml"))


@pytest.fixture(scope="module")
def deciding():
    return Deciding.load(SETTINGS, adapter_class)


def test_there_are_agreement_tests_for_the_sample_agreements():
    assert len(CASES) >= 13


@pytest.mark.parametrize("case", CASES, ids=lambda p: p.stem)
def test_agreement_case(case, deciding):
    result = run_file(case, deciding)
    assert result.passed, "\n".join(result.problems)

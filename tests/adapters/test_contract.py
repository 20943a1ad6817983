"""Every registered adapter keeps the contract: golden outputs, valid records, errors not exceptions."""

from __future__ import annotations

import pytest

from adapters import AdapterError, get_adapter, list_adapters
from adapters.golden import as_json, cases, produce
from adapters.registry import ADAPTERS, UnknownAdapter, adapter_class
from broker.errors import ConfigError, DataError

INBOUND = [name for name in ADAPTERS if adapter_class(name).direction == "inbound"]
OUTBOUND = [name for name in ADAPTERS if adapter_class(name).direction == "outbound"]
GOLDEN = [case for name in ADAPTERS for case in cases(name)]
GARBAGE = [
    b"",
    b"\x00\xff\xfe\xfd garbage",
    b"<not-xml",
    b"{",
    b"a,b\n1",
    b"\xef\xbb\xbf\r\n\r\n",
    b"x" * 5000,
]


@pytest.mark.parametrize("name", list(ADAPTERS))
def test_every_registered_adapter_resolves_and_declares_itself(name):
    adapter = get_adapter(name)

    assert adapter.name == name
    assert adapter.direction in ("inbound", "outbound")
    assert adapter.description


@pytest.mark.parametrize("name", list(ADAPTERS))
def test_every_adapter_ships_at_least_one_golden_case(name):
    assert cases(name), f"{name} has no fixtures/golden.yaml cases"


@pytest.mark.parametrize("case", GOLDEN, ids=str)
def test_fixtures_translate_to_their_golden_outputs(case):
    expected = (case.folder / case.expected).read_bytes()

    assert produce(case) == expected, f"regenerate with: python -m adapters.golden {case.adapter} --update"


@pytest.mark.parametrize("case", [c for c in GOLDEN if c.input is not None], ids=str)
def test_every_inbound_record_validates_against_the_common_schema(case, schema_errors):
    adapter = get_adapter(case.adapter)

    for result in adapter.translate(case.path(case.input), case.mapping):
        if isinstance(result, dict):
            assert schema_errors(result) == [], result["id"]


@pytest.mark.parametrize("case", [c for c in GOLDEN if c.input is not None], ids=str)
def test_translating_the_same_input_twice_gives_the_same_ids(case):
    adapter = get_adapter(case.adapter)

    def ids():
        return [as_json(r).get("id") for r in adapter.translate(case.path(case.input), case.mapping)]

    assert ids() == ids()


@pytest.mark.parametrize("garbage", GARBAGE, ids=lambda g: repr(g[:12]))
@pytest.mark.parametrize("name", INBOUND)
def test_malformed_input_yields_the_adapters_own_error_never_a_bare_exception(name, garbage):
    adapter = get_adapter(name)
    mapping = adapter.mappings()[0]

    results = list(adapter.translate(garbage, mapping))

    assert results, "malformed input must produce at least one error"
    assert all(isinstance(r, AdapterError) for r in results)
    assert all(r.errors and r.errors[0].code for r in results)


@pytest.mark.parametrize("name", OUTBOUND)
def test_outbound_adapters_refuse_a_record_of_the_wrong_shape_with_their_own_error(name):
    adapter = get_adapter(name)

    with pytest.raises(DataError):
        adapter.render({"type": "intelligence.report", "id": "x", "data": {}}, {})
    with pytest.raises(AdapterError):
        adapter.render({"type": adapter.record_types[0], "id": "x", "data": {}}, {})


def test_unknown_adapter_names_suggest_the_closest_registered_name():
    with pytest.raises(UnknownAdapter) as caught:
        get_adapter("police-uk-cvs")

    assert isinstance(caught.value, ConfigError)
    assert "did you mean 'police-uk-csv'?" in str(caught.value)


def test_the_adapter_listing_names_direction_description_and_mappings():
    listing = {info.name: info for info in list_adapters()}

    assert set(listing) == set(ADAPTERS)
    assert listing["police-uk-csv"].direction == "inbound"
    assert "city-of-london" in listing["police-uk-csv"].mappings
    assert listing["cps-xml"].direction == "outbound"
    assert [i.name for i in list_adapters("outbound")] == sorted(OUTBOUND)

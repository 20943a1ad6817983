"""Hostile XML is refused quickly, with a clear error naming the attack."""

from __future__ import annotations

import io
import time

import pytest

from adapters import AdapterError, get_adapter
from adapters.xmlsafe import Limits, iterparse, parse

LAUGHS = b"""<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">
<!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
<!ENTITY lol9 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">]><lolz>&lol9;</lolz>"""
QUADRATIC = (
    b'<?xml version="1.0"?><!DOCTYPE q [<!ENTITY a "' + b"a" * 50_000 + b'">]><q>' + b"&a;" * 20_000 + b"</q>"
)
HOSTILE = {
    "billion laughs": (LAUGHS, "xml_entity_declared"),
    "quadratic blow-up": (QUADRATIC, "xml_entity_declared"),
    "external entity (file)": (
        b'<?xml version="1.0"?><!DOCTYPE f [<!ENTITY x SYSTEM "file:///etc/passwd">]><f>&x;</f>',
        "xml_entity_declared",
    ),
    "external entity (http)": (
        b'<!DOCTYPE f [<!ENTITY x SYSTEM "http://127.0.0.1:9/x">]><f>&x;</f>',
        "xml_entity_declared",
    ),
    "parameter entity": (
        b'<!DOCTYPE f [<!ENTITY % p SYSTEM "http://127.0.0.1:9/p.dtd"> %p;]><f/>',
        "xml_entity_declared",
    ),
    "external DTD": (
        b'<?xml version="1.0"?><!DOCTYPE f SYSTEM "http://127.0.0.1:9/f.dtd"><f/>',
        "xml_external_dtd",
    ),
    "external DTD (public)": (b'<!DOCTYPE f PUBLIC "-//X//Y" "file:///etc/f.dtd"><f/>', "xml_external_dtd"),
    "XInclude": (
        b'<f xmlns:xi="http://www.w3.org/2001/XInclude">'
        b'<xi:include href="file:///etc/passwd" parse="text"/></f>',
        "xml_xinclude",
    ),
    "10,000-deep nesting": (b"<a>" * 10_000 + b"</a>" * 10_000, "xml_too_deep"),
    "undeclared entity reference": (b"<f>&undeclared;</f>", "xml_entity_reference"),
    "truncated document": (b"<f><g>", "xml_malformed"),
}


@pytest.mark.parametrize("name", list(HOSTILE))
def test_hostile_xml_is_refused_quickly_with_a_code_naming_the_attack(name):
    body, code = HOSTILE[name]
    started = time.perf_counter()

    with pytest.raises(AdapterError) as caught:
        list(iterparse(io.BytesIO(body), ["x"]))

    assert caught.value.code == code
    assert time.perf_counter() - started < 1.0


@pytest.mark.parametrize("adapter", ["cjse-spi", "niem-nibrs"])
@pytest.mark.parametrize("name", list(HOSTILE))
def test_xml_adapters_turn_hostile_input_into_one_adapter_error(adapter, name):
    body, code = HOSTILE[name]
    instance = get_adapter(adapter)

    results = list(instance.translate(body, instance.mappings()[0]))

    assert [r.code for r in results] == [code]


def test_an_invalid_utf8_byte_is_reported_with_its_byte_offset():
    body = b'<?xml version="1.0" encoding="UTF-8"?><a>caf\xe9</a>'

    with pytest.raises(AdapterError) as caught:
        parse(io.BytesIO(body))

    assert caught.value.code == "xml_encoding_invalid"
    assert caught.value.location == "byte 44"
    assert "0xe9" in str(caught.value)


def test_an_invalid_byte_deep_in_a_large_input_is_located_exactly():
    body = b"<a>" + b"<b>x</b>" * 20_000 + b"<b>\xff</b></a>"

    with pytest.raises(AdapterError) as caught:
        list(iterparse(io.BytesIO(body), ["{}b"]))

    assert caught.value.location == f"byte {3 + 8 * 20_000 + 3}"


def test_a_declared_single_byte_encoding_is_decoded_and_accepted():
    body = '<?xml version="1.0" encoding="ISO-8859-1"?><a>café</a>'.encode("latin-1")

    assert parse(io.BytesIO(body)).text == "café"


@pytest.mark.parametrize(
    ("limits", "body", "code"),
    [
        (Limits(max_bytes=100), b"<a>" + b"x" * 200 + b"</a>", "body_too_large"),
        (Limits(max_elements=10), b"<a>" + b"<b/>" * 20 + b"</a>", "xml_too_many_elements"),
        (Limits(max_text=10), b"<a>" + b"x" * 20 + b"</a>", "xml_text_too_long"),
        (Limits(max_attribute=10), b'<a b="' + b"x" * 20 + b'"/>', "xml_attribute_too_long"),
    ],
)
def test_size_limits_are_enforced(limits, body, code):
    with pytest.raises(AdapterError) as caught:
        list(iterparse(io.BytesIO(body), None, limits))

    assert caught.value.code == code


def test_streaming_clears_elements_so_memory_stays_flat():
    records = 100_000
    body = io.BytesIO(b"<r>" + b"<rec><v>1</v></rec>" * records + b"</r>")
    seen, widest = 0, 0

    for element in iterparse(body, ["rec"], Limits(max_bytes=1 << 30, max_elements=10 * records)):
        seen += 1
        widest = max(widest, len(element.getparent()))

    assert seen == records
    assert widest < 5_000  # at most one 64 KiB chunk of records is alive at a time

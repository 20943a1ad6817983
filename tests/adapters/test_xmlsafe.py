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
QUADRATIC = b'<?xml version="1.0"?><!DOCTYPE q [<!ENTITY a "' + b"a" * 50_000 + b'">]><q>' + b"&a;" * 20_000 + b"</q>"
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
        b'<f xmlns:xi="http://www.w3.org/2001/XInclude"><xi:include href="file:///etc/passwd" parse="text"/></f>',
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

    # (the samples' root <f> is not the adapter's: refused as such unless the prolog is refused first)
    assert [r.code for r in results] in ([code], ["xml_wrong_root"])


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


def test_an_element_with_100000_attributes_is_refused_in_well_under_a_second():
    # Given one element with 100,000 short attributes (0.9 MB; reading their values is quadratic in lxml)
    body = b"<r " + b" ".join(b'a%x=""' % i for i in range(100_000)) + b"/>"
    started = time.perf_counter()

    with pytest.raises(AdapterError) as caught:
        list(iterparse(io.BytesIO(body), None))

    assert caught.value.code == "xml_too_many_attributes"
    assert time.perf_counter() - started < 1.0


def test_a_start_tag_longer_than_the_text_limit_is_refused_before_the_parser_sees_it():
    body = b"<r " + b" ".join(b'a%d="1"' % i for i in range(100_000)) + b"/>"  # 1.1 MB start tag
    started = time.perf_counter()

    with pytest.raises(AdapterError) as caught:
        list(iterparse(io.BytesIO(body), None))

    assert caught.value.code == "xml_text_too_long"
    assert caught.value.location.startswith("byte ")
    assert time.perf_counter() - started < 1.0


def test_a_flood_of_elements_is_counted_on_the_raw_bytes_before_the_parser_reaches_them():
    # Given 200,000 empty elements and a limit of 1,000
    body = b"<r>" + b"<e/>" * 200_000 + b"</r>"

    with pytest.raises(AdapterError) as caught:
        list(iterparse(io.BytesIO(body), None, Limits(max_elements=1_000)))

    # Then the byte count fires on the first 64 KiB chunk, before any element event
    assert caught.value.code == "xml_too_many_elements"
    assert caught.value.location == "byte 65536"


def test_end_tags_comments_and_instructions_split_across_chunks_are_not_counted_as_elements():
    # Given exactly 1,000 elements whose end tags straddle every 64 KiB boundary somewhere
    element = b"<e>" + b"x" * 997 + b"</e>"  # 1,004 bytes: boundaries fall at every offset
    body = b"<?xml version='1.0'?><!-- c --><r>" + element * 999 + b"<?pi x?></r>"

    elements = list(iterparse(io.BytesIO(body), ["e"], Limits(max_elements=1_000)))

    assert len(elements) == 999


def test_text_joined_from_cdata_sections_is_still_checked_per_element():
    body = b"<r>" + b"<![CDATA[" + b"x" * 8 + b"]]>" + b"<![CDATA[" + b"y" * 8 + b"]]></r>"

    with pytest.raises(AdapterError) as caught:
        list(iterparse(io.BytesIO(body), None, Limits(max_text=12)))

    assert caught.value.code == "xml_text_too_long"


@pytest.mark.parametrize(
    ("adapter", "body", "code"),
    [
        ("cjse-spi", b'<?xml version="1.0"?><Other xmlns="urn:x"><a/></Other>', "xml_wrong_root"),
        ("niem-nibrs", b'<?xml version="1.0"?><?pi only?><r/>', "xml_wrong_root"),
        (
            "cjse-spi",
            b'<DeliverRequest xmlns="http://schemas.cjse.gov.uk/messages/deliver/2006-05"/>',
            "xml_no_records",
        ),
        ("niem-nibrs", b'<n:Submission xmlns:n="http://fbi.gov/cjis/nibrs/4.2"/>', "xml_no_records"),
    ],
)
def test_xml_adapters_name_a_wrong_root_or_a_document_without_records(adapter, body, code):
    instance = get_adapter(adapter)

    results = list(instance.translate(body, instance.mappings()[0]))

    assert [r.code for r in results] == [code]
    assert "expected" in results[0].errors[0].message


def test_a_format_with_a_density_floor_refuses_a_flood_of_tiny_elements_after_the_grace_count():
    # Given 2.1 million empty elements (8 MB) and the XML adapters' floor of one element per 16 bytes
    body = b"<r>" + b"<e/>" * 2_100_000 + b"</r>"
    started = time.perf_counter()

    with pytest.raises(AdapterError) as caught:
        list(iterparse(io.BytesIO(body), None, Limits(min_bytes_per_element=16)))

    # Then it is refused after about 100,000 of them, not after the 2,000,000 of max_elements
    assert caught.value.code == "xml_too_many_elements"
    assert "one element per 16 bytes" in caught.value.errors[0].message
    assert int(caught.value.location.split()[1]) < 500_000
    assert time.perf_counter() - started < 3.0

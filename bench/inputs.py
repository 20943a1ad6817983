"""Synthetic legacy inputs for the benchmark, made by multiplying the adapters' own fixtures with distinct ids.

- cjse-spi: the public bichard7 SPIResults fixture with its `DC:Case` repeated, each with its own URN and
  a valid ASN (check letter computed);
- police-uk-csv: data.police.uk street-crime rows (the published header, distinct crime ids);
- fixed-width: the force-b mainframe extract's first crime repeated with distinct crime references.

`legacy_inputs(n)` returns (adapter, mapping, bytes) for about n records in total, a third from each.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from pathlib import Path

from broker.identifiers import asn_check_char

ADAPTERS = Path(__file__).resolve().parent.parent / "adapters"
SPI_FIXTURE = ADAPTERS / "cjse_spi" / "fixtures" / "spi-034a-valid-asn.xml"
SPI_CASES_PER_FILE = 5000
FIXED_WIDTH_FIXTURE = ADAPTERS / "fixed_width" / "fixtures" / "force-b.txt"

STREET_HEADER = (
    "Crime ID,Month,Reported by,Falls within,Longitude,Latitude,Location,LSOA code,LSOA name,"
    "Crime type,Last outcome category,Context\n"
)
CRIME_TYPES = [
    "Burglary",
    "Other theft",
    "Vehicle crime",
    "Shoplifting",
    "Criminal damage and arson",
    "Violence and sexual offences",
    "Public order",
    "Bicycle theft",
]
OUTCOMES = [
    "Investigation complete; no suspect identified",
    "Offender given community sentence",
    "Under investigation",
    "Local resolution",
    "Offender fined",
]


def spi_xml(count: int, start: int = 0) -> bytes:
    """One SPIResults message holding `count` cases (one defendant each)."""
    text = SPI_FIXTURE.read_text(encoding="utf-8")
    match = re.search(r"(\s*<DC:Case>.*?</DC:Case>)", text, re.S)
    assert match, "the SPI fixture has no DC:Case"
    case = match.group(1)
    cases = []
    for i in range(start, start + count):
        sequence = 100000 + i
        asn = f"1101ZD01{sequence}{asn_check_char('11', '01', '01', sequence)}"
        urn = f"01ZD{i % 100000:05d}{(i // 100000) % 100:02d}"
        cases.append(case.replace("01ZD0305408", urn).replace("1101ZD01410791W", asn))
    return (text[: match.start()] + "".join(cases) + text[match.end() :]).encode("utf-8")


def street_csv_rows(start: int, count: int) -> Iterator[str]:
    for i in range(start, start + count):
        crime_id = hashlib.sha256(f"bench-{i}".encode()).hexdigest()
        lon, lat = -0.09 - (i % 97) / 10000, 51.51 + (i % 89) / 10000
        yield (
            f"{crime_id},2017-01,City of London Police,City of London Police,{lon:.6f},{lat:.6f},"
            f"On or near Bench Street {i % 50},E01000{914 + i % 30},City of London 00{i % 9}B,"
            f"{CRIME_TYPES[i % len(CRIME_TYPES)]},{OUTCOMES[i % len(OUTCOMES)]},\n"
        )


def street_csv(count: int, start: int = 0) -> bytes:
    return (STREET_HEADER + "".join(street_csv_rows(start, count))).encode("utf-8")


def fixed_width(count: int, start: int = 0) -> bytes:
    """force-b's first crime (CR, NM, NM, OF, AR lines) repeated with crime references FB/nnnnnn/26."""
    lines = FIXED_WIDTH_FIXTURE.read_text(encoding="ascii").splitlines(keepends=True)
    first = [line for line in lines if "FB/000101/26" in line]
    out = []
    for i in range(start, start + count):
        ref = f"F{chr(66 + (i // 1_000_000) % 24)}/{i % 1_000_000:06d}/26"
        out.extend(line.replace("FB/000101/26", ref) for line in first)
    return "".join(out).encode("ascii")


def legacy_inputs(total: int, start: int = 0) -> list[tuple[str, str, bytes]]:
    """(adapter name, mapping name, bytes) for about `total` records, a third from each format."""
    third = max(1, total // 3)
    spi_files = [
        ("cjse-spi", "libra-spi", spi_xml(min(SPI_CASES_PER_FILE, third - done), start + done))
        for done in range(0, third, SPI_CASES_PER_FILE)
    ]  # the adapter refuses XML over 16 MB
    return [
        *spi_files,
        ("police-uk-csv", "city-of-london", street_csv(third, start)),
        ("fixed-width", "force-b", fixed_width(total - 2 * third, start)),
    ]

"""SPI codes -> record values, from the vendored national standing data (adapters/standing_data).

Every function is pure: it returns the mapped value, or None when the code is not in the national
table (the caller turns that into a coded rejection naming the code).
"""

from __future__ import annotations

from typing import Any

from adapters import standing_data
from adapters.mapping import Mapping

UNCODED_RESULT = "1000"  # national result code "Uncoded text result": a result the court sent without a code


def _spi(table: str, code: str) -> standing_data.Row | None:
    rows = standing_data.table(table)
    found = rows.get(code)
    if found is None and code.isdigit():  # "01" in a message is the code "1" of the table
        found = rows.get(str(int(code)))
    return found


def slug(table: str, code: str) -> str | None:
    """The slug of an SPI code's description (plea 2 -> `not-guilty`, finding A -> `guilty-of-alternative-offence`)."""
    row = _spi(table, code)
    return standing_data.slug(row.description) if row else None


def coded(table: str, code: str, meaning: str) -> dict[str, str] | None:
    """A code with its meaning: `{"code": <CJS code>, <meaning>: <slug>}` (bail status, mode of trial)."""
    row = _spi(table, code)
    if row is None:
        return None
    return {"code": row.cjs_code or code, meaning: standing_data.slug(row.description)}


def offence(mapping: Mapping, local: str) -> tuple[str, str | None]:
    """The CJS offence code (via the mapping's local `offence` table, if any) and its title; None if unknown.

    The title comes from the national table, else from the mapping's `extra_offences` (CJS codes in use
    that the vendored copy of the table lacks, each with its source noted in the mapping).
    """
    cjs = mapping.code("offence", local) or local
    row = standing_data.table("cjs-offences").get(cjs)
    return cjs, row.title if row else mapping.code("extra_offences", cjs)


def result(mapping: Mapping, local: str) -> tuple[str, standing_data.Row | None]:
    """The CJS result code (uncoded results take 1000) and its national row."""
    cjs = mapping.code("result", local) or local or UNCODED_RESULT
    cjs = str(int(cjs)) if cjs.isdigit() else cjs
    return cjs, standing_data.table("result-code").get(cjs)


def qualifier(code: str) -> dict[str, str] | None:
    """A result qualifier code with its national description."""
    row = standing_data.table("result-qualifier-code").get(code)
    return {"code": code, "description": row.description} if row else None


def court(mapping: Mapping, ou_code: str) -> dict[str, Any] | None:
    """The court of an OU code: `{"ou_code", "name", "psa_code"}`, or None when no table knows it.

    An OU whose bottom level (the last two characters) is not in the national table takes the name of its
    courthouse (the same code with bottom level `00`).  The mapping's `court` table names local codes.
    """
    local = mapping.code("court", ou_code)
    if local:
        return {"ou_code": ou_code, "name": local}
    courts = standing_data.table("courts")
    row = (courts.get(ou_code) or courts.get(ou_code[:5] + "00")) if len(ou_code) == 7 else None
    if row is None:
        return None
    name = f"{row.name} - {row.unit}" if row.unit else row.name
    return {"ou_code": ou_code, "name": f"{name} ({row.court_type})", "psa_code": row.psa_code or None}

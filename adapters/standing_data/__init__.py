"""The national CJSE code tables the adapters use, vendored from the Ministry of Justice (see README.md).

    standing_data.table("plea-status")["1"].description   # 'Guilty'
    standing_data.slug("Not Guilty")                      # 'not-guilty'

Each table is read once, on first use, and kept: a dict from the table's key (the SPI code for the
SPI code lists, the CJS code for results and offences, the OU code for courts) to its row.
"""

from __future__ import annotations

import csv
import gzip
import io
import re
from functools import cache
from pathlib import Path
from types import MappingProxyType
from typing import NamedTuple

HERE = Path(__file__).resolve().parent

KEYS = {
    "plea-status": "spi_code",
    "verdict": "spi_code",
    "duration-unit": "spi_code",
    "remand-status": "spi_code",
    "mode-of-trial-reason": "spi_code",
    "gender": "spi_code",
    "result-code": "cjs_code",
    "result-qualifier-code": "cjs_code",
    "cjs-offences": "cjs_code",
    "courts": "ou_code",
}


class Row(NamedTuple):
    """One row of a standing-data table: its key and every kept column."""

    key: str
    fields: MappingProxyType

    def __getattr__(self, name: str) -> str:  # row.description, row.title ...
        try:
            return self.fields[name]
        except KeyError:
            raise AttributeError(name) from None


def names() -> list[str]:
    """The vendored tables."""
    return sorted(KEYS)


@cache
def table(name: str) -> MappingProxyType:
    """Table `name` as a read-only dict key -> Row (KeyError for a table that is not vendored)."""
    key = KEYS[name]
    plain, packed = HERE / f"{name}.csv", HERE / f"{name}.csv.gz"
    raw = plain.read_bytes() if plain.is_file() else gzip.decompress(packed.read_bytes())
    rows = csv.DictReader(io.StringIO(raw.decode("utf-8")))
    return MappingProxyType({r[key]: Row(r[key], MappingProxyType(r)) for r in rows})


def slug(description: str) -> str:
    """The lower-case slug of a description (`Guilty of Alternative Offence` -> `guilty-of-alternative-offence`)."""
    return re.sub(r"[^a-z0-9]+", "-", description.lower().replace("'", "")).strip("-")

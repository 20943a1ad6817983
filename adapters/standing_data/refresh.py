"""Rebuild the vendored CJSE standing data from a copy of `ministryofjustice/bichard7-next-data`.

    python -m adapters.standing_data.refresh DATA_DIR

DATA_DIR is the folder of that repository's JSON code tables (plea-status.json, cjs-offences.json, ...).
Only the tables and columns the adapters use are kept, as small CSV files (the two large ones gzipped,
written without a timestamp so the same input gives the same bytes).  Update the commit in README.md
after a refresh and run the standing-data tests: a code that changed meaning shows up there.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import sys
from collections.abc import Callable, Iterable
from pathlib import Path

HERE = Path(__file__).resolve().parent
Row = dict[str, str]


def _rows(source: Path, name: str) -> list[Row]:
    return json.loads((source / f"{name}.json").read_text(encoding="utf-8"))


def _spi(row: Row) -> dict[str, str]:
    return {"spi_code": row["spiCode"], "cjs_code": row.get("cjsCode", ""), "description": row["description"]}


def _court(row: Row) -> dict[str, str] | None:
    if row["topLevelCode"] not in ("B", "C"):  # B magistrates' courts, C Crown Courts
        return None
    levels = ("topLevel", "secondLevel", "thirdLevel", "bottomLevel")
    return {
        "ou_code": "".join(row[f"{level}Code"] for level in levels),
        "court_type": row["topLevelName"],
        "area": row["secondLevelName"],
        "name": row["thirdLevelName"],
        "unit": row["bottomLevelName"],
        "psa_code": row["thirdLevelPsaCode"],
    }


TABLES: dict[str, tuple[str, Callable[[Row], dict[str, str] | None]]] = {
    "plea-status.csv": ("plea-status", _spi),
    "verdict.csv": ("verdict", _spi),
    "duration-unit.csv": ("duration-unit", _spi),
    "remand-status.csv": ("remand-status", _spi),
    "mode-of-trial-reason.csv": ("mode-of-trial-reason", _spi),
    "gender.csv": ("gender", _spi),
    "result-code.csv": (
        "result-code",
        lambda r: {
            "cjs_code": r["cjsCode"],
            "description": r["description"],
            "type": r["type"],
            "qualifiers": r["resultCodeQualifiers"].strip(","),
        },
    ),
    "result-qualifier-code.csv": (
        "result-qualifier-code",
        lambda r: {"cjs_code": r["cjsCode"], "description": r["description"]},
    ),
    "cjs-offences.csv.gz": (
        "cjs-offences",
        lambda r: {
            "cjs_code": r["cjsCode"],
            "title": r["offenceTitle"],
            "recordable": "Y" if r["recordableOnPnc"] else "N",
        },
    ),
    "courts.csv.gz": ("organisation-unit", _court),
}


def _csv(rows: Iterable[dict[str, str]]) -> bytes:
    rows = list(rows)
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(sorted(rows, key=lambda r: tuple(r.values())))
    return out.getvalue().encode("utf-8")


def refresh(source: Path, target: Path = HERE) -> list[str]:
    """Write every vendored table from `source`; returns the file names written."""
    for out_name, (name, keep) in TABLES.items():
        body = _csv(row for row in map(keep, _rows(source, name)) if row is not None)
        if out_name.endswith(".gz"):
            body = gzip.compress(body, compresslevel=9, mtime=0)
        (target / out_name).write_bytes(body)
    return list(TABLES)


if __name__ == "__main__":
    if len(sys.argv) != 2 or not Path(sys.argv[1]).is_dir():
        print("usage: python -m adapters.standing_data.refresh DATA_DIR", file=sys.stderr)
        raise SystemExit(2)
    for written in refresh(Path(sys.argv[1])):
        print(written)

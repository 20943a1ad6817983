"""`interchange translate`: the dry run of an inbound adapter, without RabbitMQ.

Every input file goes through the adapter; each record is checked against the common schema.  Records
are written as NDJSON, rejections as NDJSON with their reason codes, and the counts per reason are kept.
A record the adapter emitted that fails the schema is an adapter defect (the adapter must refuse with a
reason instead): it is written with the rejections under reason `schema_invalid` and makes the run fail.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import orjson

from broker.contract import InboundAdapter
from broker.errors import DataError
from broker.routing.validation import Validator

SCHEMA_INVALID = "schema_invalid"


@dataclass
class TranslateSummary:
    """What one dry run produced: records, rejections per reason code, schema-invalid records."""

    records: int = 0
    rejected: Counter = field(default_factory=Counter)
    schema_invalid: int = 0

    @property
    def ok(self) -> bool:
        """True when every input became a valid record or a coded rejection."""
        return self.schema_invalid == 0

    def lines(self) -> list[str]:
        """The summary as printable lines: totals, then counts per reason."""
        out = [
            f"{self.records} valid records, {sum(self.rejected.values())} rejected, "
            f"{self.schema_invalid} schema-invalid"
        ]
        out += [f"  {reason}: {count}" for reason, count in sorted(self.rejected.items())]
        if self.schema_invalid:
            out.append(f"  {SCHEMA_INVALID}: {self.schema_invalid}")
        return out


def rejection(where: str, error: DataError) -> dict[str, Any]:
    """A rejection as one NDJSON line: where, record id, reason code and every field error."""
    return {
        "input": where,
        "location": error.location,
        "record_id": error.record_id,
        "code": error.errors[0].code if error.errors else error.reason,
        "errors": [e.as_dict() for e in error.errors],
    }


def translate_files(
    adapter: InboundAdapter,
    mapping: str,
    files: list[Path],
    records_out: IO[bytes],
    rejects_out: IO[bytes],
    lineage: Any = None,
) -> TranslateSummary:
    """Translate and validate every file; write records and rejections as NDJSON; return the counts.

    `lineage`: the adapter's store of source-record versions (e.g. an SQLite lineage file opened by the
    caller): a changed re-send supersedes the version an earlier run sent.
    """
    store = lineage
    loaded = adapter.load_mapping(mapping)
    validator, summary = Validator(), TranslateSummary()
    for where, result in _results(adapter, loaded, files, store):
        if isinstance(result, DataError):
            line = rejection(where, result)
            summary.rejected[line["code"]] += 1
        elif errors := validator.validate(result):
            summary.schema_invalid += 1
            line = {
                "input": where,
                "record_id": result.get("id"),
                "code": SCHEMA_INVALID,
                "errors": [e.as_dict() for e in errors],
                "record": result,
            }
        else:
            summary.records += 1
            records_out.write(orjson.dumps(result) + b"\n")
            continue
        rejects_out.write(orjson.dumps(line) + b"\n")
    return summary


def _results(adapter: Any, mapping: Any, files: list[Path], lineage: Any) -> Iterator[tuple[str, Any]]:
    for path in files:
        for result in adapter.translate(path, mapping, lineage=lineage):
            yield str(path.name), result

"""Golden-file cases for adapters: inputs beside expected outputs, as data (`<adapter>/fixtures/golden.yaml`).

Each entry of golden.yaml is one case:

    - input: spi-fine.xml            # a file in fixtures/, or public:<name> for tests/fixtures/public
      mapping: libra-spi             # inbound only
      expected: spi-fine.expected.jsonl

    - record: examples:02-case.file-to-cps.json   # outbound: a record in fixtures/ or examples/records/
      options: {}
      expected: case-file.expected.xml

Inbound expected files are JSON Lines, one line per result: the record, or {"error": {...}}.
`python -m adapters.golden <adapter> [--update]` checks (or rewrites) an adapter's cases.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from adapters.registry import ADAPTERS, adapter_class
from broker.errors import DataError

PUBLIC = Path(
    os.environ.get(
        "INTERCHANGE_PUBLIC_FIXTURES", Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "public"
    )
)
EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "records"


@dataclass(frozen=True)
class Case:
    adapter: str
    folder: Path
    input: str | None
    mapping: str | None
    record: str | None
    expected: str
    options: dict[str, Any] = field(default_factory=dict)

    def path(self, name: str) -> Path:
        if name.startswith("public:"):
            return PUBLIC / name[len("public:") :]
        if name.startswith("examples:"):
            return EXAMPLES / name[len("examples:") :]
        return self.folder / name

    def __str__(self) -> str:
        return f"{self.adapter}:{self.input or self.record}"


def cases(name: str) -> list[Case]:
    """The golden cases declared for adapter `name` (none if it has no golden.yaml)."""
    folder = adapter_class(name).folder / "fixtures"
    manifest = folder / "golden.yaml"
    if not manifest.is_file():
        return []
    entries = yaml.safe_load(manifest.read_text(encoding="utf-8")) or []
    return [
        Case(
            name,
            folder,
            e.get("input"),
            e.get("mapping"),
            e.get("record"),
            e["expected"],
            e.get("options") or {},
        )
        for e in entries
    ]


def as_json(result: dict[str, Any] | DataError) -> dict[str, Any]:
    """A result as it is written to a golden file."""
    if isinstance(result, dict):
        return result
    return {
        "error": {
            "reason": result.reason,
            "location": result.location,
            "record_id": result.record_id,
            "errors": [e.as_dict() for e in result.errors],
        }
    }


def produce(case: Case) -> bytes:
    """Run the adapter on the case's input and return the bytes the expected file should hold."""
    adapter = adapter_class(case.adapter)()
    if case.input is not None:
        results = adapter.translate(case.path(case.input), case.mapping)  # type: ignore[attr-defined]
        return b"".join(json.dumps(as_json(r), sort_keys=True, ensure_ascii=False).encode() + b"\n" for r in results)
    record = json.loads(case.path(case.record or "").read_text(encoding="utf-8"))
    body, _content_type = adapter.render(record, case.options)  # type: ignore[attr-defined]
    return body


def check(case: Case, *, update: bool = False) -> bool:
    """True when the adapter's output equals the expected file (rewriting it first when `update`)."""
    produced, expected = produce(case), case.folder / case.expected
    if update:
        expected.write_bytes(produced)
    return expected.is_file() and expected.read_bytes() == produced


def main(argv: list[str]) -> int:
    update = "--update" in argv
    names = [a for a in argv if not a.startswith("--")] or list(ADAPTERS)
    failed = [str(c) for n in names for c in cases(n) if not check(c, update=update)]
    for name in failed:
        print(f"golden mismatch: {name}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))

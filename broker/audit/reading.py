"""The audit log's file name and how its entries are read back (shared by the log, its index and checkpoints)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson

LOG_NAME = "audit.jsonl"


def read_entries(path: Path) -> Iterator[dict[str, Any]]:
    """Each entry of the audit log at `path`; a line that is not JSON yields `{"_unreadable": <its start>}`."""
    with path.open("rb") as fh:
        for line in fh:
            if line.strip():
                try:
                    yield orjson.loads(line)
                except orjson.JSONDecodeError:
                    yield {"_unreadable": line[:80].decode(errors="replace")}

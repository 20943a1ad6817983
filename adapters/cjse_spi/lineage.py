"""Versions of one court result: a later, different version supersedes the one before it.

Keyed by (origin agency, lineage key): the key names the defendant's result at one hearing (URN, ASN,
hearing date); each version has its own id (the key plus a digest of the content), so the same version
always gets the same id and a changed one a new id.  Kept in memory for the most recent `max_keys` keys,
and, when given a file, also appended to it as JSON lines and read back on start (so a later run knows
the versions an earlier one sent).
"""

from __future__ import annotations

import json
from collections import OrderedDict
from pathlib import Path


class Lineage:
    """The versions seen so far of each (agency, key), in the order they arrived."""

    def __init__(self, path: Path | None = None, max_keys: int = 100_000) -> None:
        self._versions: OrderedDict[tuple[str, str], list[str]] = OrderedDict()
        self._max_keys, self._path = max_keys, path
        if path is not None and path.is_file():
            for line in path.read_text(encoding="utf-8").splitlines():
                if line.strip():
                    entry = json.loads(line)
                    self._note(entry["agency"], entry["key"], entry["id"])

    def record(self, agency: str, key: str, record_id: str) -> str | None:
        """Note `record_id` as a version of (agency, key); return the id of the version it supersedes.

        A version seen again (a duplicate re-send) gets the same answer as the first time.
        """
        versions, new = self._note(agency, key, record_id)
        if new and self._path is not None:
            with self._path.open("a", encoding="utf-8") as out:
                out.write(json.dumps({"agency": agency, "key": key, "id": record_id}) + "\n")
        position = versions.index(record_id)
        return versions[position - 1] if position else None

    def _note(self, agency: str, key: str, record_id: str) -> tuple[list[str], bool]:
        versions = self._versions.setdefault((agency, key), [])
        self._versions.move_to_end((agency, key))
        if len(self._versions) > self._max_keys:
            self._versions.popitem(last=False)
        if record_id in versions:
            return versions, False
        versions.append(record_id)
        return versions, True

"""Versions of one court result: a later, different version supersedes the one before it.

Keyed by (origin agency, lineage key): the key names the defendant's result at one hearing (URN, ASN,
hearing date); each version has its own id (the key plus a digest of the content), so the same version
always gets the same id and a changed one a new id.
"""

from __future__ import annotations


class Lineage:
    """The versions seen so far of each (agency, key), in the order they arrived."""

    def __init__(self) -> None:
        self._versions: dict[tuple[str, str], list[str]] = {}

    def record(self, agency: str, key: str, record_id: str) -> str | None:
        """Note `record_id` as a version of (agency, key); return the id of the version it supersedes.

        A version seen again (a duplicate re-send) gets the same answer as the first time.
        """
        versions = self._versions.setdefault((agency, key), [])
        if record_id not in versions:
            versions.append(record_id)
        position = versions.index(record_id)
        return versions[position - 1] if position else None

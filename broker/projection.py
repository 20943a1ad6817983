"""Keep only the fields an agreement lets a recipient see (the per-recipient view of a record).

`Projector(allowed_paths)` is built once per agreement and record type; `project(record)` returns the
recipient's copy and the generic paths of every field that was withheld.  The envelope (ids, type, time,
origin, markings, subject references) always travels: a recipient needs it to handle the record lawfully.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from broker.paths import EVERY, compile_tree, leaf_paths

ENVELOPE = ("specversion", "id", "source", "type", "time", "dataschema", "origin", "correlation_id",
            "supersedes", "classification", "handling", "subjects")


@dataclass(frozen=True, slots=True)
class Projection:
    record: dict[str, Any]
    disclosed: tuple[str, ...]
    withheld: tuple[str, ...]


class Projector:
    """Compiled allow-list for one agreement and record type."""

    def __init__(self, allowed: list[str] | tuple[str, ...]) -> None:
        self.allowed = tuple(allowed)
        self._tree = compile_tree(self.allowed)

    def project(self, record: dict[str, Any], data_paths: list[str] | None = None) -> Projection:
        """The recipient's view; `data_paths` (leaf_paths of record["data"]) saves a walk when given."""
        out = {key: record[key] for key in ENVELOPE if key in record}
        data = record.get("data")
        kept_data = _keep(data, self._tree.get("data", {})) if isinstance(data, dict) else None
        out["data"] = kept_data if isinstance(kept_data, dict) else {}
        disclosed = tuple(leaf_paths(out["data"], "data"))
        disclosed_set = set(disclosed)
        if data and data_paths is None:
            data_paths = leaf_paths(data, "data")
        withheld = tuple(p for p in data_paths if p not in disclosed_set) if data and data_paths else ()
        return Projection(out, disclosed, withheld)


def _keep(node: Any, tree: Any) -> Any:
    if tree is True:
        return node
    if isinstance(node, dict):
        kept = {}
        for key, subtree in tree.items():
            if key in node:
                value = _keep(node[key], subtree)
                if value is not _NOTHING:
                    kept[key] = value
        return kept if kept else _NOTHING
    if isinstance(node, list) and EVERY in tree:
        items = [v for v in (_keep(item, tree[EVERY]) for item in node) if v is not _NOTHING]
        return items if items else _NOTHING
    return _NOTHING


class _Nothing:
    __slots__ = ()

    def __repr__(self) -> str:
        return "NOTHING"


_NOTHING: Any = _Nothing()

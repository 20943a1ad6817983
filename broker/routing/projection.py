"""Keep only the fields an agreement lets a recipient see (the per-recipient view of a record).

`Projector(allowed_paths)` is built once per agreement and record type; `project(record)` returns the
recipient's copy and the generic paths of every field that was withheld.  The envelope (ids, type, time,
origin, markings, subject references) always travels: a recipient needs it to handle the record lawfully.
The free text of the handling conditions (`handling.conditions.text`) is the exception: it is a field like
any other, disclosed only where the agreement lists it and counted in the disclosed or withheld paths.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from broker.routing.paths import EVERY, compile_tree, leaf_paths, parse

ENVELOPE = (
    "specversion",
    "id",
    "source",
    "type",
    "time",
    "dataschema",
    "origin",
    "correlation_id",
    "supersedes",
    "classification",
    "handling",
    "subjects",
)
HANDLING_TEXT = "handling.conditions.text"


@dataclass(frozen=True, slots=True)
class Projection:
    """A recipient's view of a record, and which leaf paths it discloses and withholds."""

    record: dict[str, Any]
    disclosed: tuple[str, ...]
    withheld: tuple[str, ...]


class Projector:
    """Compiled allow-list for one agreement and record type."""

    def __init__(self, allowed: list[str] | tuple[str, ...]) -> None:
        self.allowed = tuple(allowed)
        self._tree = compile_tree(self.allowed)
        self._covers: dict[str, bool] = {}  # generic leaf path -> allowed?  (paths repeat across records)
        self._splits: dict[tuple[str, ...], tuple[tuple[str, ...], tuple[str, ...]]] = {}
        self.discloses_handling_text = HANDLING_TEXT in self.allowed

    def project(self, record: dict[str, Any], data_paths: Sequence[str] | None = None) -> Projection:
        """The recipient's view, and which of the record's generic leaf paths it discloses and withholds.

        `data_paths` (leaf_paths of record["data"], walked once per record) saves a walk when given.
        """
        out = {key: record[key] for key in ENVELOPE if key in record}
        text_paths: tuple[tuple[str, ...], tuple[str, ...]] = ((), ())
        if _has_handling_text(record):
            if self.discloses_handling_text:
                text_paths = ((HANDLING_TEXT,), ())
            else:
                out["handling"] = without_handling_text(record["handling"])
                text_paths = ((), (HANDLING_TEXT,))
        data = record.get("data")
        kept_data = _keep(data, self._tree.get("data", {})) if isinstance(data, dict) else None
        out["data"] = kept_data if isinstance(kept_data, dict) else {}
        if not data:
            return Projection(out, *text_paths)
        paths = tuple(leaf_paths(data, "data") if data_paths is None else data_paths)
        split = self._splits.get(paths)
        if split is None:  # records of one shape share their leaf paths: split them once per shape
            if len(self._splits) >= 4096:
                self._splits.clear()
            split = self._splits[paths] = self._split(paths)
        if text_paths != ((), ()):
            return Projection(out, text_paths[0] + split[0], text_paths[1] + split[1])
        return Projection(out, *split)

    def _split(self, paths: tuple[str, ...]) -> tuple[tuple[str, ...], tuple[str, ...]]:
        covers = self._covers
        disclosed: list[str] = []
        withheld: list[str] = []
        for path in paths:
            allowed = covers.get(path)
            if allowed is None:
                allowed = covers[path] = self._allows(path)
            (disclosed if allowed else withheld).append(path)
        return tuple(disclosed), tuple(withheld)

    def _allows(self, path: str) -> bool:
        """Whether the allow-list keeps the leaf at this generic path (it lies under a listed path)."""
        node: Any = self._tree
        for step in parse(path):
            if node is True:
                return True
            node = node.get(step) if isinstance(node, dict) else None
            if node is None:
                return False
        return node is True


def _has_handling_text(record: dict[str, Any]) -> bool:
    handling = record.get("handling")
    conditions = handling.get("conditions") if isinstance(handling, dict) else None
    return isinstance(conditions, dict) and "text" in conditions


def without_handling_text(handling: dict[str, Any]) -> dict[str, Any]:
    """The handling marking without the free text of its conditions (a condition of only text is dropped)."""
    conditions = {k: v for k, v in handling["conditions"].items() if k != "text"}
    kept = {k: v for k, v in handling.items() if k != "conditions"}
    if conditions:
        kept["conditions"] = conditions
    return kept


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

"""Field paths: `data.persons[].name.family` names every family name in a record.

A path is dot-separated keys; a key followed by `[]` means "every element of this list".  Paths name
whole subtrees.  These functions are pure and are used by projection, conditions and the audit.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from functools import lru_cache
from typing import Any

EVERY = "[]"
_SCALARS = frozenset((str, int, float, bool, type(None)))  # exact types of JSON scalars: no isinstance() needed


@lru_cache(maxsize=4096)
def parse(path: str) -> tuple[str, ...]:
    """`data.persons[].name` -> ('data', 'persons', '[]', 'name')."""
    steps: list[str] = []
    for part in path.split("."):
        if part.endswith(EVERY):
            steps.extend((part[:-2], EVERY))
        else:
            steps.append(part)
    return tuple(steps)


def values_at(doc: Any, path: str) -> list[Any]:
    """Every value found at `path` (lists under `[]` are walked; missing keys yield nothing)."""
    return list(_walk(doc, parse(path)))


def _walk(node: Any, steps: tuple[str, ...]) -> Iterator[Any]:
    if not steps:
        yield node
        return
    head, rest = steps[0], steps[1:]
    if head == EVERY:
        if isinstance(node, list):
            for item in node:
                yield from _walk(item, rest)
    elif isinstance(node, dict) and head in node:
        yield from _walk(node[head], rest)


def leaf_paths(doc: Any, prefix: str = "") -> list[str]:
    """Generic paths (with `[]`) of every leaf in `doc`, without repeats in order of first appearance."""
    found: list[str] = []
    _leaves(doc, prefix, found)
    return list(dict.fromkeys(found))


def _leaves(node: Any, prefix: str, found: list[str]) -> None:
    # A list-building walk with exact type checks (JSON from orjson holds only dict, list and scalars): on the
    # hot path (every record), nested generators cost 3x as much and isinstance() twice as much.
    kind = type(node)
    if kind is dict or (kind is not list and isinstance(node, dict)):
        for key, value in node.items():
            path = f"{prefix}.{key}" if prefix else key
            if type(value) in _SCALARS or not isinstance(value, (dict, list)):
                found.append(path)
            else:
                _leaves(value, path, found)
    elif (kind is list or isinstance(node, list)) and node and _has_container(node):
        path = prefix + EVERY
        for item in node:
            _leaves(item, path, found)
    else:
        found.append(prefix)


def _has_container(items: list[Any]) -> bool:
    for item in items:
        if type(item) not in _SCALARS and isinstance(item, (dict, list)):
            return True
    return False


def compile_tree(paths: Iterable[str]) -> dict[str, Any]:
    """Turn an allow-list of paths into a nested dict; `True` marks a kept subtree."""
    tree: dict[str, Any] = {}
    for path in paths:
        node = tree
        steps = parse(path)
        for step in steps[:-1]:
            child = node.get(step)
            if child is True:
                break
            node = node.setdefault(step, {})
        else:
            node[steps[-1]] = True
    return tree

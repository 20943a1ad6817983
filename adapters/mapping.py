"""Mappings as data: one YAML file per source system, checked against the adapter's JSON Schema.

A mapping says who the records come from (`agency`, `system`), how they are marked by default
(`classification`, optional `handling`), and the code tables, date formats and field choices that
differ between forces running the same system.  A second force joins an existing format by adding a
mapping file, not code.  Each adapter folder holds `mapping.schema.json` (which `$ref`s the common
header in `adapters/mapping-common.schema.json`) and its shipped mappings in `mappings/<name>.yaml`.
"""

from __future__ import annotations

import json
import os
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml
from jsonschema import Draft202012Validator
from referencing import Registry, Resource

from broker.errors import ConfigError

HERE = Path(__file__).resolve().parent
COMMON_SCHEMA = HERE / "mapping-common.schema.json"


class Mapping:
    """A loaded, schema-checked mapping.  `data` is the YAML document as a dict."""

    def __init__(self, name: str, file: str, data: dict[str, Any]) -> None:
        self.name, self.file, self.data = name, file, data
        self._folded: dict[str, dict[str, str]] = {}

    def __repr__(self) -> str:
        return f"Mapping({self.name!r}, agency={self.agency!r})"

    @property
    def agency(self) -> str:
        return str(self.data["agency"])

    @property
    def system(self) -> str:
        return str(self.data["system"])

    @property
    def source(self) -> str:
        return str(self.data.get("source") or f"urn:interchange:{self.agency}:{self.system}")

    @property
    def classification(self) -> dict[str, Any]:
        return self.data.get("classification") or {"tier": "OFFICIAL", "sensitive": False}

    @property
    def handling(self) -> dict[str, Any] | None:
        return self.data.get("handling")

    def get(self, key: str, default: Any = None) -> Any:
        return self.data.get(key, default)

    def table(self, name: str) -> dict[str, str]:
        """A code table (`codes.<name>`), empty if the mapping has none."""
        return (self.data.get("codes") or {}).get(name) or {}

    def code(self, table: str, value: str | None, *, fold_case: bool = False) -> str | None:
        """Look `value` up in code table `table`; None when absent.  `fold_case` ignores case and spaces."""
        if value is None:
            return None
        entries = self.table(table)
        if not fold_case:
            found = entries.get(value)
            return None if found is None else str(found)
        if table not in self._folded:
            self._folded[table] = {_fold(k): str(v) for k, v in entries.items()}
        return self._folded[table].get(_fold(value))


def _fold(text: str) -> str:
    return " ".join(str(text).replace("’", "'").split()).casefold()


def mapping_names(folder: Path) -> list[str]:
    """Names of the mappings shipped in `<folder>/mappings/` (file stems), sorted."""
    directory = Path(folder) / "mappings"
    return sorted(p.stem for p in directory.glob("*.yaml")) if directory.is_dir() else []


def load_mapping(folder: Path, name_or_path: str | os.PathLike) -> Mapping:
    """Load a mapping by shipped name or by path and check it; raise ConfigError naming file and key."""
    path = Path(name_or_path)
    if path.suffix not in (".yaml", ".yml"):
        path = Path(folder) / "mappings" / f"{name_or_path}.yaml"
        if not path.is_file():
            known = ", ".join(mapping_names(folder)) or "none"
            raise ConfigError(str(path), "", f"no mapping named {name_or_path!r} (shipped: {known})")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(str(path), "", f"cannot read: {exc}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(str(path), "", f"not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(str(path), "", "a mapping must be a YAML mapping (key: value) at the top")
    if "extends" in data:
        data = _extend(folder, path, data)
    _check(path, data, _validator(str(Path(folder) / "mapping.schema.json")))
    return Mapping(str(data.get("name") or path.stem), str(path), data)


def _extend(folder: Path, path: Path, data: dict[str, Any]) -> dict[str, Any]:
    """`extends: <name>`: start from another shipped mapping, then override keys and code-table entries."""
    base_name = data.pop("extends")
    if not isinstance(base_name, str) or base_name == path.stem:
        raise ConfigError(str(path), "extends", "must name another mapping of the same adapter")
    base = load_mapping(folder, base_name).data
    merged = {**base, **{k: v for k, v in data.items() if k != "codes"}}
    codes = {name: dict(table) for name, table in (base.get("codes") or {}).items()}
    for name, table in (data.get("codes") or {}).items():
        codes[name] = {**codes.get(name, {}), **(table or {})}
    merged["codes"] = codes
    merged.pop("description", None) if "description" not in data else None
    return merged


def _check(path: Path, data: dict[str, Any], validator: Draft202012Validator) -> None:
    # The deepest error names the key to fix (a failed allOf also makes every key "unevaluated" at the top).
    errors = sorted(validator.iter_errors(data), key=lambda e: (-len(e.absolute_path), list(map(str, e.absolute_path))))
    if errors:
        first = errors[0]
        key = ".".join(str(p) for p in first.absolute_path)
        raise ConfigError(str(path), key, first.message)


@lru_cache(maxsize=32)
def _validator(schema_file: str) -> Draft202012Validator:
    common = json.loads(COMMON_SCHEMA.read_text(encoding="utf-8"))
    schema = json.loads(Path(schema_file).read_text(encoding="utf-8"))
    registry: Registry = Registry().with_resource(common["$id"], Resource.from_contents(common))
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema, registry=registry)

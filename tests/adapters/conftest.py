"""Shared helpers for adapter tests: fixture paths, golden files and common-schema validation."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
PUBLIC = ROOT / "tests" / "fixtures" / "public"  # public sample files, licences in SOURCES.md


def _schema_errors_fallback() -> Callable[[dict[str, Any]], list[str]]:
    """Plain JSON Schema validation against schemas/ (used until broker/routing/validation.py is available)."""
    from jsonschema import Draft202012Validator, FormatChecker
    from referencing import Registry, Resource

    schemas = {p.name: json.loads(p.read_text()) for p in (ROOT / "schemas").glob("*.json")}
    registry = Registry().with_resources((s["$id"], Resource.from_contents(s)) for s in schemas.values())
    validators: dict[str, Draft202012Validator] = {}

    def errors(record: dict[str, Any]) -> list[str]:
        name = f"{record.get('type')}.json"
        if name not in schemas:
            return [f"no schema for type {record.get('type')!r}"]
        if name not in validators:
            validators[name] = Draft202012Validator(schemas[name], registry=registry, format_checker=FormatChecker())
        return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validators[name].iter_errors(record)]

    return errors


def _schema_errors() -> Callable[[dict[str, Any]], list[str]]:
    try:
        from broker.routing.validation import Validator  # type: ignore[attr-defined]
    except ImportError:
        return _schema_errors_fallback()
    validator = Validator()

    def errors(record: dict[str, Any]) -> list[str]:
        return [str(e) for e in validator.validate(record)]

    return errors


@pytest.fixture(scope="session")
def schema_errors() -> Callable[[dict[str, Any]], list[str]]:
    """`schema_errors(record) -> list[str]`: every common-schema problem of a record (empty when valid)."""
    return _schema_errors()


@pytest.fixture(scope="session")
def public() -> Path:
    return PUBLIC

"""Structured logs: structlog JSON lines on stdout, UTC timestamps, configured in this one place.

Every line about a record carries `record_id` and `correlation_id`.  No personal data is ever logged:
the audit log is where disclosures are recorded, and it holds keyed hashes, not identifiers.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

import orjson
import structlog


def _dumps(obj: Any, default: Any = None) -> str:
    return orjson.dumps(obj, default=default).decode()


def configure(level: str = "info", stream: Any = None) -> None:
    """Set up the processor pipeline once per process."""
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(serializer=_dumps),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        logger_factory=structlog.PrintLoggerFactory(stream or sys.stdout),
        cache_logger_on_first_use=False,
    )


def get(name: str = "interchange", **bound: Any) -> Any:
    """A structlog logger with these values bound."""
    return structlog.get_logger(name).bind(**bound)


def record_context(record_id: str | None, correlation_id: str | None) -> AbstractContextManager[Any]:
    """Bind record_id and correlation_id to every log line written inside the `with` block."""
    return structlog.contextvars.bound_contextvars(record_id=record_id, correlation_id=correlation_id)


def in_record_context(
    record_id: str | None, correlation_id: str | None, callback: Callable[..., Any]
) -> Callable[..., Any]:
    """Wrap a callback (a publisher confirm, say) so the lines it logs carry the record's ids."""

    def call(*args: Any, **kwargs: Any) -> Any:
        with record_context(record_id, correlation_id):
            return callback(*args, **kwargs)

    return call

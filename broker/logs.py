"""Structured logs: structlog JSON lines on stdout, UTC timestamps, configured in this one place.

Every line about a record carries `record_id` and `correlation_id`.  No personal data is ever logged:
the audit log is where disclosures are recorded, and it holds keyed hashes, not identifiers.
"""

from __future__ import annotations

import logging
import sys
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
    return structlog.get_logger(name).bind(**bound)

"""The name of a recipient's view schema: what one delivery is valid against (broker.partners.contract).

A view is the common schema of one record type cut to the fields one agreement discloses to one recipient.
Its `$id` is stable (it changes only with the contract's major version `v1`); the schema's content, and so
its `version`, change when the agreement's field list does.
"""

from __future__ import annotations

VIEWS_BASE = "https://interchange.police.uk/schemas/v1/views"
DATASCHEMA_HEADER = "x-dataschema"


def view_id(recipient: str, agreement: str, record_type: str, fmt: str | None = None) -> str:
    """The `$id` of the view schema of (recipient, agreement, record type); `fmt` names an outbound format
    (a rendered body: `crime-map-csv`) whose contract is the rendered text, not the common JSON."""
    suffix = f".{fmt}" if fmt and fmt != "common-json" else ""
    return f"{VIEWS_BASE}/{recipient}/{agreement}/{record_type}{suffix}.json"


def notice_id(public: bool = False) -> str:
    """The `$id` of the retraction notice's schema (a public recipient's notice carries only the Crime ID)."""
    return f"{VIEWS_BASE}/notices/{'public-retraction' if public else 'retraction'}.json"

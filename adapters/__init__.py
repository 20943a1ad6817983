"""Adapters: how a legacy system joins Interchange (see adapters/README.md).

Inbound adapters translate a legacy export into common-schema records; outbound adapters render a
common-schema record in the layout a partner's system accepts.  Look them up by name:

    from adapters import get_adapter, list_adapters
    for result in get_adapter("police-uk-csv").translate("street.csv", "city-of-london"): ...
"""

from adapters.base import AdapterError, InboundAdapter, OutboundAdapter, Result
from adapters.registry import AdapterInfo, UnknownAdapter, get_adapter, list_adapters

__all__ = [
    "AdapterError",
    "AdapterInfo",
    "InboundAdapter",
    "OutboundAdapter",
    "Result",
    "UnknownAdapter",
    "get_adapter",
    "list_adapters",
]

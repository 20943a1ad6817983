"""Adapter registry: `name -> "module:Class"`, imported only when asked for.

    get_adapter("cjse-spi").translate(path, "libra-spi")
    list_adapters()  # for `interchange adapters`

Unknown names raise `UnknownAdapter` (a ConfigError) with a "did you mean …?" suggestion.
"""

from __future__ import annotations

import difflib
import importlib
from dataclasses import dataclass
from functools import cache

from adapters.base import Adapter, InboundAdapter, OutboundAdapter
from broker.errors import ConfigError

ADAPTERS: dict[str, str] = {
    # inbound: legacy format -> common schema
    "cjse-spi": "adapters.cjse_spi.inbound:SpiResultsAdapter",
    "police-uk-csv": "adapters.police_uk_csv.inbound:PoliceUkCsvAdapter",
    "niem-nibrs": "adapters.niem.inbound:NibrsIncidentAdapter",
    "fixed-width": "adapters.fixed_width.inbound:FixedWidthAdapter",
    "custody-csv": "adapters.custody_csv.inbound:CustodyCsvAdapter",
    "common-json": "adapters.common_json.inbound:CommonJsonAdapter",
    # outbound: common schema -> partner format
    "cps-xml": "adapters.cps_xml.outbound:CpsXmlAdapter",
    "mash-csv": "adapters.mash_csv.outbound:MashCsvAdapter",
    "encompass": "adapters.encompass.outbound:EncompassAdapter",
    "crime-map-csv": "adapters.crime_map_csv.outbound:CrimeMapCsvAdapter",
}


class UnknownAdapter(ConfigError):
    """An adapter name that is not registered."""

    def __init__(self, name: str) -> None:
        close = difflib.get_close_matches(name, ADAPTERS, n=1, cutoff=0.5)
        hint = f"; did you mean {close[0]!r}?" if close else f"; known: {', '.join(sorted(ADAPTERS))}"
        super().__init__("adapters/registry.py", name, f"unknown adapter {name!r}{hint}")
        self.suggestion = close[0] if close else None


@dataclass(frozen=True, slots=True)
class AdapterInfo:
    """One line of `interchange adapters`."""

    name: str
    direction: str
    description: str
    mappings: tuple[str, ...]


@cache
def adapter_class(name: str) -> type[Adapter]:
    """Import and return the class registered as `name`."""
    try:
        target = ADAPTERS[name]
    except KeyError:
        raise UnknownAdapter(name) from None
    module_name, _, class_name = target.partition(":")
    return getattr(importlib.import_module(module_name), class_name)


def get_adapter(name: str) -> InboundAdapter | OutboundAdapter:
    """A ready instance of the adapter registered as `name`."""
    return adapter_class(name)()  # type: ignore[return-value]


def list_adapters(direction: str | None = None) -> list[AdapterInfo]:
    """Every registered adapter (optionally one direction), sorted by direction then name."""
    infos = []
    for name in ADAPTERS:
        cls = adapter_class(name)
        if direction in (None, cls.direction):
            infos.append(AdapterInfo(name, cls.direction, cls.description, tuple(cls.mappings())))
    return sorted(infos, key=lambda i: (i.direction, i.name))

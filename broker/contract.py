"""What `broker` and `adapters` agree on, so that each depends on the other only through this contract.

The import contract (`.importlinter`, checked by `make test`):

- `adapters` may import from `broker` only `broker.errors` (typed errors carrying record id and field path)
  and `broker.identifiers` (the national identifier formats).
- `broker` never imports `adapters`, not even through another module, except its composition root:
  `broker.runner`, `broker.cli.*` (and `broker.__main__`, which runs the CLI).  The root looks adapters up
  (`adapters.registry`) and passes them in, shaped as the protocols below.
- No import cycle among the modules of `broker` and `adapters`, imports made inside functions included
  (`tests/test_import_contract.py`), and none between the modules or sub-packages of one room.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, ClassVar, Protocol


class InboundAdapter(Protocol):
    """An inbound adapter as ingest sees it: reads a legacy export, yields records or refusals."""

    name: ClassVar[str]

    def load_mapping(self, name_or_path: str) -> Any:
        """The named (or file) mapping this adapter reads with."""
        ...

    def translate(self, source: Any, mapping: Any, *, lineage: Any = None) -> Iterator[Any]:
        """Each record of `source` (a common-schema dict) or the `DataError` that refused it."""
        ...


class RendererInfo(Protocol):
    """What the configuration check needs to know of an outbound adapter class."""

    record_types: ClassVar[tuple[str, ...]]
    anonymising: ClassVar[bool]


AdapterLookup = Callable[[str], InboundAdapter]
"""name -> a ready inbound adapter; raises `ConfigError` for an unknown name."""

FormatLookup = Callable[[str], Any]
"""format name -> its adapter class (a `RendererInfo` for outbound formats); raises `ConfigError` if unknown."""

LineageOpener = Callable[[Any], Any]
"""path -> the lineage store an inbound adapter remembers source-record versions in."""

"""`interchange contract`: the partner contract (docs/PARTNERS.md).

contract export RECIPIENT [--out DIR]   AsyncAPI 3.0 document and view schemas of one recipient
contract export --all [--out DIR]       the same for every recipient
contract diff OLD NEW [--json]          per recipient, breaking and additive changes to its view schemas
                                        between two agreement directories (exit 1 when any is breaking)
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import orjson

from broker.cli.registry import Commands, arg
from broker.config import Registry, Settings
from broker.errors import ExitCode
from broker.partners import contract
from broker.runner import load_registry

commands = Commands()


def formats_of(registry: Registry) -> dict[str, contract.Format]:
    """The outbound formats the recipients use, as the contract describes them (content type, CSV columns)."""
    from adapters.registry import adapter_class

    formats = {}
    for name in {r.format for r in registry.recipients.values()} - {contract.COMMON_JSON}:
        cls: Any = adapter_class(name)
        xsd = getattr(cls, "xsd", None)
        formats[name] = contract.Format(
            name, cls.content_type, tuple(getattr(cls, "columns", ())), Path(xsd) if xsd else None
        )
    return formats


@commands(
    "contract export",
    "write a recipient's AsyncAPI 3.0 document and the view schemas it uses",
    arg("recipient", nargs="?", help="recipient id (or --all)"),
    arg("--all", action="store_true", help="every configured recipient"),
    arg("--out", type=Path, default=Path("contract"), help="folder (default ./contract)"),
)
def cmd_contract_export(args: argparse.Namespace, settings: Settings) -> int:
    """Write one recipient's (or every recipient's) AsyncAPI document and view schemas."""
    registry = load_registry(settings)
    if args.all == bool(args.recipient):
        sys.stderr.write("contract export: name one RECIPIENT or give --all\n")
        return ExitCode.USAGE
    recipients = sorted(registry.recipients) if args.all else [args.recipient]
    unknown = [r for r in recipients if r not in registry.recipients]
    if unknown:
        sys.stderr.write(
            f"contract export: no recipient {unknown[0]!r} (configured: {', '.join(sorted(registry.recipients))})\n"
        )
        return ExitCode.USAGE
    common, formats = contract.load_common(), formats_of(registry)
    for recipient in recipients:
        written = contract.export(contract.contract(registry, settings, recipient, common, formats), args.out)
        print(f"{recipient}: {written[0]} and {len(written) - 1} schemas")
    return ExitCode.OK


@commands(
    "contract diff",
    "per recipient, breaking vs additive changes to its view schemas",
    arg("old", type=Path, metavar="OLD_AGREEMENTS_DIR"),
    arg("new", type=Path, metavar="NEW_AGREEMENTS_DIR"),
    arg("--json", action="store_true"),
)
def cmd_contract_diff(args: argparse.Namespace, settings: Settings) -> int:
    """Per recipient, the breaking and additive changes between two agreement folders."""

    def views(folder: Path) -> list[contract.View]:
        registry = load_registry(settings.with_overrides(agreements_dir=folder))
        common, formats = contract.load_common(), formats_of(registry)
        return [v for r in sorted(registry.recipients) for v in contract.views_of(registry, r, common, formats)]

    changes = contract.diff(views(args.old), views(args.new))
    if args.json:
        sys.stdout.write(orjson.dumps([c.as_dict() for c in changes]).decode() + "\n")
    else:
        sys.stdout.write(contract.render_diff(changes))
    return ExitCode.FAILED if any(c.kind == "breaking" for c in changes) else ExitCode.OK

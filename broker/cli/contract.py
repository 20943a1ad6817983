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

from broker.config import Registry, Settings
from broker.partners import contract
from broker.runner import load_registry

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def add_commands(sub: Any, groups: dict[str, Any], command: Any) -> None:
    from broker.cli.main import new_group

    group = groups.get("contract") or new_group(sub, "contract", "the partner contract: view schemas and AsyncAPI")
    groups["contract"] = group
    p = group.add_parser("export", help="write a recipient's AsyncAPI 3.0 document and the view schemas it uses")
    p.add_argument("recipient", nargs="?", help="recipient id (or --all)")
    p.add_argument("--all", action="store_true", help="every configured recipient")
    p.add_argument("--out", type=Path, default=Path("contract"), help="folder (default ./contract)")
    command("contract export")(cmd_contract_export)
    p = group.add_parser("diff", help="per recipient, breaking vs additive changes to its view schemas")
    p.add_argument("old", type=Path, metavar="OLD_AGREEMENTS_DIR")
    p.add_argument("new", type=Path, metavar="NEW_AGREEMENTS_DIR")
    p.add_argument("--json", action="store_true")
    command("contract diff")(cmd_contract_diff)


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


def cmd_contract_export(args: argparse.Namespace, settings: Settings) -> int:
    registry = load_registry(settings)
    if args.all == bool(args.recipient):
        sys.stderr.write("contract export: name one RECIPIENT or give --all\n")
        return EXIT_USAGE
    recipients = sorted(registry.recipients) if args.all else [args.recipient]
    unknown = [r for r in recipients if r not in registry.recipients]
    if unknown:
        sys.stderr.write(
            f"contract export: no recipient {unknown[0]!r} (configured: {', '.join(sorted(registry.recipients))})\n"
        )
        return EXIT_USAGE
    common, formats = contract.load_common(), formats_of(registry)
    for recipient in recipients:
        written = contract.export(contract.contract(registry, settings, recipient, common, formats), args.out)
        print(f"{recipient}: {written[0]} and {len(written) - 1} schemas")
    return EXIT_OK


def cmd_contract_diff(args: argparse.Namespace, settings: Settings) -> int:
    def views(folder: Path) -> list[contract.View]:
        registry = load_registry(settings.with_overrides(agreements_dir=folder))
        common, formats = contract.load_common(), formats_of(registry)
        return [v for r in sorted(registry.recipients) for v in contract.views_of(registry, r, common, formats)]

    changes = contract.diff(views(args.old), views(args.new))
    if args.json:
        sys.stdout.write(orjson.dumps([c.as_dict() for c in changes]).decode() + "\n")
    else:
        sys.stdout.write(contract.render_diff(changes))
    return EXIT_FAILED if any(c.kind == "breaking" for c in changes) else EXIT_OK

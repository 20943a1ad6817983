"""CLI commands for the adapters: `interchange adapters`, `interchange ingest`, `interchange ingest-worker`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from broker.config import Settings

EXIT_OK, EXIT_FAILED = 0, 1


def add_commands(sub: Any, groups: dict[str, Any], command: Any) -> None:
    sub.add_parser("adapters", help="list every adapter, its direction and its mappings")

    p = sub.add_parser("ingest", help="stream legacy files through an adapter into the exchange, with confirms")
    p.add_argument("adapter", help="inbound adapter name (see `interchange adapters`)")
    p.add_argument("files", nargs="+", type=Path)
    p.add_argument("--mapping", required=True, help="mapping name (or path to a mapping YAML)")
    p.add_argument("--rejects", choices=("file", "dlq"), default="file",
                   help="untranslatable records go to <input>.rejects.ndjson (default) or the dead-letter queue")
    p.add_argument("--window", type=int, default=1000, help="unconfirmed publishes allowed in flight")
    p.add_argument("--lineage", type=Path, metavar="FILE",
                   help="SQLite file that remembers each source record's latest version, so a changed re-send "
                        "supersedes it (keep one file per mapping; default: none, ids are per version only)")

    p = sub.add_parser("ingest-worker", help="consume raw legacy payloads (headers x-adapter, x-mapping) and "
                                             "publish their records")
    p.add_argument("--until-idle", action="store_true", help="stop once the raw queue is empty")

    command("adapters")(cmd_adapters)
    command("ingest")(cmd_ingest)
    command("ingest-worker")(cmd_ingest_worker)


def cmd_adapters(args: argparse.Namespace, settings: Settings) -> int:
    from adapters.registry import list_adapters

    print(f"{'adapter':<16} {'direction':<9} {'mappings':<28} description")
    for info in list_adapters():
        print(f"{info.name:<16} {info.direction:<9} {', '.join(info.mappings) or '-':<28} {info.description}")
    return EXIT_OK


def cmd_ingest(args: argparse.Namespace, settings: Settings) -> int:
    from broker.ingest import ingest_files

    missing = [str(f) for f in args.files if not f.is_file()]
    if missing:
        print(f"no such file: {', '.join(missing)}", file=sys.stderr)
        return 2
    summary = ingest_files(settings, args.adapter, args.mapping, args.files, args.rejects, args.window,
                           lineage=args.lineage)
    print(summary.line())
    if summary.rejected and args.rejects == "file":
        print("rejected records were written beside each input as <input>.rejects.ndjson", file=sys.stderr)
    return EXIT_OK if not summary.failed and not summary.rejected else EXIT_FAILED


def cmd_ingest_worker(args: argparse.Namespace, settings: Settings) -> int:
    from broker.ingest import RawRunner

    summary = RawRunner(settings).run(stop_when_idle=args.until_idle)
    print(summary.line())
    return EXIT_OK

"""CLI commands for the adapters: `interchange adapters`, `ingest`, `ingest-worker` and `translate`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, cast

from adapters.registry import get_adapter
from broker.cli.registry import Commands, arg
from broker.config import Settings
from broker.contract import InboundAdapter
from broker.errors import ExitCode, UsageError
from broker.ops.metrics import IngestMetrics

commands = Commands()


@commands("adapters", "list every adapter, its direction and its mappings")
def cmd_adapters(args: argparse.Namespace, settings: Settings) -> int:
    """`interchange adapters`: list every adapter with its direction and mappings."""
    from adapters.registry import list_adapters

    print(f"{'adapter':<16} {'direction':<9} {'mappings':<28} description")
    for info in list_adapters():
        print(f"{info.name:<16} {info.direction:<9} {', '.join(info.mappings) or '-':<28} {info.description}")
    return ExitCode.OK


def serve_ingest_metrics(settings: Settings, metrics: Any, role: str) -> None:
    """/metrics, /healthz and /readyz on --metrics-port for an ingest process (0 or unset: off)."""
    if not settings.metrics_port:
        return
    from broker.ops import logs
    from broker.ops.health import Readiness, serve

    server = serve(settings.metrics_port, metrics.registry, Readiness({}))
    logs.get("interchange.health").info(
        "metrics_serving", role=role, port=server.server_address[1], paths=["/metrics", "/healthz", "/readyz"]
    )


def inbound_adapter(name: str) -> InboundAdapter:
    """The inbound adapter called `name` (a usage error names an outbound one)."""
    adapter = get_adapter(name)
    if getattr(adapter, "direction", "") != "inbound":
        raise UsageError(f"{name!r} is an outbound adapter: ingest and translate take an inbound one")
    return cast(InboundAdapter, adapter)


def open_lineage(path: Path | None) -> Any:
    """The SQLite lineage store at `path` (`--lineage`), or None when not asked for."""
    from adapters.lineage import SqliteLineage

    return SqliteLineage(path) if path is not None else None


@commands(
    "ingest",
    "stream legacy files through an adapter into the exchange, with confirms",
    arg("adapter", help="inbound adapter name (see `interchange adapters`)"),
    arg("files", nargs="+", type=Path),
    arg("--mapping", required=True, help="mapping name (or path to a mapping YAML)"),
    arg(
        "--rejects",
        choices=("file", "dlq"),
        default="file",
        help="untranslatable records go to <input>.rejects.ndjson (default) or the dead-letter queue",
    ),
    arg("--window", type=int, default=1000, help="unconfirmed publishes allowed in flight"),
    arg(
        "--lineage",
        type=Path,
        metavar="FILE",
        help="SQLite file that remembers each source record's latest version, so a changed re-send "
        "supersedes it (keep one file per mapping; default: none, ids are per version only)",
    ),
)
def cmd_ingest(args: argparse.Namespace, settings: Settings) -> int:
    """`interchange ingest`: stream legacy files through an inbound adapter into the exchange."""
    from broker.ingress.ingest import ingest_files

    missing = [str(f) for f in args.files if not f.is_file()]
    if missing:
        raise UsageError(f"no such file: {', '.join(missing)}")
    metrics = IngestMetrics()
    serve_ingest_metrics(settings, metrics, "ingest")
    summary = ingest_files(
        settings,
        inbound_adapter(args.adapter),
        args.mapping,
        args.files,
        args.rejects,
        args.window,
        lineage=open_lineage(args.lineage),
        metrics=metrics,
    )
    print(summary.line())
    if summary.rejected and args.rejects == "file":
        print("rejected records were written beside each input as <input>.rejects.ndjson", file=sys.stderr)
    return ExitCode.OK if not summary.failed and not summary.rejected else ExitCode.FAILED


@commands(
    "ingest-worker",
    "consume raw legacy payloads (headers x-adapter, x-mapping) and publish their records",
    arg("--until-idle", action="store_true", help="stop once the raw queue is empty"),
)
def cmd_ingest_worker(args: argparse.Namespace, settings: Settings) -> int:
    """`interchange ingest-worker`: publish the records of raw legacy payloads from the raw queue."""
    from broker.ingress.ingest import RawRunner

    metrics = IngestMetrics()
    serve_ingest_metrics(settings, metrics, "ingest-worker")
    summary = RawRunner(settings, inbound_adapter, metrics=metrics).run(stop_when_idle=args.until_idle)
    print(summary.line())
    return ExitCode.OK


@commands(
    "translate",
    "dry run: translate and validate legacy files without RabbitMQ; records and rejections as NDJSON, counts per "
    "reason",
    arg("adapter", help="inbound adapter name (see `interchange adapters`)"),
    arg("files", nargs="+", type=Path),
    arg("--mapping", required=True, help="mapping name (or path to a mapping YAML)"),
    arg(
        "--out",
        type=Path,
        help="write records.ndjson and rejects.ndjson here (default: records to stdout, rejections to stderr)",
    ),
    arg(
        "--lineage",
        type=Path,
        help="file of the record versions already sent (read, then appended): "
        "an amended re-send supersedes the version an earlier run sent",
    ),
)
def cmd_translate(args: argparse.Namespace, settings: Settings) -> int:
    """`interchange translate`: translate and validate legacy files without RabbitMQ."""
    from broker.ingress.translate import translate_files

    missing = [str(f) for f in args.files if not f.is_file()]
    if missing:
        raise UsageError(f"no such file: {', '.join(missing)}")
    if args.out is None:
        summary = translate_files(
            inbound_adapter(args.adapter),
            args.mapping,
            args.files,
            sys.stdout.buffer,
            sys.stderr.buffer,
            lineage=open_lineage(args.lineage),
        )
    else:
        args.out.mkdir(parents=True, exist_ok=True)
        with (args.out / "records.ndjson").open("wb") as records, (args.out / "rejects.ndjson").open("wb") as rejects:
            summary = translate_files(
                inbound_adapter(args.adapter),
                args.mapping,
                args.files,
                records,
                rejects,
                lineage=open_lineage(args.lineage),
            )
    sys.stdout.flush()
    for line in summary.lines():
        print(line, file=sys.stderr)
    return ExitCode.OK if summary.ok else ExitCode.FAILED

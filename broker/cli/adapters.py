"""CLI commands for the adapters: `interchange adapters`, `ingest`, `ingest-worker` and `translate`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from adapters.registry import get_adapter
from broker.config import Settings
from broker.ops.metrics import IngestMetrics

EXIT_OK, EXIT_FAILED = 0, 1


def add_commands(sub: Any, groups: dict[str, Any], command: Any) -> None:
    sub.add_parser("adapters", help="list every adapter, its direction and its mappings")

    p = sub.add_parser("ingest", help="stream legacy files through an adapter into the exchange, with confirms")
    p.add_argument("adapter", help="inbound adapter name (see `interchange adapters`)")
    p.add_argument("files", nargs="+", type=Path)
    p.add_argument("--mapping", required=True, help="mapping name (or path to a mapping YAML)")
    p.add_argument(
        "--rejects",
        choices=("file", "dlq"),
        default="file",
        help="untranslatable records go to <input>.rejects.ndjson (default) or the dead-letter queue",
    )
    p.add_argument("--window", type=int, default=1000, help="unconfirmed publishes allowed in flight")
    p.add_argument(
        "--lineage",
        type=Path,
        metavar="FILE",
        help="SQLite file that remembers each source record's latest version, so a changed re-send "
        "supersedes it (keep one file per mapping; default: none, ids are per version only)",
    )

    p = sub.add_parser(
        "ingest-worker", help="consume raw legacy payloads (headers x-adapter, x-mapping) and publish their records"
    )
    p.add_argument("--until-idle", action="store_true", help="stop once the raw queue is empty")

    p = sub.add_parser(
        "translate",
        help="dry run: translate and validate legacy files without RabbitMQ; "
        "records and rejections as NDJSON, counts per reason",
    )
    p.add_argument("adapter", help="inbound adapter name (see `interchange adapters`)")
    p.add_argument("files", nargs="+", type=Path)
    p.add_argument("--mapping", required=True, help="mapping name (or path to a mapping YAML)")
    p.add_argument(
        "--out",
        type=Path,
        help="write records.ndjson and rejects.ndjson here (default: records to stdout, rejections to stderr)",
    )
    p.add_argument(
        "--lineage",
        type=Path,
        help="file of the record versions already sent (read, then appended): "
        "an amended re-send supersedes the version an earlier run sent",
    )

    command("adapters")(cmd_adapters)
    command("translate")(cmd_translate)
    command("ingest")(cmd_ingest)
    command("ingest-worker")(cmd_ingest_worker)


def cmd_adapters(args: argparse.Namespace, settings: Settings) -> int:
    from adapters.registry import list_adapters

    print(f"{'adapter':<16} {'direction':<9} {'mappings':<28} description")
    for info in list_adapters():
        print(f"{info.name:<16} {info.direction:<9} {', '.join(info.mappings) or '-':<28} {info.description}")
    return EXIT_OK


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


def open_lineage(path: Path | None) -> Any:
    """The SQLite lineage store at `path` (`--lineage`), or None when not asked for."""
    from adapters.lineage import SqliteLineage

    return SqliteLineage(path) if path is not None else None


def cmd_ingest(args: argparse.Namespace, settings: Settings) -> int:
    from broker.ingress.ingest import ingest_files

    missing = [str(f) for f in args.files if not f.is_file()]
    if missing:
        print(f"no such file: {', '.join(missing)}", file=sys.stderr)
        return 2
    metrics = IngestMetrics()
    serve_ingest_metrics(settings, metrics, "ingest")
    summary = ingest_files(
        settings,
        get_adapter(args.adapter),
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
    return EXIT_OK if not summary.failed and not summary.rejected else EXIT_FAILED


def cmd_ingest_worker(args: argparse.Namespace, settings: Settings) -> int:
    from broker.ingress.ingest import RawRunner

    metrics = IngestMetrics()
    serve_ingest_metrics(settings, metrics, "ingest-worker")
    summary = RawRunner(settings, get_adapter, metrics=metrics).run(stop_when_idle=args.until_idle)
    print(summary.line())
    return EXIT_OK


def cmd_translate(args: argparse.Namespace, settings: Settings) -> int:
    from broker.ingress.translate import translate_files

    missing = [str(f) for f in args.files if not f.is_file()]
    if missing:
        print(f"no such file: {', '.join(missing)}", file=sys.stderr)
        return 2
    if args.out is None:
        summary = translate_files(
            get_adapter(args.adapter),
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
                get_adapter(args.adapter),
                args.mapping,
                args.files,
                records,
                rejects,
                lineage=open_lineage(args.lineage),
            )
    sys.stdout.flush()
    for line in summary.lines():
        print(line, file=sys.stderr)
    return EXIT_OK if summary.ok else EXIT_FAILED

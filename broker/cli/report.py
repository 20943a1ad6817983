"""`interchange report usage`: the usage and cost-benefit report from the audit log (docs/COST-BENEFIT.md)."""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import io
import sys
from pathlib import Path
from typing import Any

import orjson

from adapters.registry import adapter_class
from broker.cli.registry import Commands, arg
from broker.config import PROJECT_ROOT, Registry, Settings, check_against_schema, load_yaml
from broker.errors import ExitCode, UsageError

DEFAULT_COSTS = PROJECT_ROOT / "deploy" / "usage.yaml"


commands = Commands()


def load_costs(path: Path, cpu_seconds: float | None) -> Any:
    """The cost assumptions file, checked against its schema, with the measured CPU seconds."""
    from broker.audit.usage import Costs

    doc = load_yaml(path)
    check_against_schema("usage", doc, str(path))
    return Costs(
        interface_cost_per_year=float(doc["interface_cost_per_year"]),
        core_hour_price=float(doc["core_hour_price"]),
        currency=doc["currency"],
        cpu_us_per_record=float(doc.get("cpu_us_per_record", Costs.cpu_us_per_record)),
        cpu_seconds=cpu_seconds,
        source_note=doc.get("note", ""),
    )


@commands(
    "report usage",
    "what the exchange carried, withheld and replaced, from the audit log",
    arg("--from", dest="start", required=True, help="first day (YYYY-MM-DD, UTC), inclusive"),
    arg("--to", dest="end", required=True, help="last day (YYYY-MM-DD, UTC), inclusive"),
    arg("--format", choices=("html", "csv", "json"), default="html"),
    arg("--out", type=Path, help="write here instead of stdout"),
    arg("--costs", type=Path, default=DEFAULT_COSTS, help="assumptions file (default deploy/usage.yaml)"),
    arg(
        "--cpu-seconds",
        type=float,
        help="measured CPU seconds of the exchange over the period (sum of process_cpu_seconds_total)",
    ),
)
def cmd_report_usage(args: argparse.Namespace, settings: Settings) -> int:
    """`interchange report usage`: the usage report for a period."""
    from broker.audit.log import LOG_NAME, read_entries
    from broker.audit.usage import Period, usage

    try:
        start = dt.datetime.combine(dt.date.fromisoformat(args.start), dt.time(), dt.UTC)
        end = dt.datetime.combine(dt.date.fromisoformat(args.end), dt.time(), dt.UTC) + dt.timedelta(days=1)
    except ValueError as exc:
        raise UsageError(f"--from/--to take a date YYYY-MM-DD: {exc}") from exc
    if end <= start:
        raise UsageError("--to is before --from")
    registry = Registry.load(settings, adapter_class)
    formats = {r.id: r.format or "common-json" for r in registry.recipients.values()}
    log = Path(settings.audit_dir) / LOG_NAME
    entries = read_entries(log) if log.exists() else iter(())
    report = usage(entries, Period(start, end), formats, load_costs(args.costs, args.cpu_seconds))
    data = render(report, args.format)
    if args.out:
        args.out.write_bytes(data)
        print(
            f"wrote {args.out} ({report['totals']['delivered']:,} deliveries, "
            f"{report['totals']['withheld']:,} withheld, {report['totals']['rejected']:,} rejected)"
        )
    else:
        sys.stdout.buffer.write(data)
    return ExitCode.OK


def render(report: dict[str, Any], fmt: str) -> bytes:
    """The usage report in a format: json, csv or html."""
    if fmt == "json":
        return orjson.dumps(report, option=orjson.OPT_INDENT_2)
    if fmt == "csv":
        from broker.audit.usage import FLAT_COLUMNS, flat_rows

        out = io.StringIO()
        writer = csv.DictWriter(out, FLAT_COLUMNS)
        writer.writeheader()
        writer.writerows(flat_rows(report))
        return out.getvalue().encode()
    from broker.audit.usage_page import render as page

    return page(report).encode()

"""Data-protection governance commands (docs/GOVERNANCE.md).

agreements list                     status today, days to review and expiry, traffic per agreement
audit query | report                who saw what about whom (each consultation is itself audited)
audit hold | release | holds        covert holds on subject-facing reports (audited)
audit reindex                       rebuild the SQLite index from the log
corrections pending                 corrections and retractions not yet acknowledged by their recipient
rules diff OLD NEW --replay FILES   which records and fields each recipient would gain or lose
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from pathlib import Path
from typing import Any

import orjson

from adapters.registry import adapter_class
from broker.cli.registry import ArgGroup, Commands, arg, group
from broker.config import Settings
from broker.errors import ExitCode, UsageError

commands = Commands()


def _subject_args(required: bool) -> ArgGroup:
    return group(
        "subject (at least one)" if required else "subject",
        arg("--pnc", help="PNC ID, e.g. 2001/0171310W"),
        arg("--cro", help="CRO number"),
        arg("--nhs", help="NHS number"),
        arg("--name", help='"Family, Given" (with --dob)'),
        arg("--dob", help="date of birth YYYY-MM-DD (with --name)"),
    )


FILTER_ARGS = (
    arg("--recipient"),
    arg("--agreement"),
    arg("--record-id"),
    arg("--since", help="from this time (ISO 8601, UTC)"),
    arg("--until", help="up to this time (ISO 8601, UTC)"),
)
CONSULT_ARGS = (
    arg("--actor", help="who is consulting the audit log (default the login name)"),
    arg("--reason", required=True, help="justification for consulting the log (audited)"),
)


# ---------------------------------------------------------------- agreements


@commands(
    "agreements list",
    "each agreement's status, days to review and expiry, and traffic",
    arg("--at", help="status as at this date (YYYY-MM-DD; default today)"),
    arg("--json", action="store_true"),
)
def cmd_agreements_list(args: argparse.Namespace, settings: Settings) -> int:
    """`interchange agreements list`: each agreement's status, review and expiry, and traffic."""
    from broker.audit import governance
    from broker.config import Registry
    from broker.routing.rules import agreement_day

    try:
        today = dt.date.fromisoformat(args.at) if args.at else agreement_day(dt.datetime.now(dt.UTC))
    except ValueError as exc:
        raise UsageError(f"--at takes a date YYYY-MM-DD: {exc}") from exc
    rows = governance.agreement_rows(Registry.load(settings, adapter_class).agreements, today, _traffic(settings))
    if args.json:
        print("\n".join(orjson.dumps(r).decode() for r in rows))
    else:
        print(governance.render_agreements(rows))
    return ExitCode.OK


def _traffic(settings: Settings) -> dict[str, dict[str, int]]:
    from broker.audit.index import open_for_reading

    if not (Path(settings.audit_dir) / "audit.jsonl").exists():
        return {}
    index = open_for_reading(settings.audit_dir)
    try:
        return index.traffic()
    finally:
        index.close()


# ---------------------------------------------------------------- audit query and report


def _subject(args: argparse.Namespace, required: bool) -> Any:
    """(subject, its search keys); UsageError when the subject is half given, or required and not given."""
    from broker.audit.reports import Subject

    subject = Subject(args.pnc, args.cro, args.nhs, args.name, args.dob)
    try:
        keys = subject.keys()
    except ValueError as exc:  # e.g. --name without --dob
        raise UsageError(str(exc)) from exc
    if required and not keys:
        raise UsageError("name the subject: --pnc, --cro, --nhs, or --name with --dob")
    return subject, keys


def _query(args: argparse.Namespace, keys: list[str], operation: str | None = None) -> Any:
    from broker.audit.index import Query

    return Query(tuple(keys), args.recipient, args.agreement, args.record_id, operation, args.since, args.until)


def _consult(settings: Settings, args: argparse.Namespace, what: str, keys: list[str]) -> None:
    """Audit the consultation first: no RabbitMQ, no reading (TransportError -> exit 4)."""
    from broker.audit import publish as auditpublish

    filters = {
        k: getattr(args, k, None) for k in ("recipient", "agreement", "record_id", "since", "until", "operation")
    }
    auditpublish.publish_entries(
        settings,
        [
            auditpublish.entry(
                "consult",
                auditpublish.actor_of(args.actor),
                args.reason,
                subject_keys=keys,
                record_id=args.record_id,
                recipient=args.recipient,
                agreement=args.agreement,
                query={"command": what} | {k: v for k, v in filters.items() if v},
            )
        ],
    )


@commands(
    "audit query",
    "audit entries by subject, recipient, agreement, record or time (audited)",
    _subject_args(required=False),
    *FILTER_ARGS,
    arg("--operation", help="disclose, withhold, reject, consult, hold, release, acknowledge"),
    arg("--format", choices=("table", "csv", "json"), default="table"),
    *CONSULT_ARGS,
)
def cmd_audit_query(args: argparse.Namespace, settings: Settings) -> int:
    """`interchange audit query`: audit entries matching the filters (the consultation audited first)."""
    from broker.audit import reports as disclosures
    from broker.audit.index import open_for_reading

    _subject_obj, keys = _subject(args, required=False)
    _consult(settings, args, "audit query", keys)
    index = open_for_reading(settings.audit_dir)
    try:
        table = disclosures.rows(index.query(_query(args, keys, args.operation)), index.live_holds())
    finally:
        index.close()
    render = {"table": disclosures.as_table, "csv": disclosures.as_csv, "json": disclosures.as_json}[args.format]
    sys.stdout.write(render(table))
    return ExitCode.OK


@commands(
    "audit report",
    "everything disclosed about one person, as CSV or HTML (audited)",
    _subject_args(required=True),
    *FILTER_ARGS,
    arg("--format", choices=("csv", "html", "json"), default="html"),
    arg("--output", type=Path, help="write here instead of stdout"),
    arg(
        "--include-held",
        action="store_true",
        help="internal DPO view: include disclosures under a covert hold, marked HELD",
    ),
    *CONSULT_ARGS,
)
def cmd_audit_report(args: argparse.Namespace, settings: Settings) -> int:
    """`interchange audit report`: a subject's disclosure report (the consultation audited first)."""
    from broker.audit import publish as auditpublish
    from broker.audit import reports as disclosures
    from broker.audit.index import open_for_reading

    subject, keys = _subject(args, required=True)
    _consult(settings, args, "audit report" + (" --include-held" if args.include_held else ""), keys)
    index = open_for_reading(settings.audit_dir)
    try:
        table = disclosures.subject_report(index.query(_query(args, keys)), index.live_holds(), args.include_held)
    finally:
        index.close()
    if args.format == "html":
        text = disclosures.as_html(table, subject.label(), auditpublish.now_iso(), args.include_held)
    elif args.format == "csv":
        text = disclosures.as_csv(table)
    else:
        text = disclosures.as_json(table)
    if args.output:
        args.output.write_text(text, encoding="utf-8")
        print(f"{len(table)} disclosures written to {args.output}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return ExitCode.OK


# ---------------------------------------------------------------- holds


@commands(
    "audit hold",
    "hold a record's disclosures out of subject reports (covert; audited)",
    arg("--record-id", required=True),
    arg("--reason", required=True, help="justification, e.g. the operation name and authority"),
    arg(
        "--until-released",
        action="store_true",
        required=True,
        help="the hold lasts until `audit release` (the only kind of hold)",
    ),
    arg("--actor", help="who places the hold (default the login name)"),
)
def cmd_audit_hold(args: argparse.Namespace, settings: Settings) -> int:
    """`interchange audit hold`: place a covert hold on a record's disclosures (audited)."""
    import uuid

    from broker.audit import publish as auditpublish

    hold_id = f"hold-{uuid.uuid4().hex[:12]}"
    auditpublish.publish_entries(
        settings,
        [
            auditpublish.entry(
                "hold",
                auditpublish.actor_of(args.actor),
                args.reason,
                record_id=args.record_id,
                hold={"id": hold_id, "until": "released"},
            )
        ],
    )
    print(hold_id)
    return ExitCode.OK


@commands(
    "audit release",
    "release a covert hold (audited)",
    arg("hold_id"),
    arg("--reason", required=True),
    arg("--actor"),
)
def cmd_audit_release(args: argparse.Namespace, settings: Settings) -> int:
    """`interchange audit release`: release a covert hold (audited)."""
    from broker.audit import publish as auditpublish
    from broker.audit.index import open_for_reading

    index = open_for_reading(settings.audit_dir)
    try:
        hold = next((h for h in index.holds() if h["hold_id"] == args.hold_id), None)
    finally:
        index.close()
    if hold is None:
        print(f"no hold {args.hold_id!r} in the audit index (see `interchange audit holds`)", file=sys.stderr)
        return ExitCode.FAILED
    if hold["released_at"]:
        print(f"{args.hold_id} was already released at {hold['released_at']}", file=sys.stderr)
        return ExitCode.FAILED
    auditpublish.publish_entries(
        settings,
        [
            auditpublish.entry(
                "release",
                auditpublish.actor_of(args.actor),
                args.reason,
                record_id=hold["record_id"],
                hold={"id": args.hold_id},
            )
        ],
    )
    print(f"{args.hold_id} released")
    return ExitCode.OK


@commands("audit holds", "list covert holds, live and released", arg("--json", action="store_true"))
def cmd_audit_holds(args: argparse.Namespace, settings: Settings) -> int:
    """`interchange audit holds`: list covert holds."""
    from broker.audit.index import open_for_reading

    index = open_for_reading(settings.audit_dir)
    try:
        holds = index.holds()
    finally:
        index.close()
    for hold in holds:
        if args.json:
            print(orjson.dumps(hold).decode())
        else:
            state = f"released {hold['released_at']}" if hold["released_at"] else "LIVE"
            print(f"{hold['hold_id']}  {hold['record_id']}  placed {hold['placed_at']}  {state}")
    return ExitCode.OK


@commands("audit reindex", "rebuild the SQLite index beside the audit log from the log")
def cmd_audit_reindex(args: argparse.Namespace, settings: Settings) -> int:
    """`interchange audit reindex`: rebuild the audit index from the log."""
    from broker.audit.index import rebuild

    print(f"audit index rebuilt: {rebuild(settings.audit_dir)} entries")
    return ExitCode.OK


# ---------------------------------------------------------------- corrections


@commands(
    "corrections pending",
    "collect receipts, then list corrections not yet acknowledged",
    arg("--no-collect", action="store_true", help="do not read the receipts queues first"),
    arg("--json", action="store_true"),
)
def cmd_corrections_pending(args: argparse.Namespace, settings: Settings) -> int:
    """`interchange corrections pending`: corrections and retractions not yet acknowledged."""
    from broker.audit import governance
    from broker.audit.index import open_for_reading
    from broker.config import Registry
    from broker.routing import corrections

    collected: list[tuple[str, str]] = []
    if not args.no_collect:
        collected = governance.collect_receipts(settings, Registry.load(settings, adapter_class))
    index = open_for_reading(settings.audit_dir)
    try:
        waiting = corrections.pending(index, dt.datetime.now(dt.UTC), collected)
    finally:
        index.close()
    for item in waiting:
        if args.json:
            print(orjson.dumps(item.__dict__).decode())
        else:
            print(
                f"{item.recipient:28} {item.kind:10} {item.record_id} (supersedes {item.supersedes}) "
                f"delivered {item.delivered_at}, waiting {governance.age(item.waiting_seconds)}"
            )
    print(
        f"{len(collected)} receipts collected, {len(waiting)} corrections awaiting acknowledgement",
        file=sys.stderr,
    )
    return ExitCode.OK


# ---------------------------------------------------------------- rules diff


@commands(
    "rules diff",
    "per recipient, the records and fields a new agreement set would gain or lose on replayed traffic",
    arg("old", type=Path, metavar="OLD_AGREEMENTS_DIR"),
    arg("new", type=Path, metavar="NEW_AGREEMENTS_DIR"),
    arg(
        "--replay",
        type=Path,
        nargs="+",
        required=True,
        metavar="FILE",
        help="records (JSON/NDJSON files or folders) to decide under both",
    ),
    arg("--at", help="decide as at this time (ISO 8601; default now)"),
    arg("--json", action="store_true"),
)
def cmd_rules_diff(args: argparse.Namespace, settings: Settings) -> int:
    """`interchange rules diff`: what each recipient would gain or lose under new agreements."""
    from broker.cli.records import read_records
    from broker.config import Registry
    from broker.errors import DataError
    from broker.routing import agreement_tests as ruletests
    from broker.routing import diff as rulesdiff
    from broker.routing.rules import Rulebook

    def rulebook(folder: Path) -> Rulebook:
        registry = Registry.load(settings.with_overrides(agreements_dir=folder), adapter_class)
        return Rulebook(registry.agreements, registry.recipients, registry.agencies)

    old, new = rulebook(args.old), rulebook(args.new)
    records = [r for _, r in read_records(args.replay) if not isinstance(r, DataError) and isinstance(r, dict)]
    at = ruletests.parse_time(args.at) if args.at else dt.datetime.now(dt.UTC)
    changes = rulesdiff.diff(old, new, records, at)
    sys.stdout.write(
        orjson.dumps(rulesdiff.as_dict(changes)).decode() + "\n" if args.json else rulesdiff.render(changes)
    )
    return ExitCode.OK

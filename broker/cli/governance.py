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
from broker.config import Settings

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def add_commands(sub: Any, groups: dict[str, Any], command: Any) -> None:
    from broker.cli.main import new_group

    agreements = groups.get("agreements") or new_group(sub, "agreements", "information-sharing agreements")
    groups["agreements"] = agreements
    p = agreements.add_parser("list", help="each agreement's status, days to review and expiry, and traffic")
    p.add_argument("--at", help="status as at this date (YYYY-MM-DD; default today)")
    p.add_argument("--json", action="store_true")
    command("agreements list")(cmd_agreements_list)

    audit = groups["audit"]
    p = audit.add_parser("query", help="audit entries by subject, recipient, agreement, record or time (audited)")
    _subject_args(p, required=False)
    _filter_args(p)
    p.add_argument("--operation", help="disclose, withhold, reject, consult, hold, release, acknowledge")
    p.add_argument("--format", choices=("table", "csv", "json"), default="table")
    _consult_args(p)
    command("audit query")(cmd_audit_query)

    p = audit.add_parser("report", help="everything disclosed about one person, as CSV or HTML (audited)")
    _subject_args(p, required=True)
    _filter_args(p)
    p.add_argument("--format", choices=("csv", "html", "json"), default="html")
    p.add_argument("--output", type=Path, help="write here instead of stdout")
    p.add_argument(
        "--include-held",
        action="store_true",
        help="internal DPO view: include disclosures under a covert hold, marked HELD",
    )
    _consult_args(p)
    command("audit report")(cmd_audit_report)

    p = audit.add_parser("hold", help="hold a record's disclosures out of subject reports (covert; audited)")
    p.add_argument("--record-id", required=True)
    p.add_argument("--reason", required=True, help="justification, e.g. the operation name and authority")
    p.add_argument(
        "--until-released",
        action="store_true",
        required=True,
        help="the hold lasts until `audit release` (the only kind of hold)",
    )
    p.add_argument("--actor", help="who places the hold (default the login name)")
    command("audit hold")(cmd_audit_hold)

    p = audit.add_parser("release", help="release a covert hold (audited)")
    p.add_argument("hold_id")
    p.add_argument("--reason", required=True)
    p.add_argument("--actor")
    command("audit release")(cmd_audit_release)

    p = audit.add_parser("holds", help="list covert holds, live and released")
    p.add_argument("--json", action="store_true")
    command("audit holds")(cmd_audit_holds)

    audit.add_parser("reindex", help="rebuild the SQLite index beside the audit log from the log")
    command("audit reindex")(cmd_audit_reindex)

    corrections = groups.get("corrections") or new_group(sub, "corrections", "corrections and retractions")
    groups["corrections"] = corrections
    p = corrections.add_parser("pending", help="collect receipts, then list corrections not yet acknowledged")
    p.add_argument("--no-collect", action="store_true", help="do not read the receipts queues first")
    p.add_argument("--json", action="store_true")
    command("corrections pending")(cmd_corrections_pending)

    p = groups["rules"].add_parser(
        "diff",
        help="per recipient, the records and fields a new agreement set would gain or lose on replayed traffic",
    )
    p.add_argument("old", type=Path, metavar="OLD_AGREEMENTS_DIR")
    p.add_argument("new", type=Path, metavar="NEW_AGREEMENTS_DIR")
    p.add_argument(
        "--replay",
        type=Path,
        nargs="+",
        required=True,
        metavar="FILE",
        help="records (JSON/NDJSON files or folders) to decide under both",
    )
    p.add_argument("--at", help="decide as at this time (ISO 8601; default now)")
    p.add_argument("--json", action="store_true")
    command("rules diff")(cmd_rules_diff)


def _subject_args(p: argparse.ArgumentParser, required: bool) -> None:
    g = p.add_argument_group("subject (at least one)" if required else "subject")
    g.add_argument("--pnc", help="PNC ID, e.g. 2001/0171310W")
    g.add_argument("--cro", help="CRO number")
    g.add_argument("--nhs", help="NHS number")
    g.add_argument("--name", help='"Family, Given" (with --dob)')
    g.add_argument("--dob", help="date of birth YYYY-MM-DD (with --name)")
    p.set_defaults(subject_required=required)


def _filter_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--recipient")
    p.add_argument("--agreement")
    p.add_argument("--record-id")
    p.add_argument("--since", help="from this time (ISO 8601, UTC)")
    p.add_argument("--until", help="up to this time (ISO 8601, UTC)")


def _consult_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--actor", help="who is consulting the audit log (default the login name)")
    p.add_argument("--reason", required=True, help="justification for consulting the log (audited)")


# ---------------------------------------------------------------- agreements


def cmd_agreements_list(args: argparse.Namespace, settings: Settings) -> int:
    from broker.audit import governance
    from broker.config import Registry
    from broker.routing.rules import agreement_day

    today = dt.date.fromisoformat(args.at) if args.at else agreement_day(dt.datetime.now(dt.UTC))
    rows = governance.agreement_rows(Registry.load(settings, adapter_class).agreements, today, _traffic(settings))
    if args.json:
        print("\n".join(orjson.dumps(r).decode() for r in rows))
    else:
        print(governance.render_agreements(rows))
    return EXIT_OK


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


def _subject(args: argparse.Namespace) -> Any:
    from broker.audit.reports import Subject

    subject = Subject(args.pnc, args.cro, args.nhs, args.name, args.dob)
    keys = subject.keys()
    if args.subject_required and not keys:
        raise ValueError("name the subject: --pnc, --cro, --nhs, or --name with --dob")
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


def cmd_audit_query(args: argparse.Namespace, settings: Settings) -> int:
    from broker.audit import reports as disclosures
    from broker.audit.index import open_for_reading

    try:
        _subject_obj, keys = _subject(args)
    except ValueError as exc:
        print(f"usage: {exc}", file=sys.stderr)
        return EXIT_USAGE
    _consult(settings, args, "audit query", keys)
    index = open_for_reading(settings.audit_dir)
    try:
        table = disclosures.rows(index.query(_query(args, keys, args.operation)), index.live_holds())
    finally:
        index.close()
    render = {"table": disclosures.as_table, "csv": disclosures.as_csv, "json": disclosures.as_json}[args.format]
    sys.stdout.write(render(table))
    return EXIT_OK


def cmd_audit_report(args: argparse.Namespace, settings: Settings) -> int:
    from broker.audit import publish as auditpublish
    from broker.audit import reports as disclosures
    from broker.audit.index import open_for_reading

    try:
        subject, keys = _subject(args)
    except ValueError as exc:
        print(f"usage: {exc}", file=sys.stderr)
        return EXIT_USAGE
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
    return EXIT_OK


# ---------------------------------------------------------------- holds


def cmd_audit_hold(args: argparse.Namespace, settings: Settings) -> int:
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
    return EXIT_OK


def cmd_audit_release(args: argparse.Namespace, settings: Settings) -> int:
    from broker.audit import publish as auditpublish
    from broker.audit.index import open_for_reading

    index = open_for_reading(settings.audit_dir)
    try:
        hold = next((h for h in index.holds() if h["hold_id"] == args.hold_id), None)
    finally:
        index.close()
    if hold is None:
        print(f"no hold {args.hold_id!r} in the audit index (see `interchange audit holds`)", file=sys.stderr)
        return EXIT_FAILED
    if hold["released_at"]:
        print(f"{args.hold_id} was already released at {hold['released_at']}", file=sys.stderr)
        return EXIT_FAILED
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
    return EXIT_OK


def cmd_audit_holds(args: argparse.Namespace, settings: Settings) -> int:
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
    return EXIT_OK


def cmd_audit_reindex(args: argparse.Namespace, settings: Settings) -> int:
    from broker.audit.index import rebuild

    print(f"audit index rebuilt: {rebuild(settings.audit_dir)} entries")
    return EXIT_OK


# ---------------------------------------------------------------- corrections


def cmd_corrections_pending(args: argparse.Namespace, settings: Settings) -> int:
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
    return EXIT_OK


# ---------------------------------------------------------------- rules diff


def cmd_rules_diff(args: argparse.Namespace, settings: Settings) -> int:
    from broker.cli.main import read_records
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
    return EXIT_OK

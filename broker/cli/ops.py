"""Operations commands: `interchange dlq list|show|replay|purge` (dead-letter triage and replay).

See docs/OPERATIONS.md for the runbook.  Every command prints no personal data: `dlq show` gives the
reason, the field paths and codes of the errors, the headers and the shape of the body, never its values.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

import orjson

from broker.config import Settings

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def add_commands(sub: Any, groups: dict[str, Any], command: Any) -> None:
    from broker.cli.main import new_group

    dlq = new_group(sub, "dlq", "dead-letter triage: list, show (redacted), replay, purge (audited)")
    groups["dlq"] = dlq
    p = dlq.add_parser("list", help="count dead letters by reason and source, with the oldest age per reason")
    p.add_argument("--json", action="store_true")
    p = dlq.add_parser("show", help="one dead letter: reason, errors, headers and a redacted view of the body")
    p.add_argument("ids", nargs="+", metavar="ID", help="message id (the record id) of the dead letter")
    p = dlq.add_parser(
        "replay",
        help="republish dead letters to the ingress, decided again under the current "
        "agreements; audited; removed only once the republish is confirmed",
    )
    p.add_argument("ids", nargs="*", metavar="ID", help="message ids to replay")
    p.add_argument("--reason", help="replay every dead letter with this reason code")
    p.add_argument("--dry-run", action="store_true", help="say what would be replayed, change nothing")
    p = dlq.add_parser("purge", help="remove dead letters older than an age (each removal audited)")
    p.add_argument("--older-than", required=True, help="age like 30d, 12h, 30m")
    p.add_argument("--reason", help="only dead letters with this reason code")
    p.add_argument("--dry-run", action="store_true")

    command("dlq list")(cmd_list)
    command("dlq show")(cmd_show)
    command("dlq replay")(cmd_replay)
    command("dlq purge")(cmd_purge)


def cmd_list(args: argparse.Namespace, settings: Settings) -> int:
    from broker.ops import dlq

    with dlq.opened(settings) as queue:
        report = dlq.summary(queue.letters)
    if args.json:
        print(orjson.dumps(report).decode())
        return EXIT_OK
    print(f"{report['total']} dead letters on {settings.core_vhost}/interchange.dead")
    for row in report["by_reason_and_source"]:
        oldest = report["oldest_seconds"].get(row["reason"])
        age = f"  (oldest of this reason {_age(oldest)})" if oldest is not None else ""
        print(f"  {row['count']:>6}  {row['reason']:<30} source {row['source']}{age}")
    return EXIT_OK


def cmd_show(args: argparse.Namespace, settings: Settings) -> int:
    from broker.ops import dlq

    with dlq.opened(settings) as queue:
        found = dlq.select(queue.letters, ids=args.ids)
        for letter in found:
            print(orjson.dumps(dlq.redacted(letter), option=orjson.OPT_INDENT_2).decode())
    missing = set(args.ids) - {letter.message_id for letter in found}
    for message_id in sorted(missing):
        print(f"no dead letter with id {message_id!r}", file=sys.stderr)
    return EXIT_OK if not missing else EXIT_FAILED


def cmd_replay(args: argparse.Namespace, settings: Settings) -> int:
    from broker.ops import dlq

    if not args.ids and not args.reason:
        print("say what to replay: dead-letter IDs, or --reason REASON", file=sys.stderr)
        return EXIT_USAGE
    with dlq.opened(settings) as queue:
        chosen = dlq.select(queue.letters, reason=args.reason, ids=args.ids or None)
        if args.dry_run:
            print(f"would replay {len(chosen)}: {', '.join(x.message_id for x in chosen)}")
            return EXIT_OK
        outcome = dlq.replay(queue, chosen, dlq.operator_actor())
    return _report("replayed", outcome)


def cmd_purge(args: argparse.Namespace, settings: Settings) -> int:
    from broker.ops import dlq

    try:
        age = dlq.parse_age(args.older_than)
    except ValueError as exc:
        print(f"--older-than: {exc}", file=sys.stderr)
        return EXIT_USAGE
    with dlq.opened(settings) as queue:
        chosen = dlq.select(queue.letters, reason=args.reason, older_than=age)
        if args.dry_run:
            print(f"would purge {len(chosen)}: {', '.join(x.message_id for x in chosen)}")
            return EXIT_OK
        outcome = dlq.purge(queue, chosen, dlq.operator_actor())
    return _report("purged", outcome)


def _report(verb: str, outcome: Any) -> int:
    for message_id, why in outcome.skipped:
        print(f"skipped {message_id}: {why}")
    for message_id, why in outcome.failed:
        print(f"FAILED {message_id}: {why} (left on the dead-letter queue)", file=sys.stderr)
    print(f"{verb} {len(outcome.done)}, skipped {len(outcome.skipped)}, failed {len(outcome.failed)}")
    return EXIT_OK if not outcome.failed else EXIT_FAILED


def _age(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.1f}{unit}"
    return f"{seconds:.0f}s"

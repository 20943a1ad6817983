"""Operations commands: `interchange dlq list|show|replay|purge` (dead-letter triage and replay).

See docs/OPERATIONS.md for the runbook.  Every command prints no personal data: `dlq show` gives the
reason, the field paths and codes of the errors, the headers and the shape of the body, never its values.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

import orjson

from broker.cli.registry import Commands, arg
from broker.config import Settings
from broker.errors import ExitCode, UsageError

commands = Commands()


@commands(
    "dlq list",
    "count dead letters by reason and source, with the oldest age per reason",
    arg("--json", action="store_true"),
)
def cmd_list(args: argparse.Namespace, settings: Settings) -> int:
    """`interchange dlq list`: dead letters counted by reason and source."""
    from broker.ops import dlq

    with dlq.opened(settings) as queue:
        report = dlq.summary(queue.letters)
    if args.json:
        print(orjson.dumps(report).decode())
        return ExitCode.OK
    print(f"{report['total']} dead letters on {settings.core_vhost}/interchange.dead")
    for row in report["by_reason_and_source"]:
        oldest = report["oldest_seconds"].get(row["reason"])
        age = f"  (oldest of this reason {_age(oldest)})" if oldest is not None else ""
        print(f"  {row['count']:>6}  {row['reason']:<30} source {row['source']}{age}")
    return ExitCode.OK


@commands(
    "dlq show",
    "one dead letter: reason, errors, headers and a redacted view of the body",
    arg("ids", nargs="+", metavar="ID", help="message id (the record id) of the dead letter"),
)
def cmd_show(args: argparse.Namespace, settings: Settings) -> int:
    """`interchange dlq show`: one dead letter, its body redacted."""
    from broker.ops import dlq

    with dlq.opened(settings) as queue:
        found = dlq.select(queue.letters, ids=args.ids)
        for letter in found:
            print(orjson.dumps(dlq.redacted(letter), option=orjson.OPT_INDENT_2).decode())
    missing = set(args.ids) - {letter.message_id for letter in found}
    for message_id in sorted(missing):
        print(f"no dead letter with id {message_id!r}", file=sys.stderr)
    return ExitCode.OK if not missing else ExitCode.FAILED


@commands(
    "dlq replay",
    "republish dead letters to the ingress, decided again under the current agreements; audited; removed only "
    "once the republish is confirmed",
    arg("ids", nargs="*", metavar="ID", help="message ids to replay"),
    arg("--reason", help="replay every dead letter with this reason code"),
    arg("--dry-run", action="store_true", help="say what would be replayed, change nothing"),
)
def cmd_replay(args: argparse.Namespace, settings: Settings) -> int:
    """`interchange dlq replay`: republish dead letters to the ingress (audited)."""
    from broker.ops import dlq

    if not args.ids and not args.reason:
        raise UsageError("say what to replay: dead-letter IDs, or --reason REASON")
    with dlq.opened(settings) as queue:
        chosen = dlq.select(queue.letters, reason=args.reason, ids=args.ids or None)
        if args.dry_run:
            print(f"would replay {len(chosen)}: {', '.join(x.message_id for x in chosen)}")
            return ExitCode.OK
        outcome = dlq.replay(queue, chosen, dlq.operator_actor())
    return _report("replayed", outcome)


@commands(
    "dlq purge",
    "remove dead letters older than an age (each removal audited)",
    arg("--older-than", required=True, help="age like 30d, 12h, 30m"),
    arg("--reason", help="only dead letters with this reason code"),
    arg("--dry-run", action="store_true"),
)
def cmd_purge(args: argparse.Namespace, settings: Settings) -> int:
    """`interchange dlq purge`: remove old dead letters (audited)."""
    from broker.ops import dlq

    try:
        age = dlq.parse_age(args.older_than)
    except ValueError as exc:  # parse_age's own complaint about the text
        raise UsageError(f"--older-than: {exc}") from exc
    with dlq.opened(settings) as queue:
        chosen = dlq.select(queue.letters, reason=args.reason, older_than=age)
        if args.dry_run:
            print(f"would purge {len(chosen)}: {', '.join(x.message_id for x in chosen)}")
            return ExitCode.OK
        outcome = dlq.purge(queue, chosen, dlq.operator_actor())
    return _report("purged", outcome)


def _report(verb: str, outcome: Any) -> int:
    for message_id, why in outcome.skipped:
        print(f"skipped {message_id}: {why}")
    for message_id, why in outcome.failed:
        print(f"FAILED {message_id}: {why} (left on the dead-letter queue)", file=sys.stderr)
    print(f"{verb} {len(outcome.done)}, skipped {len(outcome.skipped)}, failed {len(outcome.failed)}")
    return ExitCode.OK if not outcome.failed else ExitCode.FAILED


def _age(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.1f}{unit}"
    return f"{seconds:.0f}s"

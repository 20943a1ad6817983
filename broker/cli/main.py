"""The `interchange` command (also `python -m broker`).

Exit codes (broker.errors.ExitCode, documented in README.md):
  0 OK          success; for verify/test/validate: everything checked out
  1 FAILED      the command ran and found a problem (invalid record, failed rule test, broken audit chain)
  2 USAGE       bad command line
  3 CONFIG      a configuration file is wrong (the message names file, key and reason)
  4 TRANSPORT   RabbitMQ could not be reached or refused the operation

Commands are declared with their arguments and handlers in each module of broker/cli (broker.cli.registry);
this module holds the global options, the core commands and the one place errors become exit codes.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson

from adapters.registry import adapter_class
from broker.cli import adapters, contract, enquiry, governance, ops, report, security
from broker.cli.records import read_records
from broker.cli.registry import Command, Commands, Handler, arg, build_subcommands, by_name
from broker.config import Registry, Settings, check_start, load_settings
from broker.errors import ConfigError, DataError, ExitCode, TransportError, UsageError
from broker.ops import logs

commands = Commands()


def build_parser() -> argparse.ArgumentParser:
    """The parser of the global options and of every declared command."""
    parser = argparse.ArgumentParser(
        prog="interchange",
        description=(__doc__ or "").split("\n")[0],
        epilog="Exit codes: 0 ok, 1 failed check, 2 usage, 3 configuration, 4 RabbitMQ.",
    )
    parser.add_argument(
        "--config", type=Path, help="settings file (default INTERCHANGE_CONFIG, else deploy/interchange.yaml)"
    )
    parser.add_argument("--amqp-url", help="AMQP URL (overrides INTERCHANGE_AMQP_URL and the file)")
    parser.add_argument("--vhost", dest="core_vhost", help="core vhost (default interchange)")
    parser.add_argument("--vhost-prefix", dest="recipient_vhost_prefix", help="prefix of recipient vhosts")
    parser.add_argument("--agreements", dest="agreements_dir", type=Path, help="agreements directory")
    parser.add_argument("--audit-dir", dest="audit_dir", type=Path, help="audit log directory")
    parser.add_argument("--log-level", default="info")
    parser.add_argument(
        "--metrics-port",
        dest="metrics_port",
        type=int,
        help="serve /metrics, /healthz, /readyz on this port (0 = off; run: base port of the children, "
        "0 = no endpoint in any child)",
    )
    build_subcommands(parser.add_subparsers(dest="command", required=True, metavar="COMMAND"), all_commands())
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one command; every error Interchange raises on purpose becomes its exit code here."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logs.configure(
        args.log_level, stream=sys.stderr if args.command not in ("run", "worker", "audit-writer") else sys.stdout
    )
    try:
        settings = load_settings(
            args.config,
            **{
                k: getattr(args, k)
                for k in ("core_vhost", "recipient_vhost_prefix", "agreements_dir", "audit_dir", "metrics_port")
            },
            amqp_url=args.amqp_url,
        )
        if args.command in ("run", "worker", "audit-writer"):
            for relaxed in check_start(settings, role=args.command):
                logs.get("interchange").warning("development_mode", relaxed=relaxed)
        group_command = getattr(args, f"{args.command}_command", None)
        key = f"{args.command} {group_command}" if group_command else args.command
        return int(COMMANDS[key](args, settings))
    except UsageError as exc:
        print(f"usage: {exc}", file=sys.stderr)
        return ExitCode.USAGE
    except ConfigError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return ExitCode.CONFIG
    except TransportError as exc:
        print(f"RabbitMQ error: {exc}", file=sys.stderr)
        return ExitCode.TRANSPORT
    except KeyboardInterrupt:
        return ExitCode.FAILED


# ---------------------------------------------------------------- commands


@commands(
    "run",
    "run the routing core: audit writer plus N workers, supervised",
    arg("--workers", type=int, default=1),
    arg(
        "--healthy-after",
        dest="healthy_after",
        type=float,
        default=10.0,
        metavar="SECONDS",
        help="a child that ran this long restarts after the first back-off again (default 10)",
    ),
)
def cmd_run(args: argparse.Namespace, settings: Settings) -> int:
    """`interchange run`: supervise the audit writer and N routing workers."""
    from broker.runner import child_commands, load_renderers, supervise

    # a bad configuration (or a missing open-data key) stops start-up here, before any child starts
    load_renderers(Registry.load(settings, adapter_class), settings)
    extra = _passthrough(args)
    return supervise(child_commands(args.workers, extra, settings.metrics_port), healthy_seconds=args.healthy_after)


def _passthrough(args: argparse.Namespace) -> list[str]:
    out: list[str] = []
    for flag, attr in (
        ("--config", "config"),
        ("--amqp-url", "amqp_url"),
        ("--vhost", "core_vhost"),
        ("--vhost-prefix", "recipient_vhost_prefix"),
        ("--agreements", "agreements_dir"),
        ("--audit-dir", "audit_dir"),
        ("--log-level", "log_level"),
    ):
        value = getattr(args, attr, None)
        if value is not None:
            out = [flag, str(value)] + out
    return out


@commands(
    "worker",
    "run one routing worker (consume, decide, audit, deliver)",
    arg("--index", dest="worker_index", type=int, help="this worker's number, 0..N-1 (partitions it owns)"),
    arg("--of", dest="workers", type=int, help="how many workers share the partitions"),
)
def cmd_worker(args: argparse.Namespace, settings: Settings) -> int:
    """`interchange worker`: run one routing worker."""
    from broker.runner import run_worker

    return run_worker(settings.with_overrides(worker_index=args.worker_index, workers=args.workers))


@commands(
    "audit-writer",
    "run the audit writer (appends the hash-chained audit log)",
    arg("--until-idle", action="store_true", help="stop once the audit queue is empty"),
)
def cmd_audit_writer(args: argparse.Namespace, settings: Settings) -> int:
    """`interchange audit-writer`: run the audit writer (or drain the audit queue once)."""
    from broker.audit.log import AuditWriter
    from broker.runner import run_audit_writer

    if args.until_idle:
        written = AuditWriter(settings).run(stop_when_idle=True)
        print(f"{written} audit entries written")
        return ExitCode.OK
    return run_audit_writer(settings)


@commands(
    "publish",
    "publish common-schema JSON/NDJSON files to the exchange, with confirms",
    arg("files", nargs="+", type=Path),
    arg("--window", type=int, default=1000, help="unconfirmed publishes allowed in flight"),
)
def cmd_publish(args: argparse.Namespace, settings: Settings) -> int:
    """`interchange publish`: publish common-schema records with confirms."""
    from broker.ingress.publisher import publish_all, record_message

    unreadable = []

    def messages() -> Iterator[Any]:
        for where, item in read_records(args.files):
            if isinstance(item, DataError):
                unreadable.append((where, item))
            else:
                yield record_message(item)

    report = publish_all(settings, messages(), window=args.window)
    for where, error in unreadable:
        print(f"{where}: not published: {error}", file=sys.stderr)
    for message_id, why in report.failures:
        print(f"{message_id}: not confirmed: {why}", file=sys.stderr)
    print(
        f"published {report.published} (confirmed), failed {report.failed}, unreadable {len(unreadable)}, "
        f"resent {report.resent}, {report.rate:.0f} records/s"
    )
    return ExitCode.OK if not report.failed and not unreadable else ExitCode.FAILED


@commands(
    "validate",
    "validate common-schema JSON/NDJSON files; every error is printed",
    arg("files", nargs="+", type=Path),
)
def cmd_validate(args: argparse.Namespace, settings: Settings) -> int:
    """`interchange validate`: print every error of every record."""
    from broker.routing.validation import Validator

    validator, good, bad = Validator(), 0, 0
    for where, item in read_records(args.files):
        errors = item.errors if isinstance(item, DataError) else validator.validate(item)
        if errors:
            bad += 1
            record_id = item.get("id") if isinstance(item, dict) else None
            for error in errors:
                print(f"{where}: record {record_id or '?'}: {error}")
        else:
            good += 1
    print(f"{good} valid, {bad} invalid", file=sys.stderr)
    return ExitCode.OK if bad == 0 else ExitCode.FAILED


@commands(
    "rules explain",
    "show who would receive each record, which fields, and why not",
    arg("files", nargs="+", type=Path),
    arg("--at", help="decide as at this time (ISO 8601; default now)"),
    arg("--json", action="store_true"),
)
def cmd_rules_explain(args: argparse.Namespace, settings: Settings) -> int:
    """`interchange rules explain`: who would receive each record, which fields, and why not."""
    from broker.routing import agreement_tests as ruletests

    ctx = ruletests.Deciding.load(settings, adapter_class)
    at = ruletests.parse_time(args.at) if args.at else None
    status = ExitCode.OK
    for where, item in read_records(args.files):
        if isinstance(item, DataError):
            print(f"{where}: {item}")
            status = ExitCode.FAILED
            continue
        explanation = ctx.explain(item, at)
        if args.json:
            print(orjson.dumps(dict(explanation, file=where)).decode())
        else:
            print(ruletests.render_explanation(where, explanation))
    return status


@commands(
    "rules test",
    "run the agreements' tests as data (deploy/agreements/tests)",
    arg("--tests", type=Path, help="folder of rule tests (default <agreements>/tests)"),
)
def cmd_rules_test(args: argparse.Namespace, settings: Settings) -> int:
    """`interchange rules test`: run the agreements' tests as data."""
    from broker.routing import agreement_tests as ruletests

    folder = args.tests or settings.agreements_dir / "tests"
    results = ruletests.run_folder(folder, ruletests.Deciding.load(settings, adapter_class))
    failed = [r for r in results if not r.passed]
    for result in results:
        print(("PASS " if result.passed else "FAIL ") + result.name)
        for problem in result.problems:
            print(f"     {problem}")
    print(f"{len(results) - len(failed)} passed, {len(failed)} failed")
    return ExitCode.OK if results and not failed else ExitCode.FAILED


@commands(
    "audit verify",
    "check the hash chain; names the first bad entry (audited as a consultation when RabbitMQ is reachable; "
    "never needs RabbitMQ to run)",
    arg("--actor", help="who is checking the log (default the login name)"),
    arg("--reason", default="audit log integrity check", help="justification (audited)"),
    arg(
        "--anchor",
        action="store_true",
        help="also compare the checkpoints with the anchor stream in RabbitMQ (always done when checkpoints are "
        "required)",
    ),
)
def cmd_audit_verify(args: argparse.Namespace, settings: Settings) -> int:
    """`interchange audit verify`: check the hash chain and the checkpoints (the check audited)."""
    from broker.audit.checkpoints import verify_for
    from broker.audit.log import LOG_NAME, verify

    verdict = verify(Path(settings.audit_dir) / LOG_NAME)
    print(verdict)
    signed = verify_for(settings, args.anchor)
    print(signed)  # signed, chained, anchored checkpoints catch a log truncated or rewritten whole
    print(security.record_verify_consult(args, settings, verdict.ok, signed.ok))
    return ExitCode.OK if verdict.ok and signed.ok else ExitCode.FAILED


@commands(
    "topology export",
    "print the topology as RabbitMQ definitions JSON",
    arg("--output", type=Path),
)
def cmd_topology_export(args: argparse.Namespace, settings: Settings) -> int:
    """`interchange topology export`: print the RabbitMQ definitions."""
    from broker import topology
    from broker.ops.provision import recipient_vhosts

    registry = Registry.load(settings, adapter_class)
    from broker.ops.access import access_plan

    users = access_plan(registry, settings.core_vhost, settings.recipient_vhost).definitions()
    text = (
        orjson.dumps(
            topology.definitions(
                settings.core_vhost, recipient_vhosts(settings, registry), users, partitions=settings.partitions
            ),
            option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS,
        ).decode()
        + "\n"
    )
    if args.output:
        args.output.write_text(text)
    else:
        sys.stdout.write(text)
    return ExitCode.OK


@commands(
    "topology apply",
    "create or update vhosts, policies, exchanges and queues on RabbitMQ",
    arg(
        "--users",
        action="store_true",
        help="also create the per-partner users and set exactly their permissions (docs/SECURITY.md); "
        "passwords from INTERCHANGE_PASSWORD_<USER>, else --secrets, else left as they are",
    ),
    arg("--secrets", type=Path, help="YAML file (never committed): users: {NAME: {password_hash: ..}}"),
    arg(
        "--generate-passwords",
        action="store_true",
        help="generate a password for every user without one and print it once",
    ),
    arg(
        "--certificates",
        action="store_true",
        help="users without a password become certificate-only (EXTERNAL over TLS)",
    ),
)
def cmd_topology_apply(args: argparse.Namespace, settings: Settings) -> int:
    """`interchange topology apply`: apply the topology (and, with --users, the users) to RabbitMQ."""
    from broker.ops import provision

    registry = Registry.load(settings, adapter_class)
    vhosts = provision.apply(settings, registry)
    print(f"topology applied to {len(vhosts)} vhosts: {', '.join(vhosts)}")
    if args.users:
        return security.apply_users(args, settings, registry)
    return ExitCode.OK


@commands(
    "receive",
    "reference subscriber: consume a recipient's deliveries as NDJSON",
    arg("recipient"),
    arg("--out", type=Path, help="folder for <recipient>.ndjson (default stdout)"),
    arg("--idle-timeout", type=float, default=None, help="stop after this many idle seconds"),
    arg("--max", type=int, default=None, help="stop after this many messages"),
)
def cmd_receive(args: argparse.Namespace, settings: Settings) -> int:
    """`interchange receive`: consume a recipient's deliveries as NDJSON."""
    from broker.partners.receive import receive

    registry = Registry.load(settings, adapter_class)
    if args.recipient not in registry.recipients:
        import difflib

        close = difflib.get_close_matches(args.recipient, registry.recipients, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise UsageError(f"unknown recipient {args.recipient!r}{hint}")
    counts = receive(settings, args.recipient, args.out, idle_seconds=args.idle_timeout, limit=args.max)
    print(
        f"received {counts['received']}, written {counts['written']}, duplicates dropped {counts['duplicates']}",
        file=sys.stderr,
    )
    return ExitCode.OK


@commands(
    "demo",
    "run the whole exchange on the example records and report",
    arg("--keep", action="store_true", help="leave the demo vhosts in place afterwards"),
)
def cmd_demo(args: argparse.Namespace, settings: Settings) -> int:
    """`interchange demo`: the end-to-end demo."""
    from broker.demo import run_demo

    return run_demo(settings, keep=args.keep, formats=adapter_class)


def all_commands() -> list[Command]:
    """Every declared command: the core ones here, then each command module's."""
    return [c for module in (commands, *(m.commands for m in CLI_MODULES)) for c in module.all]


# the modules that declare their own commands (each has `commands = Commands()`)
CLI_MODULES = (adapters, security, ops, governance, report, enquiry, contract)
# each command's handler by name: the one table main() dispatches on
COMMANDS: dict[str, Handler] = by_name(all_commands())


if __name__ == "__main__":
    raise SystemExit(main())

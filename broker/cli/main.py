"""The `interchange` command (also `python -m broker`).

Exit codes (documented in README.md):
  0 OK          success; for verify/test/validate: everything checked out
  1 FAILED      the command ran and found a problem (invalid record, failed rule test, broken audit chain)
  2 USAGE       bad command line
  3 CONFIG      a configuration file is wrong (the message names file, key and reason)
  4 TRANSPORT   RabbitMQ could not be reached or refused the operation
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson

from adapters.registry import adapter_class
from broker.cli.base import EXIT_CONFIG, EXIT_FAILED, EXIT_OK, EXIT_TRANSPORT, EXIT_USAGE, new_group
from broker.cli.security import apply_users, record_verify_consult
from broker.config import Registry, Settings, check_start, load_settings
from broker.errors import ConfigError, DataError, TransportError
from broker.ops import logs

Handler = Callable[[argparse.Namespace, Settings], int]
COMMANDS: dict[str, Handler] = {}

# Modules that add their own commands: each has `add_commands(sub, groups, command)` where `sub` is the
# top-level subparsers, `groups` maps a group name ("audit", "rules", ...) to its subparsers (a module may
# add a new group with `new_group`), and `command(key)` registers a handler under "group sub" or "name".
CLI_MODULES: list[str] = [
    "broker.cli.adapters",
    "broker.cli.security",
    "broker.cli.ops",
    "broker.cli.governance",
    "broker.cli.report",
    "broker.cli.enquiry",
    "broker.cli.contract",
]


def command(name: str) -> Callable[[Handler], Handler]:
    def register(fn: Handler) -> Handler:
        COMMANDS[name] = fn
        return fn

    return register


# ---------------------------------------------------------------- parser


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="interchange",
        description=__doc__.split("\n")[0],
        epilog="Exit codes: 0 ok, 1 failed check, 2 usage, 3 configuration, 4 RabbitMQ.",
    )
    parser.add_argument("--config", type=Path, help="settings file (default deploy/interchange.yaml)")
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
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("run", help="run the routing core: audit writer plus N workers, supervised")
    p.add_argument("--workers", type=int, default=1)
    p.add_argument(
        "--healthy-after",
        dest="healthy_after",
        type=float,
        default=10.0,
        metavar="SECONDS",
        help="a child that ran this long restarts after the first back-off again (default 10)",
    )
    p = sub.add_parser("worker", help="run one routing worker (consume, decide, audit, deliver)")
    p.add_argument("--index", dest="worker_index", type=int, help="this worker's number, 0..N-1 (partitions it owns)")
    p.add_argument("--of", dest="workers", type=int, help="how many workers share the partitions")
    p = sub.add_parser("audit-writer", help="run the audit writer (appends the hash-chained audit log)")
    p.add_argument("--until-idle", action="store_true", help="stop once the audit queue is empty")

    p = sub.add_parser("publish", help="publish common-schema JSON/NDJSON files to the exchange, with confirms")
    p.add_argument("files", nargs="+", type=Path)
    p.add_argument("--window", type=int, default=1000, help="unconfirmed publishes allowed in flight")
    p = sub.add_parser("validate", help="validate common-schema JSON/NDJSON files; every error is printed")
    p.add_argument("files", nargs="+", type=Path)

    rules = new_group(sub, "rules", "explain and test sharing decisions")
    p = rules.add_parser("explain", help="show who would receive each record, which fields, and why not")
    p.add_argument("files", nargs="+", type=Path)
    p.add_argument("--at", help="decide as at this time (ISO 8601; default now)")
    p.add_argument("--json", action="store_true")
    p = rules.add_parser("test", help="run the agreements' tests as data (deploy/agreements/tests)")
    p.add_argument("--tests", type=Path, help="folder of rule tests (default <agreements>/tests)")

    audit = new_group(sub, "audit", "the audit log")
    p = audit.add_parser(
        "verify",
        help="check the hash chain; names the first bad entry (audited as a "
        "consultation when RabbitMQ is reachable; never needs RabbitMQ to run)",
    )
    p.add_argument("--actor", help="who is checking the log (default the login name)")
    p.add_argument("--reason", default="audit log integrity check", help="justification (audited)")
    p.add_argument(
        "--anchor",
        action="store_true",
        help="also compare the checkpoints with the anchor stream in "
        "RabbitMQ (always done when checkpoints are required)",
    )

    topo = new_group(sub, "topology", "RabbitMQ topology")
    p = topo.add_parser("export", help="print the topology as RabbitMQ definitions JSON")
    p.add_argument("--output", type=Path)
    p = topo.add_parser("apply", help="create or update vhosts, policies, exchanges and queues on RabbitMQ")
    p.add_argument(
        "--users",
        action="store_true",
        help="also create the per-partner users and set exactly their permissions (docs/SECURITY.md); "
        "passwords from INTERCHANGE_PASSWORD_<USER>, else --secrets, else left as they are",
    )
    p.add_argument("--secrets", type=Path, help="YAML file (never committed): users: {NAME: {password_hash: ..}}")
    p.add_argument(
        "--generate-passwords",
        action="store_true",
        help="generate a password for every user without one and print it once",
    )
    p.add_argument(
        "--certificates",
        action="store_true",
        help="users without a password become certificate-only (EXTERNAL over TLS)",
    )

    p = sub.add_parser("receive", help="reference subscriber: consume a recipient's deliveries as NDJSON")
    p.add_argument("recipient")
    p.add_argument("--out", type=Path, help="folder for <recipient>.ndjson (default stdout)")
    p.add_argument("--idle-timeout", type=float, default=None, help="stop after this many idle seconds")
    p.add_argument("--max", type=int, default=None, help="stop after this many messages")

    p = sub.add_parser("demo", help="run the whole exchange on the example records and report")
    p.add_argument("--keep", action="store_true", help="leave the demo vhosts in place afterwards")

    groups = {"rules": rules, "audit": audit, "topology": topo}
    import importlib

    for module in CLI_MODULES:
        importlib.import_module(module).add_commands(sub, groups, command)
    return parser


def main(argv: list[str] | None = None) -> int:
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
        return COMMANDS[key](args, settings)
    except ConfigError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except TransportError as exc:
        print(f"RabbitMQ error: {exc}", file=sys.stderr)
        return EXIT_TRANSPORT
    except KeyboardInterrupt:
        return EXIT_FAILED


# ---------------------------------------------------------------- helpers


def read_records(paths: list[Path]) -> Iterator[tuple[str, dict[str, Any] | DataError]]:
    """(where, record or error) for every record in JSON or NDJSON files or folders of them."""
    for path in paths:
        files = sorted(path.glob("*.json")) + sorted(path.glob("*.ndjson")) if path.is_dir() else [path]
        for file in files:
            yield from _records_in(file)


def _records_in(file: Path) -> Iterator[tuple[str, dict[str, Any] | DataError]]:
    from broker.errors import FieldError

    def bad(where: str, message: str) -> tuple[str, DataError]:
        return where, DataError("malformed_json", [FieldError(None, "", "malformed_json", message)], location=where)

    if file.suffix == ".ndjson":
        with file.open("rb") as fh:
            for n, line in enumerate(fh, start=1):
                if line.strip():
                    try:
                        yield f"{file}:{n}", orjson.loads(line)
                    except orjson.JSONDecodeError as exc:
                        yield bad(f"{file}:{n}", f"not valid JSON: {exc}")
        return
    try:
        doc = orjson.loads(file.read_bytes())
    except (OSError, orjson.JSONDecodeError) as exc:
        yield bad(str(file), f"not readable JSON: {exc}")
        return
    for i, record in enumerate(doc if isinstance(doc, list) else [doc]):
        yield (f"{file}[{i}]" if isinstance(doc, list) else str(file)), record


# ---------------------------------------------------------------- commands


@command("run")
def cmd_run(args: argparse.Namespace, settings: Settings) -> int:
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


@command("worker")
def cmd_worker(args: argparse.Namespace, settings: Settings) -> int:
    from broker.runner import run_worker

    return run_worker(settings.with_overrides(worker_index=args.worker_index, workers=args.workers))


@command("audit-writer")
def cmd_audit_writer(args: argparse.Namespace, settings: Settings) -> int:
    from broker.audit.log import AuditWriter
    from broker.runner import run_audit_writer

    if args.until_idle:
        written = AuditWriter(settings).run(stop_when_idle=True)
        print(f"{written} audit entries written")
        return EXIT_OK
    return run_audit_writer(settings)


@command("publish")
def cmd_publish(args: argparse.Namespace, settings: Settings) -> int:
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
    return EXIT_OK if not report.failed and not unreadable else EXIT_FAILED


@command("validate")
def cmd_validate(args: argparse.Namespace, settings: Settings) -> int:
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
    return EXIT_OK if bad == 0 else EXIT_FAILED


@command("rules explain")
def cmd_rules_explain(args: argparse.Namespace, settings: Settings) -> int:
    from broker.routing import agreement_tests as ruletests

    ctx = ruletests.Deciding.load(settings, adapter_class)
    at = ruletests.parse_time(args.at) if args.at else None
    status = EXIT_OK
    for where, item in read_records(args.files):
        if isinstance(item, DataError):
            print(f"{where}: {item}")
            status = EXIT_FAILED
            continue
        explanation = ctx.explain(item, at)
        if args.json:
            print(orjson.dumps(dict(explanation, file=where)).decode())
        else:
            print(ruletests.render_explanation(where, explanation))
    return status


@command("rules test")
def cmd_rules_test(args: argparse.Namespace, settings: Settings) -> int:
    from broker.routing import agreement_tests as ruletests

    folder = args.tests or settings.agreements_dir / "tests"
    results = ruletests.run_folder(folder, ruletests.Deciding.load(settings, adapter_class))
    failed = [r for r in results if not r.passed]
    for result in results:
        print(("PASS " if result.passed else "FAIL ") + result.name)
        for problem in result.problems:
            print(f"     {problem}")
    print(f"{len(results) - len(failed)} passed, {len(failed)} failed")
    return EXIT_OK if results and not failed else EXIT_FAILED


@command("audit verify")
def cmd_audit_verify(args: argparse.Namespace, settings: Settings) -> int:
    from broker.audit.checkpoints import verify_for
    from broker.audit.log import LOG_NAME, verify

    verdict = verify(Path(settings.audit_dir) / LOG_NAME)
    print(verdict)
    signed = verify_for(settings, args.anchor)
    print(signed)  # signed, chained, anchored checkpoints catch a log truncated or rewritten whole
    print(record_verify_consult(args, settings, verdict.ok, signed.ok))
    return EXIT_OK if verdict.ok and signed.ok else EXIT_FAILED


@command("topology export")
def cmd_topology_export(args: argparse.Namespace, settings: Settings) -> int:
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
    return EXIT_OK


@command("topology apply")
def cmd_topology_apply(args: argparse.Namespace, settings: Settings) -> int:
    from broker.ops import provision

    registry = Registry.load(settings, adapter_class)
    vhosts = provision.apply(settings, registry)
    print(f"topology applied to {len(vhosts)} vhosts: {', '.join(vhosts)}")
    if args.users:
        return apply_users(args, settings, registry)
    return EXIT_OK


@command("receive")
def cmd_receive(args: argparse.Namespace, settings: Settings) -> int:
    from broker.partners.receive import receive

    registry = Registry.load(settings, adapter_class)
    if args.recipient not in registry.recipients:
        import difflib

        close = difflib.get_close_matches(args.recipient, registry.recipients, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        print(f"unknown recipient {args.recipient!r}{hint}", file=sys.stderr)
        return EXIT_USAGE
    counts = receive(settings, args.recipient, args.out, idle_seconds=args.idle_timeout, limit=args.max)
    print(
        f"received {counts['received']}, written {counts['written']}, duplicates dropped {counts['duplicates']}",
        file=sys.stderr,
    )
    return EXIT_OK


@command("demo")
def cmd_demo(args: argparse.Namespace, settings: Settings) -> int:
    from broker.demo import run_demo

    return run_demo(settings, keep=args.keep, formats=adapter_class)


if __name__ == "__main__":
    raise SystemExit(main())

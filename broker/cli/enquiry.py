"""Cross-force enquiry commands: `enquiry-gateway`, `enquiry-responder`, `enquiry-index`, `audit consultations`.

See docs/ENQUIRY.md.  The PostgreSQL index's connection: settings `enquiry.dsn` < INTERCHANGE_ENQUIRY_DSN < --dsn.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from typing import Any

import orjson

from adapters.registry import adapter_class
from broker.cli.registry import Commands, arg
from broker.config import Settings
from broker.errors import ExitCode, UsageError

commands = Commands()


DSN_ARGS = (
    arg("--dsn", help="PostgreSQL connection of the index (default: settings enquiry.dsn, INTERCHANGE_ENQUIRY_DSN)"),
    arg("--schema", default="enquiry", help="PostgreSQL schema of the index (default enquiry)"),
)


def _connect(dsn: str) -> Any:
    """The index connection, or None after saying which setting to fix."""
    import psycopg

    from broker.enquiry import index

    try:
        return index.connect(dsn)
    except psycopg.OperationalError as exc:
        where = dsn.split("@")[-1]
        print(
            f"enquiry.dsn: cannot connect to the enquiry index at {where}: {str(exc).strip()[:300]} "
            "(set enquiry.dsn, INTERCHANGE_ENQUIRY_DSN or --dsn)",
            file=sys.stderr,
        )
        return None


@commands(
    "enquiry-gateway",
    "serve the cross-force enquiry API and the officer's page",
    arg("--port", type=int, default=8443),
    arg("--host", default="0.0.0.0"),
    arg(
        "--jwt-public-key",
        action="append",
        default=[],
        metavar="PEM",
        help="a trusted identity provider's public key (repeatable)",
    ),
    arg("--jwks-url", help="the identity provider's JWKS URL (instead of --jwt-public-key)"),
    arg("--issuer", help="the token issuer to require (iss claim)"),
    arg("--deadline", type=float, default=2.0, help="seconds each force has to answer (default 2)"),
)
def cmd_gateway(args: argparse.Namespace, settings: Settings) -> int:
    """`interchange enquiry-gateway`: serve the enquiry API and the officer's page."""
    import uvicorn

    from broker.config import load_agencies
    from broker.enquiry.agreements import load_enquiry_agreements
    from broker.enquiry.auditsink import AuditSink
    from broker.enquiry.gateway import Gateway, GatewayConfig, create_app
    from broker.enquiry.identity import Verifier, load_public_keys

    if not args.jwt_public_key and not args.jwks_url:
        raise UsageError("give --jwt-public-key PEM or --jwks-url URL (whose tokens to trust)")
    audit = AuditSink(settings)
    config = GatewayConfig(
        Verifier(load_public_keys(args.jwt_public_key), args.jwks_url, args.issuer),
        load_enquiry_agreements(settings.agreements_dir),
        load_agencies(settings.agencies_file),
        audit,
        args.deadline,
    )
    gateway = Gateway(settings, config)
    try:
        uvicorn.run(create_app(gateway), host=args.host, port=args.port, log_level="warning")
    finally:
        gateway.close()
        audit.close()
    return ExitCode.OK


@commands(
    "enquiry-responder",
    "answer one force's enquiries from its PostgreSQL index",
    arg("force", help="PNC force code, e.g. 13"),
    arg(
        "--tap",
        action="store_true",
        help="also feed the index from the records the force publishes (a wire tap on the ingress exchange)",
    ),
    *DSN_ARGS,
)
def cmd_responder(args: argparse.Namespace, settings: Settings) -> int:
    """`interchange enquiry-responder`: answer one force's enquiries from its index."""
    from broker.enquiry import index
    from broker.enquiry.agreements import load_enquiry_agreements
    from broker.enquiry.responder import Responder

    args.dsn = args.dsn or settings.enquiry_dsn
    conn = _connect(args.dsn)
    if conn is None:
        return ExitCode.CONFIG
    index.create_schema(conn, args.schema)
    responder = Responder(
        settings,
        args.force,
        lambda keys, types: index.find(conn, args.force, keys, types, args.schema),
        load_enquiry_agreements(settings.agreements_dir),
    )
    tap = None
    if args.tap:
        from broker.config import Registry
        from broker.enquiry.tap import Tap

        tap_conn = index.connect(args.dsn)
        tap = Tap(
            settings,
            args.force,
            lambda r: index.index_record(tap_conn, args.force, r, args.schema),
            Registry.load(settings, adapter_class).publishers_of(args.force),
        )
        threading.Thread(target=tap.run, name="enquiry-tap", daemon=True).start()
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, lambda *_: responder.stop())
    try:
        responder.run()
    except KeyboardInterrupt:
        pass
    finally:
        if tap is not None:
            tap.stop()
        conn.close()
    return ExitCode.OK


@commands(
    "enquiry-index",
    "add a force's own records (JSON/NDJSON files) to its enquiry index",
    arg("force"),
    arg("files", nargs="+"),
    *DSN_ARGS,
)
def cmd_index(args: argparse.Namespace, settings: Settings) -> int:
    """`interchange enquiry-index`: add a force's records to its enquiry index."""
    from pathlib import Path

    from broker.cli.records import read_records
    from broker.enquiry import index

    conn = _connect(args.dsn or settings.enquiry_dsn)
    if conn is None:
        return ExitCode.CONFIG
    try:
        index.create_schema(conn, args.schema)
        records = (r for _, r in read_records([Path(f) for f in args.files]) if isinstance(r, dict))
        added = index.index_records(conn, args.force, records, args.schema)
    finally:
        conn.close()
    print(f"{added} records of force {args.force} indexed", file=sys.stderr)
    return ExitCode.OK


@commands(
    "audit consultations",
    "cross-force enquiry consultations by officer or subject, or the officers whose use stands out (audited)",
    arg("--officer", help="the officer's id (token sub)"),
    arg("--pnc"),
    arg("--name", help='"Family, Given" (with --dob)'),
    arg("--dob"),
    arg(
        "--unusual",
        action="store_true",
        help="list officers whose rate or share of purpose refusals is far above their peers'",
    ),
    arg("--since", help="from this time (ISO 8601, UTC)"),
    arg("--json", action="store_true"),
    arg("--actor", help="who is consulting the audit log (default the login name)"),
    arg("--reason", required=True, help="justification for consulting the log (audited)"),
)
def cmd_consultations(args: argparse.Namespace, settings: Settings) -> int:
    """`interchange audit consultations`: enquiry consultations by officer or subject, or unusual use."""
    from broker.audit import publish as auditpublish
    from broker.audit import reports as disclosures
    from broker.audit.index import Query, open_for_reading
    from broker.enquiry import review

    try:
        keys = disclosures.Subject(pnc=args.pnc, name=args.name, dob=args.dob).keys()
    except ValueError as exc:  # e.g. --name without --dob
        raise UsageError(str(exc)) from exc
    if not (args.officer or keys or args.unusual):
        raise UsageError("name --officer, a subject (--pnc, --name with --dob) or --unusual")
    what = {"command": "audit consultations", "officer": args.officer, "unusual": args.unusual or None}
    auditpublish.publish_entries(
        settings,
        [
            auditpublish.entry(
                "consult",
                auditpublish.actor_of(args.actor),
                args.reason,
                subject_keys=keys,
                query={k: v for k, v in what.items() if v},
            )
        ],
    )
    index = open_for_reading(settings.audit_dir)
    try:
        entries = review.consultations(
            index.query(Query(tuple(keys), operation="consult", since=args.since)), args.officer
        )
    finally:
        index.close()
    if args.unusual:
        found = review.unusual_officers(review.usage_from_entries(entries))
        for officer, signals in sorted(found.items()):
            print(f"{officer}\t{', '.join(signals)}")
        print(f"({len(found)} officers stand out)", file=sys.stderr)
        return ExitCode.OK
    table = review.rows(entries)
    if args.json:
        sys.stdout.write("".join(orjson.dumps(r).decode() + "\n" for r in table))
    else:
        sys.stdout.write(
            disclosures.as_table(
                table,
                (
                    "time",
                    "officer",
                    "force",
                    "step",
                    "outcome",
                    "reason",
                    "purpose",
                    "forces_asked",
                    "forces_answered",
                    "forces_timed_out",
                ),
            )
        )
    return ExitCode.OK

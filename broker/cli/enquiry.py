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
from broker.config import Settings

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_CONFIG = 0, 1, 2, 3


def add_commands(sub: Any, groups: dict[str, Any], command: Any) -> None:
    p = sub.add_parser("enquiry-gateway", help="serve the cross-force enquiry API and the officer's page")
    p.add_argument("--port", type=int, default=8443)
    p.add_argument("--host", default="0.0.0.0")
    p.add_argument(
        "--jwt-public-key",
        action="append",
        default=[],
        metavar="PEM",
        help="a trusted identity provider's public key (repeatable)",
    )
    p.add_argument("--jwks-url", help="the identity provider's JWKS URL (instead of --jwt-public-key)")
    p.add_argument("--issuer", help="the token issuer to require (iss claim)")
    p.add_argument("--deadline", type=float, default=2.0, help="seconds each force has to answer (default 2)")
    p = sub.add_parser("enquiry-responder", help="answer one force's enquiries from its PostgreSQL index")
    p.add_argument("force", help="PNC force code, e.g. 13")
    p.add_argument(
        "--tap",
        action="store_true",
        help="also feed the index from the records the force publishes (a wire tap on the ingress exchange)",
    )
    _dsn_args(p)
    p = sub.add_parser("enquiry-index", help="add a force's own records (JSON/NDJSON files) to its enquiry index")
    p.add_argument("force")
    p.add_argument("files", nargs="+")
    _dsn_args(p)
    p = groups["audit"].add_parser(
        "consultations",
        help="cross-force enquiry consultations by officer or subject, or the officers whose use stands out (audited)",
    )
    p.add_argument("--officer", help="the officer's id (token sub)")
    p.add_argument("--pnc")
    p.add_argument("--name", help='"Family, Given" (with --dob)')
    p.add_argument("--dob")
    p.add_argument(
        "--unusual",
        action="store_true",
        help="list officers whose rate or share of purpose refusals is far above their peers'",
    )
    p.add_argument("--since", help="from this time (ISO 8601, UTC)")
    p.add_argument("--json", action="store_true")
    p.add_argument("--actor", help="who is consulting the audit log (default the login name)")
    p.add_argument("--reason", required=True, help="justification for consulting the log (audited)")
    command("enquiry-gateway")(cmd_gateway)
    command("enquiry-responder")(cmd_responder)
    command("enquiry-index")(cmd_index)
    command("audit consultations")(cmd_consultations)


def _dsn_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--dsn", help="PostgreSQL connection of the index (default: settings enquiry.dsn, INTERCHANGE_ENQUIRY_DSN)"
    )
    p.add_argument("--schema", default="enquiry", help="PostgreSQL schema of the index (default enquiry)")


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


def cmd_gateway(args: argparse.Namespace, settings: Settings) -> int:
    import uvicorn

    from broker.config import load_agencies
    from broker.enquiry.agreements import load_enquiry_agreements
    from broker.enquiry.auditsink import AuditSink
    from broker.enquiry.gateway import Gateway, GatewayConfig, create_app
    from broker.enquiry.identity import Verifier, load_public_keys

    if not args.jwt_public_key and not args.jwks_url:
        print("usage: give --jwt-public-key PEM or --jwks-url URL (whose tokens to trust)", file=sys.stderr)
        return EXIT_USAGE
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
    return EXIT_OK


def cmd_responder(args: argparse.Namespace, settings: Settings) -> int:
    from broker.enquiry import index
    from broker.enquiry.agreements import load_enquiry_agreements
    from broker.enquiry.responder import Responder

    args.dsn = args.dsn or settings.enquiry_dsn
    conn = _connect(args.dsn)
    if conn is None:
        return EXIT_CONFIG
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
    return EXIT_OK


def cmd_index(args: argparse.Namespace, settings: Settings) -> int:
    from pathlib import Path

    from broker.cli.main import read_records
    from broker.enquiry import index

    conn = _connect(args.dsn or settings.enquiry_dsn)
    if conn is None:
        return EXIT_CONFIG
    try:
        index.create_schema(conn, args.schema)
        records = (r for _, r in read_records([Path(f) for f in args.files]) if isinstance(r, dict))
        added = index.index_records(conn, args.force, records, args.schema)
    finally:
        conn.close()
    print(f"{added} records of force {args.force} indexed", file=sys.stderr)
    return EXIT_OK


def cmd_consultations(args: argparse.Namespace, settings: Settings) -> int:
    from broker.audit import publish as auditpublish
    from broker.audit import reports as disclosures
    from broker.audit.index import Query, open_for_reading
    from broker.enquiry import review

    try:
        keys = disclosures.Subject(pnc=args.pnc, name=args.name, dob=args.dob).keys()
    except ValueError as exc:
        print(f"usage: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if not (args.officer or keys or args.unusual):
        print("usage: name --officer, a subject (--pnc, --name with --dob) or --unusual", file=sys.stderr)
        return EXIT_USAGE
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
        return EXIT_OK
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
    return EXIT_OK

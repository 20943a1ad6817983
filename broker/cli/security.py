"""Security commands: `interchange security access` prints who may do what in RabbitMQ.

`interchange topology apply --users` (in broker/cli/main.py) calls `apply_users` here to create the
per-partner users of `broker.ops.access` and set exactly their permissions.
"""

from __future__ import annotations

import argparse
import os
import sys

from adapters.registry import adapter_class
from broker.cli.registry import Commands
from broker.config import Registry, Settings, load_yaml
from broker.errors import ExitCode

commands = Commands()


@commands("security access", "print every RabbitMQ user the configuration needs, with permissions")
def cmd_security_access(args: argparse.Namespace, settings: Settings) -> int:
    """Print every RabbitMQ user the configuration needs and exactly its permissions."""
    from broker.ops.access import access_plan

    plan = access_plan(Registry.load(settings, adapter_class), settings.core_vhost, settings.recipient_vhost)
    print(f"{'user':<28} {'role':<10} {'vhost':<36} {'configure':<10} {'write':<34} read")
    for p in plan.permissions:
        print(f"{p.user:<28} {plan.user(p.user).role:<10} {p.vhost:<36} {p.configure:<10} {p.write:<34} {p.read}")
    print(f"{len(plan.users)} users, {len(plan.permissions)} permissions; no user may configure")
    return ExitCode.OK


def apply_users(args: argparse.Namespace, settings: Settings, registry: Registry) -> int:
    """Create the users and permissions; print generated passwords once (to stdout, nowhere else)."""
    from broker.ops import access, provision

    secrets_doc = load_yaml(args.secrets) if args.secrets else None
    plan = access.access_plan(registry, settings.core_vhost, settings.recipient_vhost)
    given = access.credentials(
        plan, dict(os.environ), secrets_doc, generate=args.generate_passwords, certificates=args.certificates
    )
    users = provision.apply_access(settings, registry, given)
    for name, credential in sorted(given.items()):
        if credential.generated:
            print(f"{name}\t{credential.value}")
    kept = len(users) - len(given)
    print(
        f"{len(users)} users applied ({len(given)} credentials set, {kept} kept as they were); "
        "generated passwords are shown above once and stored nowhere",
        file=sys.stderr,
    )
    return ExitCode.OK


def record_verify_consult(args: argparse.Namespace, settings: Settings, chain_ok: bool, signed_ok: bool) -> str:
    """Audit `audit verify` as a consultation of the log, after the check has run: verification never
    depends on RabbitMQ, so when the entry cannot be published the check stands and the line says so."""
    from broker.audit import publish as auditpublish
    from broker.errors import ConfigError, TransportError

    consult = auditpublish.entry(
        "consult",
        auditpublish.actor_of(getattr(args, "actor", None)),
        getattr(args, "reason", None) or "audit log integrity check",
        query={"command": "audit verify"},
        result={"chain_ok": chain_ok, "checkpoints_ok": signed_ok},
    )
    try:
        auditpublish.publish_entries(settings, [consult])
    except (TransportError, ConfigError) as exc:
        cause = exc.__cause__ or exc  # publish_entries says "refused"; here only the record is missing
        return f"consultation NOT recorded (RabbitMQ unreachable; the verification above ran without it): {cause}"
    who = consult["actor"]["person"]
    return f"consultation recorded in the audit log: entry {consult['entry_id']} by {who}"

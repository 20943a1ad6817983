"""Who may do what in RabbitMQ: users and per-vhost permissions derived from the configuration.

    access_plan(registry, core_vhost, recipient_vhost) -> AccessPlan      (pure)

Least privilege, one role per user, no management tags for anyone but the operator:

user                   vhost                        write                          read
each agency publisher  core                         interchange.ingress            nothing
recipient-<id>         that recipient's vhost only  receipts exchange, if any      interchange.inbox
interchange-router     core                         interchange.dlx, amq.default   interchange.route
                       every recipient vhost        interchange.deliver            nothing
interchange-audit      core                         interchange.anchor             interchange.audit
interchange-enquiry-   core                         amq.default (audit entries)    nothing
  gateway              each force-* vhost           interchange.enquiries          amq.rabbitmq.reply-to
interchange-responder- its force's vhost            amq.default (replies), its     interchange.enquiry,
  <code>                                            queue (to bind it)             interchange.enquiries
                       core (its wire tap)          its tap queue (to bind it)     its tap queue, ingress

Nobody generated here may configure (declare, delete, bind) anything, except that a responder declares its
own `interchange.enquiries` exchange, `interchange.enquiry` queue and tap queue `interchange.enquiry.tap.<code>`
(docs/ENQUIRY.md).  Direct reply-to replies must go through the default exchange, so a responder could also
write to another queue of its own force's vhost (its own inbox): it acts for that force alone.
The router writes the audit batch through the default exchange (`amq.default`, routing key
`interchange.audit`) and dead letters to `interchange.dlx`; queue dead-lettering by policy needs no user
permission.  The audit writer publishes each signed checkpoint to `interchange.anchor` (a stream no
generated user can delete or purge: docs/SECURITY.md section 6).  Declaring topology is the operator's
job (`interchange topology apply`, an administrator login), so no generated user may configure anything.
Permissions are RabbitMQ regular expressions over exchange and queue names; `^$` matches nothing.  A
recipient has no permission at all in any other vhost, so it cannot even open one (a passive declare
there, which RabbitMQ does not permission-check, is out of its reach).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from broker import topology
from broker.config import Registry
from broker.errors import ConfigError

NOTHING = "^$"
ROUTER_USER = "interchange-router"
AUDIT_USER = "interchange-audit"
RECIPIENT_USER_PREFIX = "recipient-"
GATEWAY_USER = "interchange-enquiry-gateway"
RESPONDER_USER_PREFIX = "interchange-responder-"
REPLY_TO = "amq.rabbitmq.reply-to"  # RabbitMQ's direct reply-to pseudo-queue
RECEIPTS_EXCHANGE: str | None = topology.RECEIPTS_EXCHANGE  # partners acknowledge corrections here


@dataclass(frozen=True, slots=True)
class User:
    """A RabbitMQ user the configuration needs, with its role and whom it acts for."""

    name: str
    role: str  # publisher | recipient | router | audit | enquiry-gateway | enquiry-responder
    subject: str = ""  # the agency code or recipient id the user acts for
    tags: str = ""  # never management tags: partners do not get the management API


@dataclass(frozen=True, slots=True)
class Permission:
    """One user's configure, write and read permissions on one vhost."""

    user: str
    vhost: str
    configure: str
    write: str
    read: str


@dataclass(frozen=True, slots=True)
class AccessPlan:
    """Every user and permission the configuration needs."""

    users: tuple[User, ...]
    permissions: tuple[Permission, ...]

    def user(self, name: str) -> User:
        """The user of that name."""
        return next(u for u in self.users if u.name == name)

    def permissions_of(self, name: str) -> dict[str, Permission]:
        """A user's permissions by vhost."""
        return {p.vhost: p for p in self.permissions if p.user == name}

    def definitions(self) -> dict[str, list[dict[str, Any]]]:
        """Users and permissions in RabbitMQ's definitions format, with no secrets.

        Users carry an empty password hash: they log in with a client certificate (EXTERNAL) until
        `interchange topology apply` gives them a password or a hash from the secrets file.
        """
        users = [
            {
                "name": u.name,
                "password_hash": "",
                "hashing_algorithm": "rabbit_password_hashing_sha256",
                "tags": u.tags,
                "limits": {},
            }
            for u in self.users
        ]
        permissions = [
            {"user": p.user, "vhost": p.vhost, "configure": p.configure, "write": p.write, "read": p.read}
            for p in self.permissions
        ]
        return {"users": users, "permissions": permissions}


def exact(*names: str) -> str:
    """A permission regex matching exactly these resource names."""
    return "^(" + "|".join(re.escape(n) for n in sorted(names)) + ")$" if names else NOTHING


def recipient_user(recipient_id: str) -> str:
    """The RabbitMQ user of a recipient."""
    return f"{RECIPIENT_USER_PREFIX}{recipient_id}"


def responder_user(force_code: str) -> str:
    """The RabbitMQ user of force `force_code`'s enquiry responder."""
    return f"{RESPONDER_USER_PREFIX}{force_code}"


def tap_queue(force_code: str) -> str:
    """The core-vhost queue a force's responder feeds its enquiry index from (broker.enquiry.tap)."""
    return f"{topology.ENQUIRY_QUEUE}.tap.{force_code}"


def access_plan(
    registry: Registry, core_vhost: str, recipient_vhost: Callable[[str], str], user_prefix: str = ""
) -> AccessPlan:
    """Every user the configuration needs and exactly the permissions each role requires.

    `user_prefix` is prepended to every user name (tests use it to keep their throw-away users apart).
    """
    users: list[User] = []
    permissions: list[Permission] = []
    seen: set[str] = set()
    for code in sorted(registry.agencies):
        for name in (user_prefix + n for n in registry.agencies[code].publishers):
            if name not in seen:
                seen.add(name)
                users.append(User(name, "publisher", code))
                ingress = exact(topology.INGRESS_EXCHANGE)
                permissions.append(Permission(name, core_vhost, NOTHING, ingress, NOTHING))
    router, auditor = user_prefix + ROUTER_USER, user_prefix + AUDIT_USER
    users.append(User(router, "router"))
    permissions.append(
        Permission(router, core_vhost, NOTHING, exact(topology.DLX, "amq.default"), exact(topology.ROUTE_QUEUE))
    )
    users.append(User(auditor, "audit"))
    permissions.append(
        Permission(auditor, core_vhost, NOTHING, exact(topology.ANCHOR_EXCHANGE), exact(topology.AUDIT_QUEUE))
    )
    receipts = (RECEIPTS_EXCHANGE,) if RECEIPTS_EXCHANGE else ()
    for rid in sorted(registry.recipients):
        vhost, name = recipient_vhost(rid), user_prefix + recipient_user(rid)
        users.append(User(name, "recipient", rid))
        permissions.append(Permission(name, vhost, NOTHING, exact(*receipts), exact(topology.INBOX_QUEUE)))
        permissions.append(Permission(router, vhost, NOTHING, exact(topology.DELIVER_EXCHANGE), NOTHING))
    _enquiry_access(registry, core_vhost, recipient_vhost, user_prefix, users, permissions)
    names = [u.name for u in users]
    clash = sorted({n for n in names if names.count(n) > 1})
    if clash:
        raise ConfigError("agencies.yaml", "publishers", f"user names used for two roles: {', '.join(clash)}")
    return AccessPlan(tuple(users), tuple(sorted(permissions, key=lambda p: (p.user, p.vhost))))


def _enquiry_access(
    registry: Registry,
    core_vhost: str,
    recipient_vhost: Callable[[str], str],
    user_prefix: str,
    users: list[User],
    permissions: list[Permission],
) -> None:
    """The enquiry gateway and one responder per force with a `force-<code>` vhost (docs/ENQUIRY.md)."""
    forces = sorted(r for r in registry.recipients if r.startswith("force-"))
    if not forces:
        return
    gateway = user_prefix + GATEWAY_USER
    users.append(User(gateway, "enquiry-gateway"))
    permissions.append(Permission(gateway, core_vhost, NOTHING, exact("amq.default"), NOTHING))
    for rid in forces:
        code = rid.removeprefix("force-")
        vhost, responder = recipient_vhost(rid), user_prefix + responder_user(code)
        permissions.append(Permission(gateway, vhost, NOTHING, exact(topology.ENQUIRY_EXCHANGE), exact(REPLY_TO)))
        users.append(User(responder, "enquiry-responder", code))
        own = (topology.ENQUIRY_QUEUE, topology.ENQUIRY_EXCHANGE)
        permissions.append(
            Permission(responder, vhost, exact(*own), exact(topology.ENQUIRY_QUEUE, "amq.default"), exact(*own))
        )
        tap = tap_queue(code)
        permissions.append(
            Permission(responder, core_vhost, exact(tap), exact(tap), exact(tap, topology.INGRESS_EXCHANGE))
        )


# ---------------------------------------------------------------- credentials


@dataclass(frozen=True, slots=True)
class Credential:
    """How a user logs in: a password, a RabbitMQ password hash, or a client certificate only."""

    kind: str  # password | hash | certificate
    value: str = ""
    generated: bool = False


def password_env_var(user: str) -> str:
    """INTERCHANGE_PASSWORD_<USER>, upper case, non-alphanumerics as underscores (force-01 -> FORCE_01)."""
    return "INTERCHANGE_PASSWORD_" + re.sub(r"[^A-Z0-9]", "_", user.upper())


def credentials(
    plan: AccessPlan,
    environ: dict[str, str],
    secrets: dict[str, Any] | None = None,
    generate: bool = False,
    certificates: bool = False,
    token: Callable[[], str] | None = None,
) -> dict[str, Credential]:
    """Each user's credential: environment first, then the secrets file, then generated or certificate-only.

    Users with none of these are left out, so an existing user keeps the credential it has.
    """
    import secrets as _secrets

    token = token or (lambda: _secrets.token_urlsafe(24))
    found: dict[str, Credential] = {}
    entries = (secrets or {}).get("users", {}) or {}
    for user in plan.users:
        entry = entries.get(user.name) or {}
        if password_env_var(user.name) in environ:
            found[user.name] = Credential("password", environ[password_env_var(user.name)])
        elif entry.get("password_hash"):
            found[user.name] = Credential("hash", str(entry["password_hash"]))
        elif entry.get("certificate"):
            found[user.name] = Credential("certificate")
        elif generate:
            found[user.name] = Credential("password", token(), generated=True)
        elif certificates:
            found[user.name] = Credential("certificate")
    return found

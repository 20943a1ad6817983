"""The partner contract: the view schema of every delivery, the AsyncAPI 3.0 document of every recipient, and
which changes between two contracts would break a partner's integration.

A view schema is the common schema of one record type (schemas/*.json) cut to the fields one agreement
discloses to one recipient: `properties` keep only the allowed paths, and `required` keeps only what the
projection always carries (a required key whose whole subtree is allowed).  Constraints that a partial
projection can break (`minItems`, `uniqueItems`, `minProperties` under a partly disclosed subtree) are
dropped.  Everything is derived from data: the agreements' field lists and the common schema.

A recipient with an outbound format (`crime-map-csv`) receives rendered text: its view schema is a string
whose first line is the format's column header, passed in as `formats` by the caller (the composition root
knows the adapters).
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from broker import topology
from broker.config import PROJECT_ROOT, Agreement, Registry, Settings
from broker.routing.paths import EVERY, compile_tree
from broker.routing.projection import ENVELOPE, HANDLING_TEXT
from broker.routing.views import DATASCHEMA_HEADER, notice_id, view_id

COMMON_SCHEMAS = PROJECT_ROOT / "schemas"
DRAFT = "https://json-schema.org/draft/2020-12/schema"
COMMON_JSON = "common-json"
# keywords that a partly disclosed subtree can no longer satisfy
PARTIAL_DROPS = ("minItems", "uniqueItems", "minProperties", "examples")


@dataclass(frozen=True)
class Format:
    """An outbound format's contract: its content type and, for CSV, the header row it starts with."""

    name: str
    content_type: str
    columns: tuple[str, ...] = ()
    xsd: Path | None = None  # XML: the XSD every rendered body is valid against (exported beside the schemas)


@dataclass(frozen=True)
class View:
    """The schema of exactly what one recipient receives under one agreement for one record type."""

    recipient: str
    agreement: str
    record_type: str
    schema: dict[str, Any]
    fmt: str = COMMON_JSON

    @property
    def id(self) -> str:
        """The view schema's stable `$id`."""
        return self.schema["$id"]


@dataclass
class Contract:
    """What one recipient receives: its view schemas and the AsyncAPI document that references them."""

    recipient: str
    views: list[View] = field(default_factory=list)
    asyncapi: dict[str, Any] = field(default_factory=dict)
    xsds: list[Path] = field(default_factory=list)


# ---------------------------------------------------------------- the common schema, inlined


def load_common(schema_dir: Path = COMMON_SCHEMAS) -> dict[str, dict[str, Any]]:
    """`$id` -> schema for every common schema file."""
    docs = {}
    for file in sorted(schema_dir.glob("*.json")):
        doc = json.loads(file.read_text(encoding="utf-8"))
        docs[doc["$id"]] = doc
    return docs


class _Inliner:
    """Replaces every `$ref` by the schema it names, so a view is one self-contained document."""

    def __init__(self, docs: dict[str, dict[str, Any]]) -> None:
        self.docs = docs

    def inline(self, node: Any, base: str, stack: tuple[str, ...] = ()) -> Any:
        if isinstance(node, list):
            return [self.inline(item, base, stack) for item in node]
        if not isinstance(node, dict):
            return node
        out = {k: self.inline(v, base, stack) for k, v in node.items() if k not in ("$ref", "$id", "$schema")}
        if "$ref" not in node:
            return out
        target_base, target = self._resolve(node["$ref"], base)
        key = f"{target_base}#{node['$ref'].partition('#')[2]}"
        if key in stack:
            raise ValueError(f"recursive $ref {node['$ref']!r} cannot be inlined")
        inlined = self.inline(target, target_base, (*stack, key))
        if not out:
            return inlined
        if set(out) & set(inlined):
            return {"allOf": [inlined, out]}
        return inlined | out

    def _resolve(self, ref: str, base: str) -> tuple[str, Any]:
        url, _, pointer = ref.partition("#")
        doc_id = url or base
        node: Any = self.docs[doc_id]
        for step in (s for s in pointer.split("/") if s):
            node = node[step.replace("~1", "/").replace("~0", "~")]
        return doc_id, node


def _names(schema: Any) -> set[str]:
    """Every property name an object schema can have (through allOf, anyOf, oneOf and then/else)."""
    if not isinstance(schema, dict):
        return set()
    names = set(schema.get("properties", {}))
    for key in ("allOf", "anyOf", "oneOf"):
        for sub in schema.get(key, []):
            names |= _names(sub)
    for key in ("then", "else"):
        names |= _names(schema.get(key))
    return names


def _sub(schema: Any, name: str) -> list[Any]:
    """The schemas of property `name` wherever an object schema declares it."""
    if not isinstance(schema, dict):
        return []
    found = [schema["properties"][name]] if name in schema.get("properties", {}) else []
    for key in ("allOf", "anyOf", "oneOf"):
        for sub in schema.get(key, []):
            found += _sub(sub, name)
    for key in ("then", "else"):
        found += _sub(schema.get(key), name)
    return found


def prune(schema: Any, tree: Any) -> Any:
    """The schema of what projection keeps of a value valid against `schema` under allow-tree `tree`
    (`True`: the whole subtree travels; a dict: only its keys, `[]` for every item of a list)."""
    if tree is True or not isinstance(schema, dict):
        return schema
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key == "properties":
            out[key] = {k: prune(v, tree[k]) for k, v in value.items() if k in tree}
        elif key == "required":
            kept = [k for k in value if tree.get(k) is True]
            if kept:
                out[key] = kept
        elif key in ("minItems", "uniqueItems"):
            if tree.get(EVERY) is True:
                out[key] = value
        elif key in ("minProperties", "examples"):
            continue
        elif key == "items":
            out[key] = prune(value, tree.get(EVERY, {}))
        elif key in ("allOf", "anyOf"):
            out[key] = [prune(s, tree) for s in value]
        elif key == "oneOf":  # two branches can both match once the fields that told them apart are withheld
            out["anyOf"] = [prune(s, tree) for s in value]
        elif key in ("then", "else"):
            out[key] = prune(value, tree)
        else:  # `if` and `not` test what is present: a withheld field is absent, which they already allow
            out[key] = value
    return out


# ---------------------------------------------------------------- view schemas


def field_lists(agreement: Agreement) -> dict[str, tuple[str, ...]]:
    """Record type -> the paths the agreement lists (its `fields`)."""
    return {rtype: tuple(projector.allowed) for rtype, projector in agreement.fields.items()}


def _handling_tree(handling: dict[str, Any]) -> dict[str, Any]:
    """The handling marking without the free text of its conditions (projection.without_handling_text)."""
    tree: dict[str, Any] = {name: True for name in _names(handling)}
    conditions: set[str] = set()
    for sub in _sub(handling, "conditions"):
        conditions |= _names(sub)
    tree["conditions"] = {name: True for name in conditions - {"text"}}
    return tree


def version_of(schema: dict[str, Any]) -> str:
    """A view's version: the first 16 hex digits of the SHA-256 of its canonical JSON (without `$comment`)."""
    body = {k: v for k, v in schema.items() if k != "$comment"}
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()[:16]


def view_schema(
    recipient: str,
    agreement: str,
    record_type: str,
    allowed: Iterable[str],
    common: dict[str, dict[str, Any]],
) -> dict[str, Any]:
    """The JSON Schema (2020-12) of every common-JSON delivery of `record_type` to `recipient` under `agreement`."""
    allowed = tuple(allowed)
    inliner = _Inliner(common)
    record_doc = next(d for d in common.values() if d.get("properties", {}).get("type", {}).get("const") == record_type)
    envelope_id = record_doc["$ref"]
    envelope = common[envelope_id]
    the_id = view_id(recipient, agreement, record_type)
    properties: dict[str, Any] = {}
    for name in ENVELOPE:
        if name in envelope["properties"]:
            properties[name] = inliner.inline(envelope["properties"][name], envelope_id)
    properties["type"] = {"const": record_type}
    properties["dataschema"] = {"const": the_id}
    if HANDLING_TEXT not in allowed:
        properties["handling"] = prune(properties["handling"], _handling_tree(properties["handling"]))
    tree = compile_tree(allowed).get("data", {})
    data = inliner.inline(record_doc["$defs"]["data"], record_doc["$id"])
    properties["data"] = prune(data, tree) if tree else {"type": "object", "additionalProperties": False}
    required = list(dict.fromkeys([*envelope["required"], *record_doc.get("required", []), "dataschema"]))
    schema = {
        "$schema": DRAFT,
        "$id": the_id,
        "title": f"{record_type} as {recipient} receives it under {agreement}",
        "description": (
            f"Derived from {record_doc['$id']}: only the fields agreement {agreement} discloses "
            f"({', '.join(allowed) or 'none'}) besides the envelope."
        ),
        "type": "object",
        "properties": properties,
        "additionalProperties": False,
        "required": required,
    }
    schema["$comment"] = f"view version {version_of(schema)}"
    return schema


def format_schema(recipient: str, agreement: str, record_type: str, fmt: Format) -> dict[str, Any]:
    """The schema of a rendered delivery: CSV text whose first line is the column header, XML text valid
    against the format's XSD (named in the description, exported beside it), or a JSON object of the
    format's own shape."""
    the_id = view_id(recipient, agreement, record_type, fmt.name)
    media = fmt.content_type.split(";")[0].strip()
    what = f"{fmt.content_type} rendered by {fmt.name}"
    if fmt.columns:
        what += f", with the columns {', '.join(fmt.columns)}"
    if fmt.xsd is not None:
        what += f", valid against the XSD {xsd_file(fmt.xsd)}"
    schema: dict[str, Any] = {
        "$schema": DRAFT,
        "$id": the_id,
        "title": f"{record_type} as {recipient} receives it under {agreement}, rendered as {fmt.name}",
        "description": what,
    }
    if media.endswith("json"):
        schema["type"] = "object"
    else:
        schema |= {"type": "string", "contentMediaType": media}
    if fmt.columns:
        header = ",".join(_csv_cell(c) for c in fmt.columns)
        schema["pattern"] = "^" + _regex_escape(header) + "\r\n"
    schema["$comment"] = f"view version {version_of(schema)}"
    return schema


def xsd_file(xsd: Path) -> str:
    """Where an outbound format's XSD is exported, relative to the recipient's folder."""
    return f"schemas/xsd/{xsd.name}"


def _csv_cell(text: str) -> str:
    return f'"{text.replace(chr(34), chr(34) * 2)}"' if any(c in text for c in ',"\r\n') else text


def _regex_escape(text: str) -> str:
    """Escape for an ECMA-262 pattern in unicode mode (ajv): only syntax characters are escaped."""
    return "".join("\\" + c if c in "\\^$.|?*+()[]{}/" else c for c in text)


def notice_schema(public: bool = False) -> dict[str, Any]:
    """The retraction notice a past recipient gets instead of a correction it may no longer receive."""
    if public:
        properties: dict[str, Any] = {
            "notice": {"const": "retraction"},
            "crime_id": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
        }
    else:
        text = {"type": "string", "minLength": 1, "maxLength": 256}
        properties = {
            "notice": {"const": "retraction"},
            "record_id": text,
            "origin": text,
            "supersedes": text,
            "kind": {"enum": ["correction", "retraction"]},
            "reason": text,
        }
    schema = {
        "$schema": DRAFT,
        "$id": notice_id(public),
        "title": "retraction notice" + (" (open data)" if public else ""),
        "description": "Stop relying on the record it supersedes (public: the row with this Crime ID).",
        "type": "object",
        "properties": properties,
        "additionalProperties": False,
        "required": list(properties),
    }
    schema["$comment"] = f"view version {version_of(schema)}"
    return schema


def views_of(
    registry: Registry,
    recipient: str,
    common: dict[str, dict[str, Any]] | None = None,
    formats: dict[str, Format] | None = None,
) -> list[View]:
    """Every view schema of one recipient: one per agreement feeding it and record type the agreement covers."""
    common = common or load_common()
    fmt_name = registry.recipients[recipient].format
    views = []
    for agreement in sorted(registry.agreements, key=lambda a: a.id):
        if agreement.recipient != recipient:
            continue
        lists = field_lists(agreement)
        for rtype in agreement.record_types:
            if fmt_name and fmt_name != COMMON_JSON:
                fmt = (formats or {}).get(fmt_name) or Format(fmt_name, "application/octet-stream")
                schema = format_schema(recipient, agreement.id, rtype, fmt)
            else:
                schema = view_schema(recipient, agreement.id, rtype, lists.get(rtype, ()), common)
            views.append(View(recipient, agreement.id, rtype, schema, fmt_name or COMMON_JSON))
    return views


# ---------------------------------------------------------------- AsyncAPI 3.0


def _message_key(view: View) -> str:
    return f"{view.agreement}.{view.record_type}"


def _asyncapi_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """A view schema as an AsyncAPI payload (the AsyncAPI Schema is a superset of draft 7: no `$schema`)."""
    return {k: v for k, v in copy.deepcopy(schema).items() if k not in ("$schema", "$comment")}


def _delivery_headers(public: bool) -> dict[str, Any]:
    text = {"type": "string"}
    headers: dict[str, Any] = {
        "x-agreement": text | {"description": "the information-sharing agreement this disclosure is made under"},
        "x-lawful-basis": text | {"description": "the agreement's lawful basis for the disclosure"},
        "x-purposes": text | {"description": "the purposes the data may be used for, comma-separated"},
        "x-record-type": text | {"description": "the record type (common schema `type`)"},
        DATASCHEMA_HEADER: text | {"description": "the `$id` of the view schema this delivery is valid against"},
        "x-supersedes-kind": {
            "enum": ["correction", "retraction"],
            "description": "present on a correction or retraction of an earlier delivery",
        },
    }
    required = ["x-agreement", "x-lawful-basis", "x-purposes", "x-record-type", DATASCHEMA_HEADER]
    if not public:
        headers |= {
            "x-classification": text | {"description": "the Government Security Classification of the record"},
            "x-origin-agency": text | {"description": "the agency (force code) that published the record"},
            "x-handling": text | {"description": "the handling marking (3x5x2 or 5x5x5) as JSON, without free text"},
            "x-supersedes": text | {"description": "the id of the record this one corrects or retracts"},
        }
        required += ["x-classification", "x-origin-agency"]
    return {"type": "object", "properties": headers, "required": required}


def _notice_headers(public: bool) -> dict[str, Any]:
    text = {"type": "string"}
    headers: dict[str, Any] = {
        "x-notice": {"const": "retraction"},
        "x-agreement": text,
        "x-record-type": text,
        "x-supersedes-kind": {"enum": ["correction", "retraction"]},
        DATASCHEMA_HEADER: {"const": notice_id(public)},
    }
    if not public:
        headers |= {
            "x-origin-agency": text,
            "x-supersedes": text,
            "x-retraction-reason": text,
            "x-classification": text,
            "x-lawful-basis": text,
            "x-purposes": text,
        }
    return {"type": "object", "properties": headers, "required": ["x-notice", "x-agreement", DATASCHEMA_HEADER]}


RECEIPT_SCHEMA = {
    "type": "object",
    "properties": {
        "message_id": {"type": "string", "description": "the message_id of the correction or notice received"},
        "recipient": {"type": "string", "description": "this recipient's id"},
        "supersedes": {"type": ["string", "null"], "description": "the x-supersedes header of what was received"},
        "received_at": {"type": "string", "format": "date-time"},
    },
    "required": ["message_id", "recipient"],
}


def asyncapi(
    registry: Registry, settings: Settings, recipient: str, views: list[View], version: str | None = None
) -> dict[str, Any]:
    """The AsyncAPI 3.0 document of what `recipient` receives and where it sends its receipts."""
    who = registry.recipients[recipient]
    vhost = settings.recipient_vhost(recipient)
    url = urlsplit(settings.amqp_url)
    tls = url.scheme == "amqps"
    public = who.public
    message_id = (
        "HMAC-SHA256 of (origin, record id) under the open-data key: stable across redeliveries, it names no record"
        if public
        else "the record id: the same record redelivered keeps it; a correction has its own id and names the "
        "record it corrects in x-supersedes"
    )
    messages: dict[str, Any] = {}
    for view in views:
        json_body = view.fmt == COMMON_JSON
        messages[_message_key(view)] = {
            "name": view.record_type,
            "title": view.schema["title"],
            "summary": f"{view.record_type} under {view.agreement}; valid against {view.id}",
            "description": (
                f"AMQP property message_id: {message_id}. Drop a delivery whose message_id you have already "
                "processed (delivery is at least once). "
                + (
                    "correlation_id: the record's correlation id (the case it belongs to), when it has one."
                    if not public
                    else "No correlation_id."
                )
            ),
            "contentType": "application/json" if json_body else view.schema.get("contentMediaType", "application/json"),
            "headers": _delivery_headers(public),
            "payload": _asyncapi_schema(view.schema),
            "bindings": {"amqp": {"messageType": view.record_type, "bindingVersion": "0.3.0"}},
            **({"correlationId": {"$ref": "#/components/correlationIds/record"}} if not public else {}),
        }
    messages["retraction"] = {
        "name": "retraction",
        "title": "Retraction notice",
        "summary": "stop relying on an earlier delivery (routing key interchange.retraction)",
        "contentType": "application/json",
        "headers": _notice_headers(public),
        "payload": _asyncapi_schema(notice_schema(public)),
        "bindings": {"amqp": {"messageType": "interchange.retraction", "bindingVersion": "0.3.0"}},
    }
    receipts_messages = {
        "receipt": {
            "name": "receipt",
            "title": "Receipt of a correction or notice",
            "contentType": "application/json",
            "payload": RECEIPT_SCHEMA,
        }
    }
    inbox = {
        "address": topology.INBOX_QUEUE,
        "title": f"{who.name}: inbox",
        "description": "Every delivery to this recipient. Consume with manual acks; ack after storing.",
        "messages": {key: {"$ref": f"#/components/messages/{key}"} for key in messages},
        "bindings": {
            "amqp": {
                "is": "queue",
                "queue": {
                    "name": topology.INBOX_QUEUE,
                    "durable": True,
                    "exclusive": False,
                    "autoDelete": False,
                    "vhost": vhost,
                },
                "bindingVersion": "0.3.0",
            }
        },
    }
    receipts = {
        "address": topology.RECEIPTS_EXCHANGE,
        "title": "receipts",
        "description": "Acknowledge every correction (header x-supersedes) and retraction notice here.",
        "messages": {key: {"$ref": f"#/components/messages/{key}"} for key in receipts_messages},
        "bindings": {
            "amqp": {
                "is": "routingKey",
                "exchange": {
                    "name": topology.RECEIPTS_EXCHANGE,
                    "type": "fanout",
                    "durable": True,
                    "autoDelete": False,
                    "vhost": vhost,
                },
                "bindingVersion": "0.3.0",
            }
        },
    }
    security_scheme = (
        {"type": "X509", "description": "client certificate; its CN is the RabbitMQ user"}
        if tls
        else {"type": "userPassword", "description": "the recipient's RabbitMQ user"}
    )
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": f"Interchange deliveries to {who.name}",
            "version": version or contract_version(views),
            "description": (
                f"What recipient `{recipient}` receives from the Interchange exchange, under the agreements that "
                "name it, and where it acknowledges corrections. Each delivery names its view schema in the "
                f"`{DATASCHEMA_HEADER}` header" + ("." if public else " and in the body's `dataschema`.")
            ),
        },
        "servers": {
            "interchange": {
                "host": f"{url.hostname or 'localhost'}:{url.port or (5671 if tls else 5672)}",
                "protocol": "amqps" if tls else "amqp",
                "protocolVersion": "0-9-1",
                "pathname": "/" + vhost,
                "description": f"RabbitMQ; this recipient's virtual host is `{vhost}`",
                "security": [{"$ref": "#/components/securitySchemes/recipient"}],
            }
        },
        "defaultContentType": "application/json",
        "channels": {"inbox": inbox, "receipts": receipts},
        "operations": {
            "receiveDeliveries": {
                "action": "receive",
                "channel": {"$ref": "#/channels/inbox"},
                "summary": "consume deliveries and retraction notices",
                "messages": [{"$ref": f"#/channels/inbox/messages/{key}"} for key in messages],
                "bindings": {"amqp": {"ack": True, "bindingVersion": "0.3.0"}},
            },
            "sendReceipt": {
                "action": "send",
                "channel": {"$ref": "#/channels/receipts"},
                "summary": "acknowledge a correction or retraction notice",
                "messages": [{"$ref": "#/channels/receipts/messages/receipt"}],
                "bindings": {"amqp": {"deliveryMode": 2, "bindingVersion": "0.3.0"}},
            },
        },
        "components": {
            "messages": messages | receipts_messages,
            "securitySchemes": {"recipient": security_scheme},
            "correlationIds": {
                "record": {
                    "description": "AMQP property correlation_id: the record's correlation id (its case)",
                    "location": "$message.header#/correlation_id",
                }
            },
        },
    }


def contract_version(views: list[View]) -> str:
    """The version of a recipient's contract: a hash of its view versions (changes whenever a view does)."""
    text = "\n".join(f"{v.id} {version_of(v.schema)}" for v in sorted(views, key=lambda v: v.id))
    return "1.0.0+" + hashlib.sha256(text.encode()).hexdigest()[:12]


def contract(
    registry: Registry,
    settings: Settings,
    recipient: str,
    common: dict[str, dict[str, Any]] | None = None,
    formats: dict[str, Format] | None = None,
) -> Contract:
    """One recipient's AsyncAPI 3.0 document and the view schemas it references."""
    views = views_of(registry, recipient, common, formats)
    fmt = (formats or {}).get(registry.recipients[recipient].format)
    xsds = [fmt.xsd] if fmt is not None and fmt.xsd is not None else []
    return Contract(recipient, views, asyncapi(registry, settings, recipient, views), xsds)


def schema_file(schema_id: str) -> str:
    """Where an exported schema lives, relative to the recipient's folder: the path of its `$id` under views/."""
    return "schemas/" + schema_id.split("/views/", 1)[1]


def export(contract_: Contract, out: Path) -> list[Path]:
    """Write `OUT/RECIPIENT/asyncapi.yaml` and every schema (and XSD) it references under `OUT/RECIPIENT/schemas/`."""
    folder = out / contract_.recipient
    written = []
    public = contract_.asyncapi["components"]["messages"]["retraction"]["payload"]["$id"] == notice_id(True)
    for schema in [v.schema for v in contract_.views] + [notice_schema(public)]:
        path = folder / schema_file(schema["$id"])
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(schema, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        written.append(path)
    for xsd in contract_.xsds:
        path = folder / xsd_file(xsd)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(xsd.read_bytes())
        written.append(path)
    doc = folder / "asyncapi.yaml"
    doc.write_text(yaml.safe_dump(contract_.asyncapi, sort_keys=False, allow_unicode=True, width=120), encoding="utf-8")
    return [doc, *written]


# ---------------------------------------------------------------- contract diff


@dataclass(frozen=True)
class Change:
    """One difference between two contracts of a recipient: breaking or additive."""

    recipient: str
    view: str  # "AGREEMENT record.type"
    kind: str  # "breaking" or "additive"
    what: str  # field_removed, type_changed, became_required, view_removed, field_added, ...
    path: str

    def as_dict(self) -> dict[str, str]:
        """The change as JSON-ready data."""
        return {"recipient": self.recipient, "view": self.view, "kind": self.kind, "what": self.what, "path": self.path}


def _fields(schema: Any, at: str = "") -> dict[str, dict[str, Any]]:
    """Generic path -> {"type": ..., "required": bool} for every property of a view schema."""
    found: dict[str, dict[str, Any]] = {}
    if not isinstance(schema, dict):
        return found
    required = set(schema.get("required", []))
    for sub in schema.get("allOf", []) + schema.get("anyOf", []):
        for path, info in _fields(sub, at).items():
            found.setdefault(path, info)
    for name, sub in schema.get("properties", {}).items():
        path = f"{at}.{name}" if at else name
        found[path] = {"type": _type_of(sub), "required": name in required}
        found.update(_fields(sub, path))
    items = schema.get("items")
    if isinstance(items, dict):
        found.update(_fields(items, at + EVERY))
    return found


def _type_of(schema: Any) -> Any:
    if not isinstance(schema, dict):
        return None
    for key in ("type", "const", "enum", "format", "pattern"):
        if key in schema:
            return {key: schema[key]} if key != "type" else schema[key]
    if "allOf" in schema:
        return [_type_of(s) for s in schema["allOf"]]
    return None


def diff(old: list[View], new: list[View]) -> list[Change]:
    """Per recipient and view: breaking changes (view or field removed, type changed, became required) and
    additive ones (view or field added, no longer required)."""
    before = {(v.recipient, v.agreement, v.record_type): v for v in old}
    after = {(v.recipient, v.agreement, v.record_type): v for v in new}
    changes: list[Change] = []
    for key in sorted(before.keys() | after.keys()):
        recipient, agreement, rtype = key
        name = f"{agreement} {rtype}"
        if key not in after:
            changes.append(Change(recipient, name, "breaking", "view_removed", ""))
            continue
        if key not in before:
            changes.append(Change(recipient, name, "additive", "view_added", ""))
            continue
        was, now = _fields(before[key].schema), _fields(after[key].schema)
        if before[key].fmt != after[key].fmt or before[key].schema.get("pattern") != after[key].schema.get("pattern"):
            changes.append(Change(recipient, name, "breaking", "format_changed", ""))
        for path in sorted(was.keys() | now.keys()):
            if path not in now:
                changes.append(Change(recipient, name, "breaking", "field_removed", path))
            elif path not in was:
                what = "field_added_required" if now[path]["required"] else "field_added"
                changes.append(Change(recipient, name, "additive", what, path))
            else:
                if was[path]["type"] != now[path]["type"]:
                    changes.append(Change(recipient, name, "breaking", "type_changed", path))
                if now[path]["required"] and not was[path]["required"]:
                    changes.append(Change(recipient, name, "breaking", "became_required", path))
                elif was[path]["required"] and not now[path]["required"]:
                    changes.append(Change(recipient, name, "additive", "became_optional", path))
    return changes


def render_diff(changes: list[Change]) -> str:
    """Per recipient: breaking changes first, then additive ones; `no contract change` when empty."""
    if not changes:
        return "no contract change\n"
    lines = []
    for recipient in sorted({c.recipient for c in changes}):
        lines.append(f"{recipient}:")
        for kind in ("breaking", "additive"):
            mine = [c for c in changes if c.recipient == recipient and c.kind == kind]
            if mine:
                lines.append(f"  {kind} ({len(mine)}):")
                lines += [f"    {c.view}: {c.what}" + (f" {c.path}" if c.path else "") for c in mine]
    return "\n".join(lines) + "\n"

"""Signed, chained checkpoints of the audit chain head: tamper evidence that never blocks delivery.

Every so often (every `every_entries` entries or `every_seconds`, and when the writer stops) the audit
writer appends one line to a checkpoint file and publishes the same line to the anchor (a RabbitMQ stream,
`broker.audit.anchor`) that the audit disk does not hold::

    {"seq": 1042, "hash": "<log chain head>", "time": "2026-11-26T12:00:00Z",
     "prev": "<SHA-256 of the previous checkpoint line>", "key": "<key id>", "sig": "<Ed25519 signature>"}

`sig` is an Ed25519 signature over the canonical JSON of the other five fields, made with a private key that
must not live on the audit disk; verification needs only the public key.  `prev` chains the checkpoints
(the first one carries 64 zeros), so a checkpoint deleted, inserted or reordered inside the file breaks
the chain; the anchor holds a copy of each line outside the disk, so a file deleted or cut at the end is
caught too.  Writing a checkpoint is best effort: a failure is logged and counted
(`interchange_audit_checkpoint_failures_total`) and the writer carries on.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from broker.audit.anchor import read_anchor
from broker.audit.reading import LOG_NAME, read_entries
from broker.errors import ConfigError, TransportError
from broker.ops import logs

CHECKPOINTS_NAME = "checkpoints.jsonl"
GENESIS = "0" * 64
# The development key is derived from a published phrase: anyone can sign with it, so it proves nothing.
DEV_KEY = Ed25519PrivateKey.from_private_bytes(
    hashlib.sha256(b"interchange-development-checkpoint-key-not-for-production").digest()
)
# The writer checkpoints at least every 1,000 entries (plus one batch): a longer unchecked tail means
# checkpoints are missing.
UNCOVERED_TAIL_LIMIT = 2000


# ---------------------------------------------------------------- keys


def public_bytes(key: Ed25519PublicKey) -> bytes:
    """The raw 32 bytes of an Ed25519 public key."""
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def key_id(key: Ed25519PublicKey) -> str:
    """The first 16 hex digits of the SHA-256 of the raw public key."""
    return hashlib.sha256(public_bytes(key)).hexdigest()[:16]


DEV_KEY_ID = key_id(DEV_KEY.public_key())


def load_private_key(path: Path) -> Ed25519PrivateKey:
    """An Ed25519 private key from a PEM file (`openssl genpkey -algorithm ed25519`)."""
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except OSError as exc:
        raise ConfigError(str(path), "", f"cannot read the checkpoint signing key: {exc.strerror}") from exc
    except (ValueError, TypeError) as exc:
        raise ConfigError(str(path), "", f"not an unencrypted PEM private key: {exc}") from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise ConfigError(str(path), "", "the checkpoint signing key must be an Ed25519 key")
    return key


def load_public_key(path: Path) -> Ed25519PublicKey:
    """An Ed25519 public key from a PEM file (`openssl pkey -in key.pem -pubout`)."""
    try:
        key = serialization.load_pem_public_key(path.read_bytes())
    except OSError as exc:
        raise ConfigError(str(path), "", f"cannot read the checkpoint public key: {exc.strerror}") from exc
    except (ValueError, TypeError) as exc:
        raise ConfigError(str(path), "", f"not a PEM public key: {exc}") from exc
    if not isinstance(key, Ed25519PublicKey):
        raise ConfigError(str(path), "", "the checkpoint public key must be an Ed25519 key")
    return key


def _inside(path: Path, directory: Path) -> bool:
    return path.resolve().is_relative_to(directory.resolve())


def signing_key(settings: Any) -> Ed25519PrivateKey:
    """The writer's key: `checkpoint_signing_key`, never one inside the audit directory.  Without one, the
    development key (with a warning), which `checkpoints_required` refuses."""
    path = getattr(settings, "checkpoint_signing_key", None)
    required = getattr(settings, "checkpoints_required", False)
    if path is not None:
        if _inside(Path(path), Path(settings.audit_dir)):
            raise ConfigError(
                str(path), "checkpoint_signing_key", "the checkpoint signing key must not live in the audit directory"
            )
        return load_private_key(Path(path))
    if required:
        raise ConfigError(
            "INTERCHANGE_CHECKPOINT_SIGNING_KEY",
            "checkpoint_signing_key",
            "checkpoints are required: set an Ed25519 signing key kept off the audit disk",
        )
    logs.get("interchange.audit").warning(
        "checkpoint_dev_key",
        note="checkpoints signed with the development key prove nothing; "
        "set INTERCHANGE_CHECKPOINT_SIGNING_KEY outside development",
    )
    return DEV_KEY


def verify_key(settings: Any) -> Ed25519PublicKey:
    """The key `audit verify` trusts: `checkpoint_public_key`, else the signing key's, else the development
    key's (which `checkpoints_required` refuses when verifying)."""
    public = getattr(settings, "checkpoint_public_key", None)
    if public is not None:
        return load_public_key(Path(public))
    private = getattr(settings, "checkpoint_signing_key", None)
    if private is not None:
        return load_private_key(Path(private)).public_key()
    return DEV_KEY.public_key()


def checkpoints_path(audit_dir: Path | str) -> Path:
    """INTERCHANGE_CHECKPOINTS when set, else <audit dir>/checkpoints.jsonl."""
    configured = os.environ.get("INTERCHANGE_CHECKPOINTS")
    return Path(configured) if configured else Path(audit_dir) / CHECKPOINTS_NAME


# ---------------------------------------------------------------- writing


def _body(line: dict[str, Any]) -> bytes:
    return orjson.dumps({k: line[k] for k in ("seq", "hash", "time", "prev", "key")}, option=orjson.OPT_SORT_KEYS)


def digest(raw: bytes) -> str:
    """What the next checkpoint's `prev` holds: SHA-256 of the line as stored (without its newline)."""
    return hashlib.sha256(raw.rstrip(b"\r\n")).hexdigest()


def make_line(seq: int, head: str, when: str, prev: str, key: Ed25519PrivateKey) -> bytes:
    """One signed checkpoint line (seq, chain head, time, previous checkpoint, key id), as JSON bytes."""
    line: dict[str, Any] = {"seq": seq, "hash": head, "time": when, "prev": prev, "key": key_id(key.public_key())}
    line["sig"] = key.sign(_body(line)).hex()
    return orjson.dumps(line, option=orjson.OPT_SORT_KEYS)


def _last_line(path: Path) -> bytes | None:
    try:
        with path.open("rb") as fh:
            lines = [raw for raw in fh if raw.strip()]
    except OSError:  # missing, or unreadable: then writing fails too, and each failure is counted
        return None
    return lines[-1] if lines else None


class Checkpointer:
    """Appends signed, chained checkpoints and anchors each one; never raises."""

    def __init__(
        self,
        path: Path,
        key: Ed25519PrivateKey | None = None,
        every_entries: int = 1000,
        every_seconds: float = 60.0,
        on_failure: Any = None,
        anchor: Callable[[bytes], None] | None = None,
    ) -> None:
        self.path, self.key = path, key or DEV_KEY
        self.every_entries, self.every_seconds = every_entries, every_seconds
        self.on_failure = on_failure or (lambda: None)
        self.anchor = anchor
        self.last_seq, self.last_time = 0, time.monotonic()
        self.log = logs.get("interchange.audit")
        last = _last_line(path)
        self.prev = digest(last) if last is not None else GENESIS
        if last is not None:
            try:
                self.last_seq = int(orjson.loads(last)["seq"])
            except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
                pass

    def maybe(self, seq: int, head: str, force: bool = False) -> bool:
        """Write a checkpoint when one is due (entries or seconds since the last) or forced; True when written."""
        due = seq - self.last_seq >= self.every_entries or time.monotonic() - self.last_time >= self.every_seconds
        if seq <= self.last_seq or not (due or force):
            return False
        return self.write(seq, head)

    def write(self, seq: int, head: str) -> bool:
        """Append a signed checkpoint of (seq, head) to the checkpoint file; True when it was written."""
        when = dt.datetime.now(dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
        raw = make_line(seq, head, when, self.prev, self.key)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("ab") as fh:
                fh.write(raw + b"\n")
                fh.flush()
                os.fsync(fh.fileno())
        except OSError as exc:
            self.log.error("audit_checkpoint_failed", seq=seq, path=str(self.path), error=exc.strerror or repr(exc))
            self.on_failure()
            return False
        self.prev, self.last_seq, self.last_time = digest(raw), seq, time.monotonic()
        if self.anchor is not None:
            try:
                self.anchor(raw)
            except Exception as exc:  # the anchor is best effort: a checkpoint stays on disk regardless
                self.log.error("audit_anchor_failed", seq=seq, error=str(exc))
                self.on_failure()
        return True


# ---------------------------------------------------------------- verifying


@dataclass(frozen=True)
class Checkpoint:
    """One checkpoint line as read back: where it is, the seq and chain head it signs, when, and its digest."""

    line: int
    seq: int
    head: str
    time: str
    digest: str


class CheckpointError(ValueError):
    """A checkpoint line that is unreadable, badly signed or out of its chain (line number, reason)."""

    def __init__(self, source: str, line: int, reason: str) -> None:
        super().__init__(f"{source} line {line}: {reason}")
        self.source, self.line, self.reason = source, line, reason


def strict_loads(raw: bytes) -> Any:
    """JSON with duplicate object keys refused (ValueError naming the key)."""

    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        seen: set[str] = set()
        for key, _value in items:
            if key in seen:
                raise ValueError(f"duplicate key {key!r}")
            seen.add(key)
        return dict(items)

    return json.loads(raw, object_pairs_hook=pairs)


def read_checkpoint(raw: bytes, n: int, key: Ed25519PublicKey, source: str) -> Checkpoint:
    """One checkpoint line, strictly parsed and its signature checked against `key`."""
    try:
        cp = strict_loads(raw)
        seq, head, when = int(cp["seq"]), str(cp["hash"]), str(cp["time"])
        sig = bytes.fromhex(str(cp["sig"]))
        _ = (str(cp["prev"]), str(cp["key"]))
    except (ValueError, KeyError, TypeError) as exc:
        raise CheckpointError(source, n, f"unreadable checkpoint ({exc})") from exc
    if cp["key"] != key_id(key):
        dev = " (the public development key)" if cp["key"] == DEV_KEY_ID else ""
        raise CheckpointError(
            source, n, f"seq {seq} is signed with key {cp['key']}{dev}, not the trusted key {key_id(key)}"
        )
    try:
        key.verify(sig, _body(cp))
    except InvalidSignature as exc:
        raise CheckpointError(source, n, f"seq {seq} has a bad signature") from exc
    return Checkpoint(n, seq, head, when, digest(raw))


def read_chain(lines: Iterable[bytes], key: Ed25519PublicKey, source: str = "checkpoint file") -> list[Checkpoint]:
    """Every checkpoint of a file, each signed and carrying the digest of the one before it."""
    chain: list[Checkpoint] = []
    prev, last_seq = GENESIS, 0
    for n, raw in enumerate(lines, start=1):
        if not raw.strip():
            continue
        cp = read_checkpoint(raw, n, key, source)
        if strict_loads(raw)["prev"] != prev:
            raise CheckpointError(
                source,
                n,
                f"seq {cp.seq} does not follow the checkpoint before it "
                "(a checkpoint was deleted, inserted or reordered)",
            )
        if cp.seq < last_seq:
            raise CheckpointError(source, n, f"seq {cp.seq} is before the previous checkpoint's {last_seq}")
        chain.append(cp)
        prev, last_seq = cp.digest, cp.seq
    return chain


@dataclass(frozen=True)
class CheckpointVerdict:
    """The outcome of checking the checkpoints against the log (and the anchor, when consulted)."""

    ok: bool
    checkpoints: int
    problem: str = ""
    anchored: int | None = None  # checkpoints read from the anchor, when it was consulted
    notes: tuple[str, ...] = field(default=())

    def __str__(self) -> str:
        if not self.ok:
            return f"checkpoints FAILED: {self.problem}"
        anchored = f"; {self.anchored} anchored outside the audit disk" if self.anchored is not None else ""
        notes = "".join(f"\n  note: {n}" for n in self.notes)
        return f"checkpoints intact: {self.checkpoints} signed checkpoints match the log{anchored}{notes}"


@dataclass(frozen=True)
class Policy:
    """What verification demands: `required` (outside development), the anchor's lines when consulted."""

    key: Ed25519PublicKey
    required: bool = False
    anchor: list[bytes] | None = None


def _against_log(cp: Checkpoint, heads: dict[int, str], last_seq: int, where: str) -> str:
    if cp.seq > last_seq:
        return (
            f"{where} checkpoint at seq {cp.seq} ({cp.time}) but the log ends at seq {last_seq}: the log was truncated"
        )
    if heads.get(cp.seq) != cp.head:
        return (
            f"the log's entry seq {cp.seq} does not match the {where} checkpoint signed at {cp.time}: "
            "the log was rewritten"
        )
    return ""


def judge(local: list[bytes], heads: dict[int, str], last_seq: int, policy: Policy) -> CheckpointVerdict:
    """The verdict on a log (seq -> hash in `heads`, last seq) given the checkpoint file's lines and the
    anchor's; pure."""
    anchored = None if policy.anchor is None else 0
    if policy.required and key_id(policy.key) == DEV_KEY_ID:
        return CheckpointVerdict(
            False,
            0,
            "checkpoints are required but the trusted key is the public "
            "development key: set INTERCHANGE_CHECKPOINT_PUBLIC_KEY",
            anchored,
        )
    try:
        chain = read_chain(local, policy.key)
    except CheckpointError as exc:
        return CheckpointVerdict(False, 0, str(exc), anchored)
    for cp in chain:
        problem = _against_log(cp, heads, last_seq, "signed")
        if problem:
            return CheckpointVerdict(False, len(chain), problem, anchored)
    notes: list[str] = []
    if policy.anchor is not None:
        found = {cp.digest for cp in chain}
        anchored_cps: list[Checkpoint] = []
        for n, raw in enumerate(policy.anchor, start=1):
            try:
                anchored_cps.append(read_checkpoint(raw, n, policy.key, "anchor message"))
            except CheckpointError as exc:
                return CheckpointVerdict(False, len(chain), str(exc), len(anchored_cps))
        anchored = len(anchored_cps)
        problems = [p for p in (_against_log(cp, heads, last_seq, "anchored") for cp in anchored_cps) if p][:1]
        lost = [cp for cp in anchored_cps if cp.digest not in found]
        if lost:
            problems.append(
                f"the anchor holds {len(lost)} checkpoint(s) the checkpoint file does not (first: seq "
                f"{lost[0].seq}, {lost[0].time}): the file was deleted, cut or rewritten"
            )
        if problems:
            return CheckpointVerdict(False, len(chain), "; ".join(problems), anchored)
        if chain and not anchored_cps:
            return CheckpointVerdict(
                False,
                len(chain),
                "the anchor holds no checkpoint although the file holds "
                f"{len(chain)}: nothing outside the audit disk vouches for them",
                anchored,
            )
        unanchored = len(chain) - len({cp.digest for cp in anchored_cps})
        if unanchored > 0:
            notes.append(f"{unanchored} checkpoint(s) in the file are not in the anchor (anchor publish failed)")
    if policy.required and last_seq:
        covered = chain[-1].seq if chain else 0
        if not chain:
            return CheckpointVerdict(
                False, 0, f"checkpoints are required but the log of {last_seq} entries has none", anchored
            )
        if last_seq - covered > UNCOVERED_TAIL_LIMIT:
            return CheckpointVerdict(
                False,
                len(chain),
                f"checkpoints are required but the last one is at seq "
                f"{covered} and the log runs to {last_seq}: checkpoints are missing",
                anchored,
            )
    if last_seq and chain and chain[-1].seq < last_seq:
        notes.append(f"entries {chain[-1].seq + 1}..{last_seq} are after the last checkpoint")
    return CheckpointVerdict(True, len(chain), "", anchored, tuple(notes))


def _read_lines(path: Path) -> list[bytes]:
    try:
        with path.open("rb") as fh:
            return [raw for raw in fh if raw.strip()]
    except FileNotFoundError:
        return []


def _seqs(lines: Iterable[bytes]) -> set[int]:
    wanted: set[int] = set()
    for raw in lines:
        try:
            wanted.add(int(orjson.loads(raw)["seq"]))
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            continue
    return wanted


def verify_beside(
    log_path: Path,
    path: Path,
    key: Ed25519PublicKey | None = None,
    required: bool = False,
    anchor: list[bytes] | None = None,
) -> CheckpointVerdict:
    """Check the checkpoints at `path` (and the anchor's lines, when given) against the log at `log_path`."""
    local = _read_lines(path)
    wanted = _seqs(local) | _seqs(anchor or [])
    heads, last_seq = {}, 0
    if log_path.exists():
        for entry in read_entries(log_path):
            seq = entry.get("seq")
            if isinstance(seq, int):
                last_seq = max(last_seq, seq)
                if seq in wanted:
                    heads[seq] = entry.get("hash", "")
    return judge(local, heads, last_seq, Policy(key or DEV_KEY.public_key(), required, anchor))


def verify_for(settings: Any, use_anchor: bool = False) -> CheckpointVerdict:
    """`audit verify`'s checkpoint verdict: the trusted key and `checkpoints_required` from the settings; the
    anchor is read when asked or when checkpoints are required, and an unreadable anchor is a failure."""
    anchor = None
    if use_anchor or settings.checkpoints_required:
        try:
            anchor = read_anchor(settings)
        except TransportError as exc:
            return CheckpointVerdict(False, 0, f"the anchor could not be read, so deletion cannot be ruled out: {exc}")
    return verify_beside(
        Path(settings.audit_dir) / LOG_NAME,
        checkpoints_path(settings.audit_dir),
        verify_key(settings),
        settings.checkpoints_required,
        anchor,
    )

"""The one hardened XML parser every XML adapter uses.

`iterparse(stream, tags, limits)` feeds the input to an lxml pull parser in chunks and yields each
completed element whose tag is in `tags`; once the caller moves on, the element is cleared and its
earlier siblings deleted, so memory stays bounded whatever the size of the input.

Defences (each refused with an `AdapterError` whose `code` names it):

- the parser never resolves entities, loads a DTD, validates against one, touches the network or
  processes XInclude; `huge_tree` is off;
- a DOCTYPE declaring any ENTITY (billion laughs, quadratic blow-up, external entities) is refused
  before a byte reaches lxml (`xml_entity_declared`); so is a DOCTYPE naming an external DTD
  (`xml_external_dtd`); XInclude elements are refused (`xml_xinclude`);
- limits on total bytes, element depth, element count, text length, attributes per element and
  attribute length; element count and text length are also checked on the raw bytes of each chunk
  before the parser sees it (a count of `<`, the longest run without `<`), so an input of millions of
  tiny elements or one huge start tag is refused at C speed;
- `roots` names the root elements an adapter reads; any other root is refused (`xml_wrong_root`)
  before anything inside it is parsed;
- the bytes are decoded alongside the parser, so an invalid encoding is reported with its byte offset.
"""

from __future__ import annotations

import codecs
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import IO

from lxml import etree

from adapters.base import AdapterError

XINCLUDE_NAMESPACES = ("http://www.w3.org/2001/XInclude", "http://www.w3.org/2003/XInclude")
CHUNK = 64 * 1024
DENSITY_GRACE = 100_000
MAX_PROLOG = 64 * 1024


@dataclass(frozen=True, slots=True)
class Limits:
    """Bounds on one XML input.  Raise `max_bytes`/`max_elements` for bulk streams; memory stays flat."""

    max_bytes: int = 64 * 1024 * 1024
    max_depth: int = 64
    max_elements: int = 2_000_000
    max_text: int = 1024 * 1024
    max_attribute: int = 64 * 1024
    max_attributes: int = 256
    # Formats with known density set this: after the first DENSITY_GRACE elements, more than one element
    # per this many bytes so far is refused (a flood of `<e/>`), long before max_elements is reached.
    min_bytes_per_element: int = 0


def make_parser(**extra: object) -> etree.XMLParser:
    """A tree parser with every dangerous feature off (for small, already size-checked documents)."""
    return etree.XMLParser(**_SAFE, **extra)


# lxml processes XInclude only when .xinclude() is called, which Interchange never does; XInclude
# elements are refused outright by the iterparse guard.
_SAFE: dict[str, object] = dict(
    resolve_entities=False,
    no_network=True,
    load_dtd=False,
    dtd_validation=False,
    huge_tree=False,
    remove_pis=True,
    collect_ids=False,
    attribute_defaults=False,
)


def _pull_parser(tags: Iterable[str] | None) -> etree.XMLPullParser:
    return etree.XMLPullParser(events=("start", "end"), **_SAFE)


def parse(stream: IO[bytes], limits: Limits = Limits()) -> etree._Element:
    """Parse a whole (small) document under the same checks and return its root element."""
    root = None
    for element in iterparse(stream, None, limits, keep=True):
        root = element
    if root is None:
        raise AdapterError("xml_empty", "the input holds no XML element", location="byte 0")
    return root


def iterparse(
    stream: IO[bytes],
    tags: Iterable[str] | None,
    limits: Limits = Limits(),
    *,
    keep: bool = False,
    roots: Iterable[str] | None = None,
) -> Iterator[etree._Element]:
    """Yield each completed element whose Clark-notation tag is in `tags` (None: only the root).

    Unless `keep`, a yielded element is cleared (and its earlier siblings removed) when the caller
    asks for the next one.  `roots`, if given, are the only root tags accepted.  Raises AdapterError
    for hostile or malformed input.
    """
    wanted = frozenset(tags or ())
    parser = _pull_parser(tags)
    guard = _Guard(limits, roots)
    decoder: _Decoder | None = None
    scan: _Scan | None = None
    depth = 0
    for chunk in _chunks(stream, limits):
        if decoder is None:
            decoder = _Decoder(chunk)
            scan = _Scan(limits, decoder.encoding)
        assert scan is not None
        decoder.check(chunk, final=False)
        scan.check(chunk)
        check_text = scan.text_unchecked
        _feed(parser, chunk, guard)
        for event, element in parser.read_events():
            if event == "start":
                depth += 1
                guard.on_start(element, depth)
                continue
            depth -= 1
            if check_text:
                guard.on_end(element)
            if element.tag in wanted or (not wanted and depth == 0):
                yield element
                if not keep:
                    _release(element)
    if decoder is None:
        raise AdapterError("xml_empty", "the input is empty", location="byte 0")
    decoder.check(b"", final=True)
    _close(parser, guard)


def _release(element: etree._Element) -> None:
    element.clear(keep_tail=False)
    parent = element.getparent()
    if parent is not None:
        while element.getprevious() is not None:
            del parent[0]


def _chunks(stream: IO[bytes], limits: Limits) -> Iterator[bytes]:
    total = 0
    while chunk := stream.read(CHUNK):
        total += len(chunk)
        if total > limits.max_bytes:
            raise AdapterError(
                "body_too_large",
                f"the XML input exceeds {limits.max_bytes} bytes",
                location=f"byte {limits.max_bytes}",
            )
        yield chunk


def _feed(parser: etree.XMLPullParser, chunk: bytes, guard: _Guard) -> None:
    try:
        parser.feed(chunk)
    except etree.XMLSyntaxError as exc:
        raise _syntax_error(exc, guard) from None


def _close(parser: etree.XMLPullParser, guard: _Guard) -> None:
    try:
        parser.close()
    except etree.XMLSyntaxError as exc:
        raise _syntax_error(exc, guard) from None


def _syntax_error(exc: etree.XMLSyntaxError, guard: _Guard) -> AdapterError:
    first = exc.error_log.last_error if len(exc.error_log) else None
    message = first.message if first is not None else str(exc.msg or exc)
    line, column = (first.line, first.column) if first is not None else (exc.lineno, exc.offset)
    where = f"line {line}, column {column}" if line else None
    if "depth" in message.lower():
        return AdapterError("xml_too_deep", f"elements nested deeper than {guard.limits.max_depth}", location=where)
    if "entit" in message.lower():
        return AdapterError("xml_entity_reference", f"entity references are refused: {message}", location=where)
    return AdapterError("xml_malformed", message, location=where)


class _Scan:
    """Cheap checks on the raw bytes of each chunk, before the parser sees them.

    Active only when `<`, `</`, `<!` and `<?` are those bytes in the input's encoding (UTF-8, Latin-1,
    Windows-125x...).  Elements started are counted as `<` minus `</`, `<!`, `<?` (an upper bound: a
    `<` inside a comment or CDATA counts too), and the longest run of bytes without `<` bounds every
    text node and start tag.  CDATA sections can join several runs into one text node, so once one is
    seen (or when inactive) text length is checked on each element instead (`text_unchecked`).
    """

    def __init__(self, limits: Limits, encoding: str) -> None:
        self.limits = limits
        try:
            self.active = "<</<!<?".encode(encoding.replace("-sig", "")) == b"<</<!<?"
        except (LookupError, UnicodeError):
            self.active = False
        self.text_unchecked = not self.active
        self.starts = self.offset = self.run = 0
        self.carry = b""
        gap = limits.max_text + 1
        self._gap = re.compile(rb"[^<]{%d}" % gap) if gap <= CHUNK else None

    def check(self, chunk: bytes) -> None:
        if not self.active:
            return
        window = self.carry + chunk
        lead = 1 if self.carry.endswith(b"<") else 0  # counted with the previous chunk
        starts = window.count(b"<") - window.count(b"</") - window.count(b"<!") - window.count(b"<?") - lead
        if not self.text_unchecked and b"<![CDATA[" in window:
            self.text_unchecked = True
        self.carry = chunk[-8:]
        self.starts += starts
        seen, density = self.offset + len(chunk), self.limits.min_bytes_per_element
        if self.starts > self.limits.max_elements:
            raise AdapterError(
                "xml_too_many_elements",
                f"more than {self.limits.max_elements} elements",
                location=f"byte {seen}",
            )
        if density and self.starts > DENSITY_GRACE and self.starts * density > seen:
            raise AdapterError(
                "xml_too_many_elements",
                f"{self.starts} elements in {seen} bytes: more than one element per {density} bytes",
                location=f"byte {seen}",
            )
        self._check_runs(chunk)
        self.offset += len(chunk)

    def _check_runs(self, chunk: bytes) -> None:
        first = chunk.find(b"<")
        if first < 0:
            self.run += len(chunk)
            longest = self.run
        else:
            longest = self.run + first
            self.run = len(chunk) - chunk.rfind(b"<") - 1
            if self._gap is not None and self._gap.search(chunk):
                longest = self.limits.max_text + 1
        if max(longest, self.run) > self.limits.max_text:
            raise AdapterError(
                "xml_text_too_long",
                f"more than {self.limits.max_text} bytes without markup (a text node or a start tag)",
                location=f"byte {self.offset + len(chunk)}",
            )


_XINCLUDE_PREFIXES = tuple(f"{{{ns}}}" for ns in XINCLUDE_NAMESPACES)


class _Guard:
    """Counts and sizes checked on every parser event."""

    def __init__(self, limits: Limits, roots: Iterable[str] | None = None) -> None:
        self.limits = limits
        self.roots = frozenset(roots) if roots is not None else None
        self.elements = 0

    def on_start(self, element: etree._Element, depth: int) -> None:
        limits = self.limits
        if depth > limits.max_depth:
            raise AdapterError(
                "xml_too_deep",
                f"elements nested deeper than {limits.max_depth}",
                location=f"line {element.sourceline}",
            )
        self.elements += 1
        if self.elements > limits.max_elements:
            raise AdapterError(
                "xml_too_many_elements",
                f"more than {limits.max_elements} elements",
                location=f"line {element.sourceline}",
            )
        tag = element.tag
        if depth == 1 and self.roots is not None and tag not in self.roots:
            raise AdapterError(
                "xml_wrong_root",
                f"the root element is {_qname(tag)}; expected {' or '.join(sorted(map(_qname, self.roots)))}",
                location=f"line {element.sourceline}",
            )
        if tag.startswith(_XINCLUDE_PREFIXES):
            raise AdapterError(
                "xml_xinclude",
                "XInclude elements are refused (no document inclusion)",
                location=f"line {element.sourceline}",
            )
        attrib = element.attrib
        if attrib:
            self._check_attributes(element, attrib)

    def _check_attributes(self, element: etree._Element, attrib: etree._Attrib) -> None:
        count = len(attrib)  # counted without reading values: lxml reads each value in O(attributes)
        if count > self.limits.max_attributes:
            raise AdapterError(
                "xml_too_many_attributes",
                f"an element has {count} attributes; at most {self.limits.max_attributes} are accepted",
                location=f"line {element.sourceline}",
            )
        for name, value in attrib.items():
            if len(value) > self.limits.max_attribute:
                raise AdapterError(
                    "xml_attribute_too_long",
                    f"attribute {name} is longer than {self.limits.max_attribute} characters",
                    location=f"line {element.sourceline}",
                )

    def on_end(self, element: etree._Element) -> None:
        for text in (element.text, element.tail):
            if text is not None and len(text) > self.limits.max_text:
                raise AdapterError(
                    "xml_text_too_long",
                    f"text longer than {self.limits.max_text} characters",
                    location=f"line {element.sourceline}",
                )


def _qname(tag: str) -> str:
    """`{ns}local` as `local (ns)`, for messages."""
    if tag.startswith("{"):
        ns, _, local = tag[1:].partition("}")
        return f"{local} ({ns})"
    return tag


_DECL_ENCODING = re.compile(rb"""^<\?xml[^>]*?encoding\s*=\s*["']([A-Za-z0-9._-]+)["']""")
_PROLOG_NOISE = re.compile(r"<!--.*?-->|<\?.*?\?>", re.S)
_ROOT_START = re.compile(r"<[A-Za-z_:]")


class _Decoder:
    """Decodes the input alongside the parser: byte offsets of bad encodings, and the DOCTYPE check."""

    def __init__(self, first: bytes) -> None:
        encoding = _sniff_encoding(first)
        try:
            self.decoder = codecs.getincrementaldecoder(encoding)(errors="strict")
        except LookupError:
            raise AdapterError("xml_encoding_unknown", f"unknown encoding {encoding!r}", location="byte 0") from None
        self.encoding = encoding
        self.offset = 0
        self.prolog: list[str] | None = []

    def check(self, chunk: bytes, *, final: bool) -> None:
        try:
            text = self.decoder.decode(chunk, final)
        except UnicodeDecodeError as exc:
            at = self.offset - (len(exc.object) - len(chunk)) + exc.start
            bad = exc.object[exc.start : exc.start + 1].hex()
            raise AdapterError(
                "xml_encoding_invalid",
                f"byte 0x{bad} at byte offset {max(at, 0)} is not valid {self.encoding}",
                location=f"byte {max(at, 0)}",
            ) from None
        self.offset += len(chunk)
        if self.prolog is not None:
            self._watch_prolog(text)

    def _watch_prolog(self, text: str) -> None:
        assert self.prolog is not None
        self.prolog.append(text)
        seen = "".join(self.prolog)
        cleaned = _PROLOG_NOISE.sub("", seen)
        root = _ROOT_START.search(cleaned)
        if root is None and len(seen) > MAX_PROLOG:
            raise AdapterError(
                "xml_prolog_too_large",
                f"no root element in the first {MAX_PROLOG} characters",
                location="byte 0",
            )
        _check_doctype(cleaned[: root.start()] if root else cleaned)
        if root is not None:
            self.prolog = None


def _check_doctype(prolog: str) -> None:
    start = prolog.find("<!DOCTYPE")
    if start < 0:
        return
    doctype = prolog[start:]
    if "<!ENTITY" in doctype:
        raise AdapterError(
            "xml_entity_declared",
            "a DOCTYPE declaring entities is refused (entity expansion and external entities)",
            location="DOCTYPE",
        )
    head = doctype.split("[", 1)[0]
    if re.search(r"\b(SYSTEM|PUBLIC)\b", head):
        raise AdapterError("xml_external_dtd", "a DOCTYPE naming an external DTD is refused", location="DOCTYPE")


def _sniff_encoding(first: bytes) -> str:
    if first.startswith(codecs.BOM_UTF8):
        return "utf-8-sig"
    if first.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "utf-16"
    if first.startswith(b"<\x00?\x00"):
        return "utf-16-le"
    if first.startswith(b"\x00<\x00?"):
        return "utf-16-be"
    match = _DECL_ENCODING.match(first)
    return match.group(1).decode("ascii").lower() if match else "utf-8"


def text_of(element: etree._Element | None) -> str | None:
    """Stripped text of an element, None when absent or blank."""
    if element is None or element.text is None:
        return None
    return element.text.strip() or None


def xpath(expression: str, namespaces: dict[str, str]) -> Callable[[etree._Element], list]:
    """A precompiled XPath (etree.XPath) with the given prefixes; compile once at import time."""
    return etree.XPath(expression, namespaces=namespaces)

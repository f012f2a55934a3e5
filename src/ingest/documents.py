"""Bytes in, OCDS items out: decode, detect the shape, stream the releases.

Pure: no I/O beyond reading the stream it is given. Every shape real publishers serve is read: release
packages, record packages, bare releases and records, JSON arrays of any of those, concatenated JSON and JSON
lines, packages without releases.

Two speeds. A document held in memory is first parsed whole with the C parser (the fast path). Only when that
fails (one release nested too deep, a number like ``1e9999``, a syntax error) is it walked structurally: the
top-level containers are walked member by member and each release is parsed on its own, so one bad release is
isolated with its exact raw text and the releases around it survive. A large file is always walked that way,
over a sliding window, so memory stays bounded by the largest single release, not the file.
"""

from __future__ import annotations

import codecs
import io
import json
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, TextIO

# Documents up to this size are read into memory and parsed whole; larger files are streamed.
STREAM_THRESHOLD_BYTES = 16 * 1024 * 1024
_CHUNK_CHARS = 1024 * 1024
# A rejected remainder of a broken document is kept up to this size (the detail says when it was cut).
MAX_RAW_CHARS = 8 * 1024 * 1024

_WHITESPACE = re.compile(r"[ \t\n\r]*")
_STRUCTURAL = re.compile(r'["\[\]{}]')
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"', re.DOTALL)
_SCALAR = re.compile(r"[^,\]}\s]*")
_PACKAGE_KEYS = ("uri", "publisher", "publishedDate")


class NonFiniteNumber(ValueError):
    """Raised if a JSON number overflows to infinity or a NaN/Infinity literal appears (jsonb cannot hold them)."""


def _finite_float(text: str) -> float:
    number = float(text)
    if math.isinf(number):
        raise NonFiniteNumber(f"number {text[:40]} is out of range")
    return number


def _no_constants(name: str) -> float:
    raise NonFiniteNumber(f"{name} is not a JSON number")


_DECODER = json.JSONDecoder(parse_float=_finite_float, parse_constant=_no_constants)


@dataclass(frozen=True, slots=True)
class Package:
    """The package fields stored beside each release."""

    uri: str | None = None
    publisher_name: str | None = None
    version: str | None = None

    @classmethod
    def from_metadata(cls, meta: dict[str, Any]) -> Package:
        publisher = meta.get("publisher")
        name = publisher.get("name") if isinstance(publisher, dict) else None
        return cls(uri=_text_or_none(meta.get("uri")), publisher_name=_text_or_none(name),
                   version=_text_or_none(meta.get("version")))


NO_PACKAGE = Package()


def _text_or_none(value: Any) -> str | None:
    if isinstance(value, str):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return json.dumps(value)
    return None


@dataclass(slots=True)
class Found:
    """A release (or whatever stood in a releases array) to become a row or a rejection."""

    value: Any
    package: Package
    position: str
    raw: str | None = None  # the exact text, when the walk had it; otherwise serialise ``value``


@dataclass(slots=True)
class Compiled:
    """A record's compiledRelease, kept for later use."""

    ocid: str | None
    value: Any
    package: Package
    position: str


@dataclass(slots=True)
class Unreadable:
    """A part of the document that is not JSON or not OCDS: recorded, never dropped."""

    reason: str
    detail: str
    raw: str
    position: str


Item = Found | Compiled | Unreadable


@dataclass(slots=True)
class DocumentStats:
    """What was seen besides items: the encoding, linked releases (references, not data), empty packages."""

    encoding: str = "utf-8"
    values: int = 0
    linked_releases: int = 0
    empty_packages: int = 0


# --- decoding ---------------------------------------------------------------------------------------------

_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32-le"),
    (codecs.BOM_UTF32_BE, "utf-32-be"),
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)


def detect_encoding(head: bytes) -> tuple[str, int]:
    """Return (encoding, BOM length) from a document's first bytes.

    A BOM decides. Without one, JSON text starts with an ASCII character, so the pattern of zero bytes in the
    first four tells UTF-32 and UTF-16 apart (RFC 4627, section 3). Everything else is taken as UTF-8 here;
    ``decode`` falls back to a legacy single-byte encoding when the bytes are not valid UTF-8.
    """
    for bom, name in _BOMS:
        if head.startswith(bom):
            return name, len(bom)
    if len(head) >= 4:
        if head[0] == 0 and head[1] == 0 and head[2] == 0:
            return "utf-32-be", 0
        if head[1] == 0 and head[2] == 0 and head[3] == 0:
            return "utf-32-le", 0
    if len(head) >= 2:
        if head[0] == 0:
            return "utf-16-be", 0
        if head[1] == 0:
            return "utf-16-le", 0
    return "utf-8", 0


def _legacy_byte(error: UnicodeError) -> tuple[str, int]:
    """Codec error handler for streams: a byte the chosen encoding cannot read is taken as windows-1252, or
    ISO-8859-1 for the five bytes windows-1252 leaves undefined (only bytes beyond the sniffed head get here)."""
    assert isinstance(error, UnicodeDecodeError)
    bad = error.object[error.start:error.end]
    return "".join(bytes([byte]).decode("windows-1252", "ignore") or chr(byte) for byte in bad), error.end


codecs.register_error("ocds-legacy", _legacy_byte)


def _legacy_encoding(data: bytes) -> str:
    try:
        data.decode("windows-1252")
    except UnicodeDecodeError:
        return "iso-8859-1"
    return "windows-1252"


def decode(data: bytes) -> tuple[str, str]:
    """Decode a whole document; return (text, encoding name).

    UTF-8 (with or without BOM), UTF-16 and UTF-32 are detected as ``detect_encoding`` says. Bytes that are not
    valid UTF-8 come from a legacy publisher: windows-1252 (which covers ISO-8859-1's printable range and adds
    the curly quotes and euro sign such publishers use) is tried, and ISO-8859-1, which maps every byte, last.
    """
    encoding, bom = detect_encoding(data[:4])
    body = data[bom:]
    if encoding != "utf-8":
        return body.decode(encoding), encoding
    try:
        return body.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        encoding = _legacy_encoding(body)
        return body.decode(encoding), encoding


class _Prefixed(io.RawIOBase):
    """A binary stream that first gives back the bytes already read from it (the sniffed head)."""

    def __init__(self, head: bytes, rest: io.BufferedIOBase) -> None:
        self.head = memoryview(head)
        self.rest = rest

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        if self.head.nbytes:
            size = min(len(buffer), self.head.nbytes)
            buffer[:size] = self.head[:size]
            self.head = self.head[size:]
            return size
        data = self.rest.read(len(buffer))
        buffer[:len(data)] = data
        return len(data)


def open_text(binary: io.BufferedIOBase) -> tuple[TextIO, str]:
    """Wrap a binary stream for streaming; the encoding is decided on its first megabyte, as ``decode`` would.

    A byte further on that the chosen encoding cannot read is taken as windows-1252 (ISO-8859-1 for the bytes
    windows-1252 leaves undefined) rather than failing the whole file half-way.
    """
    head = binary.read(_CHUNK_CHARS) or b""
    encoding, bom = detect_encoding(head[:4])
    if encoding == "utf-8":
        try:
            head[bom:].decode("utf-8")
        except UnicodeDecodeError as exc:
            # A multi-byte character cut at the end of the head is still UTF-8.
            if exc.start < len(head) - bom - 4:
                encoding = _legacy_encoding(head[bom:])
    stream = io.BufferedReader(_Prefixed(head[bom:], binary))
    return io.TextIOWrapper(stream, encoding=encoding, errors="ocds-legacy", newline=""), encoding


# --- classifying parsed values ----------------------------------------------------------------------------


def _is_record(obj: dict[str, Any]) -> bool:
    if "compiledRelease" in obj or "versionedRelease" in obj:
        return True
    return "ocid" in obj and not any(key in obj for key in _PACKAGE_KEYS)


def _is_linked_release(value: Any) -> bool:
    return isinstance(value, dict) and "url" in value and "ocid" not in value


class _Emitter:
    """Turns parsed values into items; shared by the fast path and the structural walk."""

    def __init__(self, stats: DocumentStats) -> None:
        self.stats = stats

    def value(self, value: Any, position: str, package: Package = NO_PACKAGE) -> Iterator[Item]:
        if isinstance(value, list):
            for index, element in enumerate(value):
                yield from self.element(element, f"{position}/{index}", package)
            return
        yield from self.element(value, position, package)

    def element(self, value: Any, position: str, package: Package) -> Iterator[Item]:
        """One top-level value or one element of a top-level array."""
        if not isinstance(value, dict):
            yield Unreadable("not_ocds", f"a JSON {_json_type(value)} is not an OCDS package, record or release",
                             _dump_raw(value), position or "/")
            return
        records = value.get("records")
        releases = value.get("releases")
        for key, member in (("records", records), ("releases", releases)):
            if member is not None and not isinstance(member, list):
                yield Unreadable("invalid_package", f"'{key}' is a JSON {_json_type(member)}, not an array",
                                 _dump_raw(value), position or "/")
                return
        if records is not None:
            own = Package.from_metadata(value)
            for index, record in enumerate(records):
                yield from self.record(record, f"{position}/records/{index}", own)
        elif releases is not None:
            if _is_record(value):
                yield from self.record(value, position, package)
            else:
                own = Package.from_metadata(value)
                for index, release in enumerate(releases):
                    yield from self.release(release, f"{position}/releases/{index}", own)
        elif "ocid" not in value and any(key in value for key in _PACKAGE_KEYS):
            self.stats.empty_packages += 1
        else:
            yield Found(value, package, position or "/")

    def release(self, value: Any, position: str, package: Package, raw: str | None = None) -> Iterator[Item]:
        if _is_linked_release(value):
            self.stats.linked_releases += 1
        else:
            yield Found(value, package, position, raw)

    def record(self, record: Any, position: str, package: Package) -> Iterator[Item]:
        if not isinstance(record, dict):
            yield Unreadable("not_a_record", f"a record must be an object, not a JSON {_json_type(record)}",
                             _dump_raw(record), position)
            return
        releases = record.get("releases") or []
        if not isinstance(releases, list):
            yield Unreadable("invalid_record", f"'releases' is a JSON {_json_type(releases)}, not an array",
                             _dump_raw(record), position)
            return
        for index, release in enumerate(releases):
            yield from self.release(release, f"{position}/releases/{index}", package)
        compiled = record.get("compiledRelease")
        if isinstance(compiled, dict):
            ocid = record.get("ocid") if isinstance(record.get("ocid"), str) else compiled.get("ocid")
            yield Compiled(ocid if isinstance(ocid, str) else None, compiled, package,
                           f"{position}/compiledRelease")


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def _dump_raw(value: Any) -> str:
    try:
        return json.dumps(value, ensure_ascii=False)
    except (ValueError, RecursionError):
        return repr(value)[:MAX_RAW_CHARS]


# --- the structural walk ----------------------------------------------------------------------------------


class _ItemError(Exception):
    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


class _Broken(Exception):
    """The document's syntax is broken here: nothing after this point can be delimited."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


@dataclass
class _ObjectState:
    outer_retain: int | None
    meta: dict[str, Any] = field(default_factory=dict)
    pending: list[Item] = field(default_factory=list)
    streamed: bool = False
    failure: _ItemError | None = None


class _Walker:
    """Walks a document over a text window; refills it from ``stream`` when given (the streaming mode)."""

    def __init__(self, text: str, stream: TextIO | None, stats: DocumentStats) -> None:
        self.buf = text
        self.pos = 0
        # Positions kept across a refill are absolute (``base`` + index into ``buf``), because a refill may drop
        # the consumed front of the window and shift every index into ``buf``.
        self.base = 0
        self.stream = stream
        self.eof = stream is None
        self.retain_from: int | None = None  # absolute; the window keeps everything from here
        self.emit = _Emitter(stats)
        self.stats = stats

    # window management
    def _more(self) -> bool:
        if self.eof:
            return False
        assert self.stream is not None
        chunk = self.stream.read(max(_CHUNK_CHARS, len(self.buf) // 2))
        if not chunk:
            self.eof = True
            return False
        keep = self.pos if self.retain_from is None else min(self.pos, self.retain_from - self.base)
        if keep > _CHUNK_CHARS:
            # Drop what has been consumed so memory stays bounded by the largest item.
            self.buf = self.buf[keep:]
            self.base += keep
            self.pos -= keep
        self.buf += chunk
        return True

    def at(self) -> int:
        """The absolute position of ``pos``."""
        return self.base + self.pos

    def text(self, start: int, end: int | None = None) -> str:
        """The text between two absolute positions (``end`` defaults to ``pos``)."""
        return self.buf[start - self.base:(self.at() if end is None else end) - self.base]

    def _skip_ws(self) -> None:
        while True:
            self.pos = _WHITESPACE.match(self.buf, self.pos).end()
            if self.pos < len(self.buf) or not self._more():
                return

    def _peek(self) -> str:
        self._skip_ws()
        return self.buf[self.pos] if self.pos < len(self.buf) else ""

    def _expect(self, chars: str) -> str:
        char = self._peek()
        if not char or char not in chars:
            found = repr(char) if char else "end of document"
            raise _Broken(f"expected one of {chars!r} at character {self.base + self.pos}, found {found}")
        self.pos += 1
        return char

    def _find_end(self, start: int) -> int:
        """Absolute end of the value at absolute ``start``, found leniently (brackets and strings only),
        refilling the window as needed."""
        while True:
            end = _scan_value_end(self.buf, start - self.base)
            if end is not None and (end < len(self.buf) or self.eof):
                return end + self.base
            if not self._more():
                raise _Broken(f"the value at character {start} is not closed before the end")

    def _item(self) -> tuple[Any, str | None]:
        """Parse the value at pos as one item; return (value, its raw text when it was cut out)."""
        self._skip_ws()
        start = self.at()
        if self.eof:
            try:
                value, self.pos = _DECODER.raw_decode(self.buf, self.pos)
                return value, None
            except (ValueError, RecursionError):
                pass  # delimit it leniently below, then say exactly what is wrong with it
        end = self._find_end(start)
        if end == start:
            found = repr(self.buf[self.pos]) if self.pos < len(self.buf) else "end of document"
            raise _Broken(f"expected a value at character {start}, found {found}")
        raw = self.text(start, end)
        self.pos = end - self.base
        try:
            return _parse_item(raw), raw
        except (ValueError, RecursionError) as exc:
            raise _item_error(exc, raw) from None

    def _key(self) -> str:
        self._skip_ws()
        start = self.at()
        end = self._find_end(start)
        try:
            key = json.loads(self.text(start, end))
        except ValueError:
            key = None
        if not isinstance(key, str):
            raise _Broken(f"expected an object key at character {start}")
        self.pos = end - self.base
        self._expect(":")
        return key

    # the walk
    def values(self) -> Iterator[Item]:
        index = 0
        while True:
            char = self._peek()
            if not char:
                return
            self.stats.values += 1
            position = f"@{index}" if index else ""
            try:
                yield from self._top_value(position)
            except _Broken as broken:
                yield self._rest(broken.detail, position)
                return
            index += 1

    def _rest(self, detail: str, position: str) -> Unreadable:
        while self._more():
            pass
        rest = self.buf[self.pos:]
        if len(rest) > MAX_RAW_CHARS:
            detail += f" (raw text cut to the first {MAX_RAW_CHARS} of {len(rest)} characters)"
            rest = rest[:MAX_RAW_CHARS]
        self.pos = len(self.buf)
        return Unreadable("invalid_json", detail, rest, position or "/")

    def _top_value(self, position: str) -> Iterator[Item]:
        char = self._peek()
        if self.stream is None:
            # Fast path: the whole value at C speed; the walk below only runs when that fails.
            start = self.pos
            try:
                value, self.pos = _DECODER.raw_decode(self.buf, start)
            except (ValueError, RecursionError):
                self.pos = start
            else:
                yield from self.emit.value(value, position)
                return
        if char == "{":
            yield from self._object(position, NO_PACKAGE)
        elif char == "[":
            yield from self._array(position)
        else:
            start = self.at()
            try:
                value, _ = self._item()
            except _ItemError as error:
                yield Unreadable(error.reason, error.detail, self.text(start), position or "/")
                return
            yield from self.emit.value(value, position)

    def _elements(self, position: str) -> Iterator[tuple[str, int, Any, str | None, _ItemError | None]]:
        """The elements of the array at pos, each parsed on its own: (position, absolute start, value, raw text,
        error). The caller may move ``pos`` (to walk a bad element) before asking for the next one."""
        self._expect("[")
        if self._peek() == "]":
            self.pos += 1
            return
        index = 0
        while True:
            self._skip_ws()
            start = self.at()
            try:
                value, raw = self._item()
            except _ItemError as error:
                yield f"{position}/{index}", start, None, None, error
            else:
                yield f"{position}/{index}", start, value, raw, None
            index += 1
            if self._expect(",]") == "]":
                return

    def _array(self, position: str) -> Iterator[Item]:
        for element_position, start, value, _, error in self._elements(position):
            if error is None:
                yield from self.emit.element(value, element_position, NO_PACKAGE)
            elif self.text(start, start + 1) == "{":
                # A package or release with one bad part: walk it to isolate the part.
                self.pos = start - self.base
                yield from self._object(element_position, NO_PACKAGE)
            else:
                yield Unreadable(error.reason, error.detail, self.text(start), element_position)

    def _object(self, position: str, package: Package) -> Iterator[Item]:
        """Walk an object member by member; stream its releases/records arrays item by item."""
        start = self.at()
        state = _ObjectState(outer_retain=self.retain_from)
        if self.retain_from is None:
            self.retain_from = start  # until it proves to be a package, the object's text may be needed whole
        self._expect("{")
        try:
            yield from self._members(position, state)
        except _Broken:
            # The releases read before the break are good: hand them over, then report the rest as broken.
            yield from state.pending
            raise
        finally:
            self.retain_from = state.outer_retain
        meta = state.meta
        if state.streamed:
            own = Package.from_metadata(meta)
            if _is_record(meta):
                own = package
                compiled = meta.get("compiledRelease")
                if isinstance(compiled, dict):
                    ocid = meta.get("ocid") if isinstance(meta.get("ocid"), str) else compiled.get("ocid")
                    yield Compiled(ocid if isinstance(ocid, str) else None, compiled, package,
                                   f"{position}/compiledRelease")
            for item in state.pending:
                if isinstance(item, Found):
                    item.package = own
                yield item
            return
        if state.failure is not None:
            yield Unreadable(state.failure.reason, state.failure.detail, self.text(start), position or "/")
            return
        yield from self.emit.element(meta, position, package)

    def _members(self, position: str, state: _ObjectState) -> Iterator[Item]:
        """The members of the object at pos: releases/records arrays streamed, other values kept in meta."""
        if self._peek() == "}":
            self.pos += 1
            return
        while True:
            key = self._key()
            if key in ("releases", "records") and self._peek() == "[":
                if not state.streamed:
                    state.streamed = True
                    self.retain_from = state.outer_retain  # a package: its text need not be kept
                own = Package.from_metadata(state.meta)
                for item in self._members_array(key, f"{position}/{key}", own):
                    if self.stream is None:
                        state.pending.append(item)  # in memory: emitted once the package metadata is complete
                    else:
                        yield item
            else:
                member_start = self.at()
                try:
                    state.meta[key], _ = self._item()
                except _ItemError as error:
                    state.failure = state.failure or error
                    if state.streamed:
                        yield Unreadable(error.reason, f"member '{key}': {error.detail}",
                                         self.text(member_start), f"{position}/{key}")
            if self._expect(",}") == "}":
                return

    def _members_array(self, key: str, position: str, package: Package) -> Iterator[Item]:
        for element_position, start, value, raw, error in self._elements(position):
            if error is not None:
                yield Unreadable(error.reason, error.detail, self.text(start), element_position)
            elif key == "releases":
                yield from self.emit.release(value, element_position, package, raw)
            else:
                yield from self.emit.record(value, element_position, package)


def _parse_item(raw: str) -> Any:
    value, end = _DECODER.raw_decode(raw)
    if raw[end:].strip():
        raise json.JSONDecodeError("Extra data", raw, end)
    return value


def _item_error(exc: BaseException, raw: str) -> _ItemError:
    if isinstance(exc, RecursionError):
        return _ItemError("nesting_too_deep", "the value is nested deeper than the JSON parser allows")
    if isinstance(exc, NonFiniteNumber):
        return _ItemError("non_finite_number", f"{exc} (PostgreSQL jsonb cannot store it)")
    if isinstance(exc, json.JSONDecodeError):
        return _ItemError("invalid_json", f"{exc.msg} at character {exc.pos} of this value")
    return _ItemError("invalid_json", str(exc))


def _scan_value_end(text: str, start: int) -> int | None:
    """Index just past the JSON value at ``start``, or None if it is not closed within ``text``.

    Lenient on purpose: it counts brackets and skips strings, so a value it delimits may still fail to parse;
    that failure is then reported for this value alone.
    """
    if start >= len(text):
        return None
    first = text[start]
    if first == '"':
        match = _STRING.match(text, start)
        return match.end() if match else None
    if first not in "[{":
        end = _SCALAR.match(text, start).end()
        return end if end < len(text) else None
    depth = 0
    pos = start
    while True:
        match = _STRUCTURAL.search(text, pos)
        if match is None:
            return None
        char = match.group()
        if char == '"':
            string = _STRING.match(text, match.start())
            if string is None:
                return None
            pos = string.end()
            continue
        pos = match.end()
        if char in "[{":
            depth += 1
        else:
            depth -= 1
            if depth == 0:
                return pos


# --- entry points -----------------------------------------------------------------------------------------


@dataclass
class Document:
    """A readable document: iterate ``items()``; ``stats`` fills in as it goes."""

    text: str | None = None
    stream: TextIO | None = None
    stats: DocumentStats = field(default_factory=DocumentStats)

    def items(self) -> Iterator[Item]:
        walker = _Walker(self.text or "", self.stream, self.stats)
        yield from walker.values()


def read_bytes(data: bytes) -> Document:
    """A document held in memory (an API page, a message body)."""
    text, encoding = decode(data)
    return Document(text=text, stats=DocumentStats(encoding=encoding))


def read_text(text: str) -> Document:
    return Document(text=text)


def read_value(value: Any, stats: DocumentStats | None = None) -> Iterator[Item]:
    """Items from an already parsed JSON value (releases handed over as Python objects); ``stats`` fills in."""
    return _Emitter(stats if stats is not None else DocumentStats()).value(value, "")


def read_stream(binary: io.BufferedIOBase) -> Document:
    """A large file, streamed: memory is bounded by the largest release, not by the file."""
    text_stream, encoding = open_text(binary)
    return Document(stream=text_stream, stats=DocumentStats(encoding=encoding))

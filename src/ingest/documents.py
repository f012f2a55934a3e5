"""Bytes in, OCDS items out: decode, detect the shape, cut out each release's text as published.

Pure: no I/O beyond reading the stream it is given. Every shape real publishers serve is read: release
packages, record packages, bare releases and records, JSON arrays of any of those, concatenated JSON and JSON
lines, packages without releases.

Nothing here parses a release into Python values: a release is handed on as its exact published text (a
``Found``), and ``releases.to_row`` reads the few fields it needs from it. So numbers, key order and repeated
keys reach PostgreSQL as published.

Two speeds. A document held in memory is first split with msgspec at C speed (the fast path): the package
fields are read and each release is a slice of the input. Only when that fails (one release with a lone
surrogate or nested too deep, a syntax error, concatenated values) is it walked structurally: the top-level
containers are walked member by member and each release is delimited on its own, so one bad release is
isolated with its exact text and the releases around it survive. A large file is always walked that way, over
a sliding window, so memory stays bounded by the largest single release, not the file.

After a syntax error nothing can be delimited with certainty. In a line-delimited document (JSON lines, or
values that each start a line) the walk resumes at the next line that starts a value, so only the bad line is
lost; otherwise the rest of the document is rejected, in parts, never cut.
"""

from __future__ import annotations

import codecs
import io
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, TextIO

import msgspec
from msgspec import UNSET, Raw, UnsetType

from ingest import jsontext

# Documents up to this size are read into memory and split whole; larger files are streamed.
STREAM_THRESHOLD_BYTES = 16 * 1024 * 1024
_CHUNK_CHARS = 1024 * 1024
# A rejected stretch of a broken document is recorded in parts of at most this many characters: all of it is
# kept, in as many rows as it takes.
REJECTED_PART_CHARS = 8 * 1024 * 1024

_WHITESPACE = re.compile(r"[ \t\n\r]*")
_STRUCTURAL = re.compile(r'["\[\]{}]')
_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_SCALAR = re.compile(r"[^,\]}\[{\s]*")  # a bad scalar ends where an array or object begins
# Where a line-delimited document can be picked up again after a syntax error: a line that starts a value.
_LINE_START = re.compile(r"\n(?=[\[{])")
_LINE_AFTER_VALUE = re.compile(r"[}\]][ \t\r]*\n(?=[\[{])")
_PACKAGE_KEYS = ("uri", "publisher", "publishedDate")


class _Shape(msgspec.Struct):
    """The members of an object that say what it is; everything else is skipped (and syntax-checked)."""

    releases: Raw | UnsetType = UNSET
    records: Raw | UnsetType = UNSET
    uri: Raw | UnsetType = UNSET
    publisher: Raw | UnsetType = UNSET
    publishedDate: Raw | UnsetType = UNSET  # noqa: N815 (the OCDS name)
    version: Raw | UnsetType = UNSET
    ocid: Raw | UnsetType = UNSET
    compiledRelease: Raw | UnsetType = UNSET  # noqa: N815
    versionedRelease: Raw | UnsetType = UNSET  # noqa: N815


class ReleasePackage(_Shape):
    """The usual document, a package whose ``releases`` is an array: split in the same pass that reads it (here,
    or in the pass that reads a message's envelope: ``messages.parse``)."""

    releases: list[Raw] | UnsetType = UNSET


_RELEASE_PACKAGE = msgspec.json.Decoder(ReleasePackage)
_OBJECT_OR_ARRAY = msgspec.json.Decoder(_Shape | list[Raw])
_OBJECT = msgspec.json.Decoder(_Shape)
_ARRAY = msgspec.json.Decoder(list[Raw])
_LINES = msgspec.json.Decoder(Raw)


@dataclass(frozen=True, slots=True)
class Package:
    """The package fields stored beside each release; ``escaped`` if one held a NUL or a lone surrogate, which
    a text column cannot hold (they are then written as escapes, e.g. ``\\u0000``)."""

    uri: str | None = None
    publisher_name: str | None = None
    version: str | None = None
    escaped: bool = False

    @classmethod
    def from_values(cls, uri: Any, publisher: Any, version: Any) -> Package:
        name = publisher.get("name") if isinstance(publisher, dict) else None
        texts = [_text_or_none(value) for value in (uri, name, version)]
        stored = [None if text is None else jsontext.storable_text(text) for text in texts]
        return cls(stored[0], stored[1], stored[2], escaped=stored != texts)

    @classmethod
    def from_shape(cls, shape: _Shape) -> Package:
        return cls.from_values(*(None if raw is UNSET else jsontext.value_of(raw)
                                 for raw in (shape.uri, shape.publisher, shape.version)))

    @classmethod
    def from_metadata(cls, meta: dict[str, Any]) -> Package:
        return cls.from_values(meta.get("uri"), meta.get("publisher"), meta.get("version"))


NO_PACKAGE = Package()


def _text_or_none(value: Any) -> str | None:
    if isinstance(value, str):
        return value  # legacy bytes were read in the member's text, before parsing: an escape is not a byte
    if isinstance(value, (int, float, Decimal)) and not isinstance(value, bool):
        return str(value)
    return None


@dataclass(slots=True)
class Found:
    """A release (or whatever stood where a release stands): its exact text as published."""

    raw: Any  # str, bytes or a buffer (msgspec.Raw) of UTF-8
    package: Package
    position: str

    @property
    def value(self) -> Any:
        """The release parsed exactly (numbers as int/Decimal); None if it is not JSON."""
        return jsontext.value_of(self.raw)


@dataclass(slots=True)
class Compiled:
    """A record's compiledRelease, kept for later use."""

    ocid: str | None
    raw: Any
    package: Package
    position: str

    @property
    def value(self) -> Any:
        return jsontext.value_of(self.raw)


@dataclass(slots=True)
class Unreadable:
    """A part of the document that is not JSON or not OCDS: recorded with its exact text, never dropped."""

    reason: str
    detail: str
    raw: str
    position: str


Item = Found | Compiled | Unreadable


@dataclass(slots=True)
class DocumentStats:
    """What was seen besides items: the encoding, empty packages."""

    encoding: str = "utf-8"
    values: int = 0
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
    first four tells UTF-32 and UTF-16 apart (RFC 4627, section 3). Everything else is UTF-8, where bytes that
    are not valid UTF-8 are decided release by release (see ``jsontext.repaired``).
    """
    for bom, name in _BOMS:
        if head.startswith(bom):
            return name, len(bom)
    if len(head) >= 4:
        if head[0] == 0 and head[1] == 0 and head[2] == 0:
            return "utf-32-be", 0
        if head[1] == 0 and head[2] == 0 and head[3] == 0:
            return "utf-32-le", 0
        # UTF-16 puts a zero before (BE) or after (LE) each of the first two ASCII characters; a stray NUL byte
        # before UTF-8 text is one zero, not the pattern, and the text stays readable as published.
        if head[0] == 0 and head[2] == 0:
            return "utf-16-be", 0
        if head[1] == 0 and head[3] == 0:
            return "utf-16-le", 0
        return "utf-8", 0
    if len(head) >= 2:
        if head[0] == 0:
            return "utf-16-be", 0
        if head[1] == 0:
            return "utf-16-le", 0
    return "utf-8", 0


def decode(data: bytes) -> tuple[str, str]:
    """Decode a whole document; return (text, encoding name).

    Bytes the encoding cannot read never fail the document. In UTF-8 (a Latin-1 byte) each becomes U+DC00 +
    byte, and whatever holds it decides what it was (``jsontext.repaired``); in UTF-16 and UTF-32 (a lone
    surrogate, the odd last byte) U+DD00 + byte, which refuses what holds it (``jsontext.decoding_errors``).
    """
    encoding, bom = detect_encoding(data[:4])
    return data[bom:].decode(encoding, jsontext.decoding_errors(encoding)), encoding


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
    """Wrap a binary stream for streaming, decoded as ``decode`` would."""
    head = binary.read(_CHUNK_CHARS) or b""
    encoding, bom = detect_encoding(head[:4])
    stream = io.BufferedReader(_Prefixed(head[bom:], binary))
    return io.TextIOWrapper(stream, encoding=encoding, errors=jsontext.decoding_errors(encoding),
                            newline=""), encoding


# --- the fast path: msgspec splits a value into items -----------------------------------------------------


class _Unsplittable(Exception):
    """Raised if msgspec cannot read a value whole; the structural walk then isolates what is wrong."""


def may_repeat_member(raw: Any, key: str) -> bool:
    """Whether the JSON text (str, bytes or a buffer) may hold the member ``key`` more than once: msgspec keeps
    the last of a repeated member, so such a text is walked, which reads every array (a text that only holds
    the key's name as a string is walked too, which costs it nothing but time)."""
    if isinstance(raw, str):
        return raw.count(f'"{key}"') > 1
    return bytes(raw).count(f'"{key}"'.encode()) > 1


def may_repeat_array(raw: Any, key: str, elements: list[Raw]) -> bool:
    """``may_repeat_member`` for a JSON text whose member ``key`` msgspec read as the array ``elements``, looking
    only where another such member can be: msgspec keeps the last of a repeated member, so any other comes before
    it, and the array after that last key takes at least its elements' bytes, a comma between two and its
    brackets. So in UTF-8 every member of that name ends before that much of the text's end: for the usual page,
    the text before its releases (scanning the whole page cost ~2 µs per release)."""
    if isinstance(raw, str):
        return may_repeat_member(raw, key)  # a length in characters, not the elements' bytes
    data = raw if isinstance(raw, bytes) else bytes(raw)
    end = len(data) - sum(map(len, elements)) - len(elements) - 2
    return end > 0 and data.count(f'"{key}"'.encode(), 0, end) > 1


def _may_hide_a_copy(raw: Any, shape: _Shape, key: str, elements: list[Raw] | None) -> bool:
    """Whether the object ``raw`` (read as ``shape``) may give its member ``key`` more than once: msgspec kept
    the last copy (``elements`` if it is an array), which would hide the others, whatever it is (null too). The
    object is then walked, which reads every copy."""
    if getattr(shape, key) is UNSET:
        return False
    return may_repeat_member(raw, key) if elements is None else may_repeat_array(raw, key, elements)


def _present(raw: Raw | list[Raw] | UnsetType) -> Raw | list[Raw] | None:
    # A member given as null is taken as absent, as a missing member is.
    if isinstance(raw, list):
        return raw  # an array already split (``ReleasePackage``)
    if raw is UNSET or bytes(memoryview(raw)[:4]) == b"null":
        return None
    return raw


def _is_record(shape: _Shape) -> bool:
    if _present(shape.compiledRelease) is not None or _present(shape.versionedRelease) is not None:
        return True
    return shape.ocid is not UNSET and all(getattr(shape, key) is UNSET for key in _PACKAGE_KEYS)


def _json_type(raw: Any) -> str:
    first = jsontext.text_of(raw).lstrip()[:1]
    return {"{": "object", "[": "array", '"': "string", "t": "boolean", "f": "boolean", "n": "null"}.get(
        first, "number")


class _Splitter:
    """Turns one JSON value (a top-level value or an element of a top-level array) into items with msgspec."""

    def __init__(self, stats: DocumentStats) -> None:
        self.stats = stats

    def value(self, raw: Any, position: str) -> list[Item]:
        """All items of a value, or _Unsplittable (before any item is given) if msgspec cannot read it."""
        try:
            return list(self.shaped(_RELEASE_PACKAGE.decode(raw), raw, position, NO_PACKAGE))
        except jsontext.PARSE_ERRORS:
            pass  # not that shape (or not readable): read as any value below
        try:
            shape = _OBJECT_OR_ARRAY.decode(raw)
        except msgspec.ValidationError:
            return [Unreadable("not_ocds", f"a JSON {_json_type(raw)} is not an OCDS package, record or release",
                               jsontext.text_of(raw), position or "/")]
        except jsontext.PARSE_ERRORS as exc:
            raise _Unsplittable(str(exc)) from None
        if isinstance(shape, list):
            items: list[Item] = []
            for index, element in enumerate(shape):
                items.extend(self.element(element, f"{position}/{index}", NO_PACKAGE))
            return items
        return list(self.shaped(shape, raw, position, NO_PACKAGE))

    def element(self, raw: Any, position: str, package: Package) -> Iterator[Item]:
        try:
            shape = _OBJECT.decode(raw)
        except msgspec.ValidationError:
            yield Unreadable("not_ocds", f"a JSON {_json_type(raw)} is not an OCDS package, record or release",
                             jsontext.text_of(raw), position or "/")
            return
        yield from self.shaped(shape, raw, position, package)

    def shaped(self, shape: _Shape, raw: Any, position: str, package: Package) -> Iterator[Item]:
        records, releases = _present(shape.records), _present(shape.releases)
        arrays: dict[str, list[Raw]] = {}
        for key, member in (("records", records), ("releases", releases)):
            if isinstance(member, list):
                arrays[key] = member
            elif member is not None:
                try:
                    arrays[key] = _ARRAY.decode(member)
                except msgspec.ValidationError:
                    pass
            if raw is not None and _may_hide_a_copy(raw, shape, key, arrays.get(key)):  # None: split elsewhere
                raise _Unsplittable(f"'{key}' may be repeated")
            if member is not None and key not in arrays:
                yield Unreadable("invalid_package", f"'{key}' is a JSON {_json_type(member)}, not an array",
                                 jsontext.text_of(raw), position or "/")
                return
        if "records" in arrays and ("releases" in arrays or _present(shape.compiledRelease) is not None):
            # Records beside releases or a compiledRelease of the object's own: this split reads only the
            # records; the walk reads every member.
            raise _Unsplittable("'records' beside 'releases' or 'compiledRelease'")
        if "records" in arrays:
            own = Package.from_shape(shape)
            for index, record in enumerate(arrays["records"]):
                yield from self.record(record, f"{position}/records/{index}", own)
        elif "releases" in arrays:
            if _is_record(shape):
                yield from self.record_members(shape, arrays["releases"], raw, position, package)
            else:
                own = Package.from_shape(shape)
                for index, release in enumerate(arrays["releases"]):
                    yield Found(release, own, f"{position}/releases/{index}")
        elif shape.ocid is UNSET and any(getattr(shape, key) is not UNSET for key in _PACKAGE_KEYS):
            self.stats.empty_packages += 1
        else:
            yield Found(raw, package, position or "/")

    def record(self, raw: Any, position: str, package: Package) -> Iterator[Item]:
        try:
            shape = _OBJECT.decode(raw)
        except msgspec.ValidationError:
            yield Unreadable("not_a_record", f"a record must be an object, not a JSON {_json_type(raw)}",
                             jsontext.text_of(raw), position)
            return
        member = _present(shape.releases)
        releases: list[Raw] | None = None  # the copy msgspec kept, if it is an array
        if member is not None:
            try:
                releases = _ARRAY.decode(member)
            except msgspec.ValidationError:
                pass
        if _may_hide_a_copy(raw, shape, "releases", releases):
            raise _Unsplittable("'releases' may be repeated")
        if member is not None and releases is None:
            yield Unreadable("invalid_record", f"'releases' is a JSON {_json_type(member)}, not an array",
                             jsontext.text_of(raw), position)
            return
        yield from self.record_members(shape, releases or [], raw, position, package)

    def record_members(self, shape: _Shape, releases: list[Raw], raw: Any, position: str,
                       package: Package) -> Iterator[Item]:
        for index, release in enumerate(releases):
            yield Found(release, package, f"{position}/releases/{index}")
        compiled = _present(shape.compiledRelease)
        if compiled is not None and _json_type(compiled) == "object":
            ocid = jsontext.value_of(shape.ocid) if shape.ocid is not UNSET else None
            if not isinstance(ocid, str):
                ocid = _ocid_of(compiled)
            yield Compiled(ocid if isinstance(ocid, str) else None, compiled, package,
                           f"{position}/compiledRelease")
        else:
            yield from _unusable_record(compiled, bool(releases), raw, position)


def _unusable_record(compiled: Any, has_releases: bool, raw: Any, position: str) -> Iterator[Unreadable]:
    """What a record without a usable compiledRelease leaves unstored: a compiledRelease that is not an object,
    or, with no releases either, the whole record (its versionedRelease is not read), so it has a row."""
    if compiled is not None:
        yield Unreadable("invalid_record", f"'compiledRelease' is a JSON {_json_type(compiled)}, not an object",
                         jsontext.text_of(compiled), f"{position}/compiledRelease")
    elif not has_releases:
        yield Unreadable("invalid_record", _EMPTY_RECORD, jsontext.text_of(raw), position or "/")


_EMPTY_RECORD = "the record has no releases and no compiledRelease: nothing in it can be stored"


class _Ocid(msgspec.Struct):
    ocid: Any = None


def _ocid_of(raw: Any) -> Any:
    try:
        return msgspec.json.decode(raw, type=_Ocid).ocid
    except jsontext.PARSE_ERRORS:
        value = jsontext.value_of(raw)
        return value.get("ocid") if isinstance(value, dict) else None


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
        # Where the unaccounted text starts: a package whose releases were given already is rejected from the
        # break on, anything else from its own start.
        self.unaccounted_from: int | None = None


@dataclass
class _ObjectState:
    outer_retain: int | None
    record: bool = False
    meta: dict[str, Any] = field(default_factory=dict)
    pending: list[Item] = field(default_factory=list)
    streamed: bool = False
    failure: _ItemError | None = None
    failed_before_streaming: list[Unreadable] = field(default_factory=list)
    compiled_raw: str | None = None
    items: int = 0  # items its arrays gave and members rejected: a record with none and no compiledRelease is empty
    records: bool = False  # it streamed a records array: a record package, never an empty record


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
        self.splitter = _Splitter(stats)
        self.stats = stats
        # In memory a top-level value is first given to msgspec whole; a stream is always walked.
        self.split_whole = stream is None

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
                if end is not None:
                    return end + self.base  # it closes exactly where the stream ends
                raise _Broken(f"the value at character {start} is not closed before the end")

    def _delimit(self) -> tuple[int, str]:
        """The value at pos, delimited leniently (not parsed): (absolute start, its text)."""
        self._skip_ws()
        start = self.at()
        end = self._find_end(start)
        if end == start:
            found = repr(self.buf[self.pos]) if self.pos < len(self.buf) else "end of document"
            raise _Broken(f"expected a value at character {start}, found {found}")
        self.pos = end - self.base
        return start, self.text(start, end)

    def _item(self) -> tuple[Any, str]:
        """Parse the value at pos exactly; return (value, its text)."""
        _, raw = self._delimit()
        try:
            return _parse_item(raw), raw
        except (ValueError, RecursionError) as exc:
            raise _item_error(exc) from None

    def _key(self) -> str:
        self._skip_ws()
        start = self.at()
        end = self._find_end(start)
        try:
            key = jsontext.loads_exact(self.text(start, end))[0]
        except (ValueError, RecursionError):
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
            start = self.at()
            try:
                yield from self._top_value(position)
            except _Broken as broken:
                if broken.unaccounted_from is not None:
                    start = broken.unaccounted_from
                resume = self._resume_point(start, first=index == 0)
                if resume is None:
                    yield from self._rest(start, broken.detail, position)
                    return
                yield Unreadable("invalid_json", f"{broken.detail}; the walk resumed at the next line",
                                 self.text(start, resume), position or "/")
                self.pos = resume - self.base
            index += 1

    def _resume_point(self, start: int, first: bool) -> int | None:
        """Where a line-delimited document picks up after a broken value that started a line; else None.

        After the first value, a value that starts a line says the document is line-delimited: any line that
        starts a value is taken. The first value says nothing, and a line inside it may start a nested object
        (``"parties":\\n{...}``): only a line after one that ends a value (``}`` or ``]``) is taken then.
        """
        if start - self.base > 0 and self.buf[start - self.base - 1] != "\n":
            return None  # the broken value did not start a line: this is not a line-delimited document
        line_start = _LINE_AFTER_VALUE if first else _LINE_START
        while True:
            match = line_start.search(self.buf, start - self.base)
            if match is not None:
                return match.end() + self.base
            if not self._more():
                return None

    def _rest(self, start: int, detail: str, position: str) -> Iterator[Unreadable]:
        """The rest of the document from ``start``, rejected in parts of at most REJECTED_PART_CHARS."""
        self.pos = start - self.base
        part = 0
        while True:
            while len(self.buf) - self.pos < REJECTED_PART_CHARS and self._more():
                pass
            chunk = self.buf[self.pos:self.pos + REJECTED_PART_CHARS]
            if not chunk:
                if part == 0:  # cut where a value should begin: nothing is left to keep, but the cut is recorded
                    yield Unreadable("invalid_json", f"{detail} (the document ends there)", "", position or "/")
                return
            self.pos += len(chunk)
            more = self.pos < len(self.buf) or self._more()
            if part == 0 and not more:
                yield Unreadable("invalid_json", detail, chunk, position or "/")
                return
            part += 1
            yield Unreadable("invalid_json", f"{detail} (part {part} of the rest of the document, from character "
                             f"{self.at() - len(chunk)}{'' if more else '; the last part'})", chunk,
                             f"{position or '/'}#part{part}")
            if not more:
                return

    def _top_value(self, position: str) -> Iterator[Item]:
        char = self._peek()
        if self.split_whole:
            start = self.pos
            try:
                _, raw = self._delimit()
                yield from self.splitter.value(raw, position)
                return
            except (_Unsplittable, _Broken):
                self.pos = start
        if char == "{":
            yield from self._object(position, NO_PACKAGE)
        elif char == "[":
            yield from self._array(position)
        else:
            start = self.at()
            try:
                self._item()
            except _ItemError as error:
                # Not a JSON value (words, HTML): nothing after it can be delimited, so the rest is one rejection
                # (or, in a line-delimited document, the rest of its line), never one per word.
                raise _Broken(f"{error.detail} at character {start}") from None
            yield Unreadable("not_ocds", f"a JSON {_json_type(self.text(start))} is not an OCDS package, record "
                             "or release", self.text(start), position or "/")

    def _elements(self, position: str, walkable: bool = False) -> Iterator[tuple[str, int, str | None]]:
        """The elements of the array at pos, each delimited on its own: (position, absolute start, text).
        ``walkable``: an object that cannot be delimited (a bad token glued to a quote puts the delimiter's
        strings out of phase) comes with no text, for the caller to walk member by member."""
        self._expect("[")
        if self._peek() == "]":
            self.pos += 1
            return
        index = 0
        while True:
            try:
                start, raw = self._delimit()
            except _Broken:
                if not walkable or self._peek() != "{":
                    raise
                start, raw = self.at(), None
            yield f"{position}/{index}", start, raw
            index += 1
            if self._expect(",]") == "]":
                return

    def _array(self, position: str) -> Iterator[Item]:
        handed_over_to: int | None = None  # the end of the last element read
        try:
            for element_position, start, raw in self._elements(position, walkable=True):
                yield from self._walk_or_split(element_position, start, raw, NO_PACKAGE, self.splitter.element)
                handed_over_to = self.at()
        except _Broken as broken:
            # An element that cannot be delimited (cut, an unclosed string): the rest from there is what is
            # broken, never the elements before it, already handed over.
            if handed_over_to is not None and broken.unaccounted_from is None:
                broken.unaccounted_from = handed_over_to
            raise

    def _walk_or_split(self, position: str, start: int, raw: str | None, package: Package,
                       split: Any) -> Iterator[Item]:
        """An element read whole by msgspec when it can be, else walked to isolate its bad part."""
        if raw is None:  # not delimited: walked; what breaks the walk breaks the rest of the array
            self.pos = start - self.base
            try:
                yield from self._object(position, package, record=split == self.splitter.record)
            except _Broken as broken:
                if broken.unaccounted_from is None:
                    # Nothing of it was handed over (its text is still held): the rest is reported from where it
                    # is, as it would be had the walk not been tried.
                    self.pos = start - self.base
                raise
            return
        try:
            items = list(split(raw, position, package))
        except (*jsontext.PARSE_ERRORS, _Unsplittable):
            if raw.startswith("{"):
                end = self.at()
                self.pos = start - self.base
                try:
                    yield from self._object(position, package, record=split == self.splitter.record)
                    # The walk read the object to its closing brace: the element ends there, whatever delimiting
                    # it said (a bad token glued to a quote puts the delimiter's strings out of phase).
                    end = self.at()
                except _Broken as broken:
                    # The element was delimited, so what broke is its own: what the walk handed over stays, the
                    # rest of the element is rejected whole, and the walk goes on after it (never over the
                    # elements before it, already handed over).
                    begin = start if broken.unaccounted_from is None else broken.unaccounted_from
                    yield Unreadable("invalid_json", broken.detail, self.text(begin, end), position)
                self.pos = end - self.base
            else:
                try:
                    _parse_item(raw)
                except (ValueError, RecursionError) as exc:
                    error = _item_error(exc)
                    yield Unreadable(error.reason, error.detail, raw, position)
                else:
                    yield Unreadable("not_ocds", f"a JSON {_json_type(raw)} is not an OCDS package, record or "
                                     "release", raw, position)
            return
        yield from items

    def _object(self, position: str, package: Package, record: bool = False) -> Iterator[Item]:
        """Walk an object member by member; stream its releases/records arrays item by item. ``record``: an
        element of a record package's records, whose releases take that package's fields (``package``)."""
        start = self.at()
        state = _ObjectState(outer_retain=self.retain_from, record=record)
        if self.retain_from is None:
            self.retain_from = start  # until it proves to be a package, the object's text may be needed whole
        self._expect("{")
        try:
            yield from self._members(position, state)
        except _Broken as broken:
            # What was read before the break is good: hand it over, then report the rest as broken.
            if state.streamed:
                state.items += 1  # the break is reported: the record is not also empty
                yield from self._read_members(position, package, state, start)
                if broken.unaccounted_from is None:
                    broken.unaccounted_from = self.at()
            raise
        finally:
            self.retain_from = state.outer_retain
        meta = state.meta
        if state.streamed:
            yield from self._read_members(position, package, state, start)
            return
        text = self.text(start)
        if state.failure is not None:
            yield Unreadable(state.failure.reason, state.failure.detail, text, position or "/")
            return
        for key in ("records", "releases"):
            if meta.get(key) is not None:
                yield Unreadable("invalid_package", f"'{key}' is a JSON {_json_type(jsontext.dumps(meta[key]))}, "
                                 "not an array", text, position or "/")
                return
        if state.record:  # an element of a records array without one: its compiledRelease, or why it has none
            yield from self._read_members(position, package, state, start)
        elif "ocid" not in meta and any(key in meta for key in _PACKAGE_KEYS):
            self.stats.empty_packages += 1
        else:
            yield Found(text, package, position or "/")  # a release (or not one: to_row says why)

    def _read_members(self, position: str, package: Package, state: _ObjectState, start: int) -> Iterator[Item]:
        """What a package or record that streamed its array read: its members that failed before the array
        (after it, they were rejected as they came), its compiledRelease, its releases with their package.
        ``start``: where the object began, for the text of a record that holds nothing to store."""
        meta = state.meta
        yield from state.failed_before_streaming
        own = Package.from_metadata(meta)
        if state.record or _is_record_meta(meta):
            own = package
            compiled = meta.get("compiledRelease")
            if isinstance(compiled, dict):
                ocid = meta.get("ocid") if isinstance(meta.get("ocid"), str) else compiled.get("ocid")
                yield Compiled(ocid if isinstance(ocid, str) else None, state.compiled_raw, package,
                               f"{position}/compiledRelease")
            elif compiled is not None or not (state.items or (state.records and not state.record)):
                # The record's text, unless a very long member pushed its start out of a streamed window.
                text = self.text(start) if start >= self.base else ""
                yield from _unusable_record(state.compiled_raw if compiled is not None else None, state.items > 0,
                                            text, position)
        yield from _with_package(state.pending, own)

    def _members(self, position: str, state: _ObjectState) -> Iterator[Item]:
        """The members of the object at pos: releases/records arrays streamed, other values kept in meta."""
        if self._peek() == "}":
            self.pos += 1
            return
        while True:
            key = self._key()
            if key in ("releases", "records") and self._peek() == "[":
                state.records = state.records or key == "records"
                if not state.streamed:
                    state.streamed = True
                    self.retain_from = state.outer_retain  # a package: its text need not be kept
                # Metadata after the array is not known yet: in memory, releases wait for it (_PENDING).
                own = _PENDING if self.stream is None else Package.from_metadata(state.meta)
                for item in self._members_array(key, f"{position}/{key}", own):
                    state.items += 1
                    if self.stream is None:
                        state.pending.append(item)
                    else:
                        yield item
            else:
                member_start = self.at()
                try:
                    state.meta[key], raw = self._item()
                    if key == "compiledRelease":
                        state.compiled_raw = raw
                except _ItemError as error:
                    state.failure = state.failure or error
                    state.items += 1
                    rejected = Unreadable(error.reason, f"member '{key}': {error.detail}", self.text(member_start),
                                          f"{position}/{key}")
                    if state.streamed:
                        yield rejected
                    else:  # rejected with the whole object, unless the object proves to be a package or record
                        state.failed_before_streaming.append(rejected)
            if self._expect(",}") == "}":
                return

    def _members_array(self, key: str, position: str, package: Package) -> Iterator[Item]:
        for element_position, start, raw in self._elements(position, walkable=True):
            if key == "releases" and raw is not None:
                yield Found(raw, package, element_position)  # parsed (and judged) by to_row
            else:  # a record; or a release not delimited, walked to find where it ends (it comes out whole)
                yield from self._walk_or_split(element_position, start, raw, package,
                                               self.splitter.record if key == "records" else self.splitter.element)


_PENDING = Package(uri="\x00pending")  # a placeholder replaced by the package once its metadata is complete


def _with_package(items: list[Item], package: Package) -> Iterator[Item]:
    for item in items:
        if isinstance(item, (Found, Compiled)) and item.package is _PENDING:  # a walked record's compiledRelease
            item.package = package
        yield item


def _is_record_meta(meta: dict[str, Any]) -> bool:
    # As _is_record: a member given as null is absent.
    if meta.get("compiledRelease") is not None or meta.get("versionedRelease") is not None:
        return True
    return "ocid" in meta and not any(key in meta for key in _PACKAGE_KEYS)


def _parse_item(raw: str) -> Any:
    value, _ = jsontext.loads_exact(jsontext.repaired(raw)[0])  # each undecodable byte read as windows-1252
    return value


def _item_error(exc: BaseException) -> _ItemError:
    if isinstance(exc, RecursionError):
        return _ItemError("nesting_too_deep", "the value is nested deeper than the JSON parser allows")
    if isinstance(exc, jsontext.NonFiniteNumber):
        return _ItemError("non_finite_number", f"{exc} (PostgreSQL jsonb cannot store it)")
    if isinstance(exc, jsontext.NumberOutOfRange):
        return _ItemError("number_out_of_range", str(exc))
    if isinstance(exc, ValueError) and hasattr(exc, "msg") and hasattr(exc, "pos"):
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

    data: bytes | str | None = None
    stream: TextIO | None = None
    stats: DocumentStats = field(default_factory=DocumentStats)
    split: ReleasePackage | None = None  # already read and split (``from_split``): its text is not needed

    def items(self) -> Iterator[Item]:
        if self.split is not None:
            self.stats.values = 1
            yield from _Splitter(self.stats).shaped(self.split, None, "", NO_PACKAGE)
            return
        if self.stream is not None:
            yield from _Walker("", self.stream, self.stats).values()
            return
        # Whitespace around the document is no part of any value (a bare release is the document itself).
        data = (self.data or b"").strip(b" \t\r\n" if isinstance(self.data, bytes) else " \t\r\n")
        splitter = _Splitter(self.stats)
        try:
            self.stats.values = 1
            yield from splitter.value(data, "")
            return
        except _Unsplittable:
            self.stats.values = 0
        try:
            lines = _LINES.decode_lines(data)  # JSON lines, each read whole by msgspec
        except jsontext.PARSE_ERRORS:
            lines = None
        if lines is not None and len(lines) > 1:
            try:
                items = [item for index, line in enumerate(lines)
                         for item in splitter.value(line, f"@{index}" if index else "")]
            except _Unsplittable:
                pass
            else:
                self.stats.values = len(lines)
                yield from items
                return
        text = data if isinstance(data, str) else jsontext.text_of(data)
        yield from _Walker(text, None, self.stats).values()


def read_bytes(data: bytes) -> Document:
    """A document held in memory (an API page, a message body)."""
    encoding, bom = detect_encoding(data[:4])
    if encoding == "utf-8":
        return Document(data=data[bom:], stats=DocumentStats(encoding=encoding))
    text, encoding = decode(data)
    return Document(data=text, stats=DocumentStats(encoding=encoding))


def from_split(package: ReleasePackage) -> Document | None:
    """A document read whole and split by msgspec elsewhere (a message's envelope and its page in one pass): the
    same items, stats and positions as reading its text would give. None where splitting needs the text itself
    (records, a record, a package without an array of releases); the caller then reads the text. A ``records``
    member given as null counts: it may be the last copy of a repeated one, which only the text shows."""
    if not isinstance(package.releases, list) or package.records is not UNSET or _is_record(package):
        return None
    return Document(split=package)


def read_text(text: str) -> Document:
    return Document(data=text)


def read_value(value: Any, stats: DocumentStats | None = None) -> Iterator[Item]:
    """Items from an already parsed JSON value (releases handed over as Python objects); ``stats`` fills in."""
    return Document(data=jsontext.dumps(value), stats=stats if stats is not None else DocumentStats()).items()


def read_stream(binary: io.BufferedIOBase) -> Document:
    """A large file, streamed: memory is bounded by the largest release, not by the file."""
    text_stream, encoding = open_text(binary)
    return Document(stream=text_stream, stats=DocumentStats(encoding=encoding))


def object_members(text: str, followed_takes_rest: bool = False) -> dict[str, str] | None:
    """The members of the JSON object ``text`` as their texts, delimited leniently (nothing is parsed but the
    keys); None if it is not an object. A member that cannot be delimited (a truncated value) takes the rest of
    the text, and the members after it are not known. So does, with ``followed_takes_rest``, a member followed
    by more than a comma or the object's end (an envelope's page of several values: JSON lines), so nothing of
    it is lost; without, the members before that point are returned."""
    walker = _Walker(text, None, DocumentStats())
    members: dict[str, str] = {}
    try:
        walker._expect("{")
        if walker._peek() == "}":
            return members
        while True:
            key = walker._key()
            walker._skip_ws()
            start = walker.at()
            try:
                _, members[key] = walker._delimit()
            except _Broken:
                members[key] = text[start:]
                return members
            try:
                if walker._expect(",}") == "}":
                    return members
            except _Broken:
                if followed_takes_rest:
                    members[key] = text[start:]
                return members
    except _Broken:
        return members or None


def is_closed(text: str) -> bool:
    """Whether ``text`` is one value whose brackets close at its end (a cut-off page is not)."""
    body = text.strip(" \t\r\n")
    return bool(body) and _scan_value_end(body, 0) == len(body)

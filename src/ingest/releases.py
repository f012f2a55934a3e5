"""Release object -> row (pure): validation, normalisation, extracted columns, content hash.

A row needs ``ocid`` (a non-empty string), ``id`` (a string; a number is kept as its published text) and a
parseable ``date``. Anything else is a ``Rejection`` with a reason code, a detail and the raw text as published,
never an exception: the page goes on without it.

The stored ``data`` is the release's published text (PostgreSQL's jsonb keeps its numbers exactly); Python reads
it with exact numbers (``jsontext``) only to validate it and extract the indexed columns.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import msgspec

from ingest import jsontext
from ingest.documents import Compiled, Found, Package, Unreadable
from ingest.jsontext import column_text as _text
from ingest.jsontext import storable_text

_DATE = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})"
    r"(?:[Tt ](\d{2}):(\d{2})(?::(\d{2})(?:[.,](\d+))?)?\s*(Z|z|[+-]\d{2}(?::?\d{2})?)?)?"
)


@dataclass(slots=True)
class ReleaseRow:
    """One row of the ``releases`` table; ``data`` is the release's text as published (NULs removed), in UTF-8."""

    ocid: str
    release_id: str
    release_date: datetime
    date_text: str
    tag: list[str] | None
    initiation_type: str | None
    buyer_id: str | None
    buyer_name: str | None
    tender_title: str | None
    tender_status: str | None
    procurement_method: str | None
    value_amount: str | None
    value_currency: str | None
    publisher_name: str | None
    package_uri: str | None
    ocds_version: str | None
    source: str
    flags: list[str]
    content_hash: bytes
    data: bytes  # the text in UTF-8, as the hash covers it and the writer sends it
    position: str = ""  # where in the document it came from (not stored; used if PostgreSQL refuses it)
    published: str | None = None  # the published text when it differs from data_text (for the quarantine)
    _value: Any = field(default=None, init=False, compare=False, repr=False)

    @property
    def data_text(self) -> str:
        """The text as stored. Made when asked (by the ``json`` and ``copy`` writers, a refusal, a compile),
        not by reading: the usual row goes to the database as its bytes, never as a Python text."""
        return str(self.data, "utf-8")

    @property
    def value(self) -> Any:
        """The release parsed exactly (not stored), for compiling the page's ocids: parsed from ``data``
        when first asked, the same value reading it gave. A page that is not compiled never holds it: keeping
        every release parsed costs more memory traffic than parsing the few that are merged again."""
        if self._value is None:
            self._value = jsontext.loads(self.data)
        return self._value

    @property
    def key(self) -> tuple[str, str]:
        return (self.ocid, self.release_id)

    @property
    def order(self) -> tuple[datetime, bytes]:
        """The total order of the conflict rule: a stored row is replaced only by a greater one."""
        return (self.release_date, self.content_hash)


@dataclass(slots=True)
class CompiledRow:
    """One row of the ``compiled_releases`` table (a record's compiledRelease, newest wins per ocid)."""

    ocid: str
    release_date: datetime | None
    source: str
    package_uri: str | None
    content_hash: bytes
    data_text: str

    @property
    def order(self) -> tuple[datetime, bytes]:
        return (self.release_date or _EPOCH, self.content_hash)


@dataclass(slots=True)
class Rejection:
    """A release (or a part of a document) that cannot be a row, with why and its raw text."""

    reason: str
    detail: str
    raw_text: str
    position: str
    ocid: str | None = None
    release_id: str | None = None

    def __post_init__(self) -> None:
        # Whatever the publisher sent must fit a text column: no NUL, no lone surrogate.
        self.raw_text = storable_text(self.raw_text)
        self.detail = storable_text(self.detail)
        self.position = storable_text(self.position)
        self.ocid = storable_text(self.ocid) if self.ocid is not None else None
        self.release_id = storable_text(self.release_id) if self.release_id is not None else None


_EPOCH = datetime(1, 1, 1, tzinfo=UTC)


class _Reject(Exception):
    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


def is_usual_utc(text: str) -> bool:
    """Whether a date has the usual form, 2020-01-01T00:00:00Z (ASCII): Python and PostgreSQL read the same
    instant from it, so the writer sends it as it is rather than writing out ``parse_date``'s result again."""
    # Its punctuation stands every third character from the fifth: one slice and one comparison (~0.25 µs less
    # than looking at each, twice a row). The digits are fromisoformat's to check.
    return len(text) == 20 and text[4::3] == "--T::Z" and text.isascii()


def parse_date(text: str) -> tuple[datetime, Sequence[str]]:
    """Parse an OCDS date-time; return it in UTC with flags for what had to be assumed.

    Date-only values are taken as midnight UTC (flag ``date_only``); a time without an offset as UTC (flag
    ``no_timezone``). Fractions beyond microseconds (7 digits occur in real data) are rounded half up to the
    microsecond here, so Python and PostgreSQL compare exactly the same instant.
    """
    if is_usual_utc(text):
        # Read in C; what it refuses is read below, which says why.
        try:
            return datetime.fromisoformat(text), ()  # no flag: no list made for the usual date
        except ValueError:
            pass
    match = _DATE.fullmatch(text.strip())
    if match is None:
        raise ValueError(f"date {text[:60]!r} is not an ISO 8601 date-time")
    year, month, day, hour, minute, second, fraction, offset = match.groups()
    flags: list[str] = []
    if hour is None:
        flags.append("date_only")
    elif offset is None:
        flags.append("no_timezone")
    micros = 0
    if fraction:
        digits = (fraction + "000000")[:7]
        micros = (int(digits) + 5) // 10
    tz = UTC
    if offset and offset not in ("Z", "z"):
        sign = -1 if offset[0] == "-" else 1
        hours, minutes = int(offset[1:3]), int(offset.replace(":", "")[3:5] or 0)
        if hours > 23 or minutes > 59:
            raise ValueError(f"date {text[:60]!r} has an impossible UTC offset")
        tz = timezone(sign * timedelta(hours=hours, minutes=minutes))
    try:
        moment = datetime(int(year), int(month), int(day), int(hour or 0), int(minute or 0), int(second or 0),
                          tzinfo=tz)
    except ValueError as exc:
        raise ValueError(f"date {text[:60]!r} is not a real date-time: {exc}") from None
    if not micros and tz is UTC:
        return moment, flags  # already the instant in UTC (the usual case: nothing to add or convert)
    try:
        moment = (moment + timedelta(microseconds=micros)).astimezone(UTC)
    except OverflowError:
        raise ValueError(f"date {text[:60]!r} is outside the years 1 to 9999 in UTC") from None
    return moment, flags


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, Decimal, msgspec.Raw)):
        return "number"
    return {str: "string", list: "array"}.get(type(value), "object")


_NO_MEMBERS: dict[str, Any] = {}


def _object(value: Any) -> dict[str, Any]:
    """A member that should be an object, or no members if it is not one (its fields are then NULL)."""
    return value if isinstance(value, dict) else _NO_MEMBERS


def _amount(value: Any) -> str | None:
    """The amount for the numeric column: a number with a fraction or an exponent as its published text, which
    PostgreSQL's numeric reads to the value (and scale) it reads in ``data`` (the reader checked it is in range);
    an integer's digits. Never a float; a string is no amount. (Through ``Decimal`` and back, as ``column_text``
    writes a number for a text column, it cost a row ~3 µs and the column the same value.)"""
    if type(value) is msgspec.Raw:
        return str(value, "ascii")
    return None if isinstance(value, str) else _text(value)


@dataclass(slots=True)
class ReadRelease:
    """A release as it will be stored (its text in UTF-8, what the hash covers), the release parsed exactly (a
    number with a fraction or an exponent as its published text, ``jsontext.decode_published``), and what reading
    it found."""

    encoded: bytes
    value: Any
    flags: list[str]
    published: str | None = None  # the text as published when it differs (NULs were removed), for the quarantine

    @property
    def text(self) -> str:
        return str(self.encoded, "utf-8")


class _IdText(msgspec.Struct):
    id: msgspec.Raw | msgspec.UnsetType = msgspec.UNSET


def _parse(text: str) -> tuple[Any, int | None]:
    """The value, every number exact, and how many keys repeat: msgspec first (the count is then None, for
    ``jsontext`` to find from the text), the standard library where msgspec refuses (raises _Reject)."""
    try:
        return jsontext.decode_published(text), None
    except jsontext.PARSE_ERRORS as exc:
        if isinstance(exc, jsontext.NumberOutOfRange) or isinstance(exc.__cause__, jsontext.NumberOutOfRange):
            raise _Reject("number_out_of_range", str(exc if exc.__cause__ is None else exc.__cause__)) from None
        # msgspec refuses lone surrogates, which jsonb refuses too (even where a repeated key drops the value).
        if jsontext.has_lone_surrogate(text) or jsontext.lone_surrogate_escape(text):
            raise _Reject("invalid_unicode", "a string holds a lone surrogate, which is not Unicode text "
                          "(PostgreSQL cannot store it)") from None
        try:
            return jsontext.loads_exact(text)
        except RecursionError:
            raise _Reject("nesting_too_deep", "the release is nested deeper than the JSON parser allows") from None
        except jsontext.NumberOutOfRange as exc:
            raise _Reject("number_out_of_range", str(exc)) from None
        except jsontext.NonFiniteNumber as exc:
            raise _Reject("non_finite_number", f"{exc} (PostgreSQL jsonb cannot store NaN or Infinity)") from None
        except ValueError as exc:
            detail = f"{exc.msg} at character {exc.pos}" if isinstance(exc, json.JSONDecodeError) else str(exc)
            raise _Reject("invalid_json", f"the release is not valid JSON: {detail}") from None


def read_release(raw: Any) -> ReadRelease:
    """Read a release's published text: decide its bytes, parse it exactly, find what jsonb would change.

    Raises _Reject for text that cannot be stored as published. The stored text is the published text,
    except that NUL escapes are removed (jsonb cannot hold NUL) and bytes that were not valid in the
    document's encoding are read as windows-1252 (flag ``legacy_encoding``).
    """
    flags: list[str] = []
    usual = _usual(raw)
    if usual is not None:
        text: str | None = None  # the usual release is never made a text here: the row sends its bytes
        encoded, value = usual
        repeated: int | None = None
    else:
        # The value alone: a bare release read in memory carries the document's surrounding whitespace, a
        # streamed one does not, and the same release must give the same text and hash either way.
        text, legacy = jsontext.repaired(jsontext.text_of(raw))
        text = text.strip(" \t\r\n")
        if legacy:
            flags.append("legacy_encoding")
        value, repeated = _parse(text)
        encoded = text.encode("utf-8")  # after _parse, which refuses lone surrogates
    escapes = jsontext.has_nul_or_colon_escape(encoded)  # the usual text has neither: one scan says so
    if escapes and text is None:
        text = str(encoded, "utf-8")
    if not escapes or not jsontext.has_nul_escape(text):
        if repeated is None:
            repeated = int(jsontext.has_repeated_key(encoded, value, colon_escape=escapes))
        if repeated:
            flags.append("duplicate_key")  # jsonb keeps the last value of a repeated key; the row says so
        return ReadRelease(encoded, value, flags)
    if isinstance(value, dict) and any("\x00" in item for item in (value.get("ocid"), value.get("id"))
                                       if isinstance(item, str)):
        raise _Reject("nul_in_identifier", "the ocid or id holds a NUL character; PostgreSQL cannot store it "
                      "and removing it could merge this release with another")
    # Exact counts of the keys a repeat drops, before and after (counting colons may count one more than there
    # is, which says whether a key repeats but cannot compare two counts): more after means two live keys of
    # one object became the same.
    repeated = jsontext.dropped_keys(text, value)
    if repeated:
        flags.append("duplicate_key")
    published = text
    text = jsontext.without_nul_escapes(text)
    value = _parse(text)[0]
    if jsontext.dropped_keys(text, value) > repeated:
        raise _Reject("nul_key_collision", "removing NUL characters (which PostgreSQL cannot store) would make "
                      "two distinct keys of one object the same")
    flags.append("nul_removed")
    return ReadRelease(text.encode("utf-8"), value, flags, published)


def _usual(raw: Any) -> tuple[bytes, Any] | None:
    """The usual release, bytes that msgspec reads: those bytes (whitespace around them removed) and their
    value, read in one pass that also checks the bytes are UTF-8 (msgspec refuses a string that is not, and any
    byte outside a string is ASCII JSON). None for text, or bytes that need a closer look (``_parse``)."""
    if isinstance(raw, str):
        return None
    data = bytes(raw).strip(b" \t\r\n")  # ASCII whitespace: never part of a UTF-8 sequence
    try:
        return data, jsontext.decode_published(data)
    except jsontext.PARSE_ERRORS:
        return None


def _release_id(release: dict[str, Any], encoded: bytes, flags: list[str]) -> str:
    release_id = release.get("id")
    if type(release_id) is msgspec.Raw:  # a number with a fraction or an exponent, as published
        flags.append("id_number")
        return str(release_id, "ascii")
    if isinstance(release_id, (int, Decimal)) and not isinstance(release_id, bool):
        flags.append("id_number")
        try:
            raw_id = msgspec.json.decode(encoded, type=_IdText).id
        except jsontext.PARSE_ERRORS:
            raw_id = None
        # The id exactly as published: 9007199254740993.0 and 9007199254740992.0 are different releases.
        return str(raw_id, "utf-8") if isinstance(raw_id, msgspec.Raw) else str(release_id)
    if not isinstance(release_id, str) or not release_id:
        raise _Reject("missing_id", "the release has no id (a string is required)"
                      if release_id is None else "id must be a string or a number")
    return release_id


def _hash(encoded: bytes, package: Package, source: str) -> bytes:
    # The hash covers every stored column that comes from the input, so that two rows with the same key and
    # date but different package fields still have a strict order and the final table cannot depend on the
    # order pages arrive in. The release part is its text as stored: exact, with no re-serialisation.
    global _last_suffix
    digest = hashlib.sha256(encoded)
    last = _last_suffix
    if last[0] is not package or last[1] != source:  # a page's releases share one package: one look a page
        last = _last_suffix = (package, source,
                               _hash_suffix(package.uri, package.publisher_name, package.version, source))
    digest.update(last[2])
    return digest.digest()


# The last package's suffix, by identity: replaced whole, so a thread reads one consistent tuple.
_last_suffix: tuple[Package | None, str, bytes] = (None, "", b"")


# Cached by the texts themselves: a key of texts is hashed in C, a Package by its dataclass __hash__ in Python.
@functools.lru_cache(maxsize=64)
def _hash_suffix(uri: str | None, publisher_name: str | None, version: str | None, source: str) -> bytes:
    """The package fields and source as the hash takes them (the same for every release of a page)."""
    parts = []
    for part in (uri, publisher_name, version, source):
        if part is None:
            parts.append(b"\x00")  # absent differs from empty
        else:
            field_bytes = part.encode("utf-8", "surrogatepass")
            parts.append(b"\x01" + len(field_bytes).to_bytes(8, "big") + field_bytes)  # length-framed
    return b"".join(parts)


def to_row(found: Found, source: str) -> ReleaseRow | Rejection | None:
    """A release -> a row, a rejection saying why not, or None for a linked release (a reference, not data)."""
    ocid: Any = None
    release_id: Any = None
    try:
        read = read_release(found.raw)
        release = read.value
        if not isinstance(release, dict):
            raise _Reject("not_an_object", f"a release must be a JSON object, not a JSON {_json_type(release)}")
        if "url" in release and "ocid" not in release:
            return None
        flags = read.flags
        ocid = release.get("ocid")
        if not isinstance(ocid, str) or not ocid.strip():
            raise _Reject("missing_ocid", "the release has no ocid (a non-empty string is required)"
                          if ocid is None else f"ocid must be a non-empty string, not {jsontext.dumps(ocid)[:80]}")
        release_id = release.get("id")
        if type(release_id) is not str or not release_id:  # the usual id, a non-empty string, needs no look
            release_id = _release_id(release, read.encoded, flags)
        date_text = release.get("date")
        if not isinstance(date_text, str):
            raise _Reject("missing_date", "the release has no date" if date_text is None
                          else "date must be a string")
        try:
            release_date, date_flags = parse_date(date_text)
        except ValueError as exc:
            raise _Reject("invalid_date", str(exc)) from None
        if date_flags:
            flags += date_flags
        tag = release.get("tag")
        if type(tag) is list and len(tag) == 1 and type(tag[0]) is str:
            pass  # the usual tag, one word: no generator, which costs a row ~2 µs after a parse
        elif isinstance(tag, str):
            tag = [tag]
            flags.append("tag_string")
        elif isinstance(tag, list) and all(isinstance(item, str) for item in tag):
            tag = list(tag)
        else:
            tag = None
        package = found.package
        if package.escaped:
            flags.append("package_escaped")
        buyer, tender = _object(release.get("buyer")), _object(release.get("tender"))
        value = _object(tender.get("value"))
        # Positional, in the fields' order: with 22 keywords the call costs a row 2 µs more.
        return ReleaseRow(
            ocid, release_id, release_date, date_text, tag,
            _text(release.get("initiationType")),  # initiation_type
            _text(buyer.get("id")), _text(buyer.get("name")),  # buyer_id, buyer_name
            # tender_title, tender_status, procurement_method, value_amount, value_currency
            _text(tender.get("title")), _text(tender.get("status")), _text(tender.get("procurementMethod")),
            _amount(value.get("amount")), _text(value.get("currency")),
            package.publisher_name, package.uri, package.version, source, flags,
            _hash(read.encoded, package, source),  # content_hash
            read.encoded, found.position, read.published,  # data, position, published
        )
    except _Reject as reject:
        # What the rejected release says about itself, to find it by: its ocid and id as far as they are text.
        value = jsontext.value_of(found.raw, constants=True)
        if isinstance(value, dict):
            ocid = value.get("ocid") if ocid is None else ocid
            release_id = release_id if isinstance(release_id, str) else _text(value.get("id"))
        return Rejection(reject.reason, reject.detail, jsontext.repaired(jsontext.text_of(found.raw))[0],
                         found.position, ocid=ocid if isinstance(ocid, str) else None,
                         release_id=release_id if isinstance(release_id, str) else None)


def compiled_to_row(compiled: Compiled, source: str) -> CompiledRow | Rejection:
    """A record's compiledRelease -> a row; it needs an ocid (from the record or the release itself).

    Its date is optional here (a compiled release is keyed by ocid alone); an unparseable one is stored as NULL.
    """
    raw_text = jsontext.repaired(jsontext.text_of(compiled.raw))[0]
    if not compiled.ocid:
        return Rejection("missing_ocid", "the record and its compiledRelease have no ocid", raw_text,
                         compiled.position)
    try:
        read = read_release(compiled.raw)
    except _Reject as reject:
        return Rejection(reject.reason, reject.detail, raw_text, compiled.position, ocid=compiled.ocid)
    date_text = read.value.get("date") if isinstance(read.value, dict) else None
    try:
        release_date = parse_date(date_text)[0] if isinstance(date_text, str) else None
    except ValueError:
        release_date = None
    return CompiledRow(compiled.ocid, release_date, source, compiled.package.uri,
                       _hash(read.encoded, compiled.package, source), read.text)


def unreadable_to_rejection(item: Unreadable) -> Rejection:
    return Rejection(item.reason, item.detail, jsontext.repaired(item.raw)[0], item.position)


def newest_per_key(rows: list[ReleaseRow]) -> tuple[list[ReleaseRow], int]:
    """Resolve duplicates inside one batch by the conflict rule; return the survivors sorted by key.

    Sorted keys make every writer lock rows in the same order, so concurrent writers cannot deadlock.
    """
    best: dict[tuple[str, str], ReleaseRow] = {}
    for row in rows:
        kept = best.get(row.key)
        if kept is None or kept.order < row.order:
            best[row.key] = row
    return [best[key] for key in sorted(best)], len(rows) - len(best)


def newest_compiled(rows: list[CompiledRow]) -> list[CompiledRow]:
    best: dict[str, CompiledRow] = {}
    for row in rows:
        kept = best.get(row.ocid)
        if kept is None or kept.order < row.order:
            best[row.ocid] = row
    return [best[ocid] for ocid in sorted(best)]

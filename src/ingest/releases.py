"""Release object -> row (pure): validation, normalisation, extracted columns, content hash.

A row needs ``ocid`` (a non-empty string), ``id`` (a string; a number is converted) and a parseable ``date``.
Anything else is a ``Rejection`` with a reason code, a detail and the raw JSON text, never an exception: the
page goes on without it.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from ingest.documents import Compiled, Found, Package, Unreadable

_DATE = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})"
    r"(?:[Tt ](\d{2}):(\d{2})(?::(\d{2})(?:[.,](\d+))?)?\s*(Z|z|[+-]\d{2}(?::?\d{2})?)?)?"
)
_NUL_ESCAPE = "\\u0000"


@dataclass(slots=True)
class ReleaseRow:
    """One row of the ``releases`` table; ``data_text`` is the release as canonical JSON."""

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
    data_text: str
    position: str = ""  # where in the document it came from (not stored; used if PostgreSQL refuses it)

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
        # Key columns lose NULs, as rows' keys do; raw text and details keep them visible as an escape.
        self.ocid = storable_text(self.ocid.replace("\x00", "")) if self.ocid is not None else None
        self.release_id = storable_text(self.release_id.replace("\x00", "")) if self.release_id is not None else None


def storable_text(text: str) -> str:
    """Text PostgreSQL can hold: NUL written as the escape ``\\u0000``, lone surrogates as ``\\udXXX``."""
    if "\x00" in text:
        text = text.replace("\x00", _NUL_ESCAPE)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text


_EPOCH = datetime(1, 1, 1, tzinfo=UTC)


class _Reject(Exception):
    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


def parse_date(text: str) -> tuple[datetime, list[str]]:
    """Parse an OCDS date-time; return it in UTC with flags for what had to be assumed.

    Date-only values are taken as midnight UTC (flag ``date_only``); a time without an offset as UTC (flag
    ``no_timezone``). Fractions beyond microseconds (7 digits occur in real data) are rounded half up to the
    microsecond here, so Python and PostgreSQL compare exactly the same instant.
    """
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
    try:
        moment = (moment + timedelta(microseconds=micros)).astimezone(UTC)
    except OverflowError:
        raise ValueError(f"date {text[:60]!r} is outside the years 1 to 9999 in UTC") from None
    return moment, flags


def _strip_nul(value: Any) -> Any:
    if isinstance(value, str):
        return value.replace("\x00", "")
    if isinstance(value, list):
        return [_strip_nul(item) for item in value]
    if isinstance(value, dict):
        return {_strip_nul(key): _strip_nul(item) for key, item in value.items()}
    return value


def canonical_json(value: Any) -> str:
    """Sorted keys, no spaces, non-ASCII kept: the same release always gives the same text and hash."""
    return json.dumps(value, ensure_ascii=False, sort_keys=True, separators=(",", ":"), allow_nan=False)


def raw_text_of(found: Found) -> str:
    if found.raw is not None:
        return found.raw
    try:
        return json.dumps(found.value, ensure_ascii=False)
    except (ValueError, RecursionError):
        return repr(found.value)


def _text(value: Any) -> str | None:
    """A value for a text column: strings as they are, numbers as JSON writes them, anything else NULL."""
    if isinstance(value, str):
        return value.replace("\x00", "")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return json.dumps(value)
    return None


def _get(obj: Any, *path: str) -> Any:
    for key in path:
        if not isinstance(obj, dict):
            return None
        obj = obj.get(key)
    return obj


def _amount(value: Any) -> str | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(value)
    return None


def _serialise(value: Any) -> tuple[str, bytes, bool]:
    """Canonical text and its UTF-8 bytes; NULs removed (jsonb cannot hold them) and reported."""
    try:
        text = canonical_json(value)
    except RecursionError:
        raise _Reject("nesting_too_deep", "the release is nested deeper than can be serialised") from None
    except ValueError as exc:
        raise _Reject("non_finite_number", f"{exc} (PostgreSQL jsonb cannot store NaN or Infinity)") from None
    nul_removed = False
    if _NUL_ESCAPE in text:
        cleaned = _strip_nul(value)
        cleaned_text = canonical_json(cleaned)
        nul_removed = cleaned_text != text
        text = cleaned_text
    try:
        encoded = text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise _Reject("invalid_unicode", f"a string holds a lone surrogate ({exc.reason}), which is not "
                      "valid Unicode text") from None
    return text, encoded, nul_removed


def _hash(encoded: bytes, package: Package, source: str) -> bytes:
    # The hash covers every stored column that comes from the input, so that two rows with the same key and
    # date but different package fields still have a strict order and the final table cannot depend on the
    # order pages arrive in.
    digest = hashlib.sha256(encoded)
    for part in (package.uri, package.publisher_name, package.version, source):
        if part is None:
            digest.update(b"\x00")  # absent differs from empty
        else:
            field_bytes = part.encode("utf-8", "surrogatepass")
            digest.update(b"\x01" + len(field_bytes).to_bytes(8, "big") + field_bytes)  # length-framed
    return digest.digest()


def to_row(found: Found, source: str) -> ReleaseRow | Rejection:
    """A release -> a row, or a rejection saying why not."""
    release = found.value
    ocid = release.get("ocid") if isinstance(release, dict) else None
    release_id = release.get("id") if isinstance(release, dict) else None
    try:
        if not isinstance(release, dict):
            raise _Reject("not_an_object", f"a release must be a JSON object, not {type(release).__name__}")
        flags: list[str] = []
        if not isinstance(ocid, str) or not ocid.strip():
            raise _Reject("missing_ocid", "the release has no ocid (a non-empty string is required)"
                          if ocid is None else f"ocid must be a non-empty string, not {json.dumps(ocid)[:80]}")
        if isinstance(release_id, (int, float)) and not isinstance(release_id, bool):
            release_id = json.dumps(release_id)
            flags.append("id_number")
        if not isinstance(release_id, str) or not release_id:
            raise _Reject("missing_id", "the release has no id (a string is required)"
                          if release_id is None else "id must be a string or a number")
        date_text = release.get("date")
        if not isinstance(date_text, str):
            raise _Reject("missing_date", "the release has no date" if date_text is None
                          else "date must be a string")
        try:
            release_date, date_flags = parse_date(date_text)
        except ValueError as exc:
            raise _Reject("invalid_date", str(exc)) from None
        flags += date_flags
        tag = release.get("tag")
        if isinstance(tag, str):
            tag = [tag]
            flags.append("tag_string")
        elif isinstance(tag, list) and all(isinstance(item, str) for item in tag):
            tag = list(tag)
        else:
            tag = None
        data_text, encoded, nul_removed = _serialise(release)
        if nul_removed:
            flags.append("nul_removed")
            ocid, release_id = ocid.replace("\x00", ""), release_id.replace("\x00", "")
            date_text = date_text.replace("\x00", "")
            tag = [item.replace("\x00", "") for item in tag] if tag else tag
        package = found.package
        value = _get(release, "tender", "value")
        return ReleaseRow(
            ocid=ocid,
            release_id=release_id,
            release_date=release_date,
            date_text=date_text,
            tag=tag,
            initiation_type=_text(release.get("initiationType")),
            buyer_id=_text(_get(release, "buyer", "id")),
            buyer_name=_text(_get(release, "buyer", "name")),
            tender_title=_text(_get(release, "tender", "title")),
            tender_status=_text(_get(release, "tender", "status")),
            procurement_method=_text(_get(release, "tender", "procurementMethod")),
            value_amount=_amount(_get(value, "amount")),
            value_currency=_text(_get(value, "currency")),
            publisher_name=package.publisher_name,
            package_uri=package.uri,
            ocds_version=package.version,
            source=source,
            flags=flags,
            content_hash=_hash(encoded, package, source),
            data_text=data_text,
            position=found.position,
        )
    except _Reject as reject:
        return Rejection(reject.reason, reject.detail, raw_text_of(found), found.position,
                         ocid=ocid if isinstance(ocid, str) else None,
                         release_id=release_id if isinstance(release_id, str) else None)


def compiled_to_row(compiled: Compiled, source: str) -> CompiledRow | Rejection:
    """A record's compiledRelease -> a row; it needs an ocid (from the record or the release itself).

    Its date is optional here (a compiled release is keyed by ocid alone); an unparseable one is stored as NULL.
    """
    found = Found(compiled.value, compiled.package, compiled.position)
    if not compiled.ocid:
        return Rejection("missing_ocid", "the record and its compiledRelease have no ocid",
                         raw_text_of(found), compiled.position)
    date_text = compiled.value.get("date")
    try:
        release_date = parse_date(date_text)[0] if isinstance(date_text, str) else None
    except ValueError:
        release_date = None
    try:
        data_text, encoded, _ = _serialise(compiled.value)
    except _Reject as reject:
        return Rejection(reject.reason, reject.detail, raw_text_of(found), compiled.position, ocid=compiled.ocid)
    return CompiledRow(compiled.ocid, release_date, source, compiled.package.uri,
                       _hash(encoded, compiled.package, source), data_text)


def unreadable_to_rejection(item: Unreadable) -> Rejection:
    return Rejection(item.reason, item.detail, item.raw, item.position)


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

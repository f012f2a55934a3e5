"""Exact JSON text (pure): numbers never pass through a Python float, texts are kept as published.

A release is stored as the text its publisher sent; PostgreSQL's jsonb and numeric keep every number of it
exactly. Python only reads what it needs, with msgspec (C speed) where the text allows it and the standard
library's parser with exact hooks where it does not (lone surrogates, integers beyond 4,300 digits, nesting
near the recursion limit). Floats become ``Decimal`` and integers of any length stay exact in both.
"""

from __future__ import annotations

import codecs
import decimal
import json
import math
import re
import secrets
from decimal import Decimal
from typing import Any

import msgspec

_ENCODER = msgspec.json.Encoder(decimal_format="number")
# Errors a parse may raise: msgspec's own, and ValueError (UnicodeError, JSONDecodeError) and RecursionError.
PARSE_ERRORS: tuple[type[BaseException], ...] = (msgspec.MsgspecError, ValueError, RecursionError)

# PostgreSQL's numeric holds up to 131,072 digits before the decimal point and 16,383 after it.
_NUMERIC_MAX_INTEGER_DIGITS = 131072
_NUMERIC_MAX_FRACTION_DIGITS = 16383
# PostgreSQL 15 refuses a written exponent of INT_MAX / 2 or more, even on zero (18 takes a little more on zero;
# the stricter rule holds on every server).
_NUMERIC_MAX_EXPONENT = (2**31 - 1) // 2
_NUL_ESCAPE = re.compile(r"(?<!\\)((?:\\\\)*)\\u0000")
# Where counting '":' could take the opening quote of a string that starts with a colon for the end of a key
# (once whitespace is gone, such a quote follows one of :,[{ ); such texts are tokenised instead.
_COLON_STRING_STARTS = (b':":', b',":', b'[":', b'{":')
_COLON_STRING_STARTS_TEXT = tuple(start.decode() for start in _COLON_STRING_STARTS)
_KEY_OR_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"[ \t\r\n]*(:?)', re.DOTALL)


class NonFiniteNumber(ValueError):
    """Raised if NaN or Infinity appears: they are not JSON numbers and jsonb cannot hold them."""


class NumberOutOfRange(ValueError):
    """Raised if a number is beyond what PostgreSQL's numeric holds, so jsonb would refuse the release."""


def _exact_float(text: str) -> Decimal:
    try:
        number: Decimal | None = Decimal(text)
    except decimal.InvalidOperation:  # an exponent of 10**18 or more, which Decimal cannot hold
        number = None
    # Only a long text (an exponent of 5 digits, or thousands of digits) can leave numeric's range.
    if number is None or (len(text) >= 7 and not _in_numeric_range(text, number)):
        raise NumberOutOfRange(f"the number {text[:40]} is beyond what PostgreSQL's numeric holds")
    return number


def _in_numeric_range(text: str, number: Decimal) -> bool:
    """Whether PostgreSQL's numeric takes the number as written: no more digits after the point than it holds,
    none beyond its highest digit before it (a zero has none, so 0e200000 is 0), and an exponent it can read."""
    _, digits, exponent = number.as_tuple()
    assert isinstance(exponent, int)
    if -exponent > _NUMERIC_MAX_FRACTION_DIGITS:
        return False
    if any(digits) and len(digits) + exponent > _NUMERIC_MAX_INTEGER_DIGITS:
        return False
    written = text.lower().partition("e")[2]
    return not written or abs(int(written)) < _NUMERIC_MAX_EXPONENT


DECODER = msgspec.json.Decoder(float_hook=_exact_float)

# A number that a context of 1,000 digits and exponents within +-999 holds without any signal (nothing rounded,
# clamped or out of range) is exact and far inside numeric's range, so it needs no check of its own: Decimal is
# then made in C with no Python call per number. Any signal raises, and the text is read again with the check.
_SMALL_NUMBERS = decimal.Context(prec=1000, Emax=999, Emin=-999, traps=[
    decimal.Clamped, decimal.DivisionByZero, decimal.Inexact, decimal.InvalidOperation, decimal.Overflow,
    decimal.Rounded, decimal.Subnormal, decimal.Underflow])
_FAST_DECODER = msgspec.json.Decoder(float_hook=_SMALL_NUMBERS.create_decimal)


def decode(data: Any) -> Any:
    """JSON text (str, bytes or a buffer) -> Python with msgspec, every number exact (as ``DECODER``).

    Raises what ``DECODER`` raises (see ``PARSE_ERRORS``) for what msgspec refuses.
    """
    try:
        return _FAST_DECODER.decode(data)
    except decimal.DecimalException:
        return DECODER.decode(data)


def _published_float(text: str) -> msgspec.Raw:
    # Without an exponent, a number of fewer than 16,384 characters has fewer digits than numeric holds on
    # either side of its point; with one, only a text of 7 characters or more can leave its range.
    if len(text) > 6 and ("e" in text or "E" in text or len(text) > _NUMERIC_MAX_FRACTION_DIGITS):
        _exact_float(text)  # raises NumberOutOfRange
    return msgspec.Raw(text)


_PUBLISHED_DECODER = msgspec.json.Decoder(float_hook=_published_float)


def decode_published(data: Any) -> Any:
    """As ``decode``, but a number with a fraction or an exponent is kept as its published text, a
    ``msgspec.Raw`` (``number_value`` gives its value), which is made with no conversion and encoded back
    verbatim: a release read to be checked and stored, whose encoding is compared with its text, needs no
    ``Decimal`` (str(Decimal) cost the encoding ~0.7 µs a number). Raises what ``DECODER`` raises."""
    return _PUBLISHED_DECODER.decode(data)


def number_value(value: Any) -> Any:
    """A parsed value with a number kept as its text (``decode_published``) as its exact value; else as is."""
    return Decimal(str(value, "ascii")) if type(value) is msgspec.Raw else value


def _no_constants(name: str) -> Any:
    raise NonFiniteNumber(f"{name} is not a JSON number")


def _exact_int(text: str) -> int | Decimal:
    # Python refuses to convert integers over 4,300 digits (a guard against quadratic time); Decimal holds them.
    if len(text) <= 4000:
        return int(text)
    if len(text.lstrip("-")) > _NUMERIC_MAX_INTEGER_DIGITS:
        raise NumberOutOfRange(f"the number {text[:40]} is beyond what PostgreSQL's numeric holds")
    return Decimal(text)


class _Duplicates:
    """An object_pairs_hook that keeps the last value of a repeated key, as jsonb does, and counts repeats."""

    def __init__(self) -> None:
        self.count = 0

    def __call__(self, pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        obj = dict(pairs)
        self.count += len(pairs) - len(obj)
        return obj


def loads_exact(text: str, constants: bool = False) -> tuple[Any, int]:
    """Parse with the standard library, exactly; return (value, number of repeated keys).

    The slow path, for what msgspec refuses: lone surrogates, very long integers, deep nesting. NaN and
    Infinity are refused unless ``constants`` (to read the identifiers of a release rejected for them).
    Raises ValueError (JSONDecodeError, NonFiniteNumber) or RecursionError.
    """
    duplicates = _Duplicates()
    value = json.loads(text, parse_float=_exact_float, parse_int=_exact_int,
                       parse_constant=Decimal if constants else _no_constants, object_pairs_hook=duplicates)
    return value, duplicates.count


def value_of(raw: Any, constants: bool = False) -> Any:
    """A JSON value as Python, exactly; None if it cannot be read. ``constants`` lets NaN and Infinity through
    (as Decimal), for reading what a rejected release says about itself."""
    try:
        return decode(raw)
    except PARSE_ERRORS:
        pass
    try:
        return loads_exact(repaired(text_of(raw))[0], constants)[0]
    except PARSE_ERRORS:
        return None


def loads(text: str | bytes) -> Any:
    """JSON text -> Python, every number exact (fractions and exponents as ``Decimal``, integers of any length);
    repeated keys keep the last value, as jsonb does. Raises ValueError or RecursionError."""
    try:
        return decode(text)
    except PARSE_ERRORS:
        return loads_exact(text if isinstance(text, str) else text_of(text))[0]


def dumps(value: Any, indent: int | None = None) -> str:
    """JSON of a Python value (compact, or indented); Decimals are written with their exact digits.

    What JSON cannot hold is written as it was given, for the reader to see and refuse: a lone surrogate as its
    escape (``\\ud800``), a float NaN or infinity as ``NaN`` or ``Infinity`` (msgspec would write null).
    """
    try:
        encoded = _ENCODER.encode(value)
    except UnicodeEncodeError:
        return _dumps_marked(value)
    if b"null" in encoded and _has_non_finite(value):
        return _dumps_marked(value)
    return (encoded if indent is None else msgspec.json.format(encoded, indent=indent)).decode("utf-8")


def _has_non_finite(value: Any) -> bool:
    pending = [value]  # a stack, not recursion: a value may be nested as deep as the parsers allow
    while pending:
        item = pending.pop()
        if isinstance(item, float) and not math.isfinite(item):
            return True
        if isinstance(item, dict):
            pending.extend(item.values())
        elif isinstance(item, (list, tuple)):
            pending.extend(item)
    return False


def _dumps_marked(value: Any) -> str:
    """``dumps`` of a value holding what JSON cannot: each such string or float is replaced by a mark (a text no
    value holds: private-use characters and a random nonce), the copy is encoded exactly, and each mark's quoted
    text is then replaced by what was given, written as the standard library writes it."""
    marks: dict[str, str] = {}
    nonce = "\ue000" + secrets.token_hex(8)
    pending: list[tuple[Any, Any]] = []  # containers copied level by level: a value may be nested deep

    def marked(item: Any) -> Any:
        if (isinstance(item, str) and not _encodable(item)) or (isinstance(item, float) and not math.isfinite(item)):
            mark = f"{nonce}-{len(marks)}\ue001"
            marks[mark] = json.dumps(item)  # "\\ud800" (ASCII escapes), NaN, Infinity, -Infinity
            return mark
        if isinstance(item, (dict, list, tuple)):
            copy: Any = {} if isinstance(item, dict) else []
            pending.append((item, copy))
            return copy
        return item

    root = marked(value)
    while pending:
        source, copy = pending.pop()
        if isinstance(copy, dict):
            for key, member in source.items():
                copy[marked(key)] = marked(member)
        else:
            copy.extend(marked(member) for member in source)
    text = _ENCODER.encode(root).decode("utf-8")
    for mark, written in marks.items():
        text = text.replace(f'"{mark}"', written)
    return text


def column_text(value: Any) -> str | None:
    """A parsed value for a text column: strings as they are, numbers as their exact value, anything else NULL."""
    if isinstance(value, str):
        return value
    if isinstance(value, (int, Decimal)) and not isinstance(value, bool):
        return str(value)
    if type(value) is msgspec.Raw:
        return str(number_value(value))
    return None


# --- keys -------------------------------------------------------------------------------------------------


def _colon_keys(text: Any) -> int:
    # In JSON text a quote right before a colon closes a key, unless an odd run of backslashes escapes it (then
    # it is inside a string) or it opens a string that starts with a colon (``repeated_keys`` rules that out).
    # Counting '":' after k backslashes for every k, alternately, leaves the keys. (str or bytes alike.)
    quote_colon, backslash = ('":', "\\") if isinstance(text, str) else (b'":', b"\\")
    total, sign, prefix = 0, 1, quote_colon
    while (found := text.count(prefix)) > 0:
        total += sign * found
        sign, prefix = -sign, backslash + prefix
    return total


def _tokenised_keys(text: str) -> int:
    return _KEY_OR_STRING.findall(text).count(":")


# \u0000 (a NUL, which jsonb cannot hold) or \u003X (maybe a colon, which key counting must see): one scan
# rules both out for the usual text.
_NUL_OR_COLON_ESCAPE = re.compile(rb"\\u00[03]")
# A byte looked for as its value: ``b"\\" in data`` first tries the needle as an integer, and the TypeError it
# makes and clears cost more than the scan itself (0.54 against 0.09 µs on 4 KB; 0.84 on Python 3.13).
_BACKSLASH = ord("\\")


def has_nul_or_colon_escape(encoded: bytes) -> bool:
    """Whether the text (in UTF-8) may escape a NUL or a colon (then ``has_nul_escape`` and ``has_repeated_key``
    look closer); False rules out both in one scan."""
    return _BACKSLASH in encoded and _NUL_OR_COLON_ESCAPE.search(encoded) is not None  # no backslash: no escape


def has_repeated_key(encoded: bytes, value: Any, colon_escape: bool = True) -> bool:
    """Whether the JSON text (in UTF-8) repeats a key within an object (``value``, its parse, keeps one of each).

    A colon outside a string separates a key from its value, and a string's colons are the same in the text
    and in ``value``'s compact encoding, unless the text escapes a colon (``\\u003a``: then counted exactly by
    ``repeated_keys``) or a repeated key dropped a value (whose colons only raise the text's count). So the
    text holds more colons than the encoding exactly when it repeats a key: two counts at C speed, and no
    tokenizer, whatever the whitespace, escapes or strings are (a colon's byte is never part of another
    character's UTF-8). ``colon_escape=False`` says the caller has ruled out escaped colons
    (``has_nul_or_colon_escape``). The usual compact text is settled with one comparison.
    """
    if colon_escape and b"\\u003" in encoded:
        return repeated_keys(str(encoded, "utf-8"), value) > 0
    compact = _ENCODER.encode(value)
    if compact == encoded:  # the text is its value's own encoding, which writes each key of value once
        return False
    return encoded.count(b":") > compact.count(b":")


def dropped_keys(text: str, value: Any) -> int:
    """How many of the JSON text's keys its parse ``value`` does not hold (a repeated key keeps one value, and
    the keys inside the values it drops go with them), exactly: every string of both texts tokenised."""
    # Encoded directly: a parsed value holds no float and no lone surrogate, which ``dumps`` looks for.
    return _tokenised_keys(text) - _tokenised_keys(_ENCODER.encode(value).decode("utf-8"))


def repeated_keys(text: str, value: Any) -> int:
    """Whether (> 0) the JSON text repeats a key within an object (gone from ``value``, its parse): a count of
    colons, which may count one more where a dropped value holds a string that starts with a colon; use
    ``dropped_keys`` to compare counts."""
    encoded = _ENCODER.encode(value)  # compact: each key's closing quote is right before its colon
    # Whitespace matters only between a key and its colon (it is never part of an escape). A string of the
    # text that starts with a colon and is not in ``value`` was dropped by a repeated key, which is then found
    # (it can only raise the text's count).
    compact = text
    if any(space in text for space in (" :", "\n:", "\r:", "\t:")):
        compact = text.replace(" ", "").replace("\n", "").replace("\r", "").replace("\t", "")
    # A string that starts with a colon (in the value; or in the text once whitespace, which goes from inside
    # strings too, is gone: " :" -> ":"): its opening quote and the colon look like a key's end. Rare: tokenise.
    if any(start in encoded for start in _COLON_STRING_STARTS) or (
            compact is not text and any(start in compact for start in _COLON_STRING_STARTS_TEXT)):
        return _tokenised_keys(text) - _tokenised_keys(encoded.decode("utf-8"))
    return _colon_keys(compact) - _colon_keys(encoded)


# --- numbers and characters that jsonb cannot hold --------------------------------------------------------


def has_nul_escape(text: str) -> bool:
    return "\\u0000" in text and _NUL_ESCAPE.search(text) is not None


def without_nul_escapes(text: str) -> str:
    """The JSON text with every ``\\u0000`` escape removed (and nothing else changed)."""
    return _NUL_ESCAPE.sub(r"\1", text)


_UNICODE_ESCAPE = re.compile(r"(?<!\\)((?:\\\\)*)\\u([0-9a-fA-F]{4})")


def lone_surrogate_escape(text: str) -> bool:
    """Whether the JSON text escapes a lone surrogate (``\\ud800`` not followed by a low one): jsonb refuses it,
    even in a value that a repeated key replaces."""
    if "\\u" not in text:
        return False
    high_ends_at: int | None = None
    for match in _UNICODE_ESCAPE.finditer(text):
        code = int(match.group(2), 16)
        if high_ends_at is not None:
            if match.start(2) - 2 == high_ends_at and 0xDC00 <= code <= 0xDFFF:
                high_ends_at = None
                continue
            return True
        if 0xD800 <= code <= 0xDBFF:
            high_ends_at = match.end()
        elif 0xDC00 <= code <= 0xDFFF:
            return True
    return high_ends_at is not None


def has_lone_surrogate(text: str) -> bool:
    """Whether the text holds a lone surrogate character (not Unicode text; not an escape, see above)."""
    return not _encodable(text)


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


# --- bytes and text ---------------------------------------------------------------------------------------

_ESCAPED_BYTES = re.compile("[\udc00-\udcff]")


def _escape_bytes(error: UnicodeError) -> tuple[str, int]:
    """Decoding error handler: each byte the encoding cannot read becomes U+DC00 + byte, so nothing is lost
    while a document is walked; ``repaired`` decides later what each such byte was, release by release."""
    assert isinstance(error, UnicodeDecodeError)
    bad = error.object[error.start:error.end]
    return "".join(chr(0xDC00 + byte) for byte in bad), error.end


codecs.register_error("ocds-bytes", _escape_bytes)


def _escape_code_units(error: UnicodeError) -> tuple[str, int]:
    """Decoding error handler for UTF-16 and UTF-32, whose unreadable bytes (a lone surrogate, a unit cut short)
    are no windows-1252 text: each becomes U+DD00 + byte, a lone surrogate that ``repaired`` leaves alone, so
    the release holding it is refused as not Unicode and its raw text shows each byte (as ``\\uddXX``)."""
    assert isinstance(error, UnicodeDecodeError)
    return "".join(chr(0xDD00 + byte) for byte in error.object[error.start:error.end]), error.end


codecs.register_error("ocds-code-units", _escape_code_units)


def decoding_errors(encoding: str) -> str:
    """The error handler to decode a document in ``encoding`` with: nothing is lost, and only UTF-8's unreadable
    bytes (legacy 8-bit text) are read as windows-1252 later."""
    return "ocds-bytes" if encoding == "utf-8" else "ocds-code-units"


def _legacy_char(match: re.Match[str]) -> str:
    byte = ord(match.group()) - 0xDC00
    # windows-1252 covers ISO-8859-1's printable range and adds the curly quotes and euro sign legacy publishers
    # use; its five undefined bytes are taken as ISO-8859-1.
    return bytes([byte]).decode("windows-1252", "ignore") or chr(byte)


def text_of(raw: Any) -> str:
    """Bytes (or a buffer, or text) as text; bytes that are not UTF-8 are kept as U+DC00 + byte."""
    if isinstance(raw, str):
        return raw
    return str(raw, "utf-8", "ocds-bytes")


def repaired(text: str) -> tuple[str, bool]:
    """Text with each undecodable byte (U+DC00 + byte) read as windows-1252; and whether there was any.

    Only the bytes that were not valid in the document's encoding change: valid text around them is never
    re-decoded, so a file with one Latin-1 byte keeps every correct UTF-8 character elsewhere.
    """
    if _encodable(text) or _ESCAPED_BYTES.search(text) is None:
        return text, False
    return _ESCAPED_BYTES.sub(_legacy_char, text), True


def storable_text(text: str) -> str:
    """Text PostgreSQL can hold: NUL written as the escape ``\\u0000``, lone surrogates as ``\\udXXX``."""
    if "\x00" in text:
        text = text.replace("\x00", "\\u0000")
    if not _encodable(text):
        text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text


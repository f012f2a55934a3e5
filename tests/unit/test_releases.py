"""Unit tests for ingest.releases (release -> row or rejection) and the writer's pure page parameter."""

from __future__ import annotations

import copy
import hashlib
import io
import json
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ingest import jsontext
from ingest.documents import NO_PACKAGE, Compiled, Found, Package, read_stream
from ingest.jsontext import repaired, text_of
from ingest.releases import (
    CompiledRow,
    Rejection,
    ReleaseRow,
    compiled_to_row,
    is_usual_utc,
    newest_per_key,
    parse_date,
    to_row,
)
from ingest.store.writer import page_parameter, rejection_hash

PACKAGE = Package(uri="https://example.com/package.json", publisher_name="Publisher", version="1.1")
SOURCE = "example_source"

RELEASE: dict[str, Any] = {
    "ocid": "ocds-213czf-000-00001",
    "id": "ocds-213czf-000-00001-01-tender",
    "date": "2010-05-10T09:30:00Z",
    "tag": ["tender"],
    "initiationType": "tender",
    "buyer": {"id": "GB-LAC-E09000003", "name": "London Borough of Barnet"},
    "tender": {
        "id": "ocds-213czf-000-00001-01-tender",
        "title": "Repair of Rooftop Play Area",
        "status": "active",
        "procurementMethod": "open",
        "value": {"amount": 120000.5, "currency": "GBP"},
    },
}
# RELEASE as a publisher might send it: its own key order, whitespace and number text (120000.50).
RELEASE_TEXT = (
    '{ "ocid": "ocds-213czf-000-00001", "id": "ocds-213czf-000-00001-01-tender",\n'
    '  "date": "2010-05-10T09:30:00Z", "tag": ["tender"], "initiationType": "tender",\n'
    '  "buyer": {"id": "GB-LAC-E09000003", "name": "London Borough of Barnet"},\n'
    '  "tender": {"id": "ocds-213czf-000-00001-01-tender", "title": "Repair of Rooftop Play Area",\n'
    '             "status": "active", "procurementMethod": "open",\n'
    '             "value": {"amount": 120000.50, "currency": "GBP"}} }'
)


def expected_hash(data_text: str, package: Package, source: str) -> bytes:
    """The documented hash: sha256 of the stored (published) UTF-8 text, then each package field and the source,
    length-framed, with an absent field distinct from an empty one."""
    digest = hashlib.sha256(data_text.encode("utf-8"))
    for part in (package.uri, package.publisher_name, package.version, source):
        if part is None:
            digest.update(b"\x00")
        else:
            field = part.encode("utf-8")
            digest.update(b"\x01" + len(field).to_bytes(8, "big") + field)
    return digest.digest()


def text(release: Any) -> str:
    """A release as the text a publisher would send (tests build releases as Python values); a str is taken as
    that text already."""
    return release if isinstance(release, str) else json.dumps(release, ensure_ascii=False)


def row_of(release: Any, package: Package = PACKAGE, source: str = SOURCE, position: str = "/releases/0") -> ReleaseRow:
    result = to_row(Found(text(release), package, position), source)
    assert isinstance(result, ReleaseRow), result
    return result


def rejection_of(release: Any, position: str = "/releases/0") -> Rejection:
    result = to_row(Found(text(release), PACKAGE, position), SOURCE)
    assert isinstance(result, Rejection), result
    return result


def with_amount(amount: str) -> str:
    """RELEASE as published with its tender's amount written as ``amount`` (any JSON text) and currency EUR."""
    published = text(with_(tender={"value": {"amount": "AMOUNT", "currency": "EUR"}}))
    return published.replace('"AMOUNT"', amount)


def with_(**changes: Any) -> dict[str, Any]:
    release = copy.deepcopy(RELEASE)
    release.update(changes)
    return release


def without(key: str) -> dict[str, Any]:
    release = copy.deepcopy(RELEASE)
    del release[key]
    return release


# --- to_row: rows -------------------------------------------------------------------------------------------


def test_release_text_fixture_is_the_release() -> None:
    assert json.loads(RELEASE_TEXT) == RELEASE
    assert json.dumps(RELEASE) not in RELEASE_TEXT  # formatted differently from what json.dumps would write


def test_valid_release_becomes_a_row_with_exact_extracted_columns() -> None:
    # GIVEN a complete release in a package, as published
    # WHEN it becomes a row
    row = row_of(RELEASE_TEXT)
    # THEN every column is extracted exactly, the data is the published text and the hash covers it and the package
    assert row == ReleaseRow(
        ocid="ocds-213czf-000-00001",
        release_id="ocds-213czf-000-00001-01-tender",
        release_date=datetime(2010, 5, 10, 9, 30, tzinfo=UTC),
        date_text="2010-05-10T09:30:00Z",
        tag=["tender"],
        initiation_type="tender",
        buyer_id="GB-LAC-E09000003",
        buyer_name="London Borough of Barnet",
        tender_title="Repair of Rooftop Play Area",
        tender_status="active",
        procurement_method="open",
        value_amount="120000.50",
        value_currency="GBP",
        publisher_name="Publisher",
        package_uri="https://example.com/package.json",
        ocds_version="1.1",
        source=SOURCE,
        flags=[],
        content_hash=expected_hash(RELEASE_TEXT, PACKAGE, SOURCE),
        data=RELEASE_TEXT.encode(),
        position="/releases/0",
        published=None,
    )
    assert row.key == ("ocds-213czf-000-00001", "ocds-213czf-000-00001-01-tender")
    assert row.order == (datetime(2010, 5, 10, 9, 30, tzinfo=UTC), row.content_hash)


def test_release_without_optional_fields_has_null_columns_and_no_package() -> None:
    published = '{"ocid":"ocds-a", "id":"1",  "date":"2020-01-01T00:00:00Z"}'
    row = row_of(published, package=NO_PACKAGE)
    assert (row.tag, row.initiation_type, row.buyer_id, row.buyer_name, row.tender_title, row.tender_status,
            row.procurement_method, row.value_amount, row.value_currency, row.publisher_name, row.package_uri,
            row.ocds_version, row.flags) == (None,) * 12 + ([],)
    assert row.data_text == published


@pytest.mark.parametrize(("amount", "expected"), [
    ("10", "10"),
    ("0", "0"),
    ("-0.0", "-0.0"),
    ("120000.50", "120000.50"),
    ("100000000000000000000", "100000000000000000000"),
    ("12345678901234567890.123456789", "12345678901234567890.123456789"),
    ("0.1000000000000000055511151231257827", "0.1000000000000000055511151231257827"),
    ("0.30000000000000004", "0.30000000000000004"),
    ("1e16", "1e16"),
    ("1.50E+3", "1.50E+3"),  # as published: numeric reads 1500 from it, as from data's number
    ("1e-400", "1e-400"),
    ("1e9999", "1e9999"),  # beyond a double, within PostgreSQL's numeric: stored, not rejected
    ("9" * 5000, "9" * 5000),  # beyond Python's 4,300-digit int conversion limit
    ("true", None),
    ('"12"', None),
    ("null", None),
])
def test_value_amount_is_the_exact_json_number_text(amount: str, expected: str | None) -> None:
    # GIVEN a release whose amount is published as this JSON text
    published = with_amount(amount)
    # WHEN it becomes a row THEN the amount is exactly that number (never through a float) and the data unchanged
    row = row_of(published)
    assert (row.value_amount, row.value_currency) == (expected, "EUR")
    assert row.data_text == published


def test_number_and_non_string_columns_become_text_or_null() -> None:
    row = row_of(with_(buyer={"id": 123, "name": True}, initiationType=["tender"]))
    assert (row.buyer_id, row.buyer_name, row.initiation_type) == ("123", None, None)


@pytest.mark.parametrize("release_id", ["7", "7.5", "0", "-0", "1e3", "9007199254740993.0", "1" * 5000])
def test_number_id_keeps_its_published_text_with_flag_id_number(release_id: str) -> None:
    published = text(with_(id="ID")).replace('"ID"', release_id)
    row = row_of(published)
    assert (row.release_id, row.flags) == (release_id, ["id_number"])
    assert row.data_text == published  # the data itself is kept as published


def test_numeric_ids_that_differ_beyond_double_precision_are_different_releases() -> None:
    first = row_of(text(with_(id="ID")).replace('"ID"', "9007199254740993.0"))
    second = row_of(text(with_(id="ID")).replace('"ID"', "9007199254740992.0"))
    assert float(first.release_id) == float(second.release_id)  # the same double...
    assert first.key != second.key  # ...but two releases


def test_tag_string_becomes_a_one_element_list_with_flag_tag_string() -> None:
    row = row_of(with_(tag="x"))
    assert (row.tag, row.flags) == (["x"], ["tag_string"])


@pytest.mark.parametrize("tag", [["tender", 1], [1], [None], [["tender"]], {"x": 1}, 5, None])
def test_tag_that_is_not_strings_is_null(tag: Any) -> None:
    row = row_of(with_(tag=tag))
    assert (row.tag, row.flags) == (None, [])


def test_date_only_is_midnight_utc_with_flag_date_only() -> None:
    row = row_of(with_(date="2019-03-07"))
    assert (row.release_date, row.date_text, row.flags) == (datetime(2019, 3, 7, tzinfo=UTC), "2019-03-07",
                                                            ["date_only"])


def test_date_without_timezone_is_utc_with_flag_no_timezone() -> None:
    row = row_of(with_(date="2019-03-07T10:11:12"))
    assert (row.release_date, row.flags) == (datetime(2019, 3, 7, 10, 11, 12, tzinfo=UTC), ["no_timezone"])


def test_flags_accumulate_in_a_fixed_order() -> None:
    # GIVEN bytes with a windows-1252 byte, a repeated key, a NUL escape, a numeric id, a date-only date and a
    # string tag, in a package whose fields had to be escaped
    published = text(with_(id=3, date="2019-03-07", tag="planning", title="a\x00b caf\xe9"))
    data = published[:-1].encode("windows-1252") + b', "title": "again"}'
    row = to_row(Found(data, Package("u", "p\\u0000", "1.1", escaped=True), "/releases/0"), SOURCE)
    # THEN every flag is there, reading flags first, in this order
    assert isinstance(row, ReleaseRow), row
    assert row.flags == ["legacy_encoding", "duplicate_key", "nul_removed", "id_number", "date_only", "tag_string",
                         "package_escaped"]


def test_repeated_key_keeps_the_last_value_as_jsonb_does_with_flag_duplicate_key() -> None:
    published = '{"ocid": "ocds-a", "id": "1", "date": "2020-01-01T00:00:00Z", "id": "2", "tag": ["planning"]}'
    row = row_of(published)
    assert (row.release_id, row.flags, row.data_text) == ("2", ["duplicate_key"], published)


@pytest.mark.parametrize(("published", "flags"), [
    pytest.param('{"ocid": "a", "id": "1", "date": "2020-01-01T00:00:00Z", "note": ":x"}', [], id="colon-string"),
    pytest.param('{"ocid":"a","id":"1","date":"2020-01-01T00:00:00Z","note":"\\u003ax"}', [],
                 id="escaped-colon-string"),
    pytest.param('{"ocid": "a", "id": "1", "date": "2020-01-01T00:00:00Z", "note" : ":x"}', [],
                 id="colon-string-space-before-colon"),
    pytest.param('{"ocid":"a","id":"1","id":"2","date":"2020-01-01T00:00:00Z","note":"\\u003ax"}', ["duplicate_key"],
                 id="repeated-key-beside-escaped-colon-string"),
    pytest.param('{"ocid" : "a", "id" : "1", "date" : "2020-01-01T00:00:00Z", "id" : "2"}', ["duplicate_key"],
                 id="repeated-key-space-before-colon"),
    # Where the text is tokenised or counted without its whitespace, a string's own " :" is not a key's end
    pytest.param('{"ocid": "a", "id": "1", "date": "2020-01-01T00:00:00Z", "note": " :\\u003a"}', [],
                 id="space-colon-string-beside-escaped-colon"),
    pytest.param('{"ocid": "a", "id": "1", "date": "2020-01-01T00:00:00Z", "note": " :x\\u0000"}', ["nul_removed"],
                 id="space-colon-string-beside-nul"),
    pytest.param('{"ocid": "a", "id": "1", "date": "2020-01-01T00:00:00Z", "n": " :\\u003a", "n": 1}',
                 ["duplicate_key"], id="repeated-key-beside-space-colon-string"),
])
def test_duplicate_key_flag_is_exact_whatever_the_strings_hold(published: str, flags: list[str]) -> None:
    assert row_of(published).flags == flags


def test_same_key_in_two_objects_is_not_a_duplicate() -> None:
    row = row_of(with_(buyer={"id": "b", "name": "n"}, parties=[{"id": "p", "name": "n"}]))
    assert row.flags == []


# Keys and strings made of the characters that key counting could mistake (colons, quotes, backslashes, JSON
# punctuation), each written as itself, as its short escape or as a \\uXXXX escape in either case.
_TRICKY = st.lists(st.sampled_from(list(':"\\ ,{}[]a')), max_size=4).map("".join)
_SPACE = st.sampled_from(["", " ", "\n", "\t ", "\r\n"])


@st.composite
def _written(draw: st.DrawFn, value: str) -> str:
    out = []
    for char in value:
        how = draw(st.sampled_from(["plain", "short", "lower", "upper"]))
        if how == "lower" or (how != "upper" and char in '"\\' and how == "plain"):
            out.append(f"\\u{ord(char):04x}")
        elif how == "upper":
            out.append(f"\\u{ord(char):04X}")
        elif char in '"\\':
            out.append("\\" + char)
        else:
            out.append(char)
    return '"' + "".join(out) + '"'


@st.composite
def _json_text(draw: st.DrawFn, depth: int = 0) -> str:
    kind = draw(st.sampled_from(["string", "number", "object", "array"] if depth < 3 else ["string", "number"]))
    if kind == "string":
        return draw(_written(draw(_TRICKY)))
    if kind == "number":
        return draw(st.sampled_from(["0", "-1.50", "1e5", "12345678901234567890.123456789"]))
    if kind == "array":
        items = draw(st.lists(_json_text(depth + 1), max_size=3))
        return "[" + draw(_SPACE) + ",".join(items) + draw(_SPACE) + "]"
    keys = draw(st.lists(st.sampled_from(["", ":", "a", 'a"', "\\:", ":a:", " "]), max_size=4))
    members = [draw(_SPACE) + draw(_written(key)) + draw(_SPACE) + ":" + draw(_SPACE) + draw(_json_text(depth + 1))
               for key in keys]
    return "{" + ",".join(members) + draw(_SPACE) + "}"


def _repeats_a_key(published: str) -> bool:
    repeated = False

    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        nonlocal repeated
        repeated = repeated or len({key for key, _ in items}) < len(items)
        return dict(items)

    json.loads(published, object_pairs_hook=pairs)
    return repeated


@settings(max_examples=400, deadline=None, database=None)
@given(_json_text(), st.sampled_from(['{"ocid": "a", "id": "1", "date": "2020-01-01T00:00:00Z", "x": ',
                                      '{"ocid":"a","id":"1","date":"2020-01-01T00:00:00Z","x":']))
def test_duplicate_key_flag_is_exact_for_any_keys_strings_escapes_and_spacing(value: str, start: str) -> None:
    # GIVEN a release holding any value whose keys and strings are made of what key counting could mistake (the
    # compact start lets some texts be their value's own encoding, which one comparison settles)
    published = start + value + "}"
    # THEN it is flagged duplicate_key exactly when an object in it repeats a key (as the parser sees keys)
    assert ("duplicate_key" in row_of(published).flags) == _repeats_a_key(published)


# Compact JSON with no escape at all (the usual release), objects often repeating a key.
_PLAIN_JSON = st.recursive(
    st.sampled_from(["1", "-0.5", '"x"', '""', "null"]),
    lambda children: st.one_of(
        st.lists(children, max_size=3).map(lambda items: "[" + ",".join(items) + "]"),
        st.lists(st.tuples(st.sampled_from(["", "a", "b"]), children), max_size=4).map(
            lambda pairs: "{" + ",".join(f'"{key}":{item}' for key, item in pairs) + "}")),
    max_leaves=8)


@settings(max_examples=400, deadline=None, database=None)
@given(st.one_of(_json_text(), _PLAIN_JSON),
       st.sampled_from(['{"ocid": "a", "id": "1", "date": "2020-01-01T00:00:00Z", "x": ',
                        '{"ocid":"a","id":"1","date":"2020-01-01T00:00:00Z","x":']))
def test_a_release_read_from_its_bytes_gives_the_row_its_text_gives(value: str, start: str) -> None:
    # GIVEN a release holding any value: keys, strings, escapes and spacing as above, or compact with no escape
    published = start + value + "}"
    # WHEN it is read from its bytes (a page's usual path, settled by one comparison where it can be) and from its text
    from_bytes, from_text = (to_row(Found(raw, PACKAGE, "/releases/0"), SOURCE)
                             for raw in (published.encode(), published))
    # THEN both give the same row: flags, stored text and hash
    assert from_bytes == from_text

@settings(max_examples=300, deadline=None, database=None)
@given(st.from_regex(r"-?(0|[1-9][0-9]{0,40})(\.[0-9]{1,40})?([eE][-+]?[0-9]{1,6})?", fullmatch=True))
def test_any_number_is_read_exactly_with_its_published_digits(number: str) -> None:
    # GIVEN an amount of any size, precision and exponent
    result = to_row(Found(with_amount(number), PACKAGE, "/releases/0"), SOURCE)
    exact = Decimal(number)
    sign, digits, exponent = exact.as_tuple()
    assert isinstance(exponent, int)
    if (any(digits) and len(digits) + exponent > 131072) or -exponent > 16383:
        # THEN one beyond PostgreSQL's numeric is rejected (a zero has no digit before the point to go beyond)
        assert isinstance(result, Rejection) and result.reason == "number_out_of_range"
    else:
        # THEN any other keeps its value and digits (an integer as int): the column, and the parsed release
        # that compiling merges
        assert isinstance(result, ReleaseRow), result
        integer = number.lstrip("-").isdigit()
        expected = int(number) if integer else exact
        amount = result.value["tender"]["value"]["amount"]
        assert (type(amount), str(amount)) == (type(expected), str(expected))
        # the column: an integer's digits, any other number as published (its digits and exponent, so numeric
        # reads the value and scale it reads in data)
        assert result.value_amount == (str(expected) if integer else number)


def test_bytes_invalid_in_utf_8_are_read_as_windows_1252_with_flag_legacy_encoding() -> None:
    # GIVEN a release whose bytes are UTF-8 except one windows-1252 byte (and a curly quote)
    data = text(with_(title="Café ")).encode("utf-8")[:-1] + b', "note": "\x93caf\xe9\x94"}'
    # WHEN it becomes a row
    row = to_row(Found(data, PACKAGE, "/releases/0"), SOURCE)
    # THEN only those bytes are re-read: the valid UTF-8 "Café " stays as it was
    assert isinstance(row, ReleaseRow), row
    assert row.flags == ["legacy_encoding"]
    assert row.data_text == text(with_(title="Café "))[:-1] + ', "note": "“café”"}'


@settings(max_examples=300, deadline=None, database=None)
@given(st.binary(max_size=12), st.sampled_from([b"", b"caf\xc3\xa9 ", b"\xf0\x9f\x98\xbc"]))
def test_bytes_are_stored_as_published_exactly_when_they_are_utf_8(noise: bytes, valid: bytes) -> None:
    # GIVEN a release whose note holds any bytes (no quote, backslash or control byte: those would end or break the
    # string), in the middle of valid UTF-8
    noise = bytes(byte for byte in noise if byte >= 0x20 and byte not in b'"\\')
    data = b'{"ocid": "ocds-1", "id": "1", "date": "2020-01-01T00:00:00Z", "note": "' + valid + noise + b'"}'
    # WHEN it becomes a row
    row = to_row(Found(data, PACKAGE, "/releases/0"), SOURCE)
    assert isinstance(row, ReleaseRow), row
    try:
        published = data.decode("utf-8")
    except UnicodeDecodeError:
        published = None
    # THEN UTF-8 is stored as it is, and only bytes that are not are read as windows-1252, with a flag
    if published is not None:
        assert (row.data, row.flags) == (data, [])
    else:
        assert (row.data_text, row.flags) == (repaired(text_of(data))[0], ["legacy_encoding"])
    assert row.content_hash == expected_hash(row.data_text, PACKAGE, SOURCE)


# --- to_row: rejections ---------------------------------------------------------------------------------


REJECTED: list[tuple[Any, str, str, str | None, str | None]] = [
    (without("ocid"), "missing_ocid", "the release has no ocid (a non-empty string is required)", None,
     "ocds-213czf-000-00001-01-tender"),
    (with_(ocid=""), "missing_ocid", 'ocid must be a non-empty string, not ""', "",
     "ocds-213czf-000-00001-01-tender"),
    (with_(ocid="   "), "missing_ocid", 'ocid must be a non-empty string, not "   "', "   ",
     "ocds-213czf-000-00001-01-tender"),
    (with_(ocid=42), "missing_ocid", "ocid must be a non-empty string, not 42", None,
     "ocds-213czf-000-00001-01-tender"),
    (with_(ocid=None), "missing_ocid", "the release has no ocid (a non-empty string is required)", None,
     "ocds-213czf-000-00001-01-tender"),
    (without("id"), "missing_id", "the release has no id (a string is required)", "ocds-213czf-000-00001", None),
    (with_(id=True), "missing_id", "id must be a string or a number", "ocds-213czf-000-00001", None),
    (with_(id=""), "missing_id", "id must be a string or a number", "ocds-213czf-000-00001", ""),
    (with_(id={"x": 1}), "missing_id", "id must be a string or a number", "ocds-213czf-000-00001", None),
    (without("date"), "missing_date", "the release has no date", "ocds-213czf-000-00001",
     "ocds-213czf-000-00001-01-tender"),
    (with_(date=20200101), "missing_date", "date must be a string", "ocds-213czf-000-00001",
     "ocds-213czf-000-00001-01-tender"),
    (with_(date="2014-..-.."), "invalid_date", "date '2014-..-..' is not an ISO 8601 date-time",
     "ocds-213czf-000-00001", "ocds-213czf-000-00001-01-tender"),
    (with_(date="2019-02-30T00:00:00Z"), "invalid_date",
     "date '2019-02-30T00:00:00Z' is not a real date-time: day is out of range for month",
     "ocds-213czf-000-00001", "ocds-213czf-000-00001-01-tender"),
    (with_(date="2019-01-01T00:00:00+25:00"), "invalid_date",
     "date '2019-01-01T00:00:00+25:00' has an impossible UTC offset",
     "ocds-213czf-000-00001", "ocds-213czf-000-00001-01-tender"),
    # Published with the escape \\ud800 (ASCII), as a JSON encoder writes a lone surrogate.
    (json.dumps(with_(x="\ud800")), "invalid_unicode",
     "a string holds a lone surrogate, which is not Unicode text (PostgreSQL cannot store it)",
     "ocds-213czf-000-00001", "ocds-213czf-000-00001-01-tender"),
]
REJECTED_IDS = ["no-ocid", "empty-ocid", "blank-ocid", "number-ocid", "null-ocid", "no-id", "boolean-id", "empty-id",
                "object-id", "no-date", "number-date", "dotted-date", "february-30", "offset-25h", "lone-surrogate"]


@pytest.mark.parametrize(("release", "reason", "detail", "ocid", "release_id"), REJECTED, ids=REJECTED_IDS)
def test_release_that_cannot_be_a_row_is_rejected_with_reason_detail_and_raw_text(
        release: Any, reason: str, detail: str, ocid: str | None, release_id: str | None) -> None:
    rejection = rejection_of(release)
    assert (rejection.reason, rejection.detail, rejection.raw_text, rejection.position) == (
        reason, detail, text(release), "/releases/0")


@pytest.mark.parametrize(("release", "reason", "detail", "ocid", "release_id"), [
    pytest.param(*case, id=name)
    for case, name in zip(REJECTED, REJECTED_IDS, strict=True)
])
def test_rejection_records_the_ocid_and_id_the_release_holds(
        release: Any, reason: str, detail: str, ocid: str | None, release_id: str | None) -> None:
    rejection = rejection_of(release)
    assert (rejection.reason, rejection.ocid, rejection.release_id) == (reason, ocid, release_id)


@pytest.mark.parametrize(("published", "kind"), [("true", "boolean"), ("[1, 2]", "array"), ('"text"', "string"),
                                                 ("null", "null"), ("3.5", "number"), ("35", "number")])
def test_non_object_release_is_rejected_as_not_an_object(published: str, kind: str) -> None:
    assert rejection_of(published, "/releases/3") == Rejection(
        "not_an_object", f"a release must be a JSON object, not a JSON {kind}", published, "/releases/3")


@pytest.mark.parametrize("number", ["Infinity", "-Infinity", "NaN"])
def test_non_finite_number_is_rejected_as_non_finite_number_with_its_published_text(number: str) -> None:
    published = with_amount(number)
    rejection = rejection_of(published)
    assert (rejection.reason, rejection.detail, rejection.raw_text) == (
        "non_finite_number", f"{number} is not a JSON number (PostgreSQL jsonb cannot store NaN or Infinity)",
        published)


def test_non_finite_number_rejection_records_the_ocid_and_id() -> None:
    rejection = rejection_of(with_amount("NaN"))
    assert (rejection.reason, rejection.ocid, rejection.release_id) == (
        "non_finite_number", "ocds-213czf-000-00001", "ocds-213czf-000-00001-01-tender")


@pytest.mark.parametrize(("number", "shown"), [("1e131073", "1e131073"), ("1e-16384", "1e-16384"),
                                               ("9" * 131073, "9" * 40), ("0." + "5" * 16384, "0." + "5" * 38),
                                               ("-" + "9" * 131073 + ".5", "-" + "9" * 39)])
def test_number_beyond_postgresql_numeric_is_rejected_as_number_out_of_range(number: str, shown: str) -> None:
    published = with_amount(number)
    rejection = rejection_of(published)
    assert (rejection.reason, rejection.detail, rejection.raw_text) == (
        "number_out_of_range", f"the number {shown} is beyond what PostgreSQL's numeric holds", published)


@pytest.mark.parametrize("number", ["1e1000000000000000000", "-1E+999999999999999999999", "0e1073741823",
                                    "0e-16384", "0.000e-16381", "1.000e-16381", "0.001e131075"])
def test_any_exponent_beyond_postgresql_numeric_is_a_rejection_not_an_error(number: str) -> None:
    # An exponent of 10**18 or more is beyond what Decimal holds at all (it raised out of to_row); a zero's
    # exponent counts too, and trailing zeros are digits after the point (PostgreSQL 15 refuses each of these).
    assert rejection_of(with_amount(number)).reason == "number_out_of_range"
    assert jsontext.value_of(number) is None


@pytest.mark.parametrize("number", ["1e131071", "1e-16383", "9" * 131072, "0e200000", "-0.0E+131073",
                                    "0e1073741822", "1.000e-16380", "0.001e131074", "-0." + "5" * 16383,
                                    "9" * 131072 + "." + "9" * 16383])
def test_number_at_the_edge_of_postgresql_numeric_is_stored(number: str) -> None:
    row = row_of(with_amount(number))
    assert row.flags == []
    assert Decimal(row.value_amount).as_tuple() == Decimal(number).as_tuple()  # digits and exponent: numeric's scale


_NUMBER_TEXT = st.one_of(
    st.from_regex(r"-?(0|[1-9][0-9]{0,8})(\.[0-9]{1,8})?([eE][-+]?[0-9]{1,11})?", fullmatch=True),
    # long ones, around the length where numeric's limits begin, with and without an exponent
    st.builds(lambda head, digits, tail: head + digits + tail, st.sampled_from(["0.", "-0.", "1", "-9"]),
              st.integers(16370, 16390).map(lambda count: "7" * count),
              st.sampled_from(["", ".5", "e1", "e-1", "E+3"])))


@settings(max_examples=300, deadline=None, database=None)
@given(_NUMBER_TEXT)
def test_a_number_read_as_published_is_its_text_refused_exactly_where_the_exact_reading_refuses_it(
        number: str) -> None:
    # GIVEN any number text, short or long, with or without an exponent
    def read(decode: Any) -> Any:
        try:
            return decode(f"[{number}]")[0]
        except jsontext.PARSE_ERRORS:
            return None
    exact, published = read(jsontext.decode), read(jsontext.decode_published)
    # THEN read as published (a release read for storing) it is refused exactly where the exact reading refuses
    # it (beyond PostgreSQL's numeric), else it is its own text, whose value is the exact reading's
    assert (published is None) == (exact is None)
    if exact is not None:
        assert jsontext.number_value(published) == exact
        if isinstance(exact, Decimal):
            assert str(published, "ascii") == number
        assert jsontext.column_text(published) == jsontext.column_text(exact)


def test_rejection_keeps_the_exact_raw_text_the_walk_cut_out() -> None:
    # GIVEN a streamed document: its Found carries the release's exact text
    text = '{"releases":[ {"ocid" : "ocds-a",  "id":"1", "note":"\\u00e9\\u0000"} ]}'
    [found] = list(read_stream(io.BufferedReader(io.BytesIO(text.encode()))).items())
    assert isinstance(found, Found)
    # WHEN it is rejected (no date)
    rejection = to_row(found, SOURCE)
    # THEN the rejection holds that text byte for byte
    assert rejection == Rejection("missing_date", "the release has no date",
                                  '{"ocid" : "ocds-a",  "id":"1", "note":"\\u00e9\\u0000"}', "/releases/0",
                                  ocid="ocds-a", release_id="1")


# --- NUL characters ---------------------------------------------------------------------------------------


def test_nul_characters_in_strings_and_keys_are_removed_with_flag_nul_removed() -> None:
    # GIVEN a release with NUL characters (\u0000 in the JSON) in values, keys and tag (not in ocid or id)
    release = with_(tag=["ten\x00der"], title="a\x00b", **{"k\x00ey": ["\x00"]})
    published = text(release)
    # WHEN it becomes a row
    row = row_of(release)
    # THEN the escapes, and nothing else, are gone from the data; the flag says so; the published text is kept
    assert row.flags == ["nul_removed"]
    assert row.tag == ["tender"]
    assert row.data_text == published.replace("\\u0000", "")
    assert json.loads(row.data_text) == {**RELEASE, "tag": ["tender"], "title": "ab", "key": [""]}
    assert row.published == published
    assert row.content_hash == expected_hash(row.data_text, PACKAGE, SOURCE)


def test_escaped_backslash_before_u0000_is_text_not_a_nul() -> None:
    # GIVEN the six characters \u0000 as text (published as \\u0000): not a NUL
    published = text(with_(title="C:\\u0000"))
    assert "\\\\u0000" in published
    row = row_of(published)
    assert (row.flags, row.data_text, row.published) == ([], published, None)


@pytest.mark.parametrize(("ocid", "release_id"), [("\x00", "1"), ("ocds-\x00a", "1"), ("ocds-a", "1\x00"),
                                                  ("ocds-a\x00", "\x00")])
def test_nul_in_ocid_or_id_is_rejected_as_nul_in_identifier(ocid: str, release_id: str) -> None:
    # Removing it could empty the ocid or merge "X\u0000" with "X": two releases would become one.
    published = text(with_(ocid=ocid, id=release_id))
    rejection = rejection_of(published)
    assert (rejection.reason, rejection.raw_text) == ("nul_in_identifier", published)
    assert rejection.detail == ("the ocid or id holds a NUL character; PostgreSQL cannot store it and removing it "
                                "could merge this release with another")


def test_nul_removal_that_would_merge_two_keys_is_rejected_as_nul_key_collision() -> None:
    published = text(with_(tender={"k\x00": 1, "k": 2}))
    rejection = rejection_of(published)
    assert (rejection.reason, rejection.raw_text) == ("nul_key_collision", published)
    assert (rejection.ocid, rejection.release_id) == ("ocds-213czf-000-00001", "ocds-213czf-000-00001-01-tender")


@pytest.mark.parametrize(("published", "stored"), [
    # a repeated key drops a value whose string starts with a colon once the NUL is gone: no key merges
    ('{"a":"\\u0000:","a":1}', '{"a":":","a":1}'),
    ('{"a":["x","\\u0000:"],"a":1}', '{"a":["x",":"],"a":1}'),
    ('{"a":{"b\\u0000":1,"b":"\\u0000:"},"a":1}', '{"a":{"b":1,"b":":"},"a":1}'),  # only in what jsonb drops
])
def test_nul_removal_in_a_value_a_repeated_key_drops_stores_the_release(published: str, stored: str) -> None:
    base = '"ocid":"o","id":"1","date":"2020-01-01T00:00:00Z",'
    row = row_of("{" + base + published[1:])
    assert (row.flags, row.data_text) == (["duplicate_key", "nul_removed"], "{" + base + stored[1:])


@pytest.mark.parametrize("published", [
    # a dropped value holding a colon-initial string hid a real merge of two live keys from the counts
    '{"a":":","a":1,"k":"\\u0000:","b":1,"b\\u0000":2}',
    '{"a":":","a":1,"b:\\u0000":1,"b:":2}',
    '{"x":{"a":"\\u0000:","a":1},"b":1,"b\\u0000":2}',
])
def test_nul_removal_that_merges_live_keys_is_refused_whatever_else_repeats(published: str) -> None:
    base = '"ocid":"o","id":"1","date":"2020-01-01T00:00:00Z",'
    assert rejection_of("{" + base + published[1:]).reason == "nul_key_collision"


def _live_merge(text: str) -> tuple[bool, bool]:
    """Oracle (standard library): (whether the text repeats a key in any object, whether removing its NULs
    merges two keys of an object jsonb keeps). ``text`` has no escaped backslash before a \\u0000."""
    def walk(value: Any, live: bool, found: list[bool]) -> None:
        if isinstance(value, _Pairs):
            keys = [key for key, _ in value]
            found[0] |= len(set(keys)) < len(keys)
            kept = {key: item for key, item in value}  # jsonb keeps the last of a repeated key
            stripped = [key.replace("\x00", "") for key in kept]
            found[1] |= live and len(set(stripped)) < len(stripped)
            for key, item in value:
                walk(item, live and kept[key] is item, found)
        elif isinstance(value, list):
            for item in value:
                walk(item, live, found)
    found = [False, False]
    walk(json.loads(text, object_pairs_hook=_Pairs), True, found)
    return found[0], found[1]


class _Pairs(list):  # type: ignore[type-arg]
    pass


@settings(max_examples=400, deadline=None, database=None)
@given(st.recursive(
    st.sampled_from(["1", '":"', '"\\u0000:"', '"x"', '"\\u0000"']),
    lambda children: st.one_of(
        st.lists(children, max_size=3).map(lambda items: "[" + ",".join(items) + "]"),
        st.lists(st.tuples(st.sampled_from(["a", "a\\u0000", "b:", "b:\\u0000", ":", "\\u0000:"]), children),
                 max_size=4).map(lambda pairs: "{" + ",".join(f'"{key}":{item}' for key, item in pairs) + "}")),
    max_leaves=8))
def test_nul_key_collision_and_duplicate_key_agree_with_the_standard_library(value: str) -> None:
    # GIVEN a release holding any nesting of keys and strings that NUL removal can merge or make colon-initial
    published = '{"ocid":"o","id":"1","date":"2020-01-01T00:00:00Z","x":' + value + "}"
    repeats, merges = _live_merge(published)
    # WHEN it is read THEN it is refused exactly when a kept object's keys merge, else flagged exactly when a
    # key repeats
    result = to_row(Found(published, PACKAGE, "/releases/0"), SOURCE)
    if merges:
        assert isinstance(result, Rejection) and result.reason == "nul_key_collision"
    else:
        assert isinstance(result, ReleaseRow)
        assert ("duplicate_key" in result.flags) == repeats
        assert result.data_text == published.replace("\\u0000", "")


def test_rejection_raw_text_never_contains_a_nul_character() -> None:
    # GIVEN a release with NULs that is rejected (no date)
    release = {"ocid": "ocds-a", "id": "1", "note": "a\x00b", "k\x00": 1}
    # WHEN it is rejected
    rejection = rejection_of(release)
    # THEN its raw text holds the JSON escape, never the character
    assert rejection.reason == "missing_date"
    assert "\x00" not in rejection.raw_text
    assert rejection.raw_text == '{"ocid": "ocds-a", "id": "1", "note": "a\\u0000b", "k\\u0000": 1}'


def test_rejection_ocid_and_release_id_hold_a_nul_as_its_escape() -> None:
    # GIVEN a release whose ocid and id hold NUL characters
    rejection = rejection_of({"ocid": "ocds-\x00a", "id": "1\x00"})
    # THEN its rejection names them with the escape written out (a text column cannot hold NUL), never removed
    assert rejection.reason == "nul_in_identifier"
    assert (rejection.ocid, rejection.release_id) == ("ocds-\\u0000a", "1\\u0000")


def test_rejection_built_with_nul_and_lone_surrogate_holds_their_escapes() -> None:
    rejection = Rejection("missing_date", "d\x00", "r\x00\ud800", "/p\x00", ocid="a\x00", release_id="\udc80")
    assert (rejection.detail, rejection.raw_text, rejection.position, rejection.ocid, rejection.release_id) == (
        "d\\u0000", "r\\u0000\\ud800", "/p\\u0000", "a\\u0000", "\\udc80")


def test_invalid_unicode_rejection_raw_text_is_valid_unicode_text() -> None:
    rejection = rejection_of(with_(title="bad \ud800 text"))
    assert rejection.reason == "invalid_unicode"
    assert rejection.raw_text.encode("utf-8").decode("utf-8") == rejection.raw_text


# --- parse_date -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "moment", "flags"), [
    ("2019-11-25T17:20:38.1197059Z", datetime(2019, 11, 25, 17, 20, 38, 119706, tzinfo=UTC), []),
    ("2019-11-25T17:20:38.1197055Z", datetime(2019, 11, 25, 17, 20, 38, 119706, tzinfo=UTC), []),
    ("2019-11-25T17:20:38.1197054Z", datetime(2019, 11, 25, 17, 20, 38, 119705, tzinfo=UTC), []),
    ("2019-11-25T17:20:38.9999996Z", datetime(2019, 11, 25, 17, 20, 39, tzinfo=UTC), []),
    ("2019-12-31T23:59:59.9999995Z", datetime(2020, 1, 1, tzinfo=UTC), []),
    ("2019-11-25T17:20:38.12Z", datetime(2019, 11, 25, 17, 20, 38, 120000, tzinfo=UTC), []),
    ("2019-11-25T17:20:38,5Z", datetime(2019, 11, 25, 17, 20, 38, 500000, tzinfo=UTC), []),
    ("2020-01-01T00:00:00+04:00", datetime(2019, 12, 31, 20, 0, tzinfo=UTC), []),
    ("2020-01-01T00:00:00-0600", datetime(2020, 1, 1, 6, 0, tzinfo=UTC), []),
    ("2020-01-01T00:00:00+05", datetime(2019, 12, 31, 19, 0, tzinfo=UTC), []),
    ("2020-01-01T00:00:00+05:30", datetime(2019, 12, 31, 18, 30, tzinfo=UTC), []),
    ("2017-06-05T00:00:00-06:00", datetime(2017, 6, 5, 6, 0, tzinfo=UTC), []),
    ("2020-01-01T10:00:00z", datetime(2020, 1, 1, 10, 0, tzinfo=UTC), []),
    ("2020-01-01t10:00:00Z", datetime(2020, 1, 1, 10, 0, tzinfo=UTC), []),
    ("2020-01-01 10:00:00Z", datetime(2020, 1, 1, 10, 0, tzinfo=UTC), []),
    (" 2020-01-01T10:00:00Z\n", datetime(2020, 1, 1, 10, 0, tzinfo=UTC), []),
    ("2020-01-01T10:00", datetime(2020, 1, 1, 10, 0, tzinfo=UTC), ["no_timezone"]),
    ("2020-01-01T10:00:00.5", datetime(2020, 1, 1, 10, 0, 0, 500000, tzinfo=UTC), ["no_timezone"]),
    ("2020-02-29", datetime(2020, 2, 29, tzinfo=UTC), ["date_only"]),
])
def test_parse_date_returns_the_exact_utc_instant_and_flags(text: str, moment: datetime, flags: list[str]) -> None:
    parsed, parsed_flags = parse_date(text)
    assert (parsed, parsed_flags) == (moment, flags)
    assert parsed.utcoffset() is not None and parsed.utcoffset().total_seconds() == 0  # type: ignore[union-attr]


@settings(max_examples=400, deadline=None, database=None)
@given(st.dictionaries(st.integers(0, 19), st.sampled_from(list("07-T:Z tz+.\u0663\u00e9")), max_size=2),
       st.sampled_from(["", "Z", "-1"]), st.booleans())
def test_the_usual_date_form_is_exactly_its_punctuation_in_ascii(changes: dict[int, str], more: str,
                                                                 shorter: bool) -> None:
    # GIVEN 2020-01-01T00:00:00Z with one or two of its characters changed, maybe longer or shorter
    text = "".join(changes.get(index, char) for index, char in enumerate("2020-01-01T00:00:00Z"))
    text = (text[:-1] if shorter else text) + more
    # THEN it has the usual form (sent to PostgreSQL as published) exactly when it is DDDD-DD-DDTDD:DD:DDZ in
    # ASCII, whatever stands for the digits (fromisoformat checks those)
    usual = len(text) == 20 and text.isascii() and all(text[index] == char for index, char in enumerate(
        "2020-01-01T00:00:00Z") if not char.isdigit())
    assert is_usual_utc(text) == usual


@settings(max_examples=300, deadline=None, database=None)
@given(st.lists(st.sampled_from(list("0123456789") * 3 + ["\u0663", " ", "+", "_", "W"]), min_size=14, max_size=14))
def test_parse_date_of_the_usual_form_is_the_instant_its_fields_say(chars: list[str]) -> None:
    # GIVEN a text shaped like 2020-01-01T00:00:00Z whose digits may be anything (a real date or not)
    digits = iter(chars)
    text = "".join(next(digits) if c == "D" else c for c in "DDDD-DD-DDTDD:DD:DDZ")
    fields = [text[0:4], text[5:7], text[8:10], text[11:13], text[14:16], text[17:19]]
    try:
        assert all(field.isdecimal() for field in fields)
        expected: datetime | None = datetime(*map(int, fields), tzinfo=UTC)  # type: ignore[misc]
    except (AssertionError, ValueError):
        expected = None
    # THEN it is that instant in UTC with no flag, or refused if that is not a real date-time
    if expected is None:
        with pytest.raises(ValueError):
            parse_date(text)
    else:
        assert parse_date(text)[0] == expected and not parse_date(text)[1]


@pytest.mark.parametrize(("text", "message"), [
    ("2020-01-01T00:00:00+25:00", "date '2020-01-01T00:00:00+25:00' has an impossible UTC offset"),
    ("2020-01-01T00:00:00+04:60", "date '2020-01-01T00:00:00+04:60' has an impossible UTC offset"),
    ("2019-02-30T00:00:00Z", "date '2019-02-30T00:00:00Z' is not a real date-time: day is out of range for month"),
    ("2020-01-01T24:00:00Z", "date '2020-01-01T24:00:00Z' is not a real date-time: hour must be in 0..23"),
    ("2014-..-..", "date '2014-..-..' is not an ISO 8601 date-time"),
    ("2020-1-1", "date '2020-1-1' is not an ISO 8601 date-time"),
    ("", "date '' is not an ISO 8601 date-time"),
    ("2020-01-01T00:00:00 UTC", "date '2020-01-01T00:00:00 UTC' is not an ISO 8601 date-time"),
])
def test_parse_date_rejects_what_is_not_a_real_iso_date_time(text: str, message: str) -> None:
    with pytest.raises(ValueError) as raised:
        parse_date(text)
    assert str(raised.value) == message


@pytest.mark.parametrize("text", [
    pytest.param("9999-12-31T23:59:59.9999999Z", id="fraction-rounds-past-year-9999"),
    pytest.param("9999-12-31T23:00:00-01:00", id="negative-offset-past-year-9999"),
    pytest.param("0001-01-01T00:00:00+01:00", id="positive-offset-before-year-1"),
])
def test_date_outside_the_datetime_range_is_rejected_as_invalid_date(text: str) -> None:
    rejection = rejection_of(with_(date=text))
    assert rejection.reason == "invalid_date"


# --- the content hash -------------------------------------------------------------------------------------


def test_same_release_from_another_position_has_the_same_data_text_and_hash() -> None:
    original, other = row_of(RELEASE_TEXT), row_of(RELEASE_TEXT, position="/releases/7")
    assert (other.data_text, other.content_hash) == (original.data_text, original.content_hash)


@pytest.mark.parametrize("variant", ["reordered", "compact"])
def test_same_release_published_in_another_key_order_or_spacing_is_stored_as_published_with_another_hash(
        variant: str) -> None:
    # GIVEN the release with its keys (top level and nested) in reverse order, or without the whitespace
    reordered = {key: RELEASE[key] for key in reversed(RELEASE)}
    reordered["tender"] = {key: RELEASE["tender"][key] for key in reversed(RELEASE["tender"])}
    assert list(reordered) != list(RELEASE)
    published = json.dumps(reordered) if variant == "reordered" else json.dumps(RELEASE, separators=(",", ":"))
    # WHEN both become rows
    original, other = row_of(RELEASE_TEXT), row_of(published)
    # THEN each keeps the text it was published as, and the hash (over that text) differs
    assert json.loads(published) == json.loads(RELEASE_TEXT)
    assert (original.data_text, other.data_text) == (RELEASE_TEXT, published)
    assert other.content_hash == expected_hash(published, PACKAGE, SOURCE) != original.content_hash


def test_any_change_of_value_package_or_source_changes_the_hash() -> None:
    # GIVEN variants that each differ from the original in one input
    changed_title = copy.deepcopy(RELEASE)
    changed_title["tender"]["title"] = "Repair of Rooftop Play Area."
    rows = {
        "original": row_of(RELEASE),
        "value": row_of(changed_title),
        "amount type": row_of(with_(tender={**RELEASE["tender"], "value": {"amount": 120000, "currency": "GBP"}})),
        "amount text": row_of(text(RELEASE).replace("120000.5", "120000.50")),  # the same number, written otherwise
        "package uri": row_of(RELEASE, package=Package("https://example.com/other.json", "Publisher", "1.1")),
        "publisher": row_of(RELEASE, package=Package("https://example.com/package.json", "Other", "1.1")),
        "version": row_of(RELEASE, package=Package("https://example.com/package.json", "Publisher", "1.0")),
        "source": row_of(RELEASE, source="other_source"),
    }
    # THEN every hash differs from every other
    hashes = {name: row.content_hash for name, row in rows.items()}
    assert len(set(hashes.values())) == len(hashes), hashes


@pytest.mark.parametrize(("first", "second"), [
    pytest.param(Package("u", "p", None), Package("u", "p", ""), id="missing-vs-empty-version"),
    pytest.param(Package("a\x1fb", "c", "1.1"), Package("a", "b\x1fc", "1.1"), id="separator-inside-a-field"),
])
def test_rows_with_different_package_columns_have_different_hashes(first: Package, second: Package) -> None:
    a, b = row_of(RELEASE, package=first), row_of(RELEASE, package=second)
    assert (a.package_uri, a.publisher_name, a.ocds_version) != (b.package_uri, b.publisher_name, b.ocds_version)
    assert a.content_hash != b.content_hash


def test_each_row_hashes_its_own_package_and_source_whatever_was_hashed_before() -> None:
    # GIVEN two packages and two sources in turns (a page's releases share a package, so the hash keeps the last
    # package's part)
    other = Package("https://example.com/other.json", "Other", "1.0")
    for package, source in [(PACKAGE, SOURCE), (PACKAGE, "other_source"), (other, "other_source"), (PACKAGE, SOURCE),
                            (other, SOURCE), (Package(PACKAGE.uri, PACKAGE.publisher_name, "1.0"), SOURCE)]:
        # WHEN a release is read with each
        row = row_of(RELEASE, package=package, source=source)
        # THEN its hash is its own package's and source's
        assert row.content_hash == expected_hash(row.data_text, package, source), (package, source)

# --- newest_per_key ---------------------------------------------------------------------------------------


def _release(ocid: str, release_id: str, date: str, note: str = "") -> dict[str, Any]:
    return {"ocid": ocid, "id": release_id, "date": date, "note": note}


OLD = row_of(_release("ocds-b", "9", "2020-01-01T00:00:00Z"))
NEW = row_of(_release("ocds-b", "9", "2020-06-01T00:00:00Z"))
NEW_TWIN = row_of(_release("ocds-b", "9", "2020-06-01T00:00:00+00:00", note="same instant, other content"))
SINGLE = row_of(_release("ocds-b", "10", "2019-01-01T00:00:00Z"))
SAME_FROM_A = row_of(_release("ocds-a", "1", "2021-01-01T00:00:00Z"), source="source_a")
SAME_FROM_B = row_of(_release("ocds-a", "1", "2021-01-01T00:00:00Z"), source="source_b")
EXACT_COPY = row_of(_release("ocds-a", "1", "2021-01-01T00:00:00Z"), source="source_a")
BATCH = [OLD, NEW, NEW_TWIN, SINGLE, SAME_FROM_A, SAME_FROM_B, EXACT_COPY]


def _greater_hash(first: ReleaseRow, second: ReleaseRow) -> ReleaseRow:
    assert first.release_date == second.release_date and first.content_hash != second.content_hash
    return first if first.content_hash > second.content_hash else second


def test_newest_per_key_batch_has_the_ties_it_claims() -> None:
    assert NEW.release_date == NEW_TWIN.release_date and NEW.content_hash != NEW_TWIN.content_hash
    assert SAME_FROM_A.data_text == SAME_FROM_B.data_text and SAME_FROM_A.content_hash != SAME_FROM_B.content_hash
    assert EXACT_COPY == SAME_FROM_A


@settings(max_examples=150, deadline=None, database=None)
@given(st.permutations(BATCH))
def test_newest_per_key_keeps_the_greatest_date_then_hash_whatever_the_input_order(batch: list[ReleaseRow]) -> None:
    # WHEN duplicates inside one batch are resolved, in any input order
    survivors, duplicates = newest_per_key(batch)
    # THEN per key the newest date wins, a tie goes to the greater hash, output is sorted by (ocid, id)
    assert survivors == [_greater_hash(SAME_FROM_A, SAME_FROM_B), SINGLE, _greater_hash(NEW, NEW_TWIN)]
    assert [row.key for row in survivors] == [("ocds-a", "1"), ("ocds-b", "10"), ("ocds-b", "9")]
    assert duplicates == 4


def test_newest_per_key_of_an_empty_batch_is_empty() -> None:
    assert newest_per_key([]) == ([], 0)


# --- compiled_to_row --------------------------------------------------------------------------------------


def test_compiled_release_becomes_a_compiled_row_with_its_published_text() -> None:
    published = '{"ocid": "ocds-a", "id": "ocds-a-compiled", "date": "2020-01-01T01:00:00+01:00", "tag": ["compiled"]}'
    row = compiled_to_row(Compiled("ocds-a", published, PACKAGE, "/records/0/compiledRelease"), SOURCE)
    assert row == CompiledRow("ocds-a", datetime(2020, 1, 1, tzinfo=UTC), SOURCE, "https://example.com/package.json",
                              expected_hash(published, PACKAGE, SOURCE), published)


def test_compiled_release_with_an_unparseable_date_has_no_date() -> None:
    row = compiled_to_row(Compiled("ocds-a", b'{"date": "soon"}', NO_PACKAGE, "/compiledRelease"), SOURCE)
    assert row == CompiledRow("ocds-a", None, SOURCE, None, expected_hash('{"date": "soon"}', NO_PACKAGE, SOURCE),
                              '{"date": "soon"}')


def test_compiled_release_without_ocid_is_rejected_with_its_published_text() -> None:
    result = compiled_to_row(Compiled(None, '{ "id" : "x" }', PACKAGE, "/records/2/compiledRelease"), SOURCE)
    assert result == Rejection("missing_ocid", "the record and its compiledRelease have no ocid", '{ "id" : "x" }',
                               "/records/2/compiledRelease")


def test_compiled_release_with_bad_date_and_lone_surrogate_is_rejected_not_raised() -> None:
    published = '{"ocid": "ocds-a", "date": "not a date", "title": "\\ud800"}'
    result = compiled_to_row(Compiled("ocds-a", published, NO_PACKAGE, "/compiledRelease"), SOURCE)
    assert result == Rejection("invalid_unicode", "a string holds a lone surrogate, which is not Unicode text "
                               "(PostgreSQL cannot store it)", published, "/compiledRelease", ocid="ocds-a")


# --- page_parameter ---------------------------------------------------------------------------------------

HOSTILE = [
    pytest.param('say "hello" and \'bye\'', id="quotes"),
    pytest.param("'); DROP TABLE releases; --", id="sql-injection"),
    pytest.param("C:\\path\\to\\file \\\\ \\u0041 \\", id="backslashes"),
    pytest.param("tab\there\nnewline\r\nend", id="tabs-newlines"),
    pytest.param("\\N", id="copy-null-marker"),
    pytest.param("astral 😼𝒞人 line\u2028separator bom\ufeff del\x7f ctl\x01\x1f", id="unicode"),
    pytest.param("null", id="json-keyword"),
    pytest.param('{"j": [1, 2]}', id="json-text"),
    pytest.param("x" * 10_000, id="10000-chars"),
]


@pytest.mark.parametrize("text", HOSTILE)
def test_page_parameter_carries_hostile_strings_back_exactly(text: str) -> None:
    # GIVEN a release whose every text field (and one key) is the hostile string
    release = {
        "ocid": text, "id": text, "date": "2020-01-01T00:00:00Z", "tag": [text, "tender"], "initiationType": text,
        "buyer": {"id": text, "name": text},
        "tender": {"title": text, "status": text, "procurementMethod": text,
                   "value": {"amount": 1234567890123.45, "currency": text}},
        text: text,
    }
    row = row_of(release, package=Package(text, text, text), source=text)
    # WHEN it goes into the page parameter
    param = page_parameter([row], [], [], text, "context")
    # THEN the parameter is valid JSON that gives back exactly the row's values
    page = json.loads(param, parse_float=Decimal)
    assert page == {"r": [page["r"][0]], "x": [], "c": []}
    assert page["r"][0] == {
        "o": text, "i": text, "d": "2020-01-01T00:00:00+00:00", "dt": "2020-01-01T00:00:00Z", "t": [text, "tender"],
        "it": text, "bi": text, "bn": text, "tt": text, "ts": text, "pm": text, "a": Decimal("1234567890123.45"),
        "c": text, "pn": text, "pu": text, "v": text, "s": text, "f": [], "h": row.content_hash.hex(),
        "j": json.loads(row.data_text, parse_float=Decimal),
    }
    assert json.loads(param)["r"][0]["j"] == release


def test_page_parameter_of_rows_with_flags_nulls_and_offsets() -> None:
    row = row_of({"ocid": "ocds-a", "id": 5, "date": " 2020-01-01T05:30:00+05:30 ", "tag": "award"},
                 package=NO_PACKAGE)
    record = json.loads(page_parameter([row], [], [], SOURCE, ""))["r"][0]
    assert record == {
        "o": "ocds-a", "i": "5", "d": "2020-01-01T00:00:00+00:00", "dt": " 2020-01-01T05:30:00+05:30 ",
        "t": ["award"], "it": None, "bi": None, "bn": None, "tt": None, "ts": None, "pm": None, "a": None,
        "c": None, "pn": None, "pu": None, "v": None, "s": SOURCE, "f": ["id_number", "tag_string"],
        "h": row.content_hash.hex(), "j": {"ocid": "ocds-a", "id": 5, "date": " 2020-01-01T05:30:00+05:30 ",
                                           "tag": "award"},
    }


def test_page_parameter_holds_no_nul_escape_for_a_release_that_had_nuls() -> None:
    row = row_of(with_(title="a\x00b", **{"k\x00": "\x00"}))
    param = page_parameter([row], [], [], SOURCE, "context")
    assert "\\u0000" not in param
    assert json.loads(param)["r"][0]["j"] == json.loads(row.data_text)


@pytest.mark.parametrize("text", HOSTILE)
def test_page_parameter_carries_hostile_rejections_and_compiled_releases_back_exactly(text: str) -> None:
    rejection = Rejection("missing_date", text, text, text, ocid=text, release_id=None)
    published = json.dumps({"ocid": text, text: [text]}, ensure_ascii=False)
    compiled = compiled_to_row(Compiled(text, published, Package(text, None, None), text), text)
    assert isinstance(compiled, CompiledRow)
    page = json.loads(page_parameter([], [rejection], [compiled], text, text))
    assert compiled.data_text == published
    assert page == {
        "r": [],
        "x": [{"s": text, "cx": text, "p": text, "r": "missing_date", "dt": text, "o": text, "i": None,
               "h": rejection_hash(rejection, text, text).hex(), "x": text}],
        "c": [{"o": text, "d": None, "s": text, "pu": text, "h": compiled.content_hash.hex(),
               "j": {"ocid": text, text: [text]}}],
    }


def test_page_parameter_of_an_empty_page() -> None:
    assert page_parameter([], [], [], SOURCE, "") == '{"r":[],"x":[],"c":[]}'

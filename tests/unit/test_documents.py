"""Unit tests for ingest.documents: bytes -> text -> OCDS shape -> items (pure; no database, no network)."""

from __future__ import annotations

import codecs
import io
import json
import tracemalloc
from collections.abc import Callable, Iterator
from decimal import Decimal
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ingest import documents, jsontext, messages
from ingest.documents import (
    NO_PACKAGE,
    Compiled,
    Document,
    DocumentStats,
    Found,
    Item,
    Package,
    Unreadable,
    decode,
    detect_encoding,
    read_bytes,
    read_stream,
    read_text,
    read_value,
)
from ingest.pages import prepare_page
from ingest.releases import Rejection, ReleaseRow, to_row
from tests.conftest import samples_dir

PACKAGE = Package(uri="https://example.com/package.json", publisher_name="Publisher", version="1.1")
PACKAGE_META: dict[str, Any] = {
    "uri": "https://example.com/package.json",
    "publisher": {"name": "Publisher"},
    "publishedDate": "2020-01-01T00:00:00Z",
    "version": "1.1",
}
R1: dict[str, Any] = {"ocid": "ocds-a", "id": "1", "date": "2020-01-01T00:00:00Z", "tag": ["tender"]}
R2: dict[str, Any] = {"ocid": "ocds-b", "id": "2", "date": "2020-02-01T00:00:00Z", "tag": ["award"]}
R3: dict[str, Any] = {"ocid": "ocds-c", "id": "3", "date": "2020-03-01T00:00:00Z", "tag": ["contract"]}
FIRST = json.dumps(R1)
LAST = json.dumps(R3)


# --- helpers ----------------------------------------------------------------------------------------------


def items_of(text: str) -> list[Item]:
    return list(read_text(text).items())


def stream_document(data: bytes) -> Document:
    return read_stream(io.BufferedReader(io.BytesIO(data)))


def summary(items: list[Item]) -> list[tuple[str, str, Any]]:
    """(type, position, value) per item, the value parsed exactly; an Unreadable is summarised by its reason."""
    return [
        (type(item).__name__, item.position, item.reason if isinstance(item, Unreadable) else item.value)
        for item in items
    ]


def view(item: Item) -> tuple[Any, ...]:
    """An item as plain values: a Found or Compiled shows the exact text it carries (as published)."""
    if isinstance(item, Found):
        return ("Found", jsontext.text_of(item.raw), item.package, item.position)
    if isinstance(item, Compiled):
        return ("Compiled", item.ocid, jsontext.text_of(item.raw), item.package, item.position)
    return ("Unreadable", item.reason, item.detail, item.raw, item.position)


def views(items: Any) -> list[tuple[Any, ...]]:
    return [view(item) for item in items]


def read_in_memory(text: str) -> list[Item]:
    return list(read_bytes(text.encode("utf-8")).items())


def read_streamed(text: str) -> list[Item]:
    return list(stream_document(text.encode("utf-8")).items())


READERS: list[Callable[[str], list[Item]]] = [read_in_memory, read_streamed]
READER_IDS = ["in-memory", "streamed"]


def package_text(*releases: str) -> str:
    """A package with PACKAGE_META first, then the releases' texts exactly as given."""
    head = json.dumps(PACKAGE_META)[:-1]
    return head + ', "releases": [' + ",".join(releases) + "]}"


# --- shapes -----------------------------------------------------------------------------------------------


def test_release_package_yields_every_release_with_the_package_fields() -> None:
    # GIVEN a release package of two releases
    data = json.dumps({**PACKAGE_META, "releases": [R1, R2]}).encode()
    # WHEN it is read
    document = read_bytes(data)
    items = list(document.items())
    # THEN each release is a Found carrying its exact text and the package fields, in order
    assert views(items) == [("Found", json.dumps(R1), PACKAGE, "/releases/0"),
                            ("Found", json.dumps(R2), PACKAGE, "/releases/1")]
    assert [item.value for item in items] == [R1, R2]  # type: ignore[union-attr]
    assert document.stats == DocumentStats(encoding="utf-8", values=1, empty_packages=0)


@pytest.mark.parametrize("reader", READERS, ids=READER_IDS)
def test_found_carries_the_release_text_exactly_as_published(reader: Callable[[str], list[Item]]) -> None:
    # GIVEN releases with whitespace, key order, number texts, escapes and a repeated key that a parser would change
    first = '{ "ocid" : "ocds-a",\n  "id": "1", "amount": 1.10, "big": 12345678901234567890.123456789,\n  "e": 1E400 }'
    second = '{"id":"2","ocid":"ocds-\\u00e9", "note": "caf\u00e9 \\ud83d\\ude3c", "id": "2b", "n": -0.0e-0}'
    # WHEN it is read
    items = reader(package_text(first, second))
    # THEN each Found carries its text character for character
    assert views(items) == [("Found", first, PACKAGE, "/releases/0"), ("Found", second, PACKAGE, "/releases/1")]


def test_record_package_yields_embedded_and_linked_releases_and_compiled_releases() -> None:
    # GIVEN a record package: record 0 has an embedded and a linked release, record 1 only linked releases
    linked = {"url": "https://example.com/r.json", "date": "2020-01-01T00:00:00Z", "tag": ["tender"]}
    compiled_a = {"ocid": "ocds-a", "id": "ocds-a-compiled", "date": "2020-01-01T00:00:00Z", "tag": ["compiled"]}
    compiled_b = {"id": "ocds-b-compiled", "tag": ["compiled"]}  # no ocid of its own: the record's is used
    data = json.dumps({**PACKAGE_META, "records": [
        {"ocid": "ocds-a", "releases": [R1, linked], "compiledRelease": compiled_a},
        {"ocid": "ocds-b", "releases": [linked, linked], "compiledRelease": compiled_b},
    ]}).encode()
    # WHEN it is read
    document = read_bytes(data)
    items = list(document.items())
    # THEN every release is a Found (to_row tells a linked one, a reference, from data), and compiled releases
    # carry the record's ocid
    assert views(items) == [
        ("Found", json.dumps(R1), PACKAGE, "/records/0/releases/0"),
        ("Found", json.dumps(linked), PACKAGE, "/records/0/releases/1"),
        ("Compiled", "ocds-a", json.dumps(compiled_a), PACKAGE, "/records/0/compiledRelease"),
        ("Found", json.dumps(linked), PACKAGE, "/records/1/releases/0"),
        ("Found", json.dumps(linked), PACKAGE, "/records/1/releases/1"),
        ("Compiled", "ocds-b", json.dumps(compiled_b), PACKAGE, "/records/1/compiledRelease"),
    ]
    rows = [to_row(item, "test") for item in items if isinstance(item, Found)]
    assert isinstance(rows[0], ReleaseRow) and rows[1:] == [None, None, None]


def test_real_record_package_with_linked_releases_yields_only_the_compiled_releases() -> None:
    # GIVEN the CDMX record package whose records hold linked releases only
    data = (samples_dir() / "ocdskit-realdata" / "record-package_linked-releases.json").read_bytes()
    document = read_bytes(data)
    # WHEN it is read
    items = list(document.items())
    # THEN two compiled releases come out with their records' ocids, and the 4 linked releases are only references
    compiled = [(item.position, item.ocid) for item in items if isinstance(item, Compiled)]
    assert compiled == [("/records/0/compiledRelease", "OCDS-87SD3T-AD-SF-DRM-063-2015"),
                        ("/records/1/compiledRelease", "OCDS-87SD3T-AD-SF-DRM-065-2015")]
    linked = [item for item in items if isinstance(item, Found)]
    assert len(linked) == 4 and len(items) == 6
    assert [to_row(item, "test") for item in linked] == [None] * 4


def test_bare_release_is_one_found_at_the_root() -> None:
    assert views(items_of(json.dumps(R1))) == [("Found", json.dumps(R1), NO_PACKAGE, "/")]


@pytest.mark.parametrize("reader", [
    pytest.param(read_in_memory, id="in-memory"),
    pytest.param(read_streamed, id="streamed"),
])
def test_bare_value_text_excludes_the_whitespace_around_it(reader: Callable[[str], list[Item]]) -> None:
    release = json.dumps(R1)
    assert views(reader(" \n " + release + "\n")) == [("Found", release, NO_PACKAGE, "/")]
    assert views(reader('\t{"releases": {} }\n')) == [
        ("Unreadable", "invalid_package", "'releases' is a JSON object, not an array", '{"releases": {} }', "/")]


def test_bare_record_yields_its_releases_then_its_compiled_release() -> None:
    compiled = {"id": "compiled", "tag": ["compiled"]}
    text = json.dumps({"ocid": "ocds-a", "releases": [R1, R2], "compiledRelease": compiled})
    assert views(items_of(text)) == [
        ("Found", json.dumps(R1), NO_PACKAGE, "/releases/0"),
        ("Found", json.dumps(R2), NO_PACKAGE, "/releases/1"),
        ("Compiled", "ocds-a", json.dumps(compiled), NO_PACKAGE, "/compiledRelease"),
    ]


def test_json_array_of_releases_yields_each_release_at_its_index() -> None:
    assert views(items_of(json.dumps([R1, R2]))) == [("Found", json.dumps(R1), NO_PACKAGE, "/0"),
                                                     ("Found", json.dumps(R2), NO_PACKAGE, "/1")]


def test_json_array_of_packages_keeps_each_package_fields() -> None:
    other_meta = {"uri": "https://example.com/other.json", "publisher": {"name": "Other"}, "version": "1.0"}
    text = json.dumps([{**PACKAGE_META, "releases": [R1]}, {**other_meta, "releases": [R2]}])
    assert views(items_of(text)) == [
        ("Found", json.dumps(R1), PACKAGE, "/0/releases/0"),
        ("Found", json.dumps(R2), Package("https://example.com/other.json", "Other", "1.0"), "/1/releases/0"),
    ]


def test_portugal_api_page_array_of_one_package_yields_100_releases_with_the_package_fields() -> None:
    # GIVEN Portugal's real API page: a JSON array wrapping one release package of 100 releases
    data = (samples_dir() / "api-pages" / "portugal-base-gov-pt_links-next_offset-1.json").read_bytes()
    # WHEN it is read
    items = list(read_bytes(data).items())
    # THEN 100 Found come out, all carrying the package's uri, publisher name and version
    assert [type(item) for item in items] == [Found] * 100
    assert [item.position for item in items] == [f"/0/releases/{index}" for index in range(100)]
    assert {item.package for item in items if isinstance(item, Found)} == {
        Package(uri="http://www.base.gov.pt/api/Release/GetReleases?offset=1", publisher_name="IMPIC", version="1.1")
    }
    assert items[0].value["ocid"] == "ocds-px0z7d-5052-5001-1"  # type: ignore[union-attr]
    assert items[99].value["ocid"] == "ocds-px0z7d-14021-14007-1"  # type: ignore[union-attr]


def test_concatenated_json_yields_each_value_with_its_value_index() -> None:
    document = read_text(json.dumps(R1) + json.dumps(R2) + " " + json.dumps({**PACKAGE_META, "releases": [R3]}))
    assert views(document.items()) == [
        ("Found", json.dumps(R1), NO_PACKAGE, "/"),
        ("Found", json.dumps(R2), NO_PACKAGE, "@1"),
        ("Found", json.dumps(R3), PACKAGE, "@2/releases/0"),
    ]
    assert document.stats.values == 3


def test_json_lines_yield_one_item_per_line() -> None:
    text = "\n".join(json.dumps(release) for release in (R1, R2, R3)) + "\n"
    assert views(items_of(text)) == [("Found", json.dumps(R1), NO_PACKAGE, "/"),
                                     ("Found", json.dumps(R2), NO_PACKAGE, "@1"),
                                     ("Found", json.dumps(R3), NO_PACKAGE, "@2")]


@pytest.mark.parametrize("reader", READERS, ids=READER_IDS)
def test_json_lines_with_a_broken_line_lose_only_that_line(reader: Callable[[str], list[Item]]) -> None:
    # GIVEN JSON lines whose middle line is not JSON
    text = FIRST + "\n{bad\n" + LAST + "\n"
    # WHEN it is read THEN the lines around it survive and the broken line alone is rejected, as published
    assert views(reader(text)) == [
        ("Found", FIRST, NO_PACKAGE, "/"),
        ("Unreadable", "invalid_json", f"expected an object key at character {len(FIRST) + 2}; the walk resumed at "
         "the next line", "{bad\n", "@1"),
        ("Found", LAST, NO_PACKAGE, "@2"),
    ]


@pytest.mark.parametrize("reader", READERS, ids=READER_IDS)
def test_a_broken_first_value_resumes_only_after_a_line_that_ends_a_value(reader: Callable[[str], list[Item]]) -> None:
    # GIVEN JSON lines whose first line is broken, and a release broken where a member's object starts a line
    lines = '{"ocid":"a",,"id":"1"}\n' + LAST
    nested = '{"ocid":"a","id":"1","date":"2020-01-01T00:00:00Z","parties":\n{"ocid":"c","id":"3"}'
    # WHEN each is read THEN the lines resume after the broken one, and the nested object is never taken for a
    # release of its own: the broken release is rejected whole
    assert [view[:2] + view[3:] for view in views(reader(lines))] == [
        ("Unreadable", "invalid_json", '{"ocid":"a",,"id":"1"}\n', "/"), ("Found", LAST, "@1")]
    assert [(view[0], view[-2]) for view in views(reader(nested))] == [("Unreadable", nested)]


def test_package_without_releases_is_counted_as_empty_and_yields_nothing() -> None:
    document = read_text(json.dumps(PACKAGE_META))
    assert list(document.items()) == []
    assert document.stats.empty_packages == 1


@pytest.mark.parametrize("releases", ["null", "[]"])
def test_package_whose_releases_are_null_or_empty_yields_nothing(releases: str) -> None:
    # GIVEN a package whose releases member is null (taken as absent) or an empty array
    document = read_bytes(('{"uri": "u", "releases": ' + releases + "}").encode())
    # THEN nothing is read; null counts as an empty package, as a missing member does
    assert list(document.items()) == []
    assert document.stats.empty_packages == (1 if releases == "null" else 0)


def test_real_empty_package_is_counted_as_empty() -> None:
    document = read_bytes((samples_dir() / "api-pages" / "opentender-eu_empty-package-no-releases.json").read_bytes())
    assert list(document.items()) == []
    assert document.stats == DocumentStats(encoding="utf-8", values=1, empty_packages=1)


@pytest.mark.parametrize("data", [b"", b" \r\n\t "], ids=["empty", "whitespace"])
def test_empty_document_yields_nothing(data: bytes) -> None:
    document = read_bytes(data)
    assert list(document.items()) == []
    assert document.stats == DocumentStats(encoding="utf-8", values=0, empty_packages=0)


@pytest.mark.parametrize(("text", "kind"), [("42", "number"), ('"text"', "string"), ("null", "null"),
                                            ("true", "boolean")])
def test_top_level_scalar_is_unreadable_not_ocds(text: str, kind: str) -> None:
    assert items_of(text) == [
        Unreadable("not_ocds", f"a JSON {kind} is not an OCDS package, record or release", text, "/")
    ]


def test_releases_that_is_not_an_array_is_unreadable_invalid_package_with_its_published_text() -> None:
    assert items_of('{"releases" :{} }') == [
        Unreadable("invalid_package", "'releases' is a JSON object, not an array", '{"releases" :{} }', "/")
    ]


def test_non_object_release_is_found_and_then_rejected_by_to_row() -> None:
    # GIVEN a releases array holding `true`
    items = items_of('{"releases":[true]}')
    # THEN it is handed over as a Found...
    assert views(items) == [("Found", "true", NO_PACKAGE, "/releases/0")]
    # ...and to_row rejects it
    assert to_row(items[0], "test") == Rejection("not_an_object", "a release must be a JSON object, not a JSON boolean",
                                                 "true", "/releases/0")


def test_read_value_reads_already_parsed_python_values_exactly() -> None:
    # GIVEN parsed values, one with an exact Decimal and an integer beyond a double
    exact = {**R2, "amount": Decimal("0.1000000000000000055511151231257827"), "big": 2**70}
    # WHEN they are read THEN each release is its compact JSON text, numbers written with their exact digits
    items = list(read_value([R1, {"releases": [exact]}]))
    assert views(items) == [
        ("Found", json.dumps(R1, separators=(",", ":")), NO_PACKAGE, "/0"),
        ("Found", json.dumps(R2, separators=(",", ":"))[:-1] + ',"amount":0.1000000000000000055511151231257827,'
         f'"big":{2**70}}}', NO_PACKAGE, "/1/releases/0"),
    ]
    assert items[1].value == exact  # type: ignore[union-attr]


@pytest.mark.parametrize("unstorable", ["Q\ud800", "\udce9", float("nan"), float("inf"), float("-inf")])
def test_a_parsed_value_json_cannot_hold_refuses_its_release_only_and_the_others_stay_exact(unstorable: Any) -> None:
    # GIVEN parsed releases: one exact (a Decimal beyond a double, non-ASCII text, a null), and one holding what
    # JSON cannot (a lone surrogate, in a value and in a key; a NaN or an infinity, which msgspec writes as null)
    exact = {"ocid": "ocds-a", "id": "1", "date": "2020-01-01T00:00:00Z", "name": "Caf\u00e9", "none": None,
             "amount": Decimal("12345678901234567890.123456789")}
    bad = {"ocid": "ocds-b", "id": "1", "date": "2020-01-01T00:00:00Z", "x": [unstorable], "k": {"y": None}}
    if isinstance(unstorable, str):
        bad["k"] = {unstorable: 1}
    # WHEN the page is read
    prepared = prepare_page({"releases": [exact, bad]}, "s")
    # THEN the exact one is stored exactly as it was given, and the other is refused, its raw text showing what it held
    assert [row.data_text for row in prepared.rows] == [
        '{"ocid":"ocds-a","id":"1","date":"2020-01-01T00:00:00Z","name":"Caf\u00e9","none":null,'
        '"amount":12345678901234567890.123456789}']
    [rejection] = prepared.rejections
    shown = json.dumps(unstorable)
    assert rejection.reason == ("invalid_unicode" if isinstance(unstorable, str) else "non_finite_number")
    assert rejection.raw_text == ('{"ocid":"ocds-b","id":"1","date":"2020-01-01T00:00:00Z","x":[' + shown + "],"
                                  + ('"k":{' + shown + ":1}}" if isinstance(unstorable, str) else '"k":{"y":null}}'))


_A = '{"ocid":"a","id":"1","date":"2020-01-01T00:00:00Z"}'
_C = '{"ocid":"o","id":"c","date":"2020-01-01T00:00:00Z"}'


@pytest.mark.parametrize(("document", "rows", "rejected", "compiled"), [
    # a broken element of an array is rejected alone, whole: never the elements before it again
    ("[" + _A + ',{"ocid":"b","id":"2","date":"2020-01-01T00:00:00Z"x}]', ["/0"],
     [("/1", '{"ocid":"b","id":"2","date":"2020-01-01T00:00:00Z"x}')], []),
    ('[{"releases":[' + _A + ']},{"uri":"u" "x"}]', ["/0/releases/0"], [("/1", '{"uri":"u" "x"}')], []),
    # an element that cannot be delimited (cut, or an unclosed string) breaks the rest, never what came before
    ("[" + _A, ["/0"], [("/", "")], []),
    ("[" + _A + ',{"ocid":"c"', ["/0"], [("/", ',{"ocid":"c"')], []),
    ("[" + _A + ',{"ocid":"c",extra":"x"}]', ["/0"], [("/", ',{"ocid":"c",extra":"x"}]')], []),
    # a bad token holding brackets ends where they begin, so the element it breaks is rejected whole
    ('[{"ocid":"a","id":"1","tag":x[{"k":1}],"date":"2020-01-01T00:00:00Z"}]', [],
     [("/0", '{"ocid":"a","id":"1","tag":x[{"k":1}],"date":"2020-01-01T00:00:00Z"}')], []),
    ('{"uri":"u","records":[{"ocid":"o","releases":x[' + _A + '],"compiledRelease":' + _C + "}]}", [],
     [("/records/0", '{"ocid":"o","releases":x[' + _A + '],"compiledRelease":' + _C + "}")], []),
    # a member that fails before the streamed array is rejected, as one after it is
    ('{"records":[{"ocid":"a","compiledRelease":{"x":NaN},"releases":[' + _A + "]}]}", ["/records/0/releases/0"],
     [("/records/0/compiledRelease", '{"x":NaN}')], []),
    # a document cut where a value should begin: the cut is recorded, and what was read whole is kept
    ('{"ocid":"o","compiledRelease":' + _C + ',"releases":[', [], [("/", "")], ["/compiledRelease"]),
    ('{"uri":"u","releases":[', [], [("/", "")], []),
    ('{"uri":"u","releases":[' + _A + "],", ["/releases/0"], [("/", "")], []),
])
def test_a_broken_document_accounts_for_each_part_once(document: str, rows: list[str],
                                                        rejected: list[tuple[str, str]], compiled: list[str]) -> None:
    # WHEN a broken document is read, whole and streamed
    for items in (read_bytes(document.encode()).items(), read_stream(io.BytesIO(document.encode())).items()):
        found = list(items)
        # THEN each release is found once, each broken part is rejected once, and nothing else is reported
        assert [item.position for item in found if isinstance(item, Found)] == rows
        assert [(item.position, item.raw) for item in found if isinstance(item, Unreadable)] == rejected
        assert [item.position for item in found if isinstance(item, Compiled)] == compiled


_B = '{"ocid":"b","id":"1","date":"2020-01-01T00:00:00Z"}'
_LONE = '{"ocid":"z","id":"9","date":"2020-01-01T00:00:00Z","x":"\\ud800"}'  # msgspec refuses it: walked


@pytest.mark.parametrize("document", [
    '{"releases":[' + _A + '],"releases":[' + _B + "]}",
    '{"uri":"u","releases":[' + _A + '],"releases":[' + _B + "," + _LONE + "]}",
    '[{"releases":[' + _A + '],"uri":"u","releases":[' + _B + "]}]",
    '{"records":[{"ocid":"a","releases":[' + _A + ']}],"records":[{"ocid":"b","releases":[' + _B + "]}]}",
    '{"records":[{"ocid":"a","releases":[' + _A + '],"releases":[' + _B + "]}]}",
])
def test_a_repeated_releases_or_records_member_loses_no_release(document: str) -> None:
    # GIVEN a package or record that repeats the member holding its releases (msgspec keeps only the last)
    # WHEN it is read, as a document and as a message's page
    inline = messages.parse(messages.inline_raw("s", document), None, 10**6)
    for page in (document.encode(), inline.page):  # type: ignore[union-attr]
        prepared = prepare_page(page, "s")
        # THEN the releases of every copy of the member are read
        assert sorted(row.ocid for row in prepared.rows) == ["a", "b"]




def test_a_records_member_repeated_with_null_last_beside_releases_loses_no_compiled_release() -> None:
    # GIVEN a package with releases and a records member given twice, the last copy null
    record = '{"ocid":"b","compiledRelease":{"ocid":"b","id":"x","date":"2020-01-01T00:00:00Z"}}'
    document = '{"releases":[' + _A + '],"records":[' + record + '],"records":null}'
    # WHEN it is read, as a document, as a message's page and streamed
    inline = messages.parse(messages.inline_raw("s", document), None, 10**6)
    for page in (document.encode(), inline.page, read_stream(io.BytesIO(document.encode()))):  # type: ignore[union-attr]
        prepared = prepare_page(page, "s")
        # THEN the release and the record's compiled release are both read
        assert ([row.ocid for row in prepared.rows], [row.ocid for row in prepared.compiled]) == (["a"], ["b"])


@st.composite
def _package_repeating_releases(draw: st.DrawFn) -> tuple[str, set[str]]:
    """A package, a record package's record, a bare record or an element of a top-level array whose 'releases'
    member may come several times (an array, or null or another value), among other members, spaced any way;
    and the ocids of every release in every copy."""
    space = st.sampled_from(["", " ", "\n  ", "\t"])
    ocids: set[str] = set()
    members = []
    for copy in range(draw(st.integers(1, 3))):
        other = draw(st.sampled_from([None, None, None, "null", "5", "{}"]))
        if other is not None:
            members.append('"releases":' + draw(space) + other)
            continue
        count = draw(st.integers(0, 3))
        # A copy may begin with the same release as another (an ocid of the first copy, "0-0")
        names = [f"{copy}-{index}" if index or not draw(st.booleans()) else "0-0" for index in range(count)]
        ocids.update(names)
        releases = [f'{{"ocid":"{name}","id":"1","date":"2020-01-01T00:00:00Z","x":"\u00e9 releases"}}'
                    for name in names]
        members.append('"releases"' + draw(space) + ":" + draw(space) + "[" + draw(space)
                       + ("," + draw(space)).join(releases) + draw(space) + "]")
        if draw(st.booleans()):
            members.append('"uri":"releases"')  # the member's name as a string elsewhere
    shape = draw(st.sampled_from(["package", "record", "bare record", "array element"]))
    members.insert(draw(st.integers(0, len(members))), '"version":"1.1"' if shape == "package" else '"ocid":"r"')
    value = "{" + ("," + draw(space)).join(members) + draw(space) + "}"
    if shape == "record":
        return '{"version":"1.1","records":[' + value + "]}", ocids
    return ("[" + value + "]" if shape == "array element" else value), ocids


@settings(max_examples=400, deadline=None, database=None)
@given(_package_repeating_releases())
def test_a_releases_member_repeated_anywhere_loses_no_release(package: tuple[str, set[str]]) -> None:
    # GIVEN a package or a record repeating its 'releases' member anywhere (its last copy maybe null or not an
    # array), spaced any way, copies maybe alike at the start
    document, ocids = package
    # WHEN it is read, as a document, as a message's page and streamed
    inline = messages.parse(messages.inline_raw("s", document), None, 10**6)
    for page in (document.encode(), inline.page, read_stream(io.BytesIO(document.encode()))):  # type: ignore[union-attr]
        # THEN the releases of every copy of the member are read
        assert {row.ocid for row in prepare_page(page, "s").rows} == ocids

def test_object_members_after_a_member_followed_by_more_values() -> None:
    # A harvested page's links before the break stay as they were; an envelope's page takes the rest of the body.
    text = '{"links":{"next":"u"} {"x":1},"page":2}'
    assert documents.object_members(text) == {"links": '{"next":"u"}'}
    assert documents.object_members(text, followed_takes_rest=True) == {"links": text[9:]}


def test_a_bad_token_before_a_quote_loses_no_release_of_its_record() -> None:
    # GIVEN a record whose ocid is a bad token glued to a quote, then releases, one holding an escaped quote
    document = ('{"records":[{"ocid":o","releases":[{"ocid":"c","id":"3","date":"2020-01-01","title":"5\\" disk"},'
                '{"ocid":"b","id":"2","date":"2020-01-01"}]}]}')
    # WHEN it is read THEN both releases are found (the token ends at a bracket, not at the quote it holds)
    found = [item for item in read_bytes(document.encode()).items() if isinstance(item, Found)]
    assert [item.position for item in found] == ["/records/0/releases/0", "/records/0/releases/1"]


@pytest.mark.parametrize("document, rows, rejected", [
    # a record's member: the delimiter's strings go out of phase, and the record ends nowhere or inside a string
    ('{"records":[{"ocid":o","releases":[' + _A + "," + _B + "]}]}",
     ["/records/0/releases/0", "/records/0/releases/1"], [("/records/0/ocid", 'o"')]),
    ('{"records":[{"ocid":\ufeffo","releases":[' + _A[:-1] + ',"t":"}x"},' + _B + "]}]}",
     ["/records/0/releases/0", "/records/0/releases/1"], [("/records/0/ocid", '\ufeffo"')]),
    ('[{"uri":o","releases":[' + _A[:-1] + ',"t":"}x"}]},{"uri":"u","releases":[' + _B + "]}]",
     ["/0/releases/0", "/1/releases/0"], [("/0/uri", 'o"')]),
    # a release's member: that release is rejected whole, its neighbours are stored
    ('{"releases":[{"ocid":o","id":"1"},' + _A + "," + _B + "]}", ["/releases/1", "/releases/2"],
     [("/releases/0", '{"ocid":o","id":"1"}')]),
])
@pytest.mark.parametrize("read", READERS, ids=READER_IDS)
def test_an_element_that_cannot_be_delimited_is_walked_and_each_part_accounted_once(
        document: str, rows: list[str], rejected: list[tuple[str, str]], read: Callable[[str], list[Item]]) -> None:
    # GIVEN an element with a bad token glued to a quote (the delimiter counts that quote as opening a string)
    items = read(document)
    # THEN it is walked member by member: every release is found, and only the bad part is rejected (never a
    # stretch holding releases that were also found)
    assert sorted(item.position for item in items if isinstance(item, Found)) == rows
    assert [(item.position, item.raw) for item in items if isinstance(item, Unreadable)] == rejected


def test_a_walked_record_takes_its_record_package_fields_as_a_split_one_does() -> None:
    # GIVEN records without an ocid, or with fields of their own; once split whole, once walked (a release
    # msgspec refuses beside them)
    for record in ('{"releases":[' + _A + "]}", '{"ocid":"a","uri":"r","releases":[' + _A + "]}"):
        split = prepare_page(('{"uri":"u","records":[' + record + "]}").encode(), "s")
        walked = prepare_page(('{"uri":"u","records":[' + record[:-2] + "," + _LONE + "]}]}").encode(), "s")
        # THEN the release has the same package fields and hash either way
        assert [(row.package_uri, row.content_hash) for row in walked.rows] == \
            [(row.package_uri, row.content_hash) for row in split.rows] == [("u", split.rows[0].content_hash)]


@pytest.mark.parametrize("document", [
    '{"uri":"u","releases":[' + _A + '],"records":[{"ocid":"b","releases":[' + _B + "]}]}",
    '[{"uri":"u","records":[{"ocid":"b","releases":[' + _B + ']}],"releases":[' + _A + "]}]",
])
@pytest.mark.parametrize("read", READERS, ids=READER_IDS)
def test_a_package_with_both_releases_and_records_loses_neither(
        document: str, read: Callable[[str], list[Item]]) -> None:
    # GIVEN a package holding a releases array and a records array (msgspec's split read only the records)
    # WHEN it is read, as a document and as a message's page
    found = [item for item in read(document) if isinstance(item, Found)]
    # THEN the releases of both arrays are found, with the package's fields
    assert sorted((item.position.removeprefix("/0"), item.package.uri) for item in found) == \
        [("/records/0/releases/0", "u"), ("/releases/0", "u")]
    inline = messages.parse(messages.inline_raw("s", document), None, 10**6)
    for page in (document.encode(), inline.page):  # type: ignore[union-attr]
        assert sorted(row.ocid for row in prepare_page(page, "s").rows) == ["a", "b"]


_SHAPE_RELEASES = st.integers(0, 99).map(lambda n: {"ocid": f"o{n % 3}", "id": str(n), "date": "2020-01-01T00:00:00Z"})
_SHAPE_SCALARS = st.sampled_from([None, 1, "s", True, [], {}, [1], {"x": 1}])
_SHAPE_RECORDS = st.dictionaries(st.sampled_from(["ocid", "releases", "compiledRelease", "versionedRelease", "uri"]),
                                 st.one_of(_SHAPE_SCALARS, _SHAPE_RELEASES, st.lists(_SHAPE_RELEASES, max_size=2)),
                                 max_size=4)
_SHAPE_PACKAGES = st.dictionaries(
    st.sampled_from(["uri", "publisher", "version", "releases", "records", "ocid", "compiledRelease",
                     "versionedRelease", "date"]),
    st.one_of(_SHAPE_SCALARS, _SHAPE_RELEASES, st.lists(_SHAPE_RELEASES, max_size=2),
              st.lists(st.one_of(_SHAPE_RECORDS, _SHAPE_SCALARS), max_size=2)), max_size=5)


def _shape_view(item: Item) -> tuple[Any, ...]:
    if isinstance(item, Unreadable):  # a walked scalar in a records array says not_ocds; split, not_a_record
        return ("Unreadable", "not_a_record" if item.reason == "not_ocds" and "/records/" in item.position
                else item.reason, item.raw, item.position)
    return (type(item).__name__, getattr(item, "ocid", None), jsontext.text_of(item.raw).strip(), item.position)


@settings(max_examples=400, deadline=None)
@given(document=st.one_of(_SHAPE_PACKAGES, _SHAPE_RECORDS, st.lists(_SHAPE_PACKAGES, min_size=1, max_size=3)))
def test_split_walked_and_streamed_readers_give_the_same_items_for_any_shape(document: Any) -> None:
    # GIVEN any arrangement of packages, records and releases, with members of the wrong type or missing
    data = json.dumps(document, separators=(",", ":")).encode()
    split = sorted(map(_shape_view, read_bytes(data).items()), key=repr)
    streamed = sorted(map(_shape_view, stream_document(data).items()), key=repr)
    walker = documents._Splitter
    saved = walker.value, walker.record

    def refuse(*_: Any) -> Any:
        raise documents._Unsplittable("walk it")

    walker.value = walker.record = refuse  # type: ignore[method-assign, assignment]
    try:
        walked = sorted(map(_shape_view, read_bytes(data).items()), key=repr)
    finally:
        walker.value, walker.record = saved  # type: ignore[method-assign]
    # THEN msgspec's split, the walk in memory and the streamed walk give the same items, except where one
    # rejects a whole object whose releases or records member is not an array (its text is kept either way)
    if not any(view[0] == "Unreadable" and view[1] == "invalid_package" for view in split + streamed + walked):
        assert split == walked == streamed


@pytest.mark.parametrize("record, rejected", [
    ('{"ocid":"o","releases":[]}', ("/records/0", '{"ocid":"o","releases":[]}')),
    ('{"ocid":"o"}', ("/records/0", '{"ocid":"o"}')),
    ('{"ocid":"o","compiledRelease":null,"versionedRelease":{"x":[]}}',
     ("/records/0", '{"ocid":"o","compiledRelease":null,"versionedRelease":{"x":[]}}')),
    ('{"ocid":"o","compiledRelease":"x","releases":[' + _B + "]}", ("/records/0/compiledRelease", '"x"')),
    ('{"ocid":"o","compiledRelease":[' + _B + '],"releases":[]}', ("/records/0/compiledRelease", "[" + _B + "]")),
])
@pytest.mark.parametrize("read", READERS, ids=READER_IDS)
def test_a_record_with_nothing_to_store_is_quarantined_not_dropped(
        record: str, rejected: tuple[str, str], read: Callable[[str], list[Item]]) -> None:
    # GIVEN a record with no releases and no compiledRelease (or one that is not an object), beside a good
    # record; once split whole, once walked (a release msgspec refuses in the other record)
    for other in ('{"ocid":"a","releases":[' + _A + "]}", '{"ocid":"a","releases":[' + _A + "," + _LONE + "]}"):
        document = '{"uri":"u","records":[' + record + "," + other + "]}"
        items = read(document)
        # THEN what cannot be stored is an invalid_record with its text as published, and the rest is read
        assert [(item.position, item.raw) for item in items if isinstance(item, Unreadable)
                and item.reason == "invalid_record"] == [rejected]
        assert "/records/1/releases/0" in [item.position for item in items if isinstance(item, Found)]
        # AND a page counts it once, as a rejection
        prepared = prepare_page(document.encode(), "s")
        assert prepared.rejections[0].reason == "invalid_record"
        assert prepared.releases_read == len(prepared.rows) + len(prepared.rejections)


def test_a_walked_records_compiled_release_takes_its_record_package_fields_as_a_split_one_does() -> None:
    # GIVEN a record package whose record has a compiledRelease; once split whole, once walked (a release msgspec
    # refuses in the record), read in memory and streamed
    compiled = '"compiledRelease":{"ocid":"a","id":"c","date":"2020-01-01T00:00:00Z"}'
    split = '{"uri":"u","records":[{"ocid":"a",' + compiled + ',"releases":[' + _A + "]}]}"
    walked = '{"uri":"u","records":[{"ocid":"a",' + compiled + ',"releases":[' + _A + "," + _LONE + "]}]}"
    without_releases = '{"uri":"u","records":[{"ocid":"a",' + compiled + ',"x":"\\ud800"}]}'
    for document in (split, walked, without_releases):
        for page in (document.encode(), stream_document(document.encode())):
            # THEN the compiled release has the package's fields (never the reader's placeholder) and one hash
            rows = prepare_page(page, "s").compiled
            assert [(row.ocid, row.package_uri) for row in rows] == [("a", "u")]
            assert rows[0].content_hash == prepare_page(split.encode(), "s").compiled[0].content_hash


def test_an_escaped_lone_surrogate_in_a_package_field_is_kept_as_its_escape_not_read_as_a_byte() -> None:
    # GIVEN a publisher name holding the escape \udce9 (a lone surrogate, not a windows-1252 byte)
    for releases in ("[" + _A + "]", "[" + _A + "," + _LONE + "]"):
        prepared = prepare_page(('{"publisher":{"name":"Caf\\udce9"},"releases":' + releases + "}").encode(), "s")
        # THEN it is written as its escape and flagged, as any lone surrogate is
        assert [(row.publisher_name, row.flags) for row in prepared.rows] == [("Caf\\udce9", ["package_escaped"])]


_BEYOND = '{"ocid":"z","id":"9","date":"2020-01-01T00:00:00Z","n":1e200000,"x":"\\ud800"}'


@pytest.mark.parametrize("document", ["[" + _BEYOND + "]", _BEYOND, '{"releases":[' + _BEYOND + "]}"])
def test_a_number_beyond_numeric_is_number_out_of_range_wherever_the_release_stands(document: str) -> None:
    [rejection] = prepare_page(document.encode(), "s").rejections
    assert rejection.reason == "number_out_of_range"


# --- package metadata after the releases --------------------------------------------------------------------


@pytest.mark.parametrize(("middle", "fast"), [
    (json.dumps(R2), True),
    ('{"ocid":"ocds-b","id":"2","n":"\\ud800"}', False),  # msgspec refuses a lone surrogate: the walk isolates it
], ids=["fast-path", "structural-walk"])
def test_package_metadata_after_the_releases_is_applied_to_every_found_in_memory(middle: str, fast: bool) -> None:
    # GIVEN a package whose metadata comes AFTER its releases array (in the walk case, one release is bad)
    text = '{"releases":[' + FIRST + "," + middle + "," + LAST + "]," + json.dumps(PACKAGE_META)[1:]
    # WHEN it is read in memory
    items = items_of(text)
    # THEN every Found still carries the package fields (and the case took the path it names)
    assert views(items) == [("Found", release, PACKAGE, f"/releases/{index}")
                            for index, release in enumerate([FIRST, middle, LAST])]
    assert [isinstance(item, Found) and isinstance(item.raw, msgspec.Raw) for item in items] == [fast] * 3


# --- encodings ----------------------------------------------------------------------------------------------

RELEASE_TEXT = '{"ocid":"ocds-a","id":"1","name":"Café 😼"}'
RELEASE_VALUE = {"ocid": "ocds-a", "id": "1", "name": "Café 😼"}


@pytest.mark.parametrize(("data", "encoding"), [
    (codecs.BOM_UTF8 + RELEASE_TEXT.encode("utf-8"), "utf-8"),
    (RELEASE_TEXT.encode("utf-8"), "utf-8"),
    (codecs.BOM_UTF16_LE + RELEASE_TEXT.encode("utf-16-le"), "utf-16-le"),
    (codecs.BOM_UTF16_BE + RELEASE_TEXT.encode("utf-16-be"), "utf-16-be"),
    (RELEASE_TEXT.encode("utf-16-le"), "utf-16-le"),
    (RELEASE_TEXT.encode("utf-16-be"), "utf-16-be"),
    (codecs.BOM_UTF32_LE + RELEASE_TEXT.encode("utf-32-le"), "utf-32-le"),
    (codecs.BOM_UTF32_BE + RELEASE_TEXT.encode("utf-32-be"), "utf-32-be"),
    (RELEASE_TEXT.encode("utf-32-le"), "utf-32-le"),
    (RELEASE_TEXT.encode("utf-32-be"), "utf-32-be"),
], ids=["utf-8-bom", "utf-8", "utf-16-le-bom", "utf-16-be-bom", "utf-16-le", "utf-16-be", "utf-32-le-bom",
        "utf-32-be-bom", "utf-32-le", "utf-32-be"])
def test_unicode_encodings_are_detected_and_decoded_without_bom(data: bytes, encoding: str) -> None:
    # WHEN the bytes are decoded
    assert decode(data) == (RELEASE_TEXT, encoding)
    # THEN the document reads the same release, and says which encoding it had
    document = read_bytes(data)
    items = list(document.items())
    assert views(items) == [("Found", RELEASE_TEXT, NO_PACKAGE, "/")]
    assert items[0].value == RELEASE_VALUE  # type: ignore[union-attr]
    assert document.stats.encoding == encoding


@pytest.mark.parametrize("encoding", ["utf-16-le", "utf-16-be"])
def test_utf_16_with_an_odd_byte_count_keeps_the_text_and_rejects_the_stray_byte(encoding: str) -> None:
    # GIVEN a UTF-16 document with one byte too many (issue 8: this used to crash the load)
    data = RELEASE_TEXT.encode(encoding) + b"\x7f"
    # WHEN it is decoded and read THEN the release survives and the stray byte is kept (as U+DD00 + byte) and rejected
    assert decode(data) == (RELEASE_TEXT + "\udd7f", encoding)
    assert views(read_bytes(data).items()) == [
        ("Found", RELEASE_TEXT, NO_PACKAGE, "/"),
        ("Unreadable", "invalid_json", f"the value at character {len(RELEASE_TEXT)} is not closed before the end",
         "\udd7f", "@1"),
    ]


@pytest.mark.parametrize("encoding", ["utf-16-le", "utf-16-be", "utf-32-le", "utf-32-be"])
@pytest.mark.parametrize("surrogate", ["\ud841", "\udc41", "\udcd8", "\udfff"])
def test_a_lone_surrogate_in_utf_16_or_32_refuses_its_release_and_is_never_read_as_windows_1252(
        encoding: str, surrogate: str) -> None:
    # GIVEN a UTF-16 or UTF-32 package whose first release holds a lone surrogate (high or low, of any value: the
    # low ones look like the U+DC00 + byte a UTF-8 document's legacy byte becomes) and whose second is fine
    bad = '{"ocid":"ocds-a","id":"1","date":"2020-01-01T00:00:00Z","note":"Q' + surrogate + 'R"}'
    good = '{"ocid":"ocds-a","id":"2","date":"2020-01-01T00:00:00Z","note":"Caf\u00e9"}'
    data = ('{"releases":[' + bad + "," + good + "]}").encode(encoding, "surrogatepass")
    # WHEN the page is read, whole and streamed
    for page in (data, io.BytesIO(data)):
        prepared = prepare_page(page if isinstance(page, bytes) else read_stream(page), "s")
        # THEN the first is refused as not Unicode, its bytes shown in its raw text, and the second is stored as is
        assert [(row.release_id, row.flags, row.data_text) for row in prepared.rows] == [("2", [], good)]
        [rejection] = prepared.rejections
        assert rejection.reason == "invalid_unicode"
        assert rejection.raw_text.startswith('{"ocid":"ocds-a","id":"1"') and "\\udd" in rejection.raw_text


@pytest.mark.parametrize(("head", "expected"), [
    (b'{"oc', ("utf-8", 0)),
    (b'{\x00"\x00', ("utf-16-le", 0)),
    (b'\x00{\x00"', ("utf-16-be", 0)),
    (b"{\x00\x00\x00", ("utf-32-le", 0)),
    (b"\x00\x00\x00{", ("utf-32-be", 0)),
    (b"\xef\xbb\xbf{", ("utf-8", 3)),
    (b"\xff\xfe{\x00", ("utf-16-le", 2)),
    (b"\xfe\xff\x00{", ("utf-16-be", 2)),
    (b"\xff\xfe\x00\x00", ("utf-32-le", 4)),
    (b"\x00\x00\xfe\xff", ("utf-32-be", 4)),
    (b"", ("utf-8", 0)),
    (b'\x00[{"', ("utf-8", 0)),  # a stray NUL byte before UTF-8 text: one zero, not UTF-16's pattern
    (b'[\x00{"', ("utf-8", 0)),
    (b"\x00{", ("utf-16-be", 0)),  # two bytes: all there is to go by
    (b"{\x00", ("utf-16-le", 0)),
])
def test_detect_encoding_from_bom_or_zero_byte_pattern(head: bytes, expected: tuple[str, int]) -> None:
    assert detect_encoding(head) == expected


def test_decode_keeps_bytes_invalid_in_utf_8_as_escapes_and_each_release_reads_them_as_windows_1252() -> None:
    # GIVEN UTF-8 bytes with windows-1252 curly quotes, euro sign and é
    data = b'{"ocid":"ocds-a","id":"1","title":"\x93quoted\x94 \x80 caf\xe9"}'
    # WHEN they are decoded THEN nothing is re-decoded: each invalid byte is kept as U+DC00 + byte...
    text, encoding = decode(data)
    assert (text, encoding) == ('{"ocid":"ocds-a","id":"1","title":"\udc93quoted\udc94 \udc80 caf\udce9"}', "utf-8")
    # ...and the release holding them reads them as windows-1252
    assert jsontext.repaired(text) == ('{"ocid":"ocds-a","id":"1","title":"“quoted” € café"}', True)
    [item] = read_bytes(data).items()
    assert isinstance(item, Found) and item.value["title"] == "“quoted” € café"


def test_bytes_undefined_in_windows_1252_fall_back_to_iso_8859_1_byte_by_byte() -> None:
    data = b'{"ocid":"ocds-a","id":"1","title":"\x81 \x93"}'
    assert decode(data) == ('{"ocid":"ocds-a","id":"1","title":"\udc81 \udc93"}', "utf-8")
    [item] = read_bytes(data).items()
    assert isinstance(item, Found) and item.value["title"] == "\x81 “"


@pytest.mark.parametrize("streamed", [False, True], ids=READER_IDS)
def test_one_windows_1252_byte_changes_only_its_release_never_valid_utf_8_elsewhere(streamed: bool) -> None:
    # GIVEN a UTF-8 package whose first release spells Café correctly and whose second holds one Latin-1 byte
    first = json.dumps({**R1, "title": "Café 😼"}, ensure_ascii=False)
    second = json.dumps({**R2, "title": "caf\udce9"}, ensure_ascii=False)  # U+DC00 + byte: the byte \xe9 below
    data = package_text(first, second).encode("utf-8", "surrogateescape")
    assert b'"caf\xe9"' in data
    items = list((stream_document(data) if streamed else read_bytes(data)).items())
    # WHEN the releases become rows
    rows = [to_row(item, "test") for item in items]
    # THEN the first is exactly as published and unflagged; only the second is read as windows-1252, and flagged
    assert [(row.data_text, row.flags) for row in rows if isinstance(row, ReleaseRow)] == [
        (first, []), (second.replace("\udce9", "é"), ["legacy_encoding"])]


def test_real_iso_8859_1_file_reads_like_its_utf_8_twin() -> None:
    # GIVEN the real CDMX package encoded ISO-8859-1 and its UTF-8 twin
    legacy = (samples_dir() / "invalid-and-awkward" / "real-cdmx_encoding-iso-8859-1.json").read_bytes()
    twin = (samples_dir() / "ocdskit-realdata" / "release-package_encoding-utf-8.json").read_bytes()
    # WHEN both become rows
    legacy_rows = [to_row(item, "test") for item in read_bytes(legacy).items()]
    twin_rows = [to_row(item, "test") for item in read_bytes(twin).items()]
    # THEN the legacy rows hold the accented text, each its published bytes read as windows-1252, flagged, and
    # the same data as the twin's
    assert all(isinstance(row, ReleaseRow) for row in legacy_rows + twin_rows)
    assert [row.release_id for row in legacy_rows] == ["01", "02", "03"]  # type: ignore[union-attr]
    assert [row.flags for row in legacy_rows] == [["legacy_encoding"]] * 3  # type: ignore[union-attr]
    assert [row.flags for row in twin_rows] == [[]] * 3  # type: ignore[union-attr]
    assert all("SECRETARÍA DE FINANZAS" in row.data_text for row in legacy_rows)  # type: ignore[union-attr]
    assert all(row.data_text in legacy.decode("iso-8859-1") for row in legacy_rows)  # type: ignore[union-attr]
    assert [json.loads(row.data_text) for row in legacy_rows] == [  # type: ignore[union-attr]
        json.loads(row.data_text) for row in twin_rows]  # type: ignore[union-attr]


# --- isolation of one bad release ---------------------------------------------------------------------------

def _isolated(reader: Callable[[str], list[Item]], middle: str) -> list[Item]:
    return reader(package_text(FIRST, middle, LAST))


@pytest.mark.parametrize("reader", READERS, ids=READER_IDS)
def test_release_nested_too_deep_is_isolated_with_its_exact_raw_text(reader: Callable[[str], list[Item]]) -> None:
    # GIVEN a package whose middle release nests 100,000 levels deep
    middle = '{"ocid":"ocds-b","id":"2","deep":' + "[" * 100_000 + "]" * 100_000 + "}"
    # WHEN it is read
    items = _isolated(reader, middle)
    # THEN the releases around it survive, and it alone is handed on with its exact text...
    assert views(items) == [("Found", FIRST, PACKAGE, "/releases/0"), ("Found", middle, PACKAGE, "/releases/1"),
                            ("Found", LAST, PACKAGE, "/releases/2")]
    # ...for to_row to reject it alone
    rows = [to_row(item, "test") for item in items]
    assert isinstance(rows[0], ReleaseRow) and isinstance(rows[2], ReleaseRow)
    assert rows[1] == Rejection("nesting_too_deep", "the release is nested deeper than the JSON parser allows", middle,
                                "/releases/1", ocid=None, release_id=None)


@pytest.mark.parametrize("reader", READERS, ids=READER_IDS)
@pytest.mark.parametrize("number", ["NaN", "-Infinity"])
def test_release_with_non_finite_number_is_isolated_with_its_exact_raw_text(
        reader: Callable[[str], list[Item]], number: str) -> None:
    middle = '{"ocid":"ocds-b","id":"2","date":"2020-01-01","tender":{"value":{"amount":' + number + "}}}"
    items = _isolated(reader, middle)
    assert views(items) == [("Found", FIRST, PACKAGE, "/releases/0"), ("Found", middle, PACKAGE, "/releases/1"),
                            ("Found", LAST, PACKAGE, "/releases/2")]
    rows = [to_row(item, "test") for item in items]
    assert isinstance(rows[0], ReleaseRow) and isinstance(rows[2], ReleaseRow)
    rejection = rows[1]
    assert isinstance(rejection, Rejection)
    assert (rejection.reason, rejection.detail, rejection.raw_text, rejection.position) == (
        "non_finite_number", f"{number} is not a JSON number (PostgreSQL jsonb cannot store NaN or Infinity)", middle,
        "/releases/1")


@pytest.mark.parametrize("reader", READERS, ids=READER_IDS)
def test_release_with_a_number_beyond_a_double_is_read_and_stored_exactly(reader: Callable[[str], list[Item]]) -> None:
    # GIVEN a release whose amount overflows a double (jsonb and numeric hold it)
    middle = '{"ocid":"ocds-b","id":"2","date":"2020-01-01","tender":{"value":{"amount":1e9999}}}'
    items = _isolated(reader, middle)
    # THEN it is a release like its neighbours, stored as published
    assert views(items)[1] == ("Found", middle, PACKAGE, "/releases/1")
    row = to_row(items[1], "test")
    assert isinstance(row, ReleaseRow)
    assert (row.data_text, row.value_amount) == (middle, "1e9999")


@pytest.mark.parametrize("reader", READERS, ids=READER_IDS)
def test_syntax_error_keeps_the_releases_before_it_and_reports_the_rest(reader: Callable[[str], list[Item]]) -> None:
    # GIVEN a package with a syntax error (",,") right after its first release
    text = package_text(FIRST, "", LAST)
    error_at = text.index(",,") + 1
    # WHEN it is read
    items = reader(text)
    # THEN the first release survives, with the package fields read before it, and one Unreadable holds the rest
    # of the text from the error onward
    assert views(items) == [
        ("Found", FIRST, PACKAGE, "/releases/0"),
        ("Unreadable", "invalid_json", f"expected a value at character {error_at}, found ','", text[error_at:], "/"),
    ]
    assert text[error_at:] == "," + LAST + "]}"


@pytest.mark.parametrize("reader", READERS, ids=READER_IDS)
def test_rest_after_a_syntax_error_is_rejected_whole_in_parts(reader: Callable[[str], list[Item]],
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    # GIVEN parts of at most 50 characters, and a syntax error followed by more than three parts of text
    monkeypatch.setattr(documents, "REJECTED_PART_CHARS", 50)
    text = package_text(FIRST, "", LAST, LAST)
    error_at = text.index(",,") + 1
    rest = text[error_at:]
    assert 150 < len(rest) <= 200
    # WHEN it is read
    items = reader(text)
    # THEN the rest is rejected in four parts that together are exactly the rest: nothing cut, nothing lost
    assert views(items[:1]) == [("Found", FIRST, PACKAGE, "/releases/0")]
    parts = items[1:]
    assert all(isinstance(part, Unreadable) and part.reason == "invalid_json" for part in parts)
    assert "".join(part.raw for part in parts) == rest  # type: ignore[union-attr]
    assert [part.position for part in parts] == ["/#part1", "/#part2", "/#part3", "/#part4"]
    assert [len(part.raw) for part in parts[:3]] == [50, 50, 50]  # type: ignore[union-attr]
    assert [part.detail for part in parts] == [  # type: ignore[union-attr]
        f"expected a value at character {error_at}, found ',' (part {index + 1} of the rest of the document, from "
        f"character {error_at + 50 * index}{'; the last part' if index == 3 else ''})" for index in range(4)]


# --- streaming equals in memory -----------------------------------------------------------------------------


def _well_formed(data: bytes) -> bool:
    """Whether the document is a sequence of zero or more complete JSON values (standard parser, strict)."""
    text = decode(data)[0]
    decoder = json.JSONDecoder()
    pos = 0
    try:
        while True:
            while pos < len(text) and text[pos] in " \t\r\n":
                pos += 1
            if pos == len(text):
                return True
            _, pos = decoder.raw_decode(text, pos)
    except ValueError:
        return False


def _stream_mismatches() -> tuple[list[str], list[str]]:
    """(files compared, files whose streamed items differ from the in-memory ones)."""
    root = samples_dir()
    compared: list[str] = []
    mismatches: list[str] = []
    for path in sorted(root.rglob("*.json")):
        data = path.read_bytes()
        if not _well_formed(data):
            continue
        name = str(path.relative_to(root))
        compared.append(name)
        if summary(list(stream_document(data).items())) != summary(list(read_bytes(data).items())):
            mismatches.append(name)
    return compared, mismatches


def _sample_count() -> int:
    return sum(1 for _ in samples_dir().rglob("*.json"))


def test_only_the_broken_sample_is_left_out_of_the_stream_comparison() -> None:
    root = samples_dir()
    broken = sorted(str(path.relative_to(root)) for path in root.rglob("*.json") if not _well_formed(path.read_bytes()))
    assert broken == ["invalid-and-awkward/broken-json-syntax.json"]


def test_streaming_yields_the_same_items_as_in_memory_for_every_sample() -> None:
    compared, mismatches = _stream_mismatches()
    assert len(compared) == _sample_count() - 1
    assert mismatches == []


def test_streaming_with_window_refills_yields_the_same_items_as_in_memory_for_every_sample(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # GIVEN a window of 1024 characters, so most samples need refills
    monkeypatch.setattr(documents, "_CHUNK_CHARS", 1024)
    compared, mismatches = _stream_mismatches()
    assert len(compared) == _sample_count() - 1
    assert mismatches == []


def test_streaming_a_package_larger_than_the_window_yields_every_release(monkeypatch: pytest.MonkeyPatch) -> None:
    # GIVEN a package of 20 releases of ~300 characters and a window of 256 characters
    monkeypatch.setattr(documents, "_CHUNK_CHARS", 256)
    releases = [{"ocid": f"ocds-{index}", "id": str(index), "pad": "x" * 260} for index in range(20)]
    data = json.dumps({**PACKAGE_META, "releases": releases}).encode()
    # WHEN it is streamed
    items = list(stream_document(data).items())
    # THEN every release comes out, in order, as in memory
    assert summary(items) == [("Found", f"/releases/{index}", release) for index, release in enumerate(releases)]


def test_streaming_decodes_windows_1252_bytes_beyond_the_first_buffer_like_in_memory() -> None:
    # GIVEN a windows-1252 package whose first non-ASCII byte is 10,000 bytes in
    second = json.dumps({**R2, "title": "café “quoted”"}, ensure_ascii=False)
    text = package_text(json.dumps({**R1, "pad": "x" * 10_000}), second)
    assert "café “quoted”" in text
    data = text.encode("windows-1252")
    # WHEN it is streamed THEN it reads as in memory
    assert summary(list(stream_document(data).items())) == summary(list(read_bytes(data).items()))
    assert summary(list(read_bytes(data).items()))[1][2]["title"] == "café “quoted”"


def test_streaming_falls_back_to_iso_8859_1_like_in_memory() -> None:
    data = b'{"ocid":"ocds-a","id":"1","title":"\x81"}'
    assert summary(list(stream_document(data).items())) == [
        ("Found", "/", {"ocid": "ocds-a", "id": "1", "title": "\x81"})
    ]


# --- bounded memory ---------------------------------------------------------------------------------------

BIG_RELEASES = 10_000
# ~4 KB per release, pretty-printer style: mostly indentation, plus a 1,000-character string.
_INDENT = "\n" + " " * 2_899
_DESCRIPTION = "x" * 1_000


class GeneratedPackage(io.RawIOBase):
    """A ~40 MB release package produced on demand: only the current release's bytes exist at any time."""

    def __init__(self, releases: int) -> None:
        self._parts = self._generate(releases)
        self._pending = memoryview(b"")

    @staticmethod
    def _generate(releases: int) -> Iterator[bytes]:
        yield b'{"uri":"https://example.com/big.json","version":"1.1","releases":['
        for index in range(releases):
            release = (f'{{"ocid":"ocds-big-{index:05d}","id":"{index}","date":"2020-01-01T00:00:00Z",'
                       f'"tag":["tender"],{_INDENT}"description":"{_DESCRIPTION}"}}')
            yield (b"," if index else b"") + release.encode()
        yield b"]}"

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while not self._pending:
            part = next(self._parts, None)
            if part is None:
                return 0
            self._pending = memoryview(part)
        size = min(len(buffer), len(self._pending))
        buffer[:size] = self._pending[:size]
        self._pending = self._pending[size:]
        return size


def test_generated_package_is_about_40_mb() -> None:
    # The memory test below is only meaningful if the document is far bigger than its bound.
    size = sum(len(part) for part in GeneratedPackage._generate(BIG_RELEASES))
    assert 39_500_000 < size < 40_500_000


def test_streaming_a_40_mb_package_keeps_memory_bounded_and_yields_every_release_in_order() -> None:
    # GIVEN a ~40 MB package of 10,000 releases of ~4 KB, generated lazily
    document = read_stream(io.BufferedReader(GeneratedPackage(BIG_RELEASES)))
    tracemalloc.start()
    try:
        # WHEN its items are consumed one by one
        count = 0
        for item in document.items():
            # THEN each is the next release, in order...
            assert isinstance(item, Found), (count, item.position, getattr(item, "reason", None))
            assert (item.position, item.value["id"]) == (f"/releases/{count}", str(count))
            count += 1
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    # ...all of them, while traced memory stayed bounded far below the document's size
    assert count == BIG_RELEASES
    assert peak < 16 * 1024 * 1024


"""``messages.parse(split_up_to=…)``: a release package read and split in the pass that reads its envelope.

Whatever the body, the request is the one ``parse`` gives without splitting (the same source, run and
rejection), and a split page gives exactly the items and stats that reading the page's bytes gives.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ingest import documents, messages
from ingest.documents import Compiled, Found, Unreadable
from ingest.messages import InlinePage, MessageRejected, inline_raw, parse
from tests.conftest import samples_dir

UNLIMITED = 1 << 40


def _item_key(item: Any) -> tuple[Any, ...]:
    raw = item.raw if isinstance(item.raw, str) else bytes(item.raw)  # text where the document was walked
    if isinstance(item, Found):
        return ("found", raw, item.package, item.position)
    if isinstance(item, Compiled):
        return ("compiled", item.ocid, raw, item.package, item.position)
    assert isinstance(item, Unreadable)
    return ("unreadable", item.reason, item.detail, item.raw, item.position)


def _read(page: Any) -> tuple[list[tuple[Any, ...]], tuple[str, int, int]]:
    document = page if isinstance(page, documents.Document) else (
        documents.read_bytes(page) if isinstance(page, bytes) else documents.read_text(page))
    items = [_item_key(item) for item in document.items()]
    return items, (document.stats.encoding, document.stats.values, document.stats.empty_packages)


def _outcome(body: str, split_up_to: int | None) -> Any:
    try:
        return parse(body, "attribute", split_up_to=split_up_to)
    except MessageRejected as rejected:
        return ("rejected", rejected.reason, rejected.detail)


def assert_same_as_unsplit(body: str, split_up_to: int = UNLIMITED) -> Any:
    """The request with splitting is the request without it, and its page reads to the same items."""
    plain, split = _outcome(body, None), _outcome(body, split_up_to)
    if not isinstance(plain, InlinePage):
        assert split == plain
        return split
    assert isinstance(split, InlinePage)
    assert (split.source, split.run_id) == (plain.source, plain.run_id)
    assert _read(split.page) == _read(plain.page)
    return split


def _sample_pages() -> list[Path]:
    folder = samples_dir()
    return sorted(path for path in folder.rglob("*.json") if path.stat().st_size < 2_000_000)


def test_every_sample_wrapped_in_an_envelope_reads_the_same_split_or_not() -> None:
    # GIVEN every sample document (packages, records, arrays, broken JSON), each as an inline page
    split_pages = 0
    for path in _sample_pages():
        text = path.read_bytes().decode("utf-8", "replace")
        body = inline_raw("sample", text, run_id="r1")
        # WHEN it is parsed with and without splitting THEN the requests and their pages' items are the same
        request = assert_same_as_unsplit(body)
        split_pages += isinstance(request, InlinePage) and isinstance(request.page, documents.Document)
    # AND the usual release packages were split in the envelope's pass
    assert split_pages >= 50


def test_a_split_page_comes_as_a_document_and_others_as_their_bytes() -> None:
    package = {"uri": "u", "version": "1.1", "releases": [{"ocid": "o", "id": "1", "date": "2020-01-01T00:00:00Z"}]}
    assert isinstance(parse(messages.inline("s", package), split_up_to=UNLIMITED).page, documents.Document)
    record_package = {"records": [{"ocid": "o", "releases": []}]}
    assert isinstance(parse(messages.inline("s", record_package), split_up_to=UNLIMITED).page, bytes)
    assert isinstance(parse(messages.inline("s", [package]), split_up_to=UNLIMITED).page, bytes)


def test_a_package_larger_than_the_bound_comes_as_its_bytes_for_the_caller_to_stream() -> None:
    releases = [{"ocid": "o", "id": str(number), "date": "2020-01-01T00:00:00Z"} for number in range(10)]
    body = messages.inline("s", {"releases": releases})
    size = sum(len(json.dumps(release, separators=(",", ":"))) for release in releases)
    assert isinstance(assert_same_as_unsplit(body, size).page, documents.Document)
    assert isinstance(assert_same_as_unsplit(body, size - 1).page, bytes)


@pytest.mark.parametrize("body", [
    '{"version": 2, "source": "s", "page": {"releases": []}}',
    '{"version": 1, "page": {"releases": []}}',
    '{"version": 1, "source": "", "page": {"releases": []}}',
    '{"version": 1, "source": "s\\u0000", "page": {"releases": []}}',
    '{"version": 1, "source": "s", "page": {"releases": []}, "url": "https://x"}',
    '{"version": true, "source": "s", "page": {"releases": []}}',
    '{"version": 1, "source": "s", "run_id": 5, "page": {"releases": [{"id": 1}]}}',
    '{"version": 1, "source": "s", "page": {"releases": [{"id": 1}], "records": null}}',
    '{"version": 1, "source": "s", "page": {"releases": [], "ocid": "o"}}',
    '{"version": 1, "source": "s", "page": {"releases": [], "compiledRelease": {"ocid": "o"}}}',
    '{"version": 1, "source": "s", "page": {"releases": null}}',
    '{"version": 1, "source": "s", "page": {"uri": "u"}}',
    '{"version": 1, "source": "s", "page": {"releases": [1, "x", null, {"ocid": "o"}]}}',
    '{"version": 1, "source": "s", "page": {"releases": [{"ocid": "o", "id": "1", "date": 1e999999}]}}',
    '{"version": 1, "source": "s", "page": {"releases": [{"ocid": "o"} ]}, "other": 1}',
    '{"version": 1, "source": "s", "page": {"releases": [{"ocid": "o"}, ]}}',
    '{"source": "s", "page": {"releases": []}}',
    '{"version": 1, "source": "s", "page": {"publisher": {"name": "\\ud800"}, "releases": [{"ocid": "o"}]}}',
])
def test_envelopes_of_every_kind_give_the_same_request_split_or_not(body: str) -> None:
    assert_same_as_unsplit(body)


_json_scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=5),
                          st.decimals(allow_nan=False, allow_infinity=False).map(str).map(json.loads))
_json_values = st.recursive(_json_scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(st.sampled_from(["ocid", "id", "date", "x", "tag"]), inner,
                                                  max_size=3)), max_leaves=8)
_package_members = st.dictionaries(
    st.sampled_from(["uri", "publisher", "version", "publishedDate", "releases", "records", "ocid",
                     "compiledRelease", "versionedRelease", "extensions"]),
    st.one_of(_json_values, st.lists(_json_values, max_size=4)), max_size=5)


@settings(max_examples=300, deadline=None)
@given(page=_package_members, run_id=st.one_of(st.none(), st.text(max_size=3)), spaces=st.booleans())
def test_any_page_in_an_envelope_gives_the_same_request_split_or_not(page: dict[str, Any], run_id: str | None,
                                                                     spaces: bool) -> None:
    separators = (", ", ": ") if spaces else (",", ":")
    body = inline_raw("s", json.dumps(page, separators=separators), run_id)
    assert_same_as_unsplit(body)

"""Unit tests for ingest.messages: the SQS message contract (pure)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from ingest import documents, messages
from ingest.errors import PermanentError
from ingest.messages import (
    UNKNOWN_SOURCE,
    InlinePage,
    MessageRejected,
    S3Page,
    UrlPage,
    by_claim_check,
    by_url,
    describe,
    inline,
    inline_raw,
    parse,
)
from ingest.pages import prepare_page

PACKAGE: dict[str, Any] = {
    "uri": "https://publisher.example/package.json",
    "version": "1.1",
    "publishedDate": "2020-01-01T00:00:00Z",
    "releases": [{"ocid": "ocds-a", "id": "1", "date": "2020-01-01T00:00:00Z", "tag": ["tender"]}],
}


PACKAGE_TEXT = json.dumps(PACKAGE)


def rejection(body: str, source_attribute: str | None = None) -> MessageRejected:
    with pytest.raises(MessageRejected) as caught:
        parse(body, source_attribute)
    return caught.value


# --- the three envelopes ------------------------------------------------------------------------------------


def test_inline_envelope_parses_to_its_source_and_the_page_text_as_published() -> None:
    body = json.dumps({"version": 1, "source": "portugal", "page": PACKAGE})

    # the page as its bytes in the body (UTF-8), which the reader splits as they are
    assert parse(body) == InlinePage("portugal", PACKAGE_TEXT.encode())


def test_inline_envelope_keeps_a_page_of_any_json_shape() -> None:
    # Isolating releases is the reader's job: an array, a string or null is still handed over, as its bytes.
    for page in ([PACKAGE["releases"][0]], "not a package", None, 3):
        body = json.dumps({"version": 1, "source": "s", "page": page})
        assert parse(body) == InlinePage("s", json.dumps(page).encode())


def test_inline_page_text_is_the_exact_slice_of_the_body() -> None:
    # GIVEN a page whose spacing, number texts, escapes and repeated key a parser would change
    page_text = '{ "releases" : [ {"ocid": "ocds-\\u00e9", "id": 1.10, "n": 1234567890123456789.123456789, "id": 2} ] }'
    body = '{"version": 1, "source": "uk", "page":  ' + page_text + "  }"

    assert parse(body) == InlinePage("uk", page_text.encode())


@pytest.mark.parametrize("page_text", [
    pytest.param('{"releases": [{"ocid": "a"}, {"ocid": "b",, "id": "2"}, {"ocid": "c"}]}', id="syntax-error"),
    pytest.param('{"releases": [{"ocid": "a"}, {"deep": ' + "[" * 100_000 + "]" * 100_000 + "}]}", id="too-deep"),
    pytest.param('{"releases": [{"ocid": "a", "n": ' + "7" * 5000 + "}]}", id="over-long-integer"),
    pytest.param('{"releases": [{"ocid": "a", "t": "\\ud800"}]}', id="lone-surrogate"),
])
def test_envelope_whose_page_holds_a_bad_release_keeps_its_source_and_the_page_text(page_text: str) -> None:
    # GIVEN a version 1 envelope whose page holds one bad release (issue 8: it was rejected whole, source unknown)
    body = '{"version": 1, "source": "portugal", "run_id": "r1", "page": ' + page_text + "}"
    # THEN the envelope is read as such: the reader isolates the bad release and keeps the others
    # (its bytes where the envelope parsed whole, its text where the body had to be split leniently)
    assert parse(body, "attribute") in (InlinePage("portugal", page_text, "r1"),
                                        InlinePage("portugal", page_text.encode(), "r1"))


def test_url_envelope_parses_to_its_source_and_url() -> None:
    body = json.dumps({"version": 1, "source": "paraguay", "url": "https://publisher.example/api?page=2"})

    assert parse(body) == UrlPage("paraguay", "https://publisher.example/api?page=2")


def test_plain_http_url_is_accepted() -> None:
    assert parse(by_url("s", "http://publisher.example/a")) == UrlPage("s", "http://publisher.example/a")


def test_s3_envelope_parses_to_its_source_bucket_and_key() -> None:
    body = json.dumps({"version": 1, "source": "uk", "s3": {"bucket": "claims", "key": "uk/2020/page-1.json"}})

    assert parse(body) == S3Page("uk", "claims", "uk/2020/page-1.json")


def test_envelope_source_wins_over_the_message_attribute() -> None:
    body = json.dumps({"version": 1, "source": "from-body", "page": PACKAGE})

    assert parse(body, "from-attribute") == InlinePage("from-body", PACKAGE_TEXT.encode())


def test_envelope_may_carry_a_context_key() -> None:
    body = json.dumps({"version": 1, "source": "s", "url": "https://p.example/", "context": {"run": 3}})

    assert parse(body) == UrlPage("s", "https://p.example/")


# --- bare documents -------------------------------------------------------------------------------------------


def test_bare_package_takes_its_source_from_the_attribute() -> None:
    # An OCDS package has a "version" ("1.1") but also keys no envelope has, so it is a bare document.
    assert parse(PACKAGE_TEXT, "portugal") == InlinePage("portugal", PACKAGE_TEXT)


@pytest.mark.parametrize("attribute", [None, ""])
def test_bare_package_without_attribute_has_unknown_source(attribute: str | None) -> None:
    assert parse(PACKAGE_TEXT, attribute) == InlinePage(UNKNOWN_SOURCE, PACKAGE_TEXT)
    assert UNKNOWN_SOURCE == "unknown"


def test_bare_json_array_is_an_inline_page() -> None:
    body = json.dumps(PACKAGE["releases"] * 2)

    assert parse(body, "uk") == InlinePage("uk", body)


def test_empty_object_and_empty_array_are_inline_pages() -> None:
    assert parse("{}") == InlinePage(UNKNOWN_SOURCE, "{}")
    assert parse(" [ ]") == InlinePage(UNKNOWN_SOURCE, " [ ]")


@pytest.mark.parametrize("envelope", [{"source": "s", "page": PACKAGE},
                                      {"version": 1, "source": "s", "page": PACKAGE, "extra": 1}],
                         ids=["no-version", "unknown-key"])
def test_object_that_is_not_a_versioned_envelope_is_a_bare_document(envelope: dict[str, Any]) -> None:
    # The contract: any JSON object that is not a versioned envelope (only envelope keys) is a bare document.
    body = json.dumps(envelope)

    assert parse(body, "attr") == InlinePage("attr", body)


@pytest.mark.parametrize("body", [json.dumps(PACKAGE)[:-20], "{this is not json", '{"releases": [{"ocid": "a",,]}'],
                         ids=["truncated", "not-json", "syntax-error"])
def test_object_that_is_not_json_is_handed_over_as_raw_text_whole(body: str) -> None:
    # WHEN a body that opens an object but is not JSON is parsed THEN the reader gets all of its text, from its
    # first character, to isolate what it can and record what is broken
    assert parse(body, "portugal") == InlinePage("portugal", body)


def test_envelope_cut_off_before_its_page_is_never_an_empty_page() -> None:
    # GIVEN an envelope truncated where its page should start
    body = '{"version": 1, "source": "s", "page": '
    # THEN it is rejected, or its page, when read, records something: the body is never silently dropped
    try:
        request = parse(body)
    except MessageRejected:
        return
    assert isinstance(request, InlinePage)
    assert list(documents.read_text(request.page).items()) != []


def test_truncated_json_array_with_leading_whitespace_is_handed_over_as_raw_text() -> None:
    body = "\n  [" + json.dumps(PACKAGE["releases"][0]) + ", {\"ocid\": "

    assert parse(body) == InlinePage(UNKNOWN_SOURCE, body)


@pytest.mark.parametrize("opening", ["[", '{"a":'])
def test_deeply_nested_body_is_handed_over_as_raw_text(opening: str) -> None:
    # GIVEN 100,000 levels of nesting, deeper than the JSON parser recurses
    closing = "]" if opening == "[" else "}"
    body = opening * 100_000 + "1" + closing * 100_000

    # THEN parse does not blow up: the text goes to the streaming reader
    page = parse(body, "deep")

    assert page == InlinePage("deep", body)


# --- rejections -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("body", ["", " ", "\n\t \r\n"])
def test_empty_or_whitespace_body_is_rejected_as_empty_message(body: str) -> None:
    rejected = rejection(body, "s")

    assert rejected.reason == "empty_message"
    assert rejected.detail == "the message body is empty"


@pytest.mark.parametrize("body", ["hello", "<xml/>", "releases: []", "undefined", "'{}'"])
def test_body_that_is_not_json_and_not_an_opened_document_is_rejected_as_not_json(body: str) -> None:
    rejected = rejection(body)

    assert rejected.reason == "not_json"
    assert rejected.detail.startswith("the message body is not JSON (")


@pytest.mark.parametrize("body", ["42", '"a page"', "null", "true", "1.5", " 1e9999"])
def test_json_scalar_is_rejected_as_not_ocds(body: str) -> None:
    rejected = rejection(body)

    assert rejected.reason == "not_ocds"
    assert rejected.detail == ("the message body is a JSON value that is neither an object nor an array, so it is "
                               "not a page")


@pytest.mark.parametrize("version", [2, "1", 0, None, "1.1", [1]])
def test_envelope_with_another_version_is_rejected_as_unknown_version(version: Any) -> None:
    # GIVEN a dict with only envelope keys, so it is an envelope, of a version this worker does not read
    body = json.dumps({"version": version, "source": "s", "page": PACKAGE})

    rejected = rejection(body)

    assert rejected.reason == "unknown_version"
    assert rejected.detail == (f"message version {json.dumps(version)} is not supported "
                               "(this worker reads version 1)")


def test_version_only_envelope_is_rejected_as_unknown_version() -> None:
    assert rejection('{"version": 2}').reason == "unknown_version"


def test_boolean_true_is_not_version_one() -> None:
    body = json.dumps({"version": True, "source": "s", "page": PACKAGE})

    try:
        accepted = parse(body)
    except MessageRejected as rejected:
        assert rejected.reason == "unknown_version"
        return
    raise AssertionError(f"accepted as {accepted!r}")


@pytest.mark.parametrize("envelope", [{"version": 1, "page": PACKAGE}, {"version": 1, "source": "", "page": {}},
                                      {"version": 1, "source": None, "url": "https://p.example/"},
                                      {"version": 1, "source": 7, "page": {}}])
def test_envelope_without_a_source_is_rejected_as_missing_source(envelope: dict[str, Any]) -> None:
    rejected = rejection(json.dumps(envelope), "attribute-does-not-help")

    assert rejected.reason == "missing_source"
    assert rejected.detail == "a version 1 message needs a non-empty 'source'"


def test_envelope_with_no_page_is_rejected_as_missing_page() -> None:
    rejected = rejection('{"version": 1, "source": "s"}')

    assert rejected.reason == "missing_page"
    assert rejected.detail == "a version 1 message needs exactly one of 'page', 'url' or 's3'"


@pytest.mark.parametrize(("envelope", "given"), [
    ({"version": 1, "source": "s", "page": {}, "url": "https://p.example/"}, "page, url"),
    ({"version": 1, "source": "s", "url": "https://p.example/", "s3": {"bucket": "b", "key": "k"}}, "url, s3"),
    ({"version": 1, "source": "s", "page": {}, "url": "https://p.example/", "s3": {}}, "page, url, s3"),
])
def test_envelope_with_two_or_more_pages_is_rejected_as_missing_page(envelope: dict[str, Any], given: str) -> None:
    rejected = rejection(json.dumps(envelope))

    assert rejected.reason == "missing_page"
    assert rejected.detail.endswith(f" (it has {given})")


def test_envelope_whose_page_is_null_still_counts_as_a_page() -> None:
    assert parse('{"version": 1, "source": "s", "page": null}') == InlinePage("s", b"null")


@pytest.mark.parametrize("source", ["\\u0000", "s\\u0000", "\\ud800", "s\\udfff"])
def test_envelope_whose_source_holds_a_nul_or_a_lone_surrogate_is_rejected_as_invalid_source(source: str) -> None:
    # Issue 8: it used to fail the message (DLQ); it cannot name a source, so it is recorded and acknowledged.
    rejected = rejection('{"version": 1, "source": "' + source + '", "page": {}}', "attribute-does-not-help")

    assert rejected.reason == "invalid_source"
    assert rejected.detail == ("the message's 'source' holds a NUL or a lone surrogate, which cannot name a source")


@pytest.mark.parametrize("url", ["ftp://publisher.example/page", "file:///etc/passwd", "publisher.example/page",
                                 "//publisher.example/page", "", 7, None, ["https://p.example/"]])
def test_url_that_is_not_http_is_rejected_as_invalid_url(url: Any) -> None:
    rejected = rejection(json.dumps({"version": 1, "source": "s", "url": url}))

    assert rejected.reason == "invalid_url"
    assert rejected.detail == f"'url' must be an http(s) URL, not {json.dumps(url)[:200]}"


def test_invalid_url_detail_is_capped() -> None:
    rejected = rejection(json.dumps({"version": 1, "source": "s", "url": "x" * 5000}))

    assert rejected.reason == "invalid_url"
    assert len(rejected.detail) == len("'url' must be an http(s) URL, not ") + 200


@pytest.mark.parametrize("claim", [None, "s3://bucket/key", ["bucket", "key"], {}, {"bucket": "b"}, {"key": "k"},
                                   {"bucket": "", "key": "k"}, {"bucket": "b", "key": ""},
                                   {"bucket": 1, "key": "k"}, {"bucket": "b", "key": ["k"]}])
def test_bad_claim_check_is_rejected_as_invalid_s3(claim: Any) -> None:
    rejected = rejection(json.dumps({"version": 1, "source": "s", "s3": claim}))

    assert rejected.reason == "invalid_s3"


def test_message_rejected_is_a_permanent_error_with_reason_and_detail() -> None:
    rejected = rejection("")

    assert isinstance(rejected, PermanentError)
    assert str(rejected) == "empty_message: the message body is empty"


# --- builders --------------------------------------------------------------------------------------------------


def test_inline_round_trips_through_parse() -> None:
    page = {**PACKAGE, "publisher": {"name": "Município de Évora"}}

    body = inline("portugal", page)
    request = parse(body)

    assert isinstance(request, InlinePage) and request.source == "portugal"
    assert json.loads(request.page) == page
    assert "Município de Évora" in body  # not \u-escaped: the SQS size counts bytes, escapes triple them


def test_inline_of_a_bare_array_round_trips() -> None:
    assert parse(inline("s", [1, 2])) == InlinePage("s", b"[1,2]")


def test_inline_raw_embeds_the_page_text_verbatim() -> None:
    # GIVEN page text whose formatting json.dumps would change (spacing, 1.10, escapes)
    page_text = '{ "releases" : [ {"ocid": "ocds-\\u00e9", "value": 1.10} ] }'

    body = inline_raw("uk", page_text)

    assert body == '{"version":1,"source":"uk","page":' + page_text + "}"
    assert parse(body) == InlinePage("uk", page_text.encode())


@pytest.mark.parametrize("separator", ["\n", "\r\n", "", " "])
def test_a_page_of_several_values_keeps_every_release(separator: str) -> None:
    # GIVEN a page of JSON lines (or concatenated releases), sent in an envelope as it was fetched
    lines = [json.dumps({"ocid": "ocds-a", "id": str(number), "date": "2020-01-01T00:00:00Z"}) for number in (1, 2, 3)]
    body = inline_raw("s", separator.join(lines))
    # WHEN the worker reads the message and its page
    page = parse(body)
    assert isinstance(page, InlinePage)
    prepared = prepare_page(page.page, "s")
    # THEN no release is lost: each is a row (the envelope's own closing brace, which the page took with it, is
    # quarantined, not dropped)
    assert [row.release_id for row in prepared.rows] == ["1", "2", "3"]
    assert [(rejection.reason, rejection.raw_text) for rejection in prepared.rejections] == [("invalid_json", "}")]


def test_inline_raw_escapes_the_source_name() -> None:
    body = inline_raw('we"ird', "[]")

    assert parse(body) == InlinePage('we"ird', b"[]")


def test_by_url_round_trips_through_parse() -> None:
    assert parse(by_url("paraguay", "https://p.example/api?page=2&x=é")) == UrlPage(
        "paraguay", "https://p.example/api?page=2&x=é")


def test_by_claim_check_round_trips_through_parse() -> None:
    assert parse(by_claim_check("uk", "claims", "uk/2020/01.json")) == S3Page("uk", "claims", "uk/2020/01.json")


def test_builders_write_version_one() -> None:
    for body in (inline("s", {}), inline_raw("s", "{}"), by_url("s", "https://p.example/"),
                 by_claim_check("s", "b", "k")):
        assert json.loads(body)["version"] == messages.VERSION == 1


# --- describe ---------------------------------------------------------------------------------------------------


def test_describe_names_where_the_page_came_from() -> None:
    assert describe(UrlPage("s", "https://p.example/api?page=2")) == "https://p.example/api?page=2"
    assert describe(S3Page("s", "claims", "uk/2020/01.json")) == "s3://claims/uk/2020/01.json"
    assert describe(InlinePage("s", PACKAGE_TEXT)) == "inline"
    assert describe(InlinePage("s", "raw text")) == "inline"

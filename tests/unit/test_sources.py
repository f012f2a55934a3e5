"""Unit tests for ingest.sources: loading and validating publisher configuration (pure)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from ingest.errors import ConfigurationError, IngestError, PermanentError, TransientError
from ingest.sources import PAGINATION_STYLES, Source, parse_source, parse_sources


def document(*entries: Any) -> str:
    return json.dumps({"sources": list(entries)})


def refusal(text: str, where: str = "sources") -> str:
    """The message of the ConfigurationError that parse_sources raises for ``text``."""
    with pytest.raises(ConfigurationError) as caught:
        parse_sources(text, where)
    return str(caught.value)


# --- a valid document -------------------------------------------------------------------------------------


def test_valid_document_gives_one_source_per_name_with_given_fields_and_defaults() -> None:
    # GIVEN a document with two publishers, one configured in detail
    text = document(
        {"name": "portugal", "start_url": "https://www.base.gov.pt/api/releases", "pagination": "offset",
         "page_size": 100, "page_size_parameter": "size", "requests_per_second": 0.5, "concurrency": 1,
         "headers": {"Accept": "application/json"}, "allowed_hosts": ["www.base.gov.pt", "*.base.gov.pt"],
         "window_days": 7, "overlap_minutes": 30, "enabled": False},
        {"name": "armenia", "start_url": "https://armeps.am/ocds/release", "next_pointer": "/next_page/uri"},
    )

    # WHEN it is parsed
    sources = parse_sources(text)

    # THEN every given field is kept, every other one has its default
    assert list(sources) == ["portugal", "armenia"]
    assert sources["portugal"] == Source(
        name="portugal", start_url="https://www.base.gov.pt/api/releases", pagination="offset", page_size=100,
        page_size_parameter="size", requests_per_second=0.5, concurrency=1, headers={"Accept": "application/json"},
        allowed_hosts=("www.base.gov.pt", "*.base.gov.pt"), window_days=7, overlap_minutes=30, enabled=False)
    armenia = sources["armenia"]
    assert armenia.next_pointer == "/next_page/uri"
    assert armenia.pagination == "next_link"
    assert armenia.enabled is True
    assert armenia.allow_private_network is False
    assert armenia.headers == {}
    assert armenia.requests_per_second == 2.0
    assert armenia.concurrency == 2


def test_empty_sources_list_gives_no_sources() -> None:
    assert parse_sources('{"sources": []}') == {}


@pytest.mark.parametrize("style", PAGINATION_STYLES)
def test_every_pagination_style_is_accepted(style: str) -> None:
    assert parse_source({"name": "pub", "pagination": style}).pagination == style


@pytest.mark.parametrize("name", ["a", "0", "a.b_c-1", "a" * 63, "dncp-paraguay"])
def test_names_of_lower_case_letters_digits_and_punctuation_up_to_63_characters_are_accepted(name: str) -> None:
    assert parse_source({"name": name}).name == name


# --- allowed hosts ----------------------------------------------------------------------------------------


def test_allowed_hosts_default_to_the_start_url_host_lower_cased_and_without_port() -> None:
    source = parse_source({"name": "pub", "start_url": "https://API.Publisher.example:8443/releases?page=1"})

    assert source.allowed_hosts == ("api.publisher.example",)


def test_empty_allowed_hosts_also_default_to_the_start_url_host() -> None:
    source = parse_source({"name": "pub", "start_url": "https://publisher.example/", "allowed_hosts": []})

    assert source.allowed_hosts == ("publisher.example",)


def test_explicit_allowed_hosts_replace_the_start_url_host() -> None:
    source = parse_source({"name": "pub", "start_url": "https://publisher.example/",
                           "allowed_hosts": ["cdn.example", "*.publisher.example"]})

    assert source.allowed_hosts == ("cdn.example", "*.publisher.example")
    assert not source.allows_host("publisher.example")


def test_source_without_start_url_or_allowed_hosts_allows_no_host() -> None:
    source = parse_source({"name": "pushed-only"})

    assert source.allowed_hosts == ()
    assert not source.allows_host("publisher.example")


@pytest.mark.parametrize("hosts", ["publisher.example", [""], [1], {"publisher.example": True}])
def test_allowed_hosts_that_are_not_a_list_of_host_names_are_refused(hosts: Any) -> None:
    message = refusal(document({"name": "pub", "allowed_hosts": hosts}))

    assert message == "sources: source 'pub': allowed_hosts must be a list of host names"


# --- Source.allows_host -------------------------------------------------------------------------------------


@pytest.mark.parametrize("host", ["publisher.example", "PUBLISHER.Example", "publisher.example."])
def test_exact_allowed_host_matches_case_insensitively_and_with_a_trailing_dot(host: str) -> None:
    assert Source(name="pub", allowed_hosts=("publisher.example",)).allows_host(host)


@pytest.mark.parametrize("host", ["api.publisher.example", "publisher.example.evil.com", "evilpublisher.example",
                                  "publisher.exampl", ""])
def test_exact_allowed_host_does_not_match_other_hosts(host: str) -> None:
    assert not Source(name="pub", allowed_hosts=("publisher.example",)).allows_host(host)


@pytest.mark.parametrize("host", ["a.example.org", "a.b.example.org", "A.Example.ORG", "a.example.org."])
def test_wildcard_allows_subdomains(host: str) -> None:
    assert Source(name="pub", allowed_hosts=("*.example.org",)).allows_host(host)


@pytest.mark.parametrize("host", ["example.org", "example.org.evil.com", "evilexample.org", "a.example.org.evil.com",
                                  "a.example.com"])
def test_wildcard_does_not_allow_the_bare_domain_nor_look_alikes(host: str) -> None:
    assert not Source(name="pub", allowed_hosts=("*.example.org",)).allows_host(host)


def test_any_of_several_allowed_hosts_matches() -> None:
    source = Source(name="pub", allowed_hosts=("publisher.example", "*.cdn.example"))

    assert source.allows_host("publisher.example")
    assert source.allows_host("eu.cdn.example")
    assert not source.allows_host("cdn.example")


# --- refusals -------------------------------------------------------------------------------------------------


def test_unknown_field_is_refused_naming_the_field_and_the_source() -> None:
    message = refusal(document({"name": "pub", "start_url": "https://publisher.example/", "page_szie": 10}))

    assert message.startswith("sources: source 'pub': unknown field(s) page_szie; known fields are ")
    assert "page_size" in message.split("known fields are ")[1]


def test_several_unknown_fields_are_listed_sorted() -> None:
    message = refusal(document({"name": "pub", "zeta": 1, "alpha": 2}))

    assert message.startswith("sources: source 'pub': unknown field(s) alpha, zeta; ")


def test_errors_name_the_document_they_came_from() -> None:
    message = refusal(document({"name": "pub", "oops": 1}), where="ssm:/ocds/sources")

    assert message.startswith("ssm:/ocds/sources: source 'pub': unknown field(s) oops")


@pytest.mark.parametrize("name", [None, "", "Portugal", "has space", "-leading-dash", "_leading", "a" * 64, 7,
                                  "ümlaut", "trailing\n"])
def test_bad_name_is_refused_quoting_it(name: Any) -> None:
    entry = {"start_url": "https://publisher.example/"} if name is None else {"name": name}

    message = refusal(document(entry))

    assert message == ("sources: 'name' must be lower-case letters, digits, '-', '_' or '.' "
                       f"(got {json.dumps(name)})")


def test_unknown_pagination_is_refused_listing_the_styles() -> None:
    message = refusal(document({"name": "pub", "pagination": "cursor"}))

    assert message == "sources: source 'pub': pagination must be one of next_link, page_number, offset, date_window"


@pytest.mark.parametrize("start_url", ["ftp://publisher.example/releases", "publisher.example/releases",
                                       "https://", "file:///etc/passwd", "javascript:alert(1)"])
def test_start_url_that_is_not_http_is_refused(start_url: str) -> None:
    message = refusal(document({"name": "pub", "start_url": start_url}))

    assert message == f"sources: source 'pub': start_url must be an http(s) URL, not {start_url!r}"


@pytest.mark.parametrize("field", ["requests_per_second", "concurrency", "window_days", "overlap_minutes"])
@pytest.mark.parametrize("value", [-1, 0, -0.5, "2", None])
def test_numbers_that_are_not_positive_are_refused(field: str, value: Any) -> None:
    message = refusal(document({"name": "pub", field: value}))

    assert message == f"sources: source 'pub': {field} must be a positive number"


@pytest.mark.parametrize("headers", [["Accept: application/json"], {"X-Page-Size": 100}, "Accept: */*"])
def test_headers_that_are_not_an_object_of_strings_are_refused(headers: Any) -> None:
    message = refusal(document({"name": "pub", "headers": headers}))

    assert message == "sources: source 'pub': headers must be an object of strings"


def test_duplicate_names_are_refused() -> None:
    message = refusal(document({"name": "pub"}, {"name": "other"}, {"name": "pub"}))

    assert message == "sources: source 'pub' is defined twice"


def test_text_that_is_not_json_is_refused() -> None:
    message = refusal('{"sources": [', where="sources.json")

    assert message.startswith("sources.json: not valid JSON (")


@pytest.mark.parametrize("text", ["[]", "{}", '{"sources": {}}', '{"sources": "pub"}', '"sources"', "null",
                                  '{"Sources": []}'])
def test_document_without_a_sources_list_is_refused(text: str) -> None:
    assert refusal(text) == 'sources: expected {"sources": [ … ]}'


@pytest.mark.parametrize("entry", ["pub", ["pub"], None, 3])
def test_source_entry_that_is_not_an_object_is_refused(entry: Any) -> None:
    assert refusal(document(entry)) == "sources: each source must be a JSON object"


def test_configuration_error_is_neither_permanent_nor_transient() -> None:
    # An operator fixes configuration; it is not data to quarantine nor an outage to wait out.
    assert issubclass(ConfigurationError, IngestError)
    assert not issubclass(ConfigurationError, PermanentError)
    assert not issubclass(ConfigurationError, TransientError)


@pytest.mark.parametrize("field", ["allow_private_network", "enabled"])
def test_boolean_fields_given_as_strings_are_refused(field: str) -> None:
    # GIVEN an operator who wrote "false" in quotes
    text = document({"name": "pub", "start_url": "https://publisher.example/", field: "false"})

    # WHEN it is parsed THEN it is refused rather than read as true
    try:
        source = parse_sources(text)["pub"]
    except ConfigurationError:
        return
    raise AssertionError(f"{field}={getattr(source, field)!r} was accepted, and is truthy")

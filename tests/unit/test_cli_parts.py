"""The command line's pure parts: naming a source after its URL, sniffing a file, the full-page warning."""

from __future__ import annotations

import codecs
from types import SimpleNamespace

import pytest

from ingest.cli_harvest import for_the_command_line, name_for, stopped_full
from ingest.inputs import _kind, sniff
from ingest.sources import parse_source


@pytest.mark.parametrize(("url", "name"), [
    ("https://www.find-tender.service.gov.uk/api/1.0/ocdsReleasePackages",
     "find-tender.service.gov.uk-api-1.0-ocdsreleasepackages"),
    ("http://127.0.0.1:8000/keyset", "127.0.0.1-8000-keyset"),
    ("https://example.org", "example.org"),
])
def test_a_source_is_named_after_the_urls_host_port_and_path(url: str, name: str) -> None:
    assert name_for(url) == name
    parse_source({"name": name_for(url)})  # a valid source name


def test_different_apis_on_one_host_get_different_names_and_long_ones_fit() -> None:
    names = {name_for("http://127.0.0.1/a"), name_for("http://127.0.0.1/b"), name_for("http://127.0.0.1/a?x=1"),
             name_for("http://127.0.0.1:81/a")}
    assert len(names) == 4
    long = name_for("https://example.org/" + "segment/" * 20)
    assert len(long) <= 63
    parse_source({"name": long})


@pytest.mark.parametrize(("head", "kind"), [
    (b'  \n{"releases": []}', "json"), (b"[1]", "json"), (b"-1", "json"), (b"null", "json"), (b'"x"', "json"),
    (b"", "empty"), (b" \r\n\t", "empty"), (b"hello world", "text"), (b"<html>", "text"),
    (codecs.BOM_UTF8 + b"{}", "json"), ("{}".encode("utf-16-le"), "json"), ("hello".encode("utf-16"), "text"),
])
def test_sniffing_tells_json_from_text_and_nothing(head: bytes, kind: str) -> None:
    assert sniff(head) == kind


@pytest.mark.parametrize(("name", "kind"), [
    ("a.json", "json"), ("a.JSONL.GZ", "json"), ("a.ndjson.xz", "json"), ("releases", "json"), ("a.zip", "zip"),
    ("a.tar.gz", "tar"), ("a.tgz", "tar"), ("a.txt", ""), ("a.csv.gz", ""), ("a.gz", "json"),
])
def test_file_names_say_what_is_read(name: str, kind: str) -> None:
    assert _kind(name) == kind


def test_a_walk_that_ended_on_a_full_page_is_said() -> None:
    source = parse_source({"name": "x", "start_url": "https://example.org/r?limit=50"})
    first = SimpleNamespace(releases=50)
    assert stopped_full(source, first, {"status": "complete", "pages": 1, "releases": 50})
    assert stopped_full(source, SimpleNamespace(releases=12), {"status": "complete", "pages": 1, "releases": 12}) \
        is None
    assert stopped_full(source, first, {"status": "complete", "pages": 3, "releases": 150})  # all full
    assert stopped_full(source, first, {"status": "complete", "pages": 3, "releases": 120}) is None
    unknown_size = parse_source({"name": "x", "start_url": "https://example.org/r"})
    assert stopped_full(unknown_size, SimpleNamespace(releases=100), {"status": "complete", "pages": 1,
                                                                     "releases": 100})
    assert stopped_full(unknown_size, SimpleNamespace(releases=37), {"status": "complete", "pages": 1,
                                                                    "releases": 37}) is None


def test_configuration_words_become_flags() -> None:
    assert for_the_command_line("add it to the source's allowed_hosts if it is the publisher's") == \
        "pass --allow-host with it if it is the publisher's"

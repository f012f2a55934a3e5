"""The harvester's reading of a fetched page (pure): the walk needs the links and counts, never every release
parsed, so one bad release never stops a walk; a page cut off in transit is fetched again."""

from __future__ import annotations

import json

import pytest

from ingest.harvest import PageNotOcds, parse_page

GOOD = '{"ocid":"ocds-1","id":"1","date":"2020-01-02T00:00:00Z"}'
LINKS = '"links":{"next":"https://example.org/page/2"}'


@pytest.mark.parametrize("bad", [
    '{"ocid":"ocds-2","id":"1","date":"2021-01-01T00:00:00Z","n":1' + "0" * 5000 + "}",
    '{"ocid":"ocds-2","id":"1","date":"2021-01-01T00:00:00Z","x":' + "[" * 3000 + "]" * 3000 + "}",
    '{"ocid":"ocds-2","id":"1","date":"2021-01-01T00:00:00Z","t":"\\ud800"}',
    '{"ocid":"ocds-2","id":"1" "date":"2021-01-01T00:00:00Z"}',
])
def test_a_page_with_one_bad_release_still_pages_on(bad: str) -> None:
    # GIVEN a page whose second release the standard library's JSON parser refuses (or that is broken)
    raw = ('{"uri":"u","releases":[' + GOOD + "," + bad + "]," + LINKS + "}").encode()
    # WHEN the harvester reads it
    page = parse_page(raw, "https://example.org/page/1")
    # THEN the link to follow, the count and the newest date are found, and the text goes on as published
    assert page.value["links"]["next"] == "https://example.org/page/2"
    assert page.releases == 2
    assert page.text == raw.decode()


def test_numbers_in_a_page_are_read_exactly() -> None:
    page = parse_page(b'{"releases":[],"pagination":{"total":12345678901234567890,"x":0.1}}', "u")
    assert str(page.value["pagination"]["total"]) == "12345678901234567890"
    assert str(page.value["pagination"]["x"]) == "0.1"


@pytest.mark.parametrize("raw", [b'{"uri":"u","releases":[' + GOOD.encode() + b",{", b"<html>oops</html>", b"",
                                 b'{"releases":{"not":"an array"}}', b'[{"releases":null}]', b"[1]", b"7"])
def test_a_cut_off_or_non_json_page_is_refused_so_it_is_fetched_again(raw: bytes) -> None:
    with pytest.raises(PageNotOcds):
        parse_page(raw, "https://example.org/page/1")


def test_the_newest_date_of_a_page_is_its_watermark() -> None:
    releases = [json.loads(GOOD), {"ocid": "o", "id": "2", "date": "2022-05-01T00:00:00Z"}, {"ocid": "o"}]
    page = parse_page(json.dumps({"releases": releases}).encode(), "u")
    assert page.newest is not None and page.newest.isoformat() == "2022-05-01T00:00:00+00:00"
    assert page.releases == 3


def test_a_list_page_pages_on_from_its_first_package() -> None:
    page = parse_page(('[{"releases":[' + GOOD + ']},{"records":[]}]').encode(), "u")
    assert page.releases == 1 and page.value[0]["releases"] == [] and page.value[1]["records"] == []

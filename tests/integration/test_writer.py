"""The page writer against a real PostgreSQL: conflict rule, order independence, hostile data, bisection,
atomicity when the connection dies, round trips on the wire."""

from __future__ import annotations

import copy
import dataclasses
import json
import random
import secrets
import threading
import time
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ingest.errors import DatabaseUnavailable
from ingest.pages import prepare_page, save_page
from ingest.store.connection import Database, connect_url
from ingest.store.writer import DATA_SEPARATOR, STRATEGIES, write_page
from tests.conftest import table_checksum
from tests.tools.tcp_proxy import LatencyProxy


def release(ocid: str, release_id: str, date: str, **extra: Any) -> dict[str, Any]:
    return {"ocid": ocid, "id": release_id, "date": date, "tag": ["tender"], **extra}


def package(*releases: dict[str, Any], uri: str = "https://example.org/page") -> dict[str, Any]:
    return {"uri": uri, "publisher": {"name": "Example"}, "version": "1.1", "releases": list(releases)}


def stored(db: Database) -> dict[tuple[str, str], dict[str, Any]]:
    return {(row[0], row[1]): row[2] for row in db.run("SELECT ocid, release_id, data FROM releases", "read")}


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_a_newer_release_replaces_an_older_one_and_never_the_reverse(db: Database, strategy: str) -> None:
    old = release("ocds-1", "r1", "2020-01-01T00:00:00Z", title="old")
    new = release("ocds-1", "r1", "2021-01-01T00:00:00Z", title="new")
    first = save_page(db, package(new), "s", strategy=strategy)
    second = save_page(db, package(old), "s", strategy=strategy)
    assert (first.inserted, second.inserted, second.updated, second.unchanged) == (1, 0, 0, 1)
    assert stored(db)[("ocds-1", "r1")]["title"] == "new"
    third = save_page(db, package(release("ocds-1", "r1", "2022-01-01T00:00:00Z", title="newer")), "s",
                      strategy=strategy)
    assert (third.inserted, third.updated) == (0, 1)
    assert stored(db)[("ocds-1", "r1")]["title"] == "newer"


DATE_FORMS = ["2020-01-01T10:00:00Z", "2020-01-01T10:00:00z", "2020-01-01 10:00:00Z", "2020-01-01T12:30:00+02:30",
              "2020-01-01T10:00:00.1234567Z", "2020-01-01T10:00", "2020-01-01",
              "\u0662\u0660\u0662\u0660-01-01T10:00:00Z"]


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_the_database_holds_the_instant_reading_found_whatever_form_the_date_was_sent_in(
        db: Database, strategy: str) -> None:
    # GIVEN releases whose dates take every form reading accepts: the usual one, sent as published, and others,
    # sent as the instant written out (Arabic-Indic digits among them, which PostgreSQL does not read)
    page = prepare_page(package(*[release(f"ocds-date-{n}", "1", date) for n, date in enumerate(DATE_FORMS)]), "s",
                        strategy=strategy)
    assert len(page.rows) == len(DATE_FORMS)
    # WHEN they are written
    result = write_page(db, page.rows, [], [], "s", "page-dates", strategy)
    # THEN each stored date is the instant reading found, and the published text is kept beside it
    assert result.inserted == len(DATE_FORMS)
    stored_dates = {ocid: (moment, text) for ocid, moment, text in
                    db.run("SELECT ocid, release_date, date_text FROM releases", "read")}
    assert stored_dates == {row.ocid: (row.release_date, row.date_text) for row in page.rows}


def test_same_date_different_content_is_decided_by_the_hash_in_both_orders(db: Database) -> None:
    a = release("ocds-2", "r", "2020-01-01T00:00:00Z", title="a")
    b = release("ocds-2", "r", "2020-01-01T00:00:00Z", title="b")
    save_page(db, package(a), "s")
    save_page(db, package(b), "s")
    one = table_checksum(db)
    db.run("TRUNCATE releases", "reset")
    save_page(db, package(b), "s")
    save_page(db, package(a), "s")
    assert table_checksum(db) == one


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_duplicates_inside_one_page_are_resolved_before_writing(db: Database, strategy: str) -> None:
    # "ON CONFLICT DO UPDATE command cannot affect row a second time" must never happen
    releases = [release("ocds-3", "r", f"2020-01-0{day}T00:00:00Z", day=day) for day in (3, 1, 5, 2, 5)]
    result = save_page(db, package(*releases), "s", strategy=strategy)
    assert (result.inserted, result.duplicates_in_page, result.unchanged) == (1, 4, 4)
    assert stored(db)[("ocds-3", "r")]["day"] == 5


def _pages() -> list[list[dict[str, Any]]]:
    rng = random.Random(11)
    pages = []
    for page_number in range(6):
        page = []
        for _ in range(15):
            ocid = f"ocds-h-{rng.randrange(8)}"
            page.append(release(ocid, f"r{rng.randrange(3)}", f"2020-01-{rng.randrange(1, 4):02d}T00:00:00Z",
                                page=page_number, value=rng.randrange(3)))
        pages.append(page)
    return pages


PAGES = _pages()


@pytest.fixture(scope="module")
def expected_checksum(migrated: str) -> tuple[int, str]:
    db = connect_url(migrated)
    try:
        db.run("TRUNCATE releases, rejected_releases, compiled_releases", "reset")
        for page in PAGES:
            save_page(db, package(*page), "s")
        return table_checksum(db)
    finally:
        db.close()


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(order=st.permutations(list(range(len(PAGES)))), replays=st.lists(st.integers(0, len(PAGES) - 1), max_size=4))
def test_any_order_and_any_replay_gives_a_byte_identical_table(
        db: Database, expected_checksum: tuple[int, str], order: list[int], replays: list[int]) -> None:
    db.run("TRUNCATE releases", "reset")
    for index in [*order, *replays]:
        save_page(db, package(*PAGES[index]), "s")
    assert table_checksum(db) == expected_checksum


HOSTILE = [
    "it's \"quoted\"",
    "'); DROP TABLE releases; --",
    "back\\slash \\N \\\\ end\\",
    "tab\there\nnewline\r\ncarriage",
    "\\N",
    "astral 😼𝒞 and ½ and Ω and 中文",
    "x" * 2000,
    "record\x1eseparator and unit\x1fseparator",  # what unnest joins a column's values with, and marks NULL with
    "\x1fx",
    "NULL",
    '{"a",NULL}',
]


@pytest.mark.parametrize("strategy", STRATEGIES)
@pytest.mark.parametrize("text", HOSTILE)
def test_hostile_strings_are_stored_exactly(db: Database, text: str, strategy: str) -> None:
    hostile = release(text, text, "2020-01-01T00:00:00Z", buyer={"id": text, "name": text},
                      tender={"title": text, text: [text]}, tag=[text, "tender"])
    result = save_page(db, package(hostile), "s", strategy=strategy)
    assert result.inserted == 1
    row = db.run("SELECT ocid, release_id, buyer_id, buyer_name, tender_title, data, tag FROM releases", "read")[0]
    assert row[:5] == [text] * 5
    assert row[5] == hostile
    assert row[6] == [text, "tender"]
    assert db.run("SELECT count(*) FROM releases", "count")[0][0] == 1  # the table survived


# Any text but NUL (removed and flagged, tested below) and lone surrogates (not UTF-8), the joining characters likelier
COLUMN_TEXT = st.one_of(st.none(), st.sampled_from(["", "\x1e", "\x1f", "a\x1eb", "NULL", "{}", '"', "\\"]),
                        st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00")))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(values=st.lists(st.tuples(COLUMN_TEXT, COLUMN_TEXT, COLUMN_TEXT), min_size=1, max_size=5))
def test_any_column_values_come_back_exactly_whatever_characters_they_hold(
        db: Database, values: list[tuple[str | None, str | None, str | None]]) -> None:
    # GIVEN a page whose rows' column values are any text, absent, empty, or the characters unnest joins with
    db.run("TRUNCATE releases", "reset")
    releases = []
    for n, (buyer_id, buyer_name, title) in enumerate(values):
        buyer = {key: value for key, value in (("id", buyer_id), ("name", buyer_name)) if value is not None}
        releases.append(release(f"ocds-{n}", "1", "2020-01-01T00:00:00Z", buyer=buyer,
                                tender={} if title is None else {"title": title}))
    # WHEN it is written by the default strategy
    assert save_page(db, package(*releases), "s").inserted == len(values)
    # THEN each column holds each row's own value, NULL where it was absent
    by_ocid = {row[0]: tuple(row[1:]) for row in db.run(
        "SELECT ocid, buyer_id, buyer_name, tender_title FROM releases", "read")}
    assert by_ocid == {f"ocds-{n}": value for n, value in enumerate(values)}


def test_nul_characters_are_removed_and_flagged(db: Database) -> None:
    page = '{"releases":[{"ocid":"ocds-n","id":"1","date":"2020-01-01T00:00:00Z","tender":{"title":"a\\u0000b"},' \
           '"k\\u0000":"v"}]}'
    save_page(db, page, "s")
    data, flags = db.run("SELECT data, flags FROM releases", "read")[0]
    assert data == {"ocid": "ocds-n", "id": "1", "date": "2020-01-01T00:00:00Z", "tender": {"title": "ab"},
                    "k": "v"}
    assert flags == ["nul_removed"]


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_an_id_too_long_for_the_index_is_quarantined_with_the_database_reason(db: Database, strategy: str) -> None:
    # GIVEN a page of 40 good releases and 3 whose random 12 kB id no B-tree entry can hold
    good = [release(f"ocds-g{n}", "1", "2020-01-01T00:00:00Z") for n in range(40)]
    bad = [release(f"ocds-b{n}", secrets.token_hex(6000), "2020-01-01T00:00:00Z") for n in range(3)]
    mixed = good[:10] + [bad[0]] + good[10:30] + bad[1:] + good[30:]
    # WHEN it is saved
    result = save_page(db, package(*mixed), "s", "page-x", strategy=strategy)
    # THEN exactly the bad ones are quarantined with PostgreSQL's message, and all the good ones committed
    assert result.inserted == 40
    assert dict(result.rejected) == {"database_refused": 3}
    rows = db.run("SELECT ocid, reason, detail, raw_text, position FROM rejected_releases ORDER BY ocid", "read")
    assert [row[0] for row in rows] == ["ocds-b0", "ocds-b1", "ocds-b2"]
    for ocid, reason, detail, raw_text, position in rows:
        assert reason == "database_refused"
        assert "index row" in detail and "SQLSTATE 54000" in detail
        assert json.loads(raw_text)["ocid"] == ocid
        assert position.startswith("/releases/")
    assert db.run("SELECT count(*) FROM releases", "count")[0][0] == 40


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_a_text_holding_the_data_separator_is_quarantined_and_no_other_row_gets_its_data(
        db: Database, strategy: str) -> None:
    # GIVEN rows whose data texts unnest sends joined by U+001E, one of which (past the reader, which never lets
    # one through: JSON allows control characters only escaped) holds a raw U+001E
    page = prepare_page(package(*[release(f"ocds-sep-{n}", "1", "2020-01-01T00:00:00Z", n=n) for n in range(6)]),
                        "s", strategy=strategy)
    bad = page.rows[2]
    rows = [*page.rows[:2], dataclasses.replace(bad, data=(bad.data_text[:-1] + ',"x":"a' + DATA_SEPARATOR
                                                                + 'b"}').encode()), *page.rows[3:]]
    # WHEN they are written
    result = write_page(db, rows, [], [], "s", "page-sep", strategy)
    # THEN that release is quarantined with PostgreSQL's reason and every other row holds its own text
    assert (result.inserted, len(result.refused or [])) == (5, 1)
    assert db.run("SELECT ocid, reason FROM rejected_releases", "read") == [[bad.ocid, "database_refused"]]
    assert {ocid: data["n"] for (ocid, _), data in stored(db).items()} == {
        f"ocds-sep-{n}": n for n in range(6) if n != 2}


def test_the_json_columns_are_compressed_with_lz4_where_the_server_has_it(db: Database) -> None:
    has_lz4 = db.run("SELECT 'lz4' = ANY(enumvals) FROM pg_settings WHERE name = 'default_toast_compression'",
                     "lz4")[0][0]
    big = release("ocds-lz4", "1", "2020-01-01T00:00:00Z", description=" ".join(["compressible"] * 2000))
    save_page(db, package(big), "s", compile_releases="inline")
    methods = db.run("SELECT pg_column_compression(r.data), pg_column_compression(c.data) FROM releases r "
                     "JOIN compiled_releases c USING (ocid)", "compression")
    assert methods == [["lz4", "lz4"]] if has_lz4 else [["pglz", "pglz"]]


def test_a_long_but_compressible_id_is_stored(db: Database) -> None:
    long_id = "a" * 10_000
    assert save_page(db, package(release("ocds-long", long_id, "2020-01-01T00:00:00Z")), "s").inserted == 1


def test_a_replayed_page_quarantines_its_rejections_once(db: Database) -> None:
    page = package({"ocid": "ocds-x"}, {}, {}, release("ocds-ok", "1", "2020-01-01T00:00:00Z"))
    save_page(db, page, "s", "page-1")
    save_page(db, page, "s", "page-1")
    reasons = db.run("SELECT reason, position FROM rejected_releases ORDER BY position", "read")
    assert reasons == [["missing_id", "/releases/0"], ["missing_ocid", "/releases/1"],
                       ["missing_ocid", "/releases/2"]]


def test_a_connection_killed_mid_page_leaves_nothing_written(db: Database, migrated: str) -> None:
    # GIVEN another transaction holding the row lock of one key of the page, so the page write must wait
    blocker = connect_url(migrated)
    blocker.run("BEGIN", "blocking")
    blocker.execute_once("INSERT INTO releases (ocid, release_id, release_date, date_text, source, content_hash, "
                         "data) VALUES ('ocds-k-5', '1', now(), 'now', 'b', '\\x00', '{}')", "blocking")
    page = package(*[release(f"ocds-k-{n}", "1", "2020-01-01T00:00:00Z") for n in range(10)])
    victim = connect_url(migrated)
    pid = victim.run("SELECT pg_backend_pid()", "pid")[0][0]
    outcome: dict[str, BaseException] = {}

    def write() -> None:
        try:
            save_page(victim, page, "s")
        except BaseException as exc:  # noqa: BLE001 - handed to the main thread
            outcome["error"] = exc

    writer = threading.Thread(target=write)
    writer.start()
    deadline = time.monotonic() + 10
    while db.run(f"SELECT count(*) FROM pg_locks WHERE pid = {int(pid)} AND NOT granted", "locks")[0][0] == 0:
        assert time.monotonic() < deadline, "the page write never waited for the lock"
        time.sleep(0.01)
    # WHEN its connection is killed while it waits half-way through the page
    db.execute_once("SELECT pg_terminate_backend(:pid)", "kill", pid=pid)
    writer.join(10)
    victim.close()
    blocker.run("ROLLBACK", "release")
    blocker.close()
    # THEN the writer gets the retryable error and not one row of the page was written
    assert isinstance(outcome.get("error"), DatabaseUnavailable)
    assert "retry" in str(outcome["error"])
    assert db.run("SELECT count(*) FROM releases", "count")[0][0] == 0
    # AND the same page on a new connection lands in full
    again = connect_url(migrated)
    assert save_page(again, page, "s").inserted == 10
    again.close()


def test_a_page_costs_one_round_trip_on_the_wire_whatever_its_size(db: Database, migrated: str) -> None:
    from ingest.store.connection import parse_url

    settings_ = parse_url(migrated)
    with LatencyProxy(settings_.host, settings_.port) as proxy:
        proxied = connect_url(f"postgresql://{settings_.user}@127.0.0.1:{proxy.port}/{settings_.database}")
        # The writer's own cost: compiling's round trips are counted in test_compiled.py.
        save_page(proxied, package(release("ocds-warm", "1", "2020-01-01T00:00:00Z")), "s",
                  compile_releases=False)  # prepares once
        for size in (1, 10, 1000):
            proxy.reset_round_trips()
            page = package(*[copy.deepcopy(release(f"ocds-rt-{size}-{n}", "1", "2020-01-01T00:00:00Z"))
                             for n in range(size)], {"ocid": "bad"})
            result = save_page(proxied, page, "s", f"size {size}", compile_releases=False)
            assert result.inserted == size
            assert proxy.round_trips == 1 == result.round_trips
        proxied.close()


@pytest.mark.parametrize("strategy", ["unnest", "json"])
def test_concurrent_writers_of_overlapping_pages_neither_deadlock_nor_disagree(
        db: Database, migrated: str, expected_checksum: tuple[int, str], strategy: str) -> None:
    # GIVEN four workers, each writing every page (same keys, conflicting versions) in its own order
    db.run("TRUNCATE releases", "reset")
    errors: list[BaseException] = []

    def worker(seed: int) -> None:
        connection = connect_url(migrated)
        try:
            order = list(range(len(PAGES))) * 2
            random.Random(seed).shuffle(order)
            for index in order:
                save_page(connection, package(*PAGES[index]), "s", strategy=strategy)
        except BaseException as exc:  # noqa: BLE001 - handed to the main thread
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=worker, args=(seed,)) for seed in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    # THEN no deadlock or serialization failure surfaced, and the table is the one any single order gives
    assert errors == []
    assert table_checksum(db) == expected_checksum

"""Statements sent ahead: the next page on the wire before the current page's answer is read, against a real
PostgreSQL. Each answer is its own statement's, whatever else is pending; a refusal stays its page's."""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from typing import Any

import pytest

from handler import environment
from ingest.errors import ConfigurationError, DatabaseUnavailable
from ingest.pages import save_page
from ingest.store.connection import Database, connect_url
from ingest.store.errors import DataRefused
from ingest.worker import Connections, Message, MessageOutcome, Worker

DOUBLE = "SELECT CAST(:n AS int) * 2"


@pytest.fixture
def own(migrated: str) -> Iterator[Database]:
    """A connection of the test's own (the ``db`` fixture's stays usable to look at the tables)."""
    database = connect_url(migrated)
    yield database
    database.close()


def test_each_answer_is_its_own_statements_whatever_order_they_are_asked_for(own: Database) -> None:
    first, second, third = (own.send(DOUBLE, "doubling", n=n) for n in (1, 2, 3))
    assert own.receive(third) == [[6]]  # reads the two answers before it, kept for their own receive
    assert own.receive(first) == [[2]]
    assert own.receive(second) == [[4]]
    assert own.round_trips == 4  # the statement prepared once, then one request each


def test_a_request_while_answers_are_pending_reads_them_first(own: Database) -> None:
    pending = own.send(DOUBLE, "doubling", n=5)
    assert own.run("SELECT 42", "asking") == [[42]]
    assert own.execute(DOUBLE, "doubling", n=7) == [[14]]
    assert own.receive(pending) == [[10]]


def test_a_refused_statement_fails_alone_and_the_one_behind_it_runs(own: Database) -> None:
    refused = own.send("SELECT 1 / CAST(:n AS int)", "dividing", n=0)
    behind = own.send(DOUBLE, "doubling", n=21)
    with pytest.raises(DataRefused, match="division by zero"):
        own.receive(refused)
    assert own.receive(behind) == [[42]]
    assert own.run("SELECT 1", "after") == [[1]]


def test_answers_pending_on_a_lost_connection_are_unavailable(own: Database, db: Database) -> None:
    pid = own.run("SELECT pg_backend_pid()", "pid")[0][0]
    own.execute(DOUBLE, "preparing", n=0)  # prepared now: sending it later reads no answer first
    first = own.send("SELECT pg_sleep(CAST(:s AS float)), 1", "sleeping", s="5")
    second = own.send(DOUBLE, "doubling", n=1)
    db.run(f"SELECT pg_terminate_backend({int(pid)})", "terminating")
    with pytest.raises(DatabaseUnavailable):
        own.receive(first)
    with pytest.raises(DatabaseUnavailable):
        own.receive(second)
    assert own.broken


def test_an_answer_never_read_before_the_connection_closed_is_unavailable(migrated: str) -> None:
    database = connect_url(migrated)
    pending = database.send(DOUBLE, "doubling", n=1)
    database.close()
    with pytest.raises(DatabaseUnavailable, match="closed before"):
        database.receive(pending)


# --- the worker: each next page goes out behind the current one ----------------------------------------------

def body(name: str, ids: list[str]) -> str:
    return json.dumps({"version": 1, "source": "s", "page": {"releases": [
        {"ocid": f"ocds-{name}", "id": release_id, "date": "2021-01-01T00:00:00Z"} for release_id in ids]}})


class Recorder:
    """What each ``Database.send`` found pending when it sent, and the connections the worker opened."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.pending_at_send: list[int] = []
        real_send = Database.send

        def send(database: Database, sql: str, where: str, **params: Any) -> Any:
            self.pending_at_send.append(len(database._pending))
            return real_send(database, sql, where, **params)

        monkeypatch.setattr(Database, "send", send)


def run_batch(url: str, bodies: list[str], compile_releases: str = "off",
              connect: Any = None, send_ahead: bool = True) -> list[MessageOutcome]:
    worker = Worker(Connections(connect or (lambda: connect_url(url))), {}, compile_releases=compile_releases,
                    send_ahead=send_ahead)
    batch = [Message(f"m{n}", text, "s") for n, text in enumerate(bodies)]
    try:
        with worker.batch(batch):
            return [worker.process(message) for message in batch]
    finally:
        worker.close()


def test_a_batch_sends_each_next_page_before_reading_the_answer_of_the_current_one(
        migrated: str, db: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    recorder = Recorder(monkeypatch)
    outcomes = run_batch(migrated, [body(f"p{n}", ["1", "2"]) for n in range(3)])
    # THEN the first page went out alone, and every later one behind the page before it
    assert recorder.pending_at_send == [0, 1, 1]
    assert [(outcome.page.inserted, outcome.page.round_trips) for outcome in outcomes if outcome.page] == [
        (2, 1), (2, 1), (2, 1)]
    assert db.run("SELECT count(*) FROM releases", "count") == [[6]]


@pytest.mark.parametrize("refused_page", [0, 1])
def test_a_row_the_database_refuses_is_quarantined_by_its_own_page_with_another_page_on_the_wire(
        migrated: str, db: Database, refused_page: int) -> None:
    # GIVEN two pages, one holding a release whose 12 kB id no B-tree entry can hold
    ids = [["1", "2", "3"], ["1", "2", "3"]]
    ids[refused_page][1] = secrets.token_hex(6000)
    outcomes = run_batch(migrated, [body(f"r{n}", page_ids) for n, page_ids in enumerate(ids)])
    # THEN that page reports the refusal and writes its other rows, and the other page is whole
    assert [(outcome.page.inserted, dict(outcome.page.rejected)) for outcome in outcomes if outcome.page] == [
        (2, {"database_refused": 1}) if n == refused_page else (3, {}) for n in range(2)]
    assert db.run("SELECT ocid, reason FROM rejected_releases", "read") == [[f"ocds-r{refused_page}",
                                                                              "database_refused"]]
    assert db.run("SELECT count(*) FROM releases", "count") == [[5]]


def test_with_send_ahead_off_each_page_is_written_before_the_next_goes_out(
        migrated: str, db: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    recorder = Recorder(monkeypatch)
    outcomes = run_batch(migrated, [body(f"o{n}", ["1"]) for n in range(3)], send_ahead=False)
    assert recorder.pending_at_send == []
    assert [outcome.page.inserted for outcome in outcomes if outcome.page] == [1, 1, 1]


def test_the_send_ahead_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SEND_AHEAD", raising=False)
    assert environment.send_ahead() is True
    for value, expected in (("false", False), (" FALSE ", False), ("true", True)):
        monkeypatch.setenv("SEND_AHEAD", value)
        assert environment.send_ahead() is expected
    monkeypatch.setenv("SEND_AHEAD", "no")
    with pytest.raises(ConfigurationError, match="SEND_AHEAD='no' is neither true nor false"):
        environment.send_ahead()


def test_compiling_inline_sends_nothing_ahead(migrated: str, db: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    recorder = Recorder(monkeypatch)
    outcomes = run_batch(migrated, [body(f"c{n}", ["1"]) for n in range(3)], compile_releases="inline")
    assert recorder.pending_at_send == []  # each page is written and compiled before the next goes out
    assert [outcome.page.ocids_compiled for outcome in outcomes if outcome.page] == [1, 1, 1]


def test_a_connection_lost_with_a_page_on_the_wire_is_replaced_and_every_page_lands(
        migrated: str, db: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    # GIVEN the first page's insert held back by another transaction writing one of its keys, and the worker's
    # connection terminated once the second page is on the wire behind it (neither answer can have come)
    db.run("BEGIN", "holding a key")
    save_page(db, json.loads(body("l0", ["1"]))["page"], "s", compile_releases="off")
    opened: list[Database] = []

    def connect() -> Database:
        opened.append(connect_url(migrated))
        return opened[-1]

    real_send = Database.send

    def send_then_lose_the_first_connection(database: Database, sql: str, where: str, **params: Any) -> Any:
        sent = real_send(database, sql, where, **params)
        if database is opened[0] and len(database._pending) == 2:
            db.run("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE pid <> pg_backend_pid() "
                   "AND datname = current_database() AND application_name = 'ocds-ingest'", "terminating")
            db.run("ROLLBACK", "letting the key go")
        return sent

    monkeypatch.setattr(Database, "send", send_then_lose_the_first_connection)
    outcomes = run_batch(migrated, [body(f"l{n}", ["1", "2"]) for n in range(3)], connect=connect)
    # THEN the worker reconnected once, sent both pages again on the new connection, and every page landed
    assert len(opened) == 2
    assert [outcome.page.inserted for outcome in outcomes if outcome.page] == [2, 2, 2]
    assert db.run("SELECT count(*) FROM releases", "count") == [[6]]

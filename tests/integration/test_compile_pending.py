"""Deferred compiling against the real PostgreSQL: the page statement marks what it changed, the compile step
brings exactly those ocids up to date; marks survive a compile that runs meanwhile and a compile that fails;
concurrent writers and compile steps converge to compiling from scratch without waiting on each other."""

from __future__ import annotations

import copy
import json
import random
import secrets
import threading
from pathlib import Path

import pytest

import handler.compile
from ingest.cli import main
from ingest.pages import save_page
from ingest.queue import LocalContext
from ingest.store.compiled import backlog, compile_pending
from ingest.store.connection import Database, connect_url
from ingest.store.writer import STRATEGIES
from tests.integration.test_compiled import _pages, _pool, assert_equals_compiling_from_scratch, package, release


def marks(db: Database) -> list[str]:
    return sorted(row[0] for row in db.run("SELECT ocid FROM compile_pending", "read"))


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_a_deferred_page_marks_what_it_changed_and_the_compile_step_compiles_it(db: Database, strategy: str) -> None:
    page = package(release("ocds-d1", "1", "2020-01-01T00:00:00Z", tender={"title": "one"}),
                   release("ocds-d1", "2", "2020-01-02T00:00:00Z"),
                   release("ocds-d2", "1", "2020-01-01T00:00:00Z"))
    result = save_page(db, page, "s", strategy=strategy, compile_releases="deferred")
    assert (result.inserted, result.ocids_compiled) == (3, 0)
    assert marks(db) == ["ocds-d1", "ocds-d2"]  # one mark per ocid the statement changed
    assert db.run("SELECT count(*) FROM compiled_releases", "count") == [[0]]

    done = compile_pending(db)
    assert (done.claimed, done.compiled, done.merges) == (2, 2, 3)
    assert marks(db) == []
    assert_equals_compiling_from_scratch(db)

    # A replay changes nothing, so it marks nothing; a new version marks its ocid alone.
    save_page(db, page, "s", strategy=strategy, compile_releases="deferred")
    assert marks(db) == []
    save_page(db, package(release("ocds-d2", "1", "2020-01-03T00:00:00Z", tender={"title": "new"})), "s",
              strategy=strategy, compile_releases="deferred")
    assert marks(db) == ["ocds-d2"]
    assert compile_pending(db).compiled == 1
    assert_equals_compiling_from_scratch(db)


def test_a_publisher_s_compiled_release_is_marked_too(db: Database) -> None:
    record_package = {"uri": "https://example.org/rp", "version": "1.1", "records": [{
        "ocid": "ocds-linked", "releases": [{"url": "https://example.org/r1", "date": "2020-01-01T00:00:00Z"}],
        "compiledRelease": {"ocid": "ocds-linked", "id": "c", "date": "2020-01-01T00:00:00Z",
                            "tender": {"title": "theirs"}}}]}
    save_page(db, record_package, "s", compile_releases="deferred")
    assert marks(db) == ["ocds-linked"]
    compile_pending(db)
    row = db.run("SELECT compiled_from, data->'tender'->>'title' FROM compiled_releases", "read")
    assert row == [["publisher", "theirs"]]


def test_a_write_during_a_compile_does_not_wait_and_its_mark_survives_the_compile(
        db: Database, migrated: str) -> None:
    save_page(db, package(release("ocds-w", "1", "2020-01-01T00:00:00Z")), "s", compile_releases="deferred")
    compiler = connect_url(migrated)
    writer = connect_url(migrated)
    try:
        # GIVEN a compile step that has claimed the ocid's mark and not committed
        compiler.run("BEGIN", "begin")
        claimed = compiler.run("DELETE FROM compile_pending RETURNING ocid", "claim")
        assert claimed == [["ocds-w"]]
        # WHEN a writer changes the same ocid meanwhile (a wait would fail: nothing may block it)
        writer.run("SET statement_timeout = '5s'", "set")
        save_page(writer, package(release("ocds-w", "2", "2020-01-02T00:00:00Z")), "s", compile_releases="deferred")
        # THEN its mark is its own row (the claimed one is still visible to others until the claim commits)
        assert marks(db) == ["ocds-w", "ocds-w"]
        compiler.run("COMMIT", "commit")
    finally:
        compiler.close()
        writer.close()
    # ... so whatever the compile saw, the ocid is compiled again after it.
    assert marks(db) == ["ocds-w"]
    compile_pending(db)
    assert_equals_compiling_from_scratch(db)


def test_a_compile_that_fails_leaves_its_marks_for_the_next(db: Database, migrated: str) -> None:
    from ingest.errors import TransientError

    save_page(db, package(release("ocds-f", "1", "2020-01-01T00:00:00Z")), "s", compile_releases="deferred")
    blocker, failing = connect_url(migrated), connect_url(migrated)
    try:
        # GIVEN compiled_releases locked by someone else, so the step fails after its claim
        blocker.run("BEGIN; LOCK TABLE compiled_releases IN ACCESS EXCLUSIVE MODE", "lock")
        failing.run("SET lock_timeout = '200ms'", "set")
        with pytest.raises(TransientError):
            compile_pending(failing)
        blocker.run("ROLLBACK", "unlock")
    finally:
        blocker.close()
        failing.close()
    # THEN its claim was rolled back with it: the mark is there for the next step
    assert marks(db) == ["ocds-f"]
    assert compile_pending(db).compiled == 1
    assert_equals_compiling_from_scratch(db)


def test_a_refused_row_is_quarantined_and_the_rest_of_the_page_is_still_marked(db: Database) -> None:
    # A 12 kB random id no B-tree entry can hold: PostgreSQL refuses the statement, the page is bisected under
    # savepoints, the row quarantined, and the other rows are written and marked.
    page = package(*[release(f"ocds-ok{n}", "1", "2020-01-01T00:00:00Z") for n in range(5)],
                   release("ocds-refused", secrets.token_hex(6000), "2020-01-01T00:00:00Z"))
    result = save_page(db, page, "s", compile_releases="deferred")
    assert (result.inserted, dict(result.rejected)) == (5, {"database_refused": 1})
    assert marks(db) == [f"ocds-ok{n}" for n in range(5)]
    compile_pending(db)
    assert_equals_compiling_from_scratch(db)


def test_the_step_stops_when_its_time_is_up_and_claims_in_batches(db: Database) -> None:
    save_page(db, package(*[release(f"ocds-t{n}", "1", "2020-01-01T00:00:00Z") for n in range(7)]), "s",
              compile_releases="deferred")
    assert compile_pending(db, seconds_left=lambda: 0.0, margin_seconds=1.0).claimed == 0
    assert backlog(db).marks == 7
    assert backlog(db).oldest_seconds >= 0
    done = compile_pending(db, batch=3)
    assert (done.claimed, done.compiled) == (7, 7)
    assert backlog(db).marks == 0 and backlog(db).oldest_seconds == 0


def test_concurrent_deferred_writers_and_compile_steps_converge(db: Database, migrated: str) -> None:
    pool = _pool()
    pages = [package(copy.deepcopy(item)) for item in pool] + _pages([[0, 1, 2], [3, 4], [5, 6, 7], [8, 9]])
    pages.append({"uri": "https://example.org/rp", "version": "1.1", "records": [{
        "ocid": "ocds-a", "releases": [copy.deepcopy(pool[0])],
        "compiledRelease": {"ocid": "ocds-a", "id": "c", "date": "2020-01-09T00:00:00Z"}}]})
    errors: list[BaseException] = []
    writing = threading.Event()

    def writer(seed: int) -> None:
        connection = connect_url(migrated)
        try:
            order = list(range(len(pages)))
            random.Random(seed).shuffle(order)
            for index in order:
                save_page(connection, pages[index], "s", compile_releases="deferred")
        except BaseException as exc:  # noqa: BLE001 - handed to the main thread
            errors.append(exc)
        finally:
            connection.close()

    def compiler() -> None:
        connection = connect_url(migrated)
        try:
            while writing.is_set():
                compile_pending(connection, batch=2)
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)
        finally:
            connection.close()

    for _ in range(3):
        db.run("TRUNCATE releases, compiled_releases, compile_pending", "reset")
        writing.set()
        compilers = [threading.Thread(target=compiler) for _ in range(2)]
        writers = [threading.Thread(target=writer, args=(seed,)) for seed in range(4)]
        for thread in compilers + writers:
            thread.start()
        for thread in writers:
            thread.join(60)
        writing.clear()
        for thread in compilers:
            thread.join(60)
        assert errors == []
        compile_pending(db)  # what the last writes marked after the compilers stopped
        assert marks(db) == []
        assert_equals_compiling_from_scratch(db)


def test_the_compile_function_reports_what_it_did_and_what_is_left(db: Database, migrated: str,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", migrated)
    save_page(db, package(release("ocds-h", "1", "2020-01-01T00:00:00Z")), "s", compile_releases="deferred")
    response = handler.compile.lambda_handler({}, LocalContext(300))
    assert (response["claimed"], response["compiled"], response["pending"]) == (1, 1, 0)
    assert_equals_compiling_from_scratch(db)


def test_load_compiles_once_at_the_end_and_no_compile_leaves_the_marks(
        db: Database, migrated: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
        tmp_path: Path) -> None:
    monkeypatch.setenv("DATABASE_URL", migrated)
    path = tmp_path / "page.json"
    # Five releases of one ocid in batches of 2: marked three times, merged once.
    path.write_text(json.dumps(package(*[release("ocds-l", str(n), f"2020-01-0{n + 1}T00:00:00Z")
                                         for n in range(5)])))
    assert main(["load", str(path), "--batch-size", "2"]) == 0
    out = capsys.readouterr().out
    assert "compiling        compiled 1 contracting processes" in out and "from 5 releases" in out
    assert marks(db) == []
    assert_equals_compiling_from_scratch(db)

    db.run("TRUNCATE releases, compiled_releases", "reset")
    assert main(["load", "--no-compile", str(path)]) == 0
    assert "compile --pending" in capsys.readouterr().out
    assert marks(db) == ["ocds-l"] and db.run("SELECT count(*) FROM compiled_releases", "count") == [[0]]
    assert main(["compile", "--pending"]) == 0
    assert "compiled 1 contracting processes" in capsys.readouterr().out
    assert_equals_compiling_from_scratch(db)
    assert main(["compile", "--pending", "--ocid", "x"]) == 2
    assert "--pending" in capsys.readouterr().err


def test_pages_of_the_same_ocids_in_any_order_converge_once_compiled(db: Database) -> None:
    rng = random.Random(7)
    pages = _pages([[0, 1], [2, 3], [4], [5, 6], [7], [8, 9], [3, 1]])
    for _ in range(3):
        db.run("TRUNCATE releases, compiled_releases, compile_pending", "reset")
        order = pages + [rng.choice(pages)]
        rng.shuffle(order)
        for index, page in enumerate(order):
            save_page(db, page, "s", compile_releases="deferred")
            if index % 3 == 2:
                compile_pending(db)
        compile_pending(db)
        assert_equals_compiling_from_scratch(db)

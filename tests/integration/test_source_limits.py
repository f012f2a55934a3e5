"""A source's limits in PostgreSQL: one statement decides, for every process at once (real database, real threads)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

from ingest.store import source_limits
from ingest.store.connection import Database, connect_url

FAST = dict(interval=0.0, tolerance=0.0, lease_seconds=60.0)


@pytest.fixture
def limits_db(db: Database) -> Iterator[Database]:
    db.run("TRUNCATE source_limits", "emptying source_limits")
    yield db


def test_the_first_request_to_a_source_is_granted_with_a_lease(limits_db: Database) -> None:
    decision = source_limits.acquire(limits_db, "a", concurrency=1, **FAST)
    assert decision.outcome == source_limits.GRANTED and decision.lease is not None
    assert source_limits.in_flight(limits_db, "a") == 1


def test_all_slots_in_use_refuse_until_one_is_released(limits_db: Database) -> None:
    first = source_limits.acquire(limits_db, "a", concurrency=2, **FAST)
    second = source_limits.acquire(limits_db, "a", concurrency=2, **FAST)
    third = source_limits.acquire(limits_db, "a", concurrency=2, **FAST)
    assert (first.outcome, second.outcome, third.outcome) == ("granted", "granted", "concurrency")
    assert third.lease is None
    assert first.lease is not None
    source_limits.release(limits_db, "a", first.lease)
    assert source_limits.in_flight(limits_db, "a") == 1
    assert source_limits.acquire(limits_db, "a", concurrency=2, **FAST).outcome == "granted"


def test_the_rate_refuses_a_second_request_within_the_interval_and_says_how_long(limits_db: Database) -> None:
    assert source_limits.acquire(limits_db, "a", interval=10.0, tolerance=0.0, concurrency=5,
                                 lease_seconds=60).outcome == "granted"
    refused = source_limits.acquire(limits_db, "a", interval=10.0, tolerance=0.0, concurrency=5, lease_seconds=60)
    assert refused.outcome == "rate" and 0 < refused.wait <= 10.0


def test_a_burst_allowance_lets_that_many_go_back_to_back(limits_db: Database) -> None:
    outcomes = [source_limits.acquire(limits_db, "a", interval=10.0, tolerance=20.0, concurrency=9,
                                      lease_seconds=60).outcome for _ in range(4)]
    assert outcomes == ["granted", "granted", "granted", "rate"]


def test_a_block_from_the_publisher_refuses_everyone_for_that_long(limits_db: Database) -> None:
    lease = source_limits.acquire(limits_db, "a", concurrency=1, **FAST).lease
    assert lease is not None
    source_limits.release(limits_db, "a", lease, block_seconds=30)
    refused = source_limits.acquire(limits_db, "a", concurrency=1, **FAST)
    assert refused.outcome == "blocked" and 29 < refused.wait <= 30
    assert source_limits.in_flight(limits_db, "a") == 0


def test_a_shorter_block_never_shortens_a_longer_one(limits_db: Database) -> None:
    source_limits.block(limits_db, "a", 30)
    source_limits.block(limits_db, "a", 1)
    assert source_limits.acquire(limits_db, "a", concurrency=1, **FAST).wait > 29


def test_sources_never_wait_on_each_other(limits_db: Database) -> None:
    source_limits.block(limits_db, "a", 30)
    assert source_limits.acquire(limits_db, "b", concurrency=1, **FAST).outcome == "granted"


def test_a_lease_that_ran_out_no_longer_counts(limits_db: Database) -> None:
    # A process that died mid-fetch never releases; its lease runs out (here at once) and frees the slot.
    assert source_limits.acquire(limits_db, "a", interval=0.0, tolerance=0.0, concurrency=1,
                                 lease_seconds=0.0).outcome == "granted"
    assert source_limits.acquire(limits_db, "a", concurrency=1, **FAST).outcome == "granted"


def test_releasing_one_of_two_equal_leases_keeps_the_other(limits_db: Database) -> None:
    lease = source_limits.acquire(limits_db, "a", concurrency=3, **FAST).lease
    assert lease is not None
    limits_db.execute("UPDATE source_limits SET leases = ARRAY[:lease::timestamptz, :lease::timestamptz]",
                      "duplicate", lease=lease)
    source_limits.release(limits_db, "a", lease)
    assert source_limits.in_flight(limits_db, "a") == 1


def test_concurrent_processes_never_hold_more_slots_than_the_source_allows(limits_db: Database,
                                                                           migrated: str) -> None:
    # GIVEN eight threads, each with its own connection (as separate workers have), asking as fast as they can
    held, most, lock = [0], [0], threading.Lock()
    grants, refused = [0], [0]

    def hammer() -> None:
        db = connect_url(migrated)
        try:
            for _ in range(60):
                decision = source_limits.acquire(db, "shared", concurrency=2, **FAST)
                if decision.lease is None:
                    with lock:
                        refused[0] += 1
                    continue
                with lock:
                    held[0] += 1
                    grants[0] += 1
                    most[0] = max(most[0], held[0])
                time.sleep(0.002)  # the "fetch": long enough for the others to try for its slot
                with lock:
                    held[0] -= 1
                source_limits.release(db, "shared", decision.lease)
        finally:
            db.close()

    threads = [threading.Thread(target=hammer) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # THEN never more than two at once, though they asked for more (refusals) and got turns
    assert most[0] <= 2
    assert refused[0] > 0 and grants[0] > 0
    assert source_limits.in_flight(limits_db, "shared") == 0

"""The gate around every fetch: real PostgreSQL, real HTTP on loopback, two gates standing for two processes."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from functools import partial

import pytest

from ingest.http import Fetcher, HttpFailed, new_client
from ingest.local_publisher import Fault, LocalPublisher
from ingest.politeness import Gate, MustWait
from ingest.sources import Source, parse_source
from ingest.store import source_limits
from ingest.store.connection import Database, connect_url

RELEASES = [{"ocid": f"ocds-g-{n}", "id": "1", "date": "2021-01-01T00:00:00Z"} for n in range(3)]


@pytest.fixture
def gates(db: Database, migrated: str) -> Iterator[Callable[..., Gate]]:
    db.run("TRUNCATE source_limits", "emptying source_limits")
    made: list[Gate] = []

    def make(**options: object) -> Gate:
        gate = Gate(partial(connect_url, migrated), **options)  # type: ignore[arg-type]
        made.append(gate)
        return gate

    yield make
    for gate in made:
        gate.close()


def source(name: str = "pub", **fields: object) -> Source:
    return parse_source({"name": name, "allowed_hosts": ["127.0.0.1"], "allow_private_network": True, **fields})


def test_a_second_process_is_told_to_wait_while_the_only_slot_is_in_use(gates: Callable[..., Gate]) -> None:
    one, other = gates(), gates(max_inline_wait=0.0)
    one_at_a_time = source(concurrency=1, requests_per_second=1_000_000)  # no rate to speak of
    with one.turn(one_at_a_time):
        with pytest.raises(MustWait) as told:
            other.acquire(one_at_a_time)
    assert told.value.reason == "concurrency" and told.value.seconds >= 1.0
    with other.turn(one_at_a_time):
        pass  # the slot came back when the first fetch ended


def test_a_short_wait_for_the_rate_is_waited_in_place(gates: Callable[..., Gate], db: Database) -> None:
    waits: list[float] = []

    def sleep(seconds: float) -> None:
        waits.append(seconds)
        time.sleep(seconds)

    one, other = gates(), gates(max_inline_wait=2.0, sleep=sleep)
    limited = source(requests_per_second=1, concurrency=5)
    with one.turn(limited):
        pass
    with other.turn(limited):
        pass
    assert waits and 0 < sum(waits) <= 1.0 + 0.1 * (len(waits) - 1)
    assert source_limits.in_flight(db, "pub") == 0


def test_a_429_blocks_the_source_for_every_process_and_becomes_must_wait(gates: Callable[..., Gate],
                                                                         db: Database) -> None:
    one, other = gates(), gates(max_inline_wait=0.0)
    with pytest.raises(MustWait) as told, one.turn(source()):
        raise HttpFailed("answered 429", status=429, retry_after=30.0)
    assert (told.value.reason, told.value.seconds) == ("blocked", 30.0)
    with pytest.raises(MustWait) as also:
        other.acquire(source())
    assert also.value.reason == "blocked" and 20 < also.value.seconds <= 30  # less the time the test took
    assert source_limits.in_flight(db, "pub") == 0
    with other.turn(source("another-publisher")):
        pass  # other sources go on


def test_other_failures_pass_through_and_give_the_slot_back(gates: Callable[..., Gate], db: Database) -> None:
    gate = gates()
    with pytest.raises(HttpFailed), gate.turn(source()):
        raise HttpFailed("answered 502", status=502)
    assert source_limits.in_flight(db, "pub") == 0


def test_the_fetcher_takes_a_turn_for_each_request_and_shares_the_publishers_retry_after(
        gates: Callable[..., Gate], db: Database) -> None:
    with LocalPublisher(RELEASES) as publisher:
        publisher.fail("/pages", Fault("none"), Fault("429", retry_after="30"))
        fetcher = Fetcher(new_client(), gate=gates())
        other = Fetcher(new_client(), gate=gates(max_inline_wait=0.0))
        try:
            url = f"{publisher.base_url}/pages?page=1&page_size=10"
            assert b"ocds-g-0" in fetcher.get(url, source(requests_per_second=1000)).body
            with pytest.raises(MustWait):
                fetcher.get(url, source(requests_per_second=1000))
            with pytest.raises(MustWait, match="asked us to wait"):
                other.get(url, source(requests_per_second=1000))
        finally:
            fetcher.close()
            other.close()
        assert publisher.requests["/pages"] == 2  # the other process never asked
    assert source_limits.in_flight(db, "pub") == 0


def test_the_harvesters_walk_counts_toward_the_same_limits_as_the_workers(gates: Callable[..., Gate],
                                                                          db: Database) -> None:
    import boto3
    from moto import mock_aws

    from ingest.harvest import Harvester, PageSender
    from ingest.http import new_polite_client

    with mock_aws(), LocalPublisher(RELEASES) as publisher:
        sqs = boto3.client("sqs", region_name="eu-west-1")
        queue_url = sqs.create_queue(QueueName="pages")["QueueUrl"]
        walked = source(start_url=f"{publisher.base_url}/keyset?limit=10", requests_per_second=0.2)
        fetcher = Fetcher(new_polite_client(attempts=1), gate=gates())
        try:
            result = Harvester(db, fetcher, PageSender(sqs, queue_url), seconds_left=lambda: 900.0).run(walked)
        finally:
            fetcher.close()
    assert result.status == "complete" and result.pages == 1
    # A worker asking right after the walk's request is told to wait for the source's rate (one per 5 s)
    with pytest.raises(MustWait) as told:
        gates(max_inline_wait=0.0).acquire(walked)
    assert told.value.reason == "rate" and 0 < told.value.seconds <= 5


def test_a_retry_after_the_harvesters_own_transport_waits_out_binds_the_workers_too(gates: Callable[..., Gate]) -> None:
    from ingest.http import new_polite_client

    with LocalPublisher(RELEASES) as publisher:
        publisher.fail("/keyset", Fault("429", retry_after="30"))
        gate, slept = gates(), list[float]()
        fetcher = Fetcher(new_polite_client(attempts=2, sleep=slept.append, on_wait=gate.heard), gate=gate)
        try:
            fetched = fetcher.get(f"{publisher.base_url}/keyset?limit=10", source(requests_per_second=1000))
        finally:
            fetcher.close()
    # The walk waited the 30 s itself (recorded here, not slept) and got its page ...
    assert slept == [30.0] and b"ocds-g-0" in fetched.body
    # ... and every worker was told to stay away for as long
    with pytest.raises(MustWait) as told:
        gates(max_inline_wait=0.0).acquire(source(requests_per_second=1000))
    assert told.value.reason == "blocked" and 20 < told.value.seconds <= 30  # less the time the test took

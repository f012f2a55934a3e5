"""The harvest: a real HTTP publisher on loopback -> SQS (moto) -> the event-source emulator -> the worker ->
PostgreSQL. Exact outcomes: every served release stored once, resumes without gap or duplicate."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

import handler.worker
from ingest.harvest import Harvester, PageSender
from ingest.http import Fetcher, new_polite_client
from ingest.local_publisher import Fault, LocalPublisher, releases_from
from ingest.queue import EventSourceEmulator
from ingest.sources import Source, parse_source
from ingest.store.connection import Database, connect_url
from tests.conftest import samples_dir


def served_releases() -> list[dict[str, Any]]:
    folder = samples_dir() / "sample-data-real-examples"
    return releases_from(sorted((folder / "moldova").rglob("*.json")) + sorted((folder / "colombia").rglob("*.json"))
                         + sorted((folder / "uganda").rglob("*.json")))


@dataclass
class Pipeline:
    db: Database
    publisher: LocalPublisher
    sqs: Any
    queue_url: str
    sleeps: list[float]
    fetchers: list[Fetcher]

    def source(self, **fields: Any) -> Source:
        return parse_source({"name": "local", "allowed_hosts": ["127.0.0.1"], "allow_private_network": True,
                             "requests_per_second": 1000, **fields})

    def harvester(self, seconds_left: Any = lambda: 900.0, sender: Any = None) -> Harvester:
        fetcher = Fetcher(new_polite_client(attempts=3, backoff_factor=0.01, default_429_wait=0.05,
                                            sleep=self.sleeps.append))
        self.fetchers.append(fetcher)
        return Harvester(self.db, fetcher, sender or PageSender(self.sqs, self.queue_url), seconds_left=seconds_left,
                         margin_seconds=10)

    def drain(self) -> Any:
        return EventSourceEmulator(self.sqs, self.queue_url, handler.worker.lambda_handler, batch_size=10).drain()

    def stored_keys(self) -> list[tuple[str, str]]:
        return [(row[0], row[1]) for row in self.db.run("SELECT ocid, release_id FROM releases ORDER BY 1, 2", "r")]


@pytest.fixture
def pipeline(db: Database, lambda_env: None, monkeypatch: pytest.MonkeyPatch,
             tmp_path: Path) -> Iterator[Pipeline]:
    db.run("TRUNCATE harvest_state, harvest_runs", "reset")
    sources = tmp_path / "sources.json"
    sources.write_text(json.dumps({"sources": [{"name": "local", "allowed_hosts": ["127.0.0.1"],
                                                "allow_private_network": True}]}))
    monkeypatch.setenv("SOURCES_FILE", str(sources))
    with mock_aws(), LocalPublisher(served_releases()) as publisher:
        sqs = boto3.client("sqs", region_name="eu-west-1")
        queue_url = sqs.create_queue(QueueName="pages")["QueueUrl"]
        pipe = Pipeline(db, publisher, sqs, queue_url, [], [])
        yield pipe
        for fetcher in pipe.fetchers:
            fetcher.close()


def expected_keys(publisher: LocalPublisher) -> list[tuple[str, str]]:
    return sorted((release["ocid"], release["id"]) for release in publisher.releases)


@pytest.mark.parametrize("style", [
    {"pagination": "next_link", "start_url": "/keyset?limit=10"},
    {"pagination": "next_link", "start_url": "/pointer?limit=10", "next_pointer": "/next_page/uri"},
    {"pagination": "page_number", "start_url": "/pages", "page_size_parameter": "page_size", "page_size": 10},
    {"pagination": "date_window", "start_url": "/windows", "start_date": "2000-01-01T00:00:00Z", "window_days": 2000},
], ids=["links.next", "next_page.uri", "page-numbers", "date-windows"])
def test_a_harvest_stores_exactly_the_served_releases(pipeline: Pipeline, style: dict[str, Any]) -> None:
    source = pipeline.source(**{**style, "start_url": pipeline.publisher.base_url + style["start_url"]})
    result = pipeline.harvester().run(source)
    assert result.status == "complete", result.detail
    drained = pipeline.drain()
    assert drained.failed == 0
    assert pipeline.stored_keys() == expected_keys(pipeline.publisher)
    assert len(pipeline.publisher.releases) == 82
    state = pipeline.db.run("SELECT cursor, watermark IS NOT NULL FROM harvest_state", "r")
    assert state == [[None, True]]


def test_every_message_names_the_harvest_run_that_sent_it(pipeline: Pipeline) -> None:
    source = pipeline.source(start_url=pipeline.publisher.base_url + "/keyset?limit=40")
    result = pipeline.harvester().run(source)
    received = pipeline.sqs.receive_message(QueueUrl=pipeline.queue_url, MaxNumberOfMessages=10)["Messages"]
    assert len(received) == result.messages == 3
    assert {json.loads(message["Body"])["run_id"] for message in received} == {result.run_id}


def test_a_harvest_stopped_by_its_time_budget_resumes_without_gap_or_duplicate(pipeline: Pipeline) -> None:
    source = pipeline.source(start_url=pipeline.publisher.base_url + "/keyset?limit=10")
    budget = iter([900.0] * 4 + [1.0])  # four pages fit, then the time is up
    first = pipeline.harvester(seconds_left=lambda: next(budget, 1.0)).run(source)
    assert (first.status, first.pages) == ("paused", 4)
    second = pipeline.harvester().run(source)
    assert (second.status, second.pages) == ("complete", 5)
    assert pipeline.publisher.requests["/keyset"] == 9  # every page fetched exactly once
    pipeline.drain()
    assert pipeline.stored_keys() == expected_keys(pipeline.publisher)
    runs = pipeline.db.run("SELECT status, pages FROM harvest_runs ORDER BY started_at", "r")
    assert runs == [["paused", 4], ["complete", 5]]


def test_429_and_5xx_are_retried_with_retry_after_honoured(pipeline: Pipeline) -> None:
    source = pipeline.source(start_url=pipeline.publisher.base_url + "/keyset?limit=50")
    pipeline.publisher.fail("/keyset", Fault("429", retry_after="2"), Fault("429"), Fault("503"))
    result = pipeline.harvester().run(source)
    assert result.status == "complete"
    assert pipeline.sleeps[:2] == [2.0, 0.05]  # Retry-After honoured; the default when a 429 has none
    assert len(pipeline.sleeps) == 3 and pipeline.sleeps[2] < 1
    pipeline.drain()
    assert pipeline.stored_keys() == expected_keys(pipeline.publisher)


def test_an_error_page_with_status_200_stops_the_walk_and_the_next_run_resumes(pipeline: Pipeline) -> None:
    source = pipeline.source(start_url=pipeline.publisher.base_url + "/keyset?limit=10")
    pipeline.publisher.fail("/keyset", Fault("none"), Fault("html"))
    first = pipeline.harvester().run(source)
    assert (first.status, first.pages) == ("failed", 1)
    assert "not JSON" in (first.detail or "")
    pipeline.publisher.fail("/keyset", Fault("none"), Fault("truncated"))
    second = pipeline.harvester().run(source)
    assert (second.status, second.pages) == ("failed", 1)
    third = pipeline.harvester().run(source)
    assert (third.status, third.pages) == ("complete", 7)  # resumed at page 3 of 9
    pipeline.drain()
    assert pipeline.stored_keys() == expected_keys(pipeline.publisher)


def test_items_inserted_at_the_front_while_paging_cost_nothing_with_keyset_links(pipeline: Pipeline) -> None:
    source = pipeline.source(start_url=pipeline.publisher.base_url + "/keyset?limit=10")
    original = expected_keys(pipeline.publisher)
    real_sender = PageSender(pipeline.sqs, pipeline.queue_url)
    newcomers = [{"ocid": f"ocds-new-{n}", "id": "1", "date": "1999-01-01T00:00:00Z"} for n in range(7)]

    class InsertingSender(PageSender):
        sent = 0

        def page(self, *args: Any) -> bool:
            InsertingSender.sent += 1
            if InsertingSender.sent == 3:
                pipeline.publisher.insert_at_front(newcomers)  # kingfisher-collect#965
            return real_sender.page(*args)

    result = pipeline.harvester(sender=InsertingSender(pipeline.sqs, pipeline.queue_url)).run(source)
    assert (result.status, result.pages, result.releases) == ("complete", 9, 82)
    pipeline.drain()
    assert pipeline.stored_keys() == original  # nothing duplicated, nothing skipped; the newcomers wait


def test_a_redirect_to_a_host_the_source_does_not_allow_is_refused(pipeline: Pipeline) -> None:
    source = parse_source({"name": "local", "start_url": pipeline.publisher.base_url + "/keyset?limit=10",
                           "allowed_hosts": ["127.0.0.1"], "allow_private_network": True})
    pipeline.publisher.fail("/keyset", Fault("redirect", to="http://169.254.169.254/latest/meta-data/"))
    result = pipeline.harvester().run(source)
    assert result.status == "failed"
    assert "169.254.169.254 is not allowed for source 'local'" in (result.detail or "")
    assert pipeline.sqs.get_queue_attributes(QueueUrl=pipeline.queue_url, AttributeNames=[
        "ApproximateNumberOfMessages"])["Attributes"]["ApproximateNumberOfMessages"] == "0"


def test_two_harvests_of_one_source_one_walks_one_yields(pipeline: Pipeline, migrated: str) -> None:
    source = pipeline.source(start_url=pipeline.publisher.base_url + "/keyset?limit=10")
    other = connect_url(migrated)
    try:
        from ingest.store import harvest_state

        assert harvest_state.try_lock(other, "local")
        yielded = pipeline.harvester().run(source)
        assert (yielded.status, yielded.pages) == ("locked", 0)
        assert pipeline.publisher.requests["/keyset"] == 0
        harvest_state.unlock(other, "local")
        assert pipeline.harvester().run(source).status == "complete"
    finally:
        other.close()


def test_the_harvest_command_runs_the_local_pipeline_against_an_api(
        db: Database, migrated: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    import os

    import handler.worker
    from ingest.cli import main

    saved = dict(os.environ)
    monkeypatch.setattr(handler.worker, "_worker", None)
    try:
        os.environ["DATABASE_URL"] = migrated
        with LocalPublisher(served_releases()) as publisher:
            status = main(["harvest", "--url", f"{publisher.base_url}/offset-links?limit=25", "--source", "api",
                           "--allow-private-network"])
        out = capsys.readouterr().out
    finally:
        if handler.worker._worker is not None:
            handler.worker._worker.close()
        os.environ.clear()
        os.environ.update(saved)
    assert status == 0, out
    assert "harvest          api: complete, 4 pages fetched, 4 messages, 82 releases" in out
    assert "releases         82 inserted, 0 updated, 0 unchanged, 0 rejected" in out
    assert "0 in the DLQ" in out
    assert db.run("SELECT count(*), min(source), max(source) FROM releases", "r") == [[82, "api", "api"]]


def test_the_walk_keeps_to_the_sources_requests_per_second(pipeline: Pipeline) -> None:
    source = pipeline.source(start_url=pipeline.publisher.base_url + "/keyset?limit=30", requests_per_second=4)
    waits: list[float] = []
    harvester = pipeline.harvester()
    harvester.sleep = waits.append  # recorded, not slept: the clock does not advance between requests
    assert harvester.run(source).pages == 3
    # Each wait is what is left of 1/4 s since the previous request (less the time its fetch took, which a
    # loaded machine makes long: so no lower bound but zero).
    assert len(waits) == 2 and all(0 < wait <= 0.25 for wait in waits)


def test_an_enumerated_walk_stopped_by_its_time_budget_resumes_after_the_last_batch(pipeline: Pipeline) -> None:
    source = pipeline.source(start_url=pipeline.publisher.base_url + "/pages", pagination="page_number",
                             page_size_parameter="page_size", page_size=5)
    budget = iter([900.0, 1.0])  # the first batch of ten URL messages fits, then the time is up
    first = pipeline.harvester(seconds_left=lambda: next(budget, 1.0)).run(source)
    assert (first.status, first.pages, first.messages) == ("paused", 1, 11)  # page 1 inline + pages 2-11
    second = pipeline.harvester().run(source)
    assert (second.status, second.pages, second.messages) == ("complete", 0, 6)  # pages 12-17, nothing twice
    bodies = []
    while batch := pipeline.sqs.receive_message(QueueUrl=pipeline.queue_url, MaxNumberOfMessages=10,
                                                VisibilityTimeout=0).get("Messages"):
        for message in batch:
            bodies.append(json.loads(message["Body"]))
            pipeline.sqs.delete_message(QueueUrl=pipeline.queue_url, ReceiptHandle=message["ReceiptHandle"])
    pages = sorted(int(body["url"].split("page=")[1].split("&")[0]) for body in bodies if "url" in body)
    assert pages == list(range(2, 18))
    assert sum("page" in body for body in bodies) == 1


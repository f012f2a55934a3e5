"""Issue 9's failure modes, driven through the handlers: large pages, unreadable source secrets, failures that
must be visible, deadlines that must hold. Real PostgreSQL, moto for AWS, loopback HTTP."""

from __future__ import annotations

import io
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

import handler.harvest
import handler.worker
from handler import environment
from ingest.errors import TransientError
from ingest.http import Fetched
from ingest.local_publisher import LocalPublisher
from ingest.messages import by_url, inline_raw
from ingest.pages import save_page
from ingest.queue import LocalContext
from ingest.sources import Source
from ingest.store.connection import Database
from ingest.worker import STREAM_ABOVE_BYTES, Connections, Message, OutOfTime, Worker
from tests.conftest import table_checksum
from tests.e2e.conftest import invoke, sqs_record

LOCAL_BIG = Source(name="big", allowed_hosts=("example.org",))
SECRET_ARN = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:gone-AbCdEf"


def large_page(releases: int) -> bytes:
    """A package whose metadata comes first, with one release that cannot be a row, above the stream size."""
    items = [{"ocid": f"ocds-big-{n:06d}", "id": "1", "date": "2024-01-01T00:00:00Z", "tag": ["tender"],
              "tender": {"title": "x" * 200}} for n in range(releases)]
    items[7] = {"ocid": "ocds-big-no-id", "date": "2024-01-01T00:00:00Z"}
    page = json.dumps({"uri": "https://example.org/p", "publisher": {"name": "Big"}, "version": "1.1",
                       "releases": items}).encode()
    assert len(page) > STREAM_ABOVE_BYTES
    return page


class Served:
    """A fetcher that answers every URL with one body."""

    def __init__(self, body: bytes) -> None:
        self.body = body

    def get(self, url: str, source: Any, headers: Any = None, *, deadline: float | None = None) -> Fetched:
        return Fetched(url, self.body, "application/json")

    def close(self) -> None:
        pass


def test_a_large_page_is_streamed_in_chunks_into_the_same_table_as_a_whole_write(migrated: str, db: Database) -> None:
    from ingest.store.connection import connect_url
    from ingest.worker import CHUNK_RELEASES

    page = large_page(CHUNK_RELEASES * 2 + 17)
    # GIVEN the page written whole, as the library does
    save_page(db, page, "big", "https://example.org/p?page=1")
    whole = table_checksum(db)
    rejected_whole = db.run("SELECT reason, position FROM rejected_releases", "r")
    db.run("TRUNCATE releases, rejected_releases", "empty")
    # WHEN the worker takes it by URL (it is above STREAM_ABOVE_BYTES: streamed, in chunks)
    worker = Worker(Connections(lambda: connect_url(migrated)), {"big": LOCAL_BIG}, fetcher=lambda: Served(page))
    try:
        outcome = worker.process(Message("m1", by_url("big", "https://example.org/p?page=1")))
    finally:
        worker.close()
    # THEN every release is there, byte for byte as the whole write left it, and the bad one is quarantined
    assert outcome.page is not None
    assert (outcome.page.inserted, outcome.page.rejected_total, outcome.page.pages) == (CHUNK_RELEASES * 2 + 16, 1, 1)
    assert table_checksum(db) == whole
    assert db.run("SELECT reason, position FROM rejected_releases", "r") == rejected_whole


def test_past_the_deadline_a_message_fails_transiently_before_any_write(migrated: str, db: Database) -> None:
    from ingest.store.connection import connect_url

    worker = Worker(Connections(lambda: connect_url(migrated)), {})
    body = inline_raw("s", json.dumps({"releases": [{"ocid": "o", "id": "1", "date": "2024-01-01T00:00:00Z"}]}))
    try:
        with worker.batch([Message("m1", body)], deadline=time.monotonic() - 1), \
                pytest.raises(OutOfTime, match="deadline passed"):
            worker.process(Message("m1", body))
    finally:
        worker.close()
    assert db.run("SELECT count(*) FROM releases", "count")[0][0] == 0


def test_statements_are_limited_to_the_time_left(db: Database) -> None:
    # GIVEN 1.5 s left
    db.limit_statements(1.5)
    assert db.run("SHOW statement_timeout", "show")[0][0] == "1500ms"
    # THEN a longer statement is cancelled by the server, as a transient error (SQS redelivers the message)
    with pytest.raises(TransientError):
        db.run("SELECT pg_sleep(3)", "sleeping")
    # AND a deadline is rounded down to 5 s steps, so a warm connection sets it only when the step changes
    db.limit_statements(12.7)
    before = db.round_trips
    db.limit_statements(11.2)
    assert (db.run("SHOW statement_timeout", "show")[0][0], before) == ("10s", db.round_trips - 1)


@pytest.fixture
def secrets_env(lambda_env: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[LocalPublisher]:
    """Two sources: one whose auth secret does not exist (or may not be read), one without a secret."""
    releases = [{"ocid": f"ocds-ok-{n}", "id": "1", "date": "2024-01-01T00:00:00Z"} for n in range(5)]
    with mock_aws(), LocalPublisher(releases) as publisher:
        sqs = boto3.client("sqs", region_name="eu-west-1")
        monkeypatch.setenv("PAGES_QUEUE_URL", sqs.create_queue(QueueName="pages")["QueueUrl"])
        monkeypatch.setenv("SOURCES_JSON", json.dumps({"sources": [
            {"name": "locked", "start_url": f"{publisher.base_url}/keyset", "allow_private_network": True,
             "auth_secret_arn": SECRET_ARN},
            {"name": "open", "start_url": f"{publisher.base_url}/keyset?limit=10", "allow_private_network": True,
             "requests_per_second": 1000}]}))
        yield publisher


def test_a_missing_source_secret_fails_that_source_alone(secrets_env: LocalPublisher) -> None:
    configured, unavailable = environment.sources()
    assert set(configured) == {"locked", "open"}
    assert list(unavailable) == ["locked"]
    assert SECRET_ARN in unavailable["locked"] and "SourceSecretArns" in unavailable["locked"]


def test_the_harvest_records_the_source_whose_secret_is_missing_and_harvests_the_others(
        db: Database, secrets_env: LocalPublisher, capsys: pytest.CaptureFixture[str]) -> None:
    response = handler.harvest.lambda_handler({}, LocalContext(900))
    results = {result["source"]: result for result in response["results"]}
    assert (results["locked"]["status"], results["open"]["status"]) == ("failed", "complete")
    [(status, detail)] = db.run("SELECT status, detail FROM harvest_runs WHERE source = 'locked'", "runs")
    assert status == "failed" and SECRET_ARN in detail
    # The invocation succeeds, so the failure is counted where the HarvestsFailedAlarm looks.
    blobs = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith('{"_aws"')]
    failed = [value for blob in blobs if "HarvestsFailed" in blob
              for value in (blob["HarvestsFailed"] if isinstance(blob["HarvestsFailed"], list)
                            else [blob["HarvestsFailed"]])]
    # (one HarvestsFailed per source harvested; the "open" one's is 0)
    assert (blobs[0]["service"], sum(failed)) == ("ocds-harvest", 1.0)


def test_the_worker_fails_url_messages_of_that_source_transiently_and_logs_why(
        db: Database, secrets_env: LocalPublisher) -> None:
    # GIVEN a URL message of the source whose secret is missing, an inline page of it, and one of another source
    locked_url = by_url("locked", f"{secrets_env.base_url}/keyset")
    locked_inline = inline_raw("locked", json.dumps({"releases": [{"ocid": "o-1", "id": "1",
                                                                   "date": "2024-01-01T00:00:00Z"}]}))
    open_url = by_url("open", f"{secrets_env.base_url}/keyset?limit=10")
    log = io.StringIO()
    previous = handler.worker.logger.registered_handler.setStream(log)
    try:
        response = invoke({"Records": [sqs_record(locked_url, "m-locked", receive_count=3),
                                       sqs_record(locked_inline, "m-inline"), sqs_record(open_url, "m-open")]})
    finally:
        handler.worker.logger.registered_handler.setStream(previous)
    # THEN only the message that needs the secret fails (SQS retries it; after a fix, a redrive lands it)
    assert response == {"batchItemFailures": [{"itemIdentifier": "m-locked"}]}
    assert db.run("SELECT count(*) FROM releases", "count")[0][0] == 6
    # AND the failure is logged with the message id, its receive count and the reason
    [failed] = [json.loads(line) for line in log.getvalue().splitlines() if "message failed" in line]
    assert (failed["message_id"], failed["receive_count"]) == ("m-locked", "3")
    assert failed["error"].startswith("SourceUnavailable: source 'locked'") and SECRET_ARN in failed["error"]


def test_the_migration_never_logs_the_presigned_response_url(lambda_env: None, capsys: pytest.CaptureFixture[str],
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    import handler.migrate
    from tests.e2e.conftest import load_event

    answers: list[str] = []
    monkeypatch.setattr(handler.migrate, "respond", lambda event, context, status, reason, data: answers.append(status))
    log = io.StringIO()
    previous = handler.migrate.logger.registered_handler.setStream(log)
    try:
        handler.migrate.lambda_handler(load_event("cfn_migrate_create.json"), LocalContext(300))
    finally:
        handler.migrate.logger.registered_handler.setStream(previous)
    assert answers == ["SUCCESS"]
    assert "schema migration requested" in log.getvalue()
    assert "X-Amz-Signature" not in log.getvalue() + capsys.readouterr().out


def test_the_worker_s_connections_connect_within_a_bound_not_the_default_minute(lambda_env: None) -> None:
    worker = environment.build_worker()
    try:
        db = worker.connections.call(lambda db: db)
        assert db.settings.timeout == environment.WORKER_CONNECT_TIMEOUT_SECONDS < 60
    finally:
        worker.close()

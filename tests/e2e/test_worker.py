"""The worker Lambda handler, as Lambda runs it, against a real PostgreSQL (and moto for S3 and SQS)."""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

import handler.worker
from ingest.queue import EventSourceEmulator, Outgoing, send
from ingest.store import local_server
from ingest.store.connection import Database, connect_url
from ingest.store.migrate import migrate
from tests.conftest import table_checksum
from tests.e2e.conftest import failures, invoke, load_event, sqs_record

PARAGUAY = {"name": "paraguay", "start_url": "https://contrataciones.gov.py/datos/api/v3/doc/search/processes",
            "pagination": "page_number"}


@pytest.fixture
def sources_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "sources.json"
    path.write_text(json.dumps({"sources": [
        PARAGUAY,
        {"name": "inside", "allowed_hosts": ["localhost", "127.0.0.1", "10.1.2.3", "169.254.169.254"]},
    ]}))
    monkeypatch.setenv("SOURCES_FILE", str(path))
    return path


def counts(db: Database) -> tuple[int, int, int]:
    return tuple(db.run("SELECT (SELECT count(*) FROM releases), (SELECT count(*) FROM rejected_releases), "
                        "(SELECT count(*) FROM rejected_messages)", "count")[0])  # type: ignore[return-value]


def test_an_inline_page_is_written(db: Database, lambda_env: None) -> None:
    response = invoke(load_event("sqs_inline_page.json"))
    assert response == {"batchItemFailures": []}
    assert counts(db) == (10, 0, 0)
    assert db.run("SELECT DISTINCT source, publisher_name FROM releases", "read") == [["uk-fts", "Find a Tender"]]


def test_a_mixed_batch_reports_nothing_and_records_each_problem_where_it_belongs(
        db: Database, lambda_env: None, sources_file: Path) -> None:
    # GIVEN a valid page, a body that is not JSON, a release without id, and a URL to the metadata service
    event = load_event("sqs_mixed_batch.json")
    # WHEN the batch is handled
    response = invoke(event)
    # THEN no message is retried: all four problems are data problems, recorded and acknowledged
    assert response == {"batchItemFailures": []}
    assert counts(db) == (1, 1, 2)
    reasons = db.run("SELECT message_id, reason FROM rejected_messages ORDER BY message_id", "read")
    assert reasons == [["6f0c1e4a-0005-4b7e-9a51-000000000005", "not_json"],
                       ["6f0c1e4a-0007-4b7e-9a51-000000000007", "url_refused"]]
    assert db.run("SELECT reason, source FROM rejected_releases", "read") == [["missing_id", "paraguay"]]


@pytest.mark.parametrize("url", [
    "http://169.254.169.254/latest/meta-data/",
    "http://localhost:5432/",
    "http://127.0.0.1/",
    "http://10.1.2.3/internal",
    "http://[::1]/",
    "https://evil.example.org/page",
])
def test_ssrf_refusals_are_recorded_not_fetched(db: Database, lambda_env: None, sources_file: Path, url: str) -> None:
    body = json.dumps({"version": 1, "source": "inside", "url": url})
    response = invoke({"Records": [sqs_record(body, "m-ssrf")]})
    assert response == {"batchItemFailures": []}
    detail = db.run("SELECT reason, detail FROM rejected_messages", "read")
    assert len(detail) == 1 and detail[0][0] == "url_refused"


def test_messages_are_not_started_without_enough_time_left(db: Database, lambda_env: None,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TIME_SAFETY_MARGIN_MS", "30000")
    event = load_event("sqs_inline_page.json")
    event["Records"].append(sqs_record(event["Records"][0]["body"], "second"))
    response = invoke(event, timeout_seconds=20)
    assert failures(response) == {event["Records"][0]["messageId"], "second"}
    assert counts(db) == (0, 0, 0)


def test_a_replayed_batch_leaves_the_table_byte_identical(db: Database, lambda_env: None, sources_file: Path) -> None:
    invoke(load_event("sqs_mixed_batch.json"))
    invoke(load_event("sqs_inline_page.json"))
    once = (table_checksum(db), counts(db))
    for _ in range(3):
        assert invoke(load_event("sqs_mixed_batch.json")) == {"batchItemFailures": []}
        assert invoke(load_event("sqs_inline_page.json")) == {"batchItemFailures": []}
    assert (table_checksum(db), counts(db)) == once


def test_a_connection_killed_between_invocations_is_replaced(db: Database, lambda_env: None) -> None:
    assert invoke(load_event("sqs_inline_page.json")) == {"batchItemFailures": []}
    connection = handler.worker.worker().connections._db
    assert connection is not None
    pid = connection.run("SELECT pg_backend_pid()", "pid")[0][0]
    db.execute_once("SELECT pg_terminate_backend(:pid)", "kill", pid=pid)
    db.run("TRUNCATE releases", "reset")
    assert invoke(load_event("sqs_inline_page.json")) == {"batchItemFailures": []}
    assert counts(db) == (10, 0, 0)


@pytest.fixture
def own_server() -> Iterator[local_server.LocalServer]:
    """A server of this test's own, since the test stops it."""
    parent = Path(tempfile.mkdtemp(prefix="ocds-ingest-stop-"))
    server = local_server.start(parent / "pgdata", fsync=False)
    db = connect_url(server.url)
    migrate(db)
    db.close()
    yield server
    server.stop()
    shutil.rmtree(parent, ignore_errors=True)


def test_postgres_stopped_mid_batch_fails_the_rest_and_the_redelivery_lands(
        own_server: local_server.LocalServer, lambda_env: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", own_server.url)
    pages = [json.dumps({"version": 1, "source": "s", "page": {"releases": [
        {"ocid": f"ocds-stop-{n}", "id": str(i), "date": "2021-01-01T00:00:00Z"} for i in range(50)]}})
        for n in range(4)]
    event = {"Records": [sqs_record(body, f"m{n}") for n, body in enumerate(pages)]}
    calls = {"n": 0}
    real_process = handler.worker.worker().process

    def stop_after_two(message: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == 3:
            own_server.stop()  # PostgreSQL goes away between the second and the third message
        return real_process(message)

    monkeypatch.setattr(handler.worker.worker(), "process", stop_after_two)
    response = invoke(event)
    assert failures(response) == {"m2", "m3"}
    # WHEN PostgreSQL is back and SQS redelivers the two failed messages
    restarted = local_server.start(own_server.data_dir, fsync=False)
    monkeypatch.setenv("DATABASE_URL", restarted.url)
    monkeypatch.setattr(handler.worker, "_worker", None)
    retry = {"Records": [record for record in event["Records"] if record["messageId"] in {"m2", "m3"}]}
    assert invoke(retry) == {"batchItemFailures": []}
    check = connect_url(restarted.url)
    assert check.run("SELECT count(*), count(DISTINCT ocid) FROM releases", "count")[0] == [200, 4]
    check.close()
    handler.worker.worker().connections.close()
    restarted.stop()


@mock_aws
def test_an_s3_claim_check_page_is_read(db: Database, lambda_env: None) -> None:
    event = load_event("sqs_s3_page.json")
    claim = json.loads(event["Records"][0]["body"])["s3"]
    s3 = boto3.client("s3", region_name="eu-west-1")
    s3.create_bucket(Bucket=claim["bucket"], CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
    page = (Path(__file__).resolve().parents[2] / "samples" / "portugal-base-gov-pt_links-next_offset-1.json")
    s3.put_object(Bucket=claim["bucket"], Key=claim["key"], Body=page.read_bytes())
    assert invoke(event) == {"batchItemFailures": []}
    assert counts(db) == (100, 0, 0)
    # a claim check that no longer exists is data trouble: recorded, acknowledged
    s3.delete_object(Bucket=claim["bucket"], Key=claim["key"])
    assert invoke(event) == {"batchItemFailures": []}
    assert db.run("SELECT reason FROM rejected_messages", "read") == [["claim_check_missing"]]


@mock_aws
def test_through_the_emulator_a_message_that_always_fails_ends_in_the_dlq(
        db: Database, lambda_env: None, monkeypatch: pytest.MonkeyPatch) -> None:
    sqs = boto3.client("sqs", region_name="eu-west-1")
    dlq_url = sqs.create_queue(QueueName="pages-dlq")["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    queue_url = sqs.create_queue(QueueName="pages", Attributes={
        "RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": "3"}),
        "VisibilityTimeout": "1"})["QueueUrl"]  # the emulator waits it out, as Lambda does
    good = [json.dumps({"version": 1, "source": "s", "page": {"releases": [
        {"ocid": f"ocds-q-{n}", "id": "1", "date": "2021-01-01T00:00:00Z"}]}}) for n in range(12)]
    poison = json.dumps({"version": 1, "source": "s", "page": {"releases": [
        {"ocid": "ocds-poison", "id": "1", "date": "2021-01-01T00:00:00Z"}]}})
    send(sqs, queue_url, [Outgoing(body) for body in [*good[:6], poison, *good[6:]]])
    real_prepare = handler.worker.worker().prepare

    def infrastructure_trouble_for_poison(message: Any) -> Any:
        # Where infrastructure fails a message before its page exists (a fetch timing out), so nothing of it
        # can be written: a page already on the wire behind the previous one would be (and found unchanged when
        # the message comes back).
        if "ocds-poison" in message.body:
            from ingest.errors import TransientError

            raise TransientError("simulated outage for this message only")
        return real_prepare(message)

    monkeypatch.setattr(handler.worker.worker(), "prepare", infrastructure_trouble_for_poison)
    total = EventSourceEmulator(sqs, queue_url, handler.worker.lambda_handler, batch_size=5).drain()
    assert total.succeeded == 12
    assert total.failed == 3  # received three times, then the queue's redrive policy moved it
    in_dlq = sqs.receive_message(QueueUrl=dlq_url, MaxNumberOfMessages=10)["Messages"]
    assert [message["Body"] for message in in_dlq] == [poison]
    assert counts(db) == (12, 0, 0)


def test_the_drain_command_feeds_a_moto_server_queue_to_the_worker(
        db: Database, lambda_env: None, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    from moto.server import ThreadedMotoServer

    from ingest.cli import main

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0)
    server.start()
    try:
        host, port = server.get_host_and_port()
        endpoint = f"http://{host}:{port}"
        monkeypatch.setenv("AWS_ENDPOINT_URL_SQS", endpoint)  # what drain sets for the handler; undone after
        sqs = boto3.client("sqs", endpoint_url=endpoint, region_name="eu-west-1")
        queue_url = sqs.create_queue(QueueName="drain-test")["QueueUrl"]
        event = load_event("sqs_mixed_batch.json")
        send(sqs, queue_url, [Outgoing(record["body"], "paraguay") for record in event["Records"]])
        assert main(["drain", "--queue-url", queue_url, "--endpoint-url", endpoint, "--batch-size", "3"]) == 0
        assert "messages received 4: 2 written, 2 rejected (see rejected_messages), 0 reported for retry, " \
               "0 invocation errors" in capsys.readouterr().out
        assert counts(db) == (1, 1, 2)
        assert "Messages" not in sqs.receive_message(QueueUrl=queue_url)
    finally:
        server.stop()


def test_logs_carry_the_message_id_source_and_harvest_run_and_metrics_the_page_latency(
        db: Database, lambda_env: None, capsys: pytest.CaptureFixture[str]) -> None:
    import io

    from ingest.messages import inline_raw

    body = inline_raw("uk-fts", json.dumps({"releases": [{"ocid": "ocds-log", "id": "1",
                                                          "date": "2021-01-01T00:00:00Z"}]}), "uk-fts-20261128-ab")
    # Powertools' logger keeps the stream it was created with: read its lines from a buffer of our own
    log = io.StringIO()
    previous = handler.worker.logger.registered_handler.setStream(log)
    try:
        assert invoke({"Records": [sqs_record(body, "m-log")]}) == {"batchItemFailures": []}
    finally:
        handler.worker.logger.registered_handler.setStream(previous)
    [written] = [json.loads(line) for line in log.getvalue().splitlines() if '"page written"' in line]
    assert (written["correlation_id"], written["source"], written["run_id"], written["inserted"]) == \
        ("m-log", "uk-fts", "uk-fts-20261128-ab", 1)
    blobs = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith('{"_aws"')]
    names = {metric["Name"] for blob in blobs for metric in blob["_aws"]["CloudWatchMetrics"][0]["Metrics"]}
    assert {"PageLatency", "ReleasesInserted", "MessagesFailed"} <= names  # (ColdStart: first invocation only)
    [latency] = [blob["PageLatency"] for blob in blobs if "PageLatency" in blob]
    assert (latency[0] if isinstance(latency, list) else latency) > 0

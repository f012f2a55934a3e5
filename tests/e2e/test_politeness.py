"""Politeness across processes: four ``ocds-ingest drain`` processes (the worker handler, as Lambda runs it) on one
queue against local publishers that record what they saw. The issue's own trial, made small: a source set to
4 requests/s and one request at a time, a 429 with Retry-After: 3, and another source beside it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from ingest.local_publisher import Fault, LocalPublisher, Served
from ingest.politeness import MAX_DEFERRED_HOURS
from ingest.queue import DEFERRED_SINCE, Outgoing, send
from ingest.store import source_limits
from ingest.store.connection import Database
from tests.e2e.conftest import invoke, sqs_record

PROCESSES = 4
RATE = 4
SLOW_PAGES = 12
OTHER_PAGES = 8
RETRY_AFTER = 3


def releases(prefix: str, count: int) -> list[dict[str, Any]]:
    return [{"ocid": f"ocds-{prefix}-{n:03d}", "id": "1", "date": f"2021-01-{n % 28 + 1:02d}T00:00:00Z"}
            for n in range(count)]


def most_in_any_second(log: list[Served]) -> int:
    starts = sorted(entry.started for entry in log)
    return max(sum(1 for other in starts[index:] if other < start + 1.0) for index, start in enumerate(starts))


@pytest.fixture
def moto_server(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


def test_a_sources_limits_and_retry_after_hold_across_worker_processes_and_nothing_reaches_the_dlq(
        db: Database, migrated: str, moto_server: str, tmp_path: Path) -> None:
    db.run("TRUNCATE source_limits", "reset")
    sqs = boto3.client("sqs", endpoint_url=moto_server, region_name="eu-west-1")
    dlq_url = sqs.create_queue(QueueName="pages-dlq")["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    # Two receives and a message is dead: without deferrals, the first wait would already spend half of that.
    # The visibility timeout outlasts drain's function timeout (60 s), as the stack's does the worker's: a slow
    # invocation on a loaded machine must not let a message it is still working on be received again.
    queue_url = sqs.create_queue(QueueName="pages", Attributes={
        "VisibilityTimeout": "120",
        "RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": "2"})})["QueueUrl"]
    with LocalPublisher(releases("slow", SLOW_PAGES)) as slow, LocalPublisher(releases("other", OTHER_PAGES)) as other:
        # GIVEN a publisher that answers its first request with 429 and Retry-After: 3, then slowly (so requests
        # would overlap if allowed), and another publisher beside it
        slow.fail("/pages", Fault("429", retry_after=str(RETRY_AFTER)),
                  *[Fault("slow", seconds=0.1) for _ in range(SLOW_PAGES)])
        common = {"allowed_hosts": ["127.0.0.1"], "allow_private_network": True}
        sources = tmp_path / "sources.json"
        sources.write_text(json.dumps({"sources": [
            {"name": "slow", "requests_per_second": RATE, "concurrency": 1, **common},
            {"name": "other", "requests_per_second": 100, "concurrency": 4, **common}]}))
        messages = [Outgoing(json.dumps({"version": 1, "source": name, "url": f"{base}/pages?page={page}&page_size=1"}),
                    name) for name, base, count in (("slow", slow.base_url, SLOW_PAGES),
                                                    ("other", other.base_url, OTHER_PAGES))
                    for page in range(1, count + 1)]
        send(sqs, queue_url, sorted(messages, key=lambda message: message.body[-12:]))  # the two sources mixed
        env = {**os.environ, "DATABASE_URL": migrated, "SOURCES_FILE": str(sources), "AWS_DEFAULT_REGION": "eu-west-1",
               "POWERTOOLS_METRICS_DISABLED": "true", "POWERTOOLS_TRACE_DISABLED": "true",
               "POWERTOOLS_LOG_LEVEL": "WARNING", "TIME_SAFETY_MARGIN_MS": "5000"}

        # WHEN four worker processes drain the queue at once
        logs = [tmp_path / f"drain-{n}.log" for n in range(PROCESSES)]
        processes = []
        for log in logs:
            with log.open("w") as out:
                processes.append(subprocess.Popen(
                    [sys.executable, "-m", "ingest.cli", "drain", "--queue-url", queue_url, "--endpoint-url",
                     moto_server, "--batch-size", "2"], env=env, stdout=out, stderr=subprocess.STDOUT))
        try:
            codes = [process.wait(timeout=120) for process in processes]
        finally:
            for process in processes:
                if process.poll() is None:
                    process.kill()
                    process.wait()
        assert codes == [0] * PROCESSES, "\n".join(log.read_text()[-2000:] for log in logs)

    # THEN the slow publisher never saw two requests at once, nor more than its rate (one start of slack) ...
    slow_log = sorted(slow.log, key=lambda entry: entry.started)
    assert slow.most_in_flight["/pages"] == 1
    assert most_in_any_second(slow_log) <= RATE + 1
    # ... nobody asked it anything for Retry-After seconds after its 429 ...
    (refused,) = [entry for entry in slow_log if entry.status == 429]
    after = [entry.started for entry in slow_log if entry.started > refused.started]
    assert min(after) >= refused.ended + RETRY_AFTER - 0.05
    # ... waiting is not a failure: no message was reported for retry (so none was fetched again for having
    # waited), and every page was fetched, the refused one again. A page may be fetched once more only where the
    # queue delivered its message twice: SQS is at-least-once, and so is the emulator, whose receive can hand one
    # message to two processes polling at the same moment (moto marks it received after checking it is visible).
    summaries = [log.read_text() for log in logs]
    assert all(" 0 reported for retry, 0 invocation errors " in summary for summary in summaries), summaries
    assert len(slow_log) >= SLOW_PAGES + 1, [(entry.started - slow_log[0].started, entry.status) for entry in slow_log]
    # ... the other publisher was served meanwhile, not after the slow one's crawl
    assert max(entry.ended for entry in other.log) < slow_log[-1].started
    # ... and every page is stored, nothing is in the dead-letter queue or the rejected messages
    assert db.run("SELECT source, count(*) FROM releases GROUP BY 1 ORDER BY 1", "r") == \
        [["other", OTHER_PAGES], ["slow", SLOW_PAGES]]
    assert db.run("SELECT count(*) FROM rejected_messages", "r") == [[0]]
    assert "Messages" not in sqs.receive_message(QueueUrl=dlq_url, MaxNumberOfMessages=10)
    assert "Messages" not in sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10)


@pytest.fixture
def blocked_source(db: Database, lambda_env: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """A worker whose source "slow" the publisher has asked to leave alone for 30 s; moto's SQS for the queue."""
    from moto import mock_aws

    sources = tmp_path / "sources.json"
    sources.write_text(json.dumps({"sources": [{"name": "slow", "allowed_hosts": ["127.0.0.1"],
                                                "allow_private_network": True}]}))
    monkeypatch.setenv("SOURCES_FILE", str(sources))
    source_limits.block(db, "slow", 30)
    with mock_aws():
        sqs = boto3.client("sqs", region_name="eu-west-1")
        sqs.create_queue(QueueName="ocds-ingest-pages")
        yield sqs


def url_record(message_id: str, **attributes: str) -> dict[str, Any]:
    body = json.dumps({"version": 1, "source": "slow", "url": "http://127.0.0.1:9/pages?page=1"})
    record = sqs_record(body, message_id, source="slow", receive_count=3)
    for name, value in attributes.items():
        record["messageAttributes"][name] = {"stringValue": value, "dataType": "Number"}
    return record


def test_a_message_told_to_wait_goes_back_on_the_queue_for_later_and_is_not_a_failure(blocked_source: Any) -> None:
    # WHEN a worker gets a page of a source the publisher asked us to leave alone
    response = invoke({"Records": [url_record("m-wait")]})
    # THEN the message is not failed (its receive count would move it toward the DLQ): a copy waits in the queue,
    # with its body and source, for as long as the publisher asked, and the original is acknowledged
    assert response == {"batchItemFailures": []}
    queue_url = blocked_source.get_queue_url(QueueName="ocds-ingest-pages")["QueueUrl"]
    counts = blocked_source.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["All"])["Attributes"]
    assert (counts["ApproximateNumberOfMessagesDelayed"], counts["ApproximateNumberOfMessages"]) == ("1", "0")


def test_a_message_deferred_for_a_day_fails_so_that_an_operator_sees_the_publisher(blocked_source: Any) -> None:
    over_a_day = time.time() - (MAX_DEFERRED_HOURS * 3600 + 60)
    response = invoke({"Records": [url_record("m-day", **{DEFERRED_SINCE: f"{over_a_day:.3f}"})]})
    assert response == {"batchItemFailures": [{"itemIdentifier": "m-day"}]}

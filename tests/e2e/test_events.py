"""Every file in events/ drives its handler (the same files `sam local invoke -e` takes)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

import handler.harvest
import handler.migrate
from ingest.local_publisher import LocalPublisher
from ingest.queue import LocalContext
from ingest.store.connection import Database
from tests.e2e.conftest import EVENTS, invoke, load_event
from tests.e2e.test_harvest import served_releases

EVENT_FILES = sorted(path.name for path in EVENTS.glob("*.json") if path.name != "env.json")


def test_the_events_folder_holds_every_path() -> None:
    assert EVENT_FILES == [
        "cfn_migrate_create.json", "schedule_backfill.json", "schedule_classic_scheduled_event.json",
        "schedule_scheduler_default.json", "schedule_source.json", "sqs_inline_page.json", "sqs_mixed_batch.json",
        "sqs_s3_page.json", "sqs_url_page.json"]


@pytest.mark.parametrize("name", [name for name in EVENT_FILES if name.startswith("sqs_")])
def test_every_sqs_event_drives_the_worker(db: Database, lambda_env: None, name: str) -> None:
    with mock_aws():
        response = invoke(load_event(name))
    # Every message is answered: written, or recorded as data trouble; none is left for SQS to retry.
    assert response == {"batchItemFailures": []}
    recorded = db.run("SELECT (SELECT count(*) FROM releases) + (SELECT count(*) FROM rejected_releases) + "
                      "(SELECT count(*) FROM rejected_messages)", "count")[0][0]
    assert recorded > 0


@pytest.fixture
def harvest_env(lambda_env: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    with mock_aws(), LocalPublisher(served_releases()) as publisher:
        sqs = boto3.client("sqs", region_name="eu-west-1")
        queue_url = sqs.create_queue(QueueName="pages")["QueueUrl"]
        sources = tmp_path / "sources.json"
        sources.write_text(json.dumps({"sources": [
            {"name": "local", "start_url": f"{publisher.base_url}/keyset?limit=40", "allow_private_network": True,
             "requests_per_second": 1000, "from_parameter": "since"},
            {"name": "disabled", "start_url": f"{publisher.base_url}/keyset", "enabled": False,
             "allow_private_network": True}]}))
        monkeypatch.setenv("SOURCES_FILE", str(sources))
        monkeypatch.setenv("PAGES_QUEUE_URL", queue_url)
        yield {"sqs": sqs, "queue_url": queue_url, "publisher": publisher}


@pytest.mark.parametrize("name", [name for name in EVENT_FILES if name.startswith("schedule_")])
def test_every_schedule_event_drives_the_harvester(db: Database, harvest_env: dict[str, Any], name: str) -> None:
    response = handler.harvest.lambda_handler(load_event(name), LocalContext(900))
    results = response["results"]
    assert [(result["source"], result["status"], result["pages"]) for result in results] == [("local", "complete", 3)]
    queued = harvest_env["sqs"].get_queue_attributes(QueueUrl=harvest_env["queue_url"], AttributeNames=[
        "ApproximateNumberOfMessages"])["Attributes"]["ApproximateNumberOfMessages"]
    assert queued == "3"
    backfill = name == "schedule_backfill.json"
    # A backfill walks its own range and leaves the scheduled walk's state alone.
    assert db.run("SELECT count(*) FROM harvest_state", "r")[0][0] == (0 if backfill else 1)


class _CloudFormation(BaseHTTPRequestHandler):
    """Receives the custom resource's answer, as CloudFormation's presigned URL would."""

    answers: list[dict[str, Any]] = []

    def do_PUT(self) -> None:  # noqa: N802 - the base class's name
        length = int(self.headers["Content-Length"])
        _CloudFormation.answers.append(json.loads(self.rfile.read(length)))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass


@pytest.fixture
def cloudformation() -> Iterator[str]:
    """A stand-in for CloudFormation's presigned response URL; answers land in _CloudFormation.answers."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _CloudFormation)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    _CloudFormation.answers.clear()
    yield f"http://127.0.0.1:{server.server_address[1]}/answer"
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize("request_type", ["Create", "Update", "Delete"])
def test_the_migration_custom_resource_answers_cloudformation(lambda_env: None, cloudformation: str,
                                                              request_type: str) -> None:
    event = load_event("cfn_migrate_create.json")
    event.update(RequestType=request_type, ResponseURL=cloudformation)
    handler.migrate.lambda_handler(event, LocalContext(300))
    [answer] = _CloudFormation.answers
    assert (answer["Status"], answer["LogicalResourceId"], answer["RequestId"]) == \
        ("SUCCESS", "SchemaMigration", event["RequestId"])


def test_a_failed_migration_fails_the_deploy_with_the_reason(lambda_env: None, cloudformation: str,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://nobody@127.0.0.1:1/none")
    event = load_event("cfn_migrate_create.json")
    event["ResponseURL"] = cloudformation
    handler.migrate.lambda_handler(event, LocalContext(300))
    [answer] = _CloudFormation.answers
    assert answer["Status"] == "FAILED"
    assert answer["Reason"].startswith("migration failed: connecting to postgresql://nobody@127.0.0.1:1/none")

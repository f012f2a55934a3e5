"""Every file in events/ drives its handler (the same files `sam local invoke -e` takes)."""

from __future__ import annotations

import json
import re
import threading
import urllib.request
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
        "cfn_migrate_create.json", "compile_schedule.json", "schedule_backfill.json",
        "schedule_classic_scheduled_event.json", "schedule_scheduler_default.json", "schedule_source.json",
        "sqs_inline_page.json", "sqs_mixed_batch.json", "sqs_s3_page.json", "sqs_url_page.json"]


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


# --- `ocds-ingest invoke`: every event file through the template's function, in a fresh process ---------

def small_releases(count: int) -> list[dict[str, Any]]:
    return [{"ocid": f"ocds-inv-{n:03d}", "id": f"{n}-1", "date": "2024-01-01T00:00:00Z", "tag": ["tender"]}
            for n in range(count)]


@pytest.fixture
def aws_emulator(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """moto's server on loopback; the AWS_* variables that point boto3 at it reach the invoked process."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    # moto's backends are per process, not per server: start from nothing.
    urllib.request.urlopen(urllib.request.Request(f"{endpoint}/moto-api/reset", method="POST")).close()
    for name, value in {"AWS_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": "testing",
                        "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "eu-west-1"}.items():
        monkeypatch.setenv(name, value)
    try:
        yield endpoint
    finally:
        server.stop()


def invoke_cli(function: str, event: Path, env_vars: Path, capfd: pytest.CaptureFixture[str]) -> tuple[int, Any, str]:
    from ingest.cli import main

    code = main(["invoke", function, "-e", str(event), "--env-vars", str(env_vars),
                 "-t", str(EVENTS.parent / "template.yaml")])
    out, err = capfd.readouterr()
    return code, json.loads(out.strip().splitlines()[-1]), err


@pytest.mark.parametrize("name", EVENT_FILES)
def test_ocds_ingest_invoke_runs_every_event_file(db: Database, migrated: str, aws_emulator: str, cloudformation: str,
                                                  tmp_path: Path, capfd: pytest.CaptureFixture[str],
                                                  name: str) -> None:
    # GIVEN the services each event needs: the database, S3 and SQS (moto), a publisher, CloudFormation's URL
    s3 = boto3.client("s3", region_name="eu-west-1")
    s3.create_bucket(Bucket="ocds-ingest-pages-123456789012",
                     CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
    s3.put_object(Bucket="ocds-ingest-pages-123456789012", Key="pages/portugal/2026-11-28/offset-1.json",
                  Body=json.dumps({"releases": small_releases(3)}).encode())
    queue_url = boto3.client("sqs", region_name="eu-west-1").create_queue(QueueName="pages")["QueueUrl"]
    event = tmp_path / name
    loaded = load_event(name)
    if name.startswith("cfn_"):
        loaded["ResponseURL"] = cloudformation
    event.write_text(json.dumps(loaded))
    with LocalPublisher(small_releases(25)) as publisher:
        sources = {"sources": [{"name": "local", "start_url": f"{publisher.base_url}/keyset?limit=10",
                                "allow_private_network": True, "requests_per_second": 1000}]}
        env_vars = tmp_path / "env.json"
        env_vars.write_text(json.dumps({"Parameters": {
            "DATABASE_URL": migrated, "SOURCES_JSON": json.dumps(sources), "PAGES_QUEUE_URL": queue_url,
            "PAGES_BUCKET": "ocds-ingest-pages-123456789012", "TIME_SAFETY_MARGIN_MS": "1000"}}))
        function = {"sqs": "WorkerFunction", "sch": "HarvestFunction", "cfn": "MigrateFunction",
                    "com": "CompileFunction"}[name[:3]]
        # WHEN it is invoked as sam local invoke would, without Docker
        code, response, err = invoke_cli(function, event, env_vars, capfd)
    # THEN it answers as the handler does in the tests that call it directly, and reports its resources
    assert code == 0, err
    assert re.search(r"REPORT Duration: \d+ ms  Timeout: \d+ s  Memory Size: \d+ MB  Max Memory Used: \d+ MB", err)
    if function == "WorkerFunction":
        assert response == {"batchItemFailures": []}
    elif function == "HarvestFunction":
        assert [(r["source"], r["status"], r["pages"]) for r in response["results"]] == [("local", "complete", 3)]
    elif function == "CompileFunction":
        assert response["pending"] == 0 and response["oldest_pending_seconds"] == 0
    else:
        [answer] = _CloudFormation.answers
        assert answer["Status"] == "SUCCESS"
        assert "X-Amz-Signature" not in err and cloudformation not in err  # the presigned URL is never logged
    if name == "sqs_s3_page.json":
        assert db.run("SELECT count(*) FROM releases WHERE source = 'portugal'", "count")[0][0] == 3


def test_invoke_enforces_the_timeout_and_says_so(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    from ingest.invoke import function_spec, invoke, load_template

    template = load_template(EVENTS.parent / "template.yaml")
    spec = function_spec(template, "MigrateFunction")
    # GIVEN a handler that never returns, in a function with a 1 s timeout
    (tmp_path / "stuck.py").write_text("import time\n\ndef handler(event, context):\n    time.sleep(event)\n")
    stuck = type(spec)(spec.name, "stuck.handler", 1, spec.memory_mb,
                       {**spec.environment, "PYTHONPATH": str(tmp_path)})
    event = tmp_path / "event.json"
    event.write_text("3600")
    outcome = invoke(stuck, event)
    assert outcome.timed_out and not outcome.ok
    assert "Task timed out after 1 seconds" in outcome.report()


def test_invoke_reads_the_template_environment_and_overrides_only_declared_variables() -> None:
    from ingest.invoke import function_spec, load_template

    template = load_template(EVENTS.parent / "template.yaml")
    spec = function_spec(template, "WorkerFunction", json.loads((EVENTS / "env.json").read_text()) |
                         {"Parameters": {"UNDECLARED": "x", "WRITE_STRATEGY": "json"}})
    assert (spec.handler, spec.timeout, spec.memory_mb) == ("handler.worker.lambda_handler", 120, 1024)
    assert spec.environment["POWERTOOLS_SERVICE_NAME"] == "ocds-worker"  # the function's own
    assert spec.environment["MAX_PAGE_BYTES"] == "16777216"  # the Globals'
    assert spec.environment["DB_PORT"] == "5432"  # a parameter's default
    assert spec.environment["PAGES_QUEUE_URL"] == ""  # a resource: nothing outside AWS
    assert spec.environment["WRITE_STRATEGY"] == "json" and "UNDECLARED" not in spec.environment
    # No Docker: the host is this machine.
    assert spec.environment["DATABASE_URL"] == "postgresql://postgres@127.0.0.1:5432/postgres?sslmode=disable"


def test_invoke_of_an_unknown_function_is_one_line_and_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    from ingest.cli import main

    code = main(["invoke", "NoSuchFunction", "-e", str(EVENTS / "schedule_source.json"),
                 "-t", str(EVENTS.parent / "template.yaml")])
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and "no function 'NoSuchFunction'" in err and "WorkerFunction" in err

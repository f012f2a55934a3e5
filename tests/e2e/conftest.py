"""The handlers wired together as Lambda runs them: real PostgreSQL, moto for AWS, loopback HTTP."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import handler.worker
from ingest.queue import LocalContext

EVENTS = Path(__file__).resolve().parents[2] / "events"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "/e2e/" in str(item.path):
            item.add_marker(pytest.mark.database)


def load_event(name: str) -> dict[str, Any]:
    return copy.deepcopy(json.loads((EVENTS / name).read_text("utf-8")))


def sqs_record(body: str, message_id: str, *, source: str | None = None, receive_count: int = 1) -> dict[str, Any]:
    """A Lambda SQS record built like the ones in events/ (a small factory for variants)."""
    record = load_event("sqs_url_page.json")["Records"][0]
    record.update(messageId=message_id, body=body, receiptHandle=f"handle-{message_id}")
    record["attributes"]["ApproximateReceiveCount"] = str(receive_count)
    record["messageAttributes"] = {} if source is None else {
        "source": {"stringValue": source, "stringListValues": [], "binaryListValues": [], "dataType": "String"}}
    return record


@pytest.fixture
def lambda_env(migrated: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """The worker's environment, with a fresh module-level worker for each test."""
    monkeypatch.setenv("DATABASE_URL", migrated)
    monkeypatch.setenv("POWERTOOLS_METRICS_NAMESPACE", "OcdsIngestTest")
    monkeypatch.setenv("POWERTOOLS_TRACE_DISABLED", "true")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    monkeypatch.setenv("TIME_SAFETY_MARGIN_MS", "1000")
    monkeypatch.setattr(handler.worker, "_worker", None)
    yield
    if handler.worker._worker is not None:
        handler.worker._worker.close()
    handler.worker._worker = None


def invoke(event: dict[str, Any], timeout_seconds: float = 60.0) -> dict[str, Any]:
    return handler.worker.lambda_handler(event, LocalContext(timeout_seconds))


def failures(response: dict[str, Any]) -> set[str]:
    return {item["itemIdentifier"] for item in response["batchItemFailures"]}

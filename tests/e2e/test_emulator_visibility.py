"""The event-source emulator makes failed messages wait as Lambda does: the queue's visibility timeout, or the one
the function set; and it drains what is still in flight or delayed (moto's SQS, a handler that records)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws

from ingest.queue import EventSourceEmulator


@pytest.fixture
def sqs() -> Iterator[Any]:
    with mock_aws():
        yield boto3.client("sqs", region_name="eu-west-1")


class FailsFirst:
    """A handler that reports each message failed on its first delivery, optionally setting its visibility."""

    def __init__(self, sqs: Any, queue_url: str, visibility: int | None = None) -> None:
        self.sqs, self.queue_url, self.visibility = sqs, queue_url, visibility
        self.deliveries: list[tuple[str, float]] = []

    def __call__(self, event: dict[str, Any], context: Any) -> dict[str, Any]:
        failed = []
        for record in event["Records"]:
            first = all(message_id != record["messageId"] for message_id, _ in self.deliveries)
            self.deliveries.append((record["messageId"], time.monotonic()))
            if first:
                if self.visibility is not None:
                    self.sqs.change_message_visibility(QueueUrl=self.queue_url, ReceiptHandle=record["receiptHandle"],
                                                       VisibilityTimeout=self.visibility)
                failed.append({"itemIdentifier": record["messageId"]})
        return {"batchItemFailures": failed}


def gap(handler: FailsFirst) -> float:
    (_, first), (_, second) = handler.deliveries
    return second - first


def test_a_failed_message_comes_back_after_the_queues_visibility_timeout_not_at_once(sqs: Any) -> None:
    queue_url = sqs.create_queue(QueueName="q", Attributes={"VisibilityTimeout": "1"})["QueueUrl"]
    sqs.send_message(QueueUrl=queue_url, MessageBody="{}")
    handler = FailsFirst(sqs, queue_url)
    pauses: list[float] = []

    def pause(seconds: float) -> None:
        pauses.append(seconds)
        time.sleep(seconds)

    total = EventSourceEmulator(sqs, queue_url, handler, pause_seconds=0.1, sleep=pause).drain()
    assert (total.received, total.failed, total.succeeded) == (2, 1, 1)
    assert pauses  # the drain waited for the message in flight instead of stopping at the first empty answer
    assert gap(handler) >= 0.9


def test_a_visibility_the_function_set_is_honoured(sqs: Any) -> None:
    queue_url = sqs.create_queue(QueueName="q", Attributes={"VisibilityTimeout": "1"})["QueueUrl"]
    sqs.send_message(QueueUrl=queue_url, MessageBody="{}")
    handler = FailsFirst(sqs, queue_url, visibility=2)
    EventSourceEmulator(sqs, queue_url, handler, pause_seconds=0.1).drain()
    assert gap(handler) >= 1.9


def test_a_local_run_may_bring_failed_messages_back_sooner(sqs: Any) -> None:
    queue_url = sqs.create_queue(QueueName="q", Attributes={"VisibilityTimeout": "730"})["QueueUrl"]
    sqs.send_message(QueueUrl=queue_url, MessageBody="{}")
    handler = FailsFirst(sqs, queue_url)
    total = EventSourceEmulator(sqs, queue_url, handler, retry_visibility_seconds=0, pause_seconds=0.1).drain()
    assert (total.received, total.failed, total.succeeded) == (2, 1, 1)


def test_the_drain_waits_for_delayed_messages(sqs: Any) -> None:
    queue_url = sqs.create_queue(QueueName="q")["QueueUrl"]
    sqs.send_message(QueueUrl=queue_url, MessageBody="{}", DelaySeconds=1)
    seen: list[str] = []

    def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        seen.extend(record["body"] for record in event["Records"])
        return {"batchItemFailures": []}

    total = EventSourceEmulator(sqs, queue_url, handler, pause_seconds=0.1).drain()
    assert (total.received, seen) == (1, ["{}"])


class CountsMissOnce:
    """moto's client whose first count of waiting messages misses one, as a count read while a message's visibility
    ends does (each count is read at its own instant)."""

    def __init__(self, sqs: Any) -> None:
        self.sqs, self.missed = sqs, False

    def __getattr__(self, name: str) -> Any:
        return getattr(self.sqs, name)

    def get_queue_attributes(self, **kwargs: Any) -> dict[str, Any]:
        answer = self.sqs.get_queue_attributes(**kwargs)
        if "ApproximateNumberOfMessagesNotVisible" in kwargs["AttributeNames"] and not self.missed:
            self.missed = True
            time.sleep(1.1)  # the message in flight becomes visible after the counts said nothing was waiting
            return {"Attributes": {name: "0" for name in answer["Attributes"]}}
        return answer


def test_the_drain_does_not_stop_on_a_count_that_missed_a_message_becoming_visible(sqs: Any) -> None:
    queue_url = sqs.create_queue(QueueName="q", Attributes={"VisibilityTimeout": "1"})["QueueUrl"]
    sqs.send_message(QueueUrl=queue_url, MessageBody="{}")
    handler = FailsFirst(sqs, queue_url)
    total = EventSourceEmulator(CountsMissOnce(sqs), queue_url, handler, pause_seconds=0.1).drain()
    assert (total.received, total.failed, total.succeeded) == (2, 1, 1)

"""SQS: batched sends within the limits, and a local event-source emulator.

The emulator does locally what Lambda's SQS event source mapping does: receive up to BatchSize messages with
their attributes, build the Lambda SQS event, invoke the handler, delete the messages it did not report in
``batchItemFailures``, and leave the reported ones to become visible again when their visibility timeout ends (the
queue's, or what the function set), as Lambda does. Moving a message to the dead-letter queue after
maxReceiveCount receives is left to the queue's own redrive policy, as in AWS. (moto's own SQS-to-Lambda trigger
ignores ``batchItemFailures`` and needs Docker, so it is not used.)
"""

from __future__ import annotations

import hashlib
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ingest.errors import TransientError

MAX_MESSAGE_BYTES = 1024 * 1024  # SQS's limit for one message and for one SendMessageBatch request
MAX_BATCH_ENTRIES = 10
_SEND_ATTEMPTS = 5


@dataclass(frozen=True)
class Outgoing:
    """One message to send. ``dedup_id`` makes a resend harmless for FIFO queues and names it in errors."""

    body: str
    source: str | None = None
    dedup_id: str | None = None

    @property
    def size(self) -> int:
        size = len(self.body.encode("utf-8"))
        if self.source:
            size += len("source") + len("String") + len(self.source.encode("utf-8"))
        return size


def batches_within_limits(messages: Sequence[Outgoing]) -> list[list[Outgoing]]:
    """Group messages into SendMessageBatch calls of at most 10 entries and 1 MiB in total (pure)."""
    groups: list[list[Outgoing]] = []
    current: list[Outgoing] = []
    size = 0
    for message in messages:
        if message.size > MAX_MESSAGE_BYTES:
            raise ValueError(f"a message of {message.size} bytes is above the SQS limit of {MAX_MESSAGE_BYTES}; "
                             "send the page through an S3 claim check")
        if current and (len(current) == MAX_BATCH_ENTRIES or size + message.size > MAX_MESSAGE_BYTES):
            groups.append(current)
            current, size = [], 0
        current.append(message)
        size += message.size
    if current:
        groups.append(current)
    return groups


def send(sqs: Any, queue_url: str, messages: Sequence[Outgoing], *, sleep: Callable[[float], None] = time.sleep) -> int:
    """Send messages in batches; entries SQS fails are retried with backoff. Returns how many were sent."""
    sent = 0
    for group in batches_within_limits(messages):
        pending = {str(index): message for index, message in enumerate(group)}
        for attempt in range(_SEND_ATTEMPTS):
            entries = []
            for entry_id, message in pending.items():
                entry: dict[str, Any] = {"Id": entry_id, "MessageBody": message.body}
                if message.source:
                    entry["MessageAttributes"] = {"source": {"DataType": "String", "StringValue": message.source}}
                if message.dedup_id and queue_url.endswith(".fifo"):
                    entry["MessageDeduplicationId"] = message.dedup_id[:128]
                    entry["MessageGroupId"] = message.source or "pages"
                entries.append(entry)
            try:
                response = sqs.send_message_batch(QueueUrl=queue_url, Entries=entries)
            except Exception as exc:  # botocore's errors: throttling, network
                failed_ids = set(pending)
                last_error = f"{type(exc).__name__}: {exc}"
            else:
                for success in response.get("Successful", []):
                    pending.pop(success["Id"], None)
                    sent += 1
                failed = response.get("Failed", [])
                failed_ids = {item["Id"] for item in failed}
                permanent = [item for item in failed if item.get("SenderFault")]
                if permanent:
                    raise ValueError(f"SQS refused messages: {permanent[0].get('Code')}: {permanent[0].get('Message')}")
                last_error = ", ".join(f"{item.get('Code')}" for item in failed)
            if not pending:
                break
            if attempt + 1 == _SEND_ATTEMPTS:
                raise TransientError(f"sending to {queue_url}: {len(failed_ids)} messages still failing after "
                                     f"{_SEND_ATTEMPTS} attempts ({last_error})")
            sleep(min(2.0, 0.1 * 2 ** attempt))
    return sent


# --- a message told to wait ---------------------------------------------------------------------------------

DEFERRED_SINCE = "deferred_since"  # message attribute: when (epoch seconds) the first deferral of this page began


def queue_url_of(sqs: Any, queue_arn: str) -> str:
    """The URL of the queue an event came from (its ARN is in every record)."""
    _, _, _, _, account, name = queue_arn.split(":", 5)
    return str(sqs.get_queue_url(QueueName=name, QueueOwnerAWSAccountId=account)["QueueUrl"])


def send_later(sqs: Any, queue_url: str, record: dict[str, Any], delay_seconds: int, deferred_since: float) -> None:
    """Put a received message (a Lambda SQS record) back on its queue, to be delivered after ``delay_seconds``, with
    its body and string attributes. The caller then acknowledges the original: the copy starts with no receives,
    so waiting never moves a message toward the DLQ (a visibility change would, since every receive counts)."""
    attributes = {name: {"DataType": value.get("dataType", "String"), "StringValue": value["stringValue"]}
                  for name, value in (record.get("messageAttributes") or {}).items()
                  if value.get("stringValue") is not None and name != DEFERRED_SINCE}
    attributes[DEFERRED_SINCE] = {"DataType": "Number", "StringValue": f"{deferred_since:.3f}"}
    try:
        sqs.send_message(QueueUrl=queue_url, MessageBody=record["body"], DelaySeconds=int(delay_seconds),
                         MessageAttributes=attributes)
    except Exception as exc:  # botocore's errors: the original then fails and is redelivered as usual
        raise TransientError(f"could not put message {record.get('messageId')} back on {queue_url} for later: "
                             f"{type(exc).__name__}: {exc}") from exc


def deferred_since(record: dict[str, Any]) -> float | None:
    value = ((record.get("messageAttributes") or {}).get(DEFERRED_SINCE) or {}).get("stringValue")
    try:
        return float(value) if value else None
    except ValueError:
        return None


# --- the event-source emulator ----------------------------------------------------------------------------


@dataclass
class LocalContext:
    """Enough of Lambda's context object for our handlers and Powertools."""

    timeout_seconds: float = 60.0
    function_name: str = "local"
    memory_limit_in_mb: int = 256
    invoked_function_arn: str = "arn:aws:lambda:local:000000000000:function:local"
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    started: float = field(default_factory=time.monotonic)

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self.timeout_seconds - (time.monotonic() - self.started)) * 1000))


@dataclass
class PollOutcome:
    received: int = 0
    succeeded: int = 0
    failed: int = 0
    handler_errors: int = 0


def _lambda_attributes(attributes: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, value in attributes.items():
        item = {"dataType": value["DataType"], "stringListValues": [], "binaryListValues": []}
        if "StringValue" in value:
            item["stringValue"] = value["StringValue"]
        if "BinaryValue" in value:
            import base64

            item["binaryValue"] = base64.b64encode(value["BinaryValue"]).decode("ascii")
        out[name] = item
    return out


def lambda_event(messages: list[dict[str, Any]], queue_arn: str, region: str) -> dict[str, Any]:
    """The event Lambda builds from received SQS messages (pure)."""
    return {"Records": [{
        "messageId": message["MessageId"],
        "receiptHandle": message["ReceiptHandle"],
        "body": message["Body"],
        "attributes": dict(message.get("Attributes", {})),
        "messageAttributes": _lambda_attributes(message.get("MessageAttributes", {})),
        "md5OfBody": message.get("MD5OfBody") or hashlib.md5(message["Body"].encode()).hexdigest(),  # noqa: S324
        "eventSource": "aws:sqs",
        "eventSourceARN": queue_arn,
        "awsRegion": region,
    } for message in messages]}


class EventSourceEmulator:
    """Polls a queue and invokes a Lambda handler the way the SQS event source mapping does."""

    def __init__(self, sqs: Any, queue_url: str, handler: Callable[[dict[str, Any], Any], Any], *,
                 batch_size: int = 10, function_timeout_seconds: float = 60.0, wait_seconds: int = 0,
                 retry_visibility_seconds: int | None = None, pause_seconds: float = 0.5,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        # retry_visibility_seconds: None leaves a failed message invisible for the rest of its visibility timeout,
        # as Lambda does; a number makes it visible again after that long instead (local runs whose queue keeps the
        # deployed 730 s), replacing any visibility the function set.
        self.retry_visibility_seconds = retry_visibility_seconds
        self.pause_seconds = pause_seconds
        self.sleep = sleep
        self.sqs = sqs
        self.queue_url = queue_url
        self.handler = handler
        self.batch_size = batch_size
        self.function_timeout_seconds = function_timeout_seconds
        self.wait_seconds = wait_seconds
        attributes = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]
        self.queue_arn = attributes["QueueArn"]
        self.region = self.queue_arn.split(":")[3]

    def poll_once(self) -> PollOutcome:
        received = self.sqs.receive_message(
            QueueUrl=self.queue_url, MaxNumberOfMessages=min(self.batch_size, 10), WaitTimeSeconds=self.wait_seconds,
            AttributeNames=["All"], MessageAttributeNames=["All"]).get("Messages", [])
        outcome = PollOutcome(received=len(received))
        if not received:
            return outcome
        event = lambda_event(received, self.queue_arn, self.region)
        by_id = {message["MessageId"]: message for message in received}
        try:
            response = self.handler(event, LocalContext(self.function_timeout_seconds))
            failed = {item["itemIdentifier"] for item in (response or {}).get("batchItemFailures", [])}
        except Exception:  # noqa: BLE001 - an invocation error fails the whole batch, as in Lambda
            outcome.handler_errors = 1
            failed = set(by_id)
        done = [message for message_id, message in by_id.items() if message_id not in failed]
        for start in range(0, len(done), MAX_BATCH_ENTRIES):
            chunk = done[start:start + MAX_BATCH_ENTRIES]
            self.sqs.delete_message_batch(QueueUrl=self.queue_url, Entries=[
                {"Id": str(index), "ReceiptHandle": message["ReceiptHandle"]} for index, message in enumerate(chunk)])
        retry = [by_id[message_id] for message_id in failed if message_id in by_id]
        if self.retry_visibility_seconds is not None:  # else: as Lambda, the visibility runs its course
            for start in range(0, len(retry), MAX_BATCH_ENTRIES):
                chunk = retry[start:start + MAX_BATCH_ENTRIES]
                self.sqs.change_message_visibility_batch(QueueUrl=self.queue_url, Entries=[
                    {"Id": str(index), "ReceiptHandle": message["ReceiptHandle"],
                     "VisibilityTimeout": self.retry_visibility_seconds} for index, message in enumerate(chunk)])
        outcome.succeeded = len(done)
        outcome.failed = len(retry)
        return outcome

    def drain(self, *, max_polls: int = 10_000, on_poll: Callable[[PollOutcome], None] | None = None) -> PollOutcome:
        """Poll until the queue is empty: nothing visible, in flight (a failed message waiting out its visibility)
        or delayed (a message put back for later); returns the totals."""
        total = PollOutcome()
        nothing_waiting = False
        for _ in range(max_polls):
            outcome = self.poll_once()
            if on_poll is not None:
                on_poll(outcome)
            if not outcome.received:
                if nothing_waiting:
                    break
                # The counts are read one after another, so a message whose visibility ends between two of them is
                # in neither: the drain stops only when a receive after a count of nothing finds nothing either.
                nothing_waiting = not self._waiting()
                if not nothing_waiting:
                    self.sleep(self.pause_seconds)
                continue
            nothing_waiting = False
            total.received += outcome.received
            total.succeeded += outcome.succeeded
            total.failed += outcome.failed
            total.handler_errors += outcome.handler_errors
        return total

    def _waiting(self) -> int:
        # Visible ones too: a message's visibility may have ended between the empty receive and this question.
        attributes = self.sqs.get_queue_attributes(QueueUrl=self.queue_url, AttributeNames=[
            "ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible",
            "ApproximateNumberOfMessagesDelayed"])["Attributes"]
        return sum(int(value) for value in attributes.values())

"""Unit tests for ingest.queue: batching within SQS limits, sends with retries, Lambda's event shape (pure).

The event-source emulator is tested against moto elsewhere; ``send`` here talks to a small fake SQS client.
"""

from __future__ import annotations

import copy
import hashlib
from collections.abc import Callable, Collection
from typing import Any

import pytest

from ingest.errors import TransientError
from ingest.queue import (
    MAX_BATCH_ENTRIES,
    MAX_MESSAGE_BYTES,
    Outgoing,
    batches_within_limits,
    lambda_event,
    send,
)

QUEUE_URL = "https://sqs.eu-west-1.amazonaws.com/123456789012/pages"
FIFO_URL = "https://sqs.eu-west-1.amazonaws.com/123456789012/pages.fifo"
QUEUE_ARN = "arn:aws:sqs:eu-west-1:123456789012:pages"

Entries = list[dict[str, Any]]


class FakeSQS:
    """Records every send_message_batch call; ``respond`` decides the answer (or raises) per call."""

    def __init__(self, respond: Callable[[int, Entries], dict[str, Any]] | None = None) -> None:
        self.calls: list[dict[str, Any]] = []
        self.respond = respond or (lambda _call, entries: succeed(entries))

    def send_message_batch(self, *, QueueUrl: str, Entries: Entries) -> dict[str, Any]:
        self.calls.append({"QueueUrl": QueueUrl, "Entries": copy.deepcopy(Entries)})
        return self.respond(len(self.calls) - 1, Entries)

    @property
    def entries(self) -> list[Entries]:
        return [call["Entries"] for call in self.calls]


def succeed(entries: Entries, *, failing: Collection[str] = (), sender_fault: bool = False,
            code: str = "InternalError") -> dict[str, Any]:
    return {
        "Successful": [{"Id": entry["Id"], "MessageId": f"m-{entry['Id']}", "MD5OfMessageBody": "x"}
                       for entry in entries if entry["Id"] not in failing],
        "Failed": [{"Id": entry["Id"], "SenderFault": sender_fault, "Code": code, "Message": "try again"}
                   for entry in entries if entry["Id"] in failing],
    }


def bodies(batch: list[Outgoing]) -> list[str]:
    return [message.body for message in batch]


class Sleeps(list[float]):
    def __call__(self, seconds: float) -> None:
        self.append(seconds)


# --- Outgoing.size ----------------------------------------------------------------------------------------------


def test_size_counts_the_body_in_utf8_bytes() -> None:
    assert Outgoing("é€😀").size == 2 + 3 + 4


def test_size_counts_the_source_attribute_name_type_and_value() -> None:
    assert Outgoing("abc", source="pté").size == 3 + len("source") + len("String") + 4


# --- batches_within_limits ----------------------------------------------------------------------------------------


def test_no_messages_make_no_batches() -> None:
    assert batches_within_limits([]) == []


def test_batches_hold_at_most_ten_entries_in_order() -> None:
    messages = [Outgoing(f"m{index}") for index in range(25)]

    batches = batches_within_limits(messages)

    assert [len(batch) for batch in batches] == [10, 10, 5]
    assert [message for batch in batches for message in batch] == messages


def test_exactly_ten_messages_make_one_batch() -> None:
    assert [len(batch) for batch in batches_within_limits([Outgoing("m")] * MAX_BATCH_ENTRIES)] == [10]


def test_batches_hold_at_most_one_mib_in_total_in_order() -> None:
    # GIVEN messages of 300 KB: three fit in 1 MiB, four do not
    messages = [Outgoing(str(index) * 300_000) for index in range(7)]

    batches = batches_within_limits(messages)

    assert [bodies(batch) for batch in batches] == [bodies(messages[0:3]), bodies(messages[3:6]),
                                                    bodies(messages[6:7])]
    assert all(sum(message.size for message in batch) <= MAX_MESSAGE_BYTES for batch in batches)


def test_batch_filled_to_exactly_one_mib_is_not_split() -> None:
    half = MAX_MESSAGE_BYTES // 2
    messages = [Outgoing("a" * half), Outgoing("b" * half), Outgoing("c")]

    assert [len(batch) for batch in batches_within_limits(messages)] == [2, 1]


def test_message_of_exactly_one_mib_travels_alone() -> None:
    messages = [Outgoing("a"), Outgoing("b" * MAX_MESSAGE_BYTES), Outgoing("c")]

    assert [bodies(batch) for batch in batches_within_limits(messages)] == [["a"], ["b" * MAX_MESSAGE_BYTES], ["c"]]


def test_source_attribute_counts_toward_the_batch_size() -> None:
    # Two bodies that fit exactly, until the attribute's bytes are counted too.
    half = MAX_MESSAGE_BYTES // 2
    messages = [Outgoing("a" * half), Outgoing("b" * half, source="s")]

    assert [len(batch) for batch in batches_within_limits(messages)] == [1, 1]


@pytest.mark.parametrize("message", [Outgoing("x" * (MAX_MESSAGE_BYTES + 1)),
                                     Outgoing("x" * MAX_MESSAGE_BYTES, source="s"),
                                     Outgoing("é" * (MAX_MESSAGE_BYTES // 2 + 1))])
def test_single_message_above_one_mib_raises_value_error_pointing_to_the_claim_check(message: Outgoing) -> None:
    with pytest.raises(ValueError) as caught:
        batches_within_limits([Outgoing("small"), message])

    assert str(caught.value) == (f"a message of {message.size} bytes is above the SQS limit of 1048576; "
                                 "send the page through an S3 claim check")


# --- send -----------------------------------------------------------------------------------------------------------


def test_send_sends_every_message_once_in_batches_of_ten() -> None:
    sqs = FakeSQS()
    messages = [Outgoing(f"body {index}") for index in range(25)]

    sent = send(sqs, QUEUE_URL, messages, sleep=Sleeps())

    assert sent == 25
    assert [call["QueueUrl"] for call in sqs.calls] == [QUEUE_URL] * 3
    assert [[entry["MessageBody"] for entry in entries] for entries in sqs.entries] == [
        [f"body {index}" for index in range(0, 10)], [f"body {index}" for index in range(10, 20)],
        [f"body {index}" for index in range(20, 25)]]
    assert [entry["Id"] for entry in sqs.entries[2]] == ["0", "1", "2", "3", "4"]


def test_send_of_no_messages_makes_no_call() -> None:
    sqs = FakeSQS()

    assert send(sqs, QUEUE_URL, [], sleep=Sleeps()) == 0
    assert sqs.calls == []


def test_send_resends_only_the_entries_sqs_failed_and_counts_all_as_sent() -> None:
    # GIVEN SQS failing entries 3 and 7 of ten on the first call (a server-side failure, not the sender's fault)
    sqs = FakeSQS(lambda call, entries: succeed(entries, failing={"3", "7"} if call == 0 else set()))
    sleeps = Sleeps()
    messages = [Outgoing(f"body {index}") for index in range(10)]

    # WHEN the messages are sent
    sent = send(sqs, QUEUE_URL, messages, sleep=sleeps)

    # THEN the two are sent again, alone, under the same ids, after one short pause
    assert sent == 10
    assert len(sqs.calls) == 2
    assert len(sqs.entries[0]) == 10
    assert sqs.entries[1] == [{"Id": "3", "MessageBody": "body 3"}, {"Id": "7", "MessageBody": "body 7"}]
    assert sleeps == [0.1]


def test_send_retries_with_exponential_backoff_until_entries_pass() -> None:
    sqs = FakeSQS(lambda call, entries: succeed(entries, failing={"0"} if call < 3 else set()))
    sleeps = Sleeps()

    assert send(sqs, QUEUE_URL, [Outgoing("a"), Outgoing("b")], sleep=sleeps) == 2
    assert [len(entries) for entries in sqs.entries] == [2, 1, 1, 1]
    assert sleeps == [0.1, 0.2, 0.4]


def test_send_raises_value_error_when_sqs_says_the_sender_is_at_fault() -> None:
    sqs = FakeSQS(lambda call, entries: succeed(entries, failing={"1"}, sender_fault=True,
                                                code="InvalidParameterValue"))

    with pytest.raises(ValueError) as caught:
        send(sqs, QUEUE_URL, [Outgoing("a"), Outgoing("b")], sleep=Sleeps())

    assert str(caught.value) == "SQS refused messages: InvalidParameterValue: try again"
    assert len(sqs.calls) == 1  # retrying cannot help


def test_send_gives_up_with_transient_error_after_five_attempts_when_the_client_raises() -> None:
    # GIVEN a client that fails every call (throttling, network)
    def always_raise(call: int, entries: Entries) -> dict[str, Any]:
        raise ConnectionError("connection reset")

    sqs = FakeSQS(always_raise)
    sleeps = Sleeps()

    # WHEN messages are sent THEN it tries five times in all, then raises a transient error
    with pytest.raises(TransientError) as caught:
        send(sqs, QUEUE_URL, [Outgoing("a"), Outgoing("b"), Outgoing("c")], sleep=sleeps)

    assert len(sqs.calls) == 5
    assert all(len(entries) == 3 for entries in sqs.entries)
    assert sleeps == [0.1, 0.2, 0.4, 0.8]
    assert str(caught.value) == (f"sending to {QUEUE_URL}: 3 messages still failing after 5 attempts "
                                 "(ConnectionError: connection reset)")


def test_send_gives_up_with_transient_error_when_entries_keep_failing() -> None:
    sqs = FakeSQS(lambda call, entries: succeed(entries, failing={"0", "2"}, code="ServiceUnavailable"))

    with pytest.raises(TransientError) as caught:
        send(sqs, QUEUE_URL, [Outgoing("a"), Outgoing("b"), Outgoing("c")], sleep=Sleeps())

    assert len(sqs.calls) == 5
    assert [len(entries) for entries in sqs.entries] == [3, 2, 2, 2, 2]
    assert str(caught.value) == (f"sending to {QUEUE_URL}: 2 messages still failing after 5 attempts "
                                 "(ServiceUnavailable, ServiceUnavailable)")


def test_send_sets_the_source_attribute_only_when_given() -> None:
    sqs = FakeSQS()

    send(sqs, QUEUE_URL, [Outgoing("a", source="portugal"), Outgoing("b")], sleep=Sleeps())

    assert sqs.entries[0] == [
        {"Id": "0", "MessageBody": "a",
         "MessageAttributes": {"source": {"DataType": "String", "StringValue": "portugal"}}},
        {"Id": "1", "MessageBody": "b"},
    ]


def test_send_to_a_fifo_queue_sets_deduplication_and_group_ids() -> None:
    sqs = FakeSQS()

    send(sqs, FIFO_URL, [Outgoing("a", source="uk", dedup_id="d" * 200), Outgoing("b", dedup_id="page-2")],
         sleep=Sleeps())

    first, second = sqs.entries[0]
    assert first["MessageDeduplicationId"] == "d" * 128
    assert first["MessageGroupId"] == "uk"
    assert second["MessageDeduplicationId"] == "page-2"
    assert second["MessageGroupId"] == "pages"


def test_send_to_a_standard_queue_omits_fifo_ids() -> None:
    sqs = FakeSQS()

    send(sqs, QUEUE_URL, [Outgoing("a", dedup_id="page-1")], sleep=Sleeps())

    assert sqs.entries[0] == [{"Id": "0", "MessageBody": "a"}]


def test_send_refuses_an_oversized_message_before_sending_anything() -> None:
    sqs = FakeSQS()

    with pytest.raises(ValueError):
        send(sqs, QUEUE_URL, [Outgoing("a"), Outgoing("x" * (MAX_MESSAGE_BYTES + 1))], sleep=Sleeps())

    assert sqs.calls == []


# --- lambda_event -----------------------------------------------------------------------------------------------


def received(message_id: str, body: str, **extra: Any) -> dict[str, Any]:
    return {"MessageId": message_id, "ReceiptHandle": f"rh-{message_id}", "Body": body, **extra}


def test_lambda_event_builds_one_record_per_message_in_lambdas_shape() -> None:
    # GIVEN a message as ReceiveMessage returns it, with system and message attributes
    message = received(
        "id-1", '{"version": 1}', MD5OfBody="0123456789abcdef0123456789abcdef",
        Attributes={"ApproximateReceiveCount": "2", "SentTimestamp": "1764345600000"},
        MessageAttributes={"source": {"DataType": "String", "StringValue": "paraguay"}})

    event = lambda_event([message], QUEUE_ARN, "eu-west-1")

    assert event == {"Records": [{
        "messageId": "id-1",
        "receiptHandle": "rh-id-1",
        "body": '{"version": 1}',
        "attributes": {"ApproximateReceiveCount": "2", "SentTimestamp": "1764345600000"},
        "messageAttributes": {"source": {"stringValue": "paraguay", "stringListValues": [], "binaryListValues": [],
                                         "dataType": "String"}},
        "md5OfBody": "0123456789abcdef0123456789abcdef",
        "eventSource": "aws:sqs",
        "eventSourceARN": QUEUE_ARN,
        "awsRegion": "eu-west-1",
    }]}


def test_lambda_event_computes_md5_of_body_and_defaults_empty_attributes() -> None:
    body = "página é"

    record = lambda_event([received("id-1", body)], QUEUE_ARN, "eu-west-1")["Records"][0]

    assert record["md5OfBody"] == hashlib.md5(body.encode("utf-8")).hexdigest()
    assert record["attributes"] == {}
    assert record["messageAttributes"] == {}


def test_lambda_event_encodes_binary_attributes_in_base64() -> None:
    message = received("id-1", "b", MessageAttributes={
        "blob": {"DataType": "Binary", "BinaryValue": b"\x00\xffok"},
        "count": {"DataType": "Number", "StringValue": "3"}})

    attributes = lambda_event([message], QUEUE_ARN, "eu-west-1")["Records"][0]["messageAttributes"]

    assert attributes == {
        "blob": {"binaryValue": "AP9vaw==", "stringListValues": [], "binaryListValues": [], "dataType": "Binary"},
        "count": {"stringValue": "3", "stringListValues": [], "binaryListValues": [], "dataType": "Number"},
    }


def test_lambda_event_keeps_message_order_and_does_not_share_attribute_dicts() -> None:
    attributes = {"ApproximateReceiveCount": "1"}
    messages = [received(f"id-{index}", f"body {index}", Attributes=attributes) for index in range(3)]

    records = lambda_event(messages, QUEUE_ARN, "us-east-1")["Records"]
    records[0]["attributes"]["ApproximateReceiveCount"] = "changed"

    assert [record["messageId"] for record in records] == ["id-0", "id-1", "id-2"]
    assert [record["body"] for record in records] == ["body 0", "body 1", "body 2"]
    assert {record["awsRegion"] for record in records} == {"us-east-1"}
    assert attributes == {"ApproximateReceiveCount": "1"}


def test_lambda_event_of_no_messages_has_no_records() -> None:
    assert lambda_event([], QUEUE_ARN, "eu-west-1") == {"Records": []}

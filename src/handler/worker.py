"""SQS -> pages -> PostgreSQL. Reports exactly the failed messages in ``batchItemFailures``."""

from __future__ import annotations

import time
from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

from handler import environment
from ingest.politeness import Deferrals, MustWait
from ingest.worker import Message, OutOfTime, Worker

logger = Logger(service="ocds-worker")
tracer = Tracer(service="ocds-worker")
metrics = Metrics(namespace="OcdsIngest", service="ocds-worker")
processor = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)
_worker: Worker | None = None  # created on first use, reused while the container stays warm
_deferrals = Deferrals(environment.sqs_client)


def worker() -> Worker:
    global _worker
    if _worker is None:
        _worker = environment.build_worker()
    return _worker


def message_of(record: SQSRecord) -> Message:
    source = record.message_attributes["source"]  # None when absent (Powertools returns a wrapper or None)
    return Message(record.message_id, record.body, source.string_value if source else None,
                   int(record.attributes.approximate_receive_count or 1), record.md5_of_body)


# No X-Ray subsegment per message (Tracer's capture_method): each cost ~0.1 ms of CPU even with tracing off, and
# the invocation's segment, the PageLatency metric and each message's log line already time it.
def record_handler(record: SQSRecord, lambda_context: Any) -> None:
    logger.set_correlation_id(record.message_id)
    try:
        handle(record, lambda_context)
    except Exception as error:
        # The processor turns the raise into a batchItemFailures entry; this line says which and why.
        logger.warning("message failed; SQS will redeliver it", extra={
            "message_id": record.message_id, "receive_count": record.attributes.approximate_receive_count,
            "error": f"{type(error).__name__}: {error}"})
        raise


def handle(record: SQSRecord, lambda_context: Any) -> None:
    if lambda_context.get_remaining_time_in_millis() < environment.time_safety_margin_ms():
        raise OutOfTime("too little time left in this invocation to start the message; SQS will redeliver it")
    started = time.perf_counter()
    try:
        outcome = worker().process(message_of(record))
    except MustWait as wait:
        # Told to wait (the publisher's 429/Retry-After, or the source's limits): neither success nor failure.
        # The message goes back on the queue for after the wait and this copy is acknowledged (README, Politeness).
        delay = _deferrals.defer(record.raw_event, wait)
        metrics.add_metric("MessagesDeferred", MetricUnit.Count, 1)
        logger.info("told to wait: message deferred", extra={"reason": wait.reason, "delay_seconds": delay})
        return
    logger.append_keys(source=outcome.source, run_id=outcome.run_id)
    if outcome.page is None:
        metrics.add_metric("MessagesRejected", MetricUnit.Count, 1)
        logger.warning("message rejected", extra={"reason": outcome.rejected_reason})
        return
    page = outcome.page
    for name, value in (("ReleasesInserted", page.inserted), ("ReleasesUpdated", page.updated),
                        ("ReleasesUnchanged", page.unchanged), ("ReleasesRejected", page.rejected_total)):
        metrics.add_metric(name, MetricUnit.Count, value)
    metrics.add_metric("PageLatency", MetricUnit.Milliseconds, (time.perf_counter() - started) * 1000)
    logger.info("page written", extra={"inserted": page.inserted, "updated": page.updated,
                                       "unchanged": page.unchanged, "rejected": dict(page.rejected)})


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics(capture_cold_start_metric=True)
def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    worker().connections.start_invocation()
    with worker().batch([message_of(SQSRecord(record)) for record in event.get("Records", [])],
                        deadline=environment.deadline(context)):
        response = process_partial_response(event=event, record_handler=record_handler, processor=processor,
                                            context=context)
    metrics.add_metric("MessagesFailed", MetricUnit.Count, len(response.get("batchItemFailures", [])))
    return response

"""EventBridge schedule -> the compile step: compile the contracting processes the worker marked as changed."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit

from handler import environment
from ingest.store.compiled import backlog, compile_pending

logger = Logger(service="ocds-compile")
tracer = Tracer(service="ocds-compile")
metrics = Metrics(namespace="OcdsIngest", service="ocds-compile")


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics(capture_cold_start_metric=True)
def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    db = environment.database_connector()()
    try:
        done = compile_pending(db, seconds_left=lambda: context.get_remaining_time_in_millis() / 1000,
                               margin_seconds=environment.time_safety_margin_ms() / 1000)
        left = backlog(db)
    finally:
        db.close()
    response = {**done.__dict__, "pending": left.marks, "oldest_pending_seconds": round(left.oldest_seconds, 1)}
    logger.info("compile step finished", extra=response)
    metrics.add_metric("ContractingProcessesCompiled", MetricUnit.Count, done.compiled)
    metrics.add_metric("CompilePending", MetricUnit.Count, left.marks)
    metrics.add_metric("CompileLagSeconds", MetricUnit.Seconds, left.oldest_seconds)
    return response

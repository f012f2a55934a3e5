"""EventBridge Scheduler -> publisher APIs -> SQS. One source per event, or every enabled source."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit

from handler import environment
from ingest.harvest import Harvester, HarvestResult
from ingest.scheduling import sources_to_harvest

logger = Logger(service="ocds-harvest")
tracer = Tracer(service="ocds-harvest")
metrics = Metrics(namespace="OcdsIngest", service="ocds-harvest")


@logger.inject_lambda_context(log_event=True)
@tracer.capture_lambda_handler
@metrics.log_metrics(capture_cold_start_metric=True)
def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    sources, unavailable = environment.sources()
    chosen, backfill = sources_to_harvest(event, sources)
    margin = environment.time_safety_margin_ms() / 1000

    def seconds_left() -> float:
        return context.get_remaining_time_in_millis() / 1000

    db = environment.database_connector()()
    fetcher = environment.polite_fetcher(time_left=lambda: seconds_left() - margin / 2)
    try:
        harvester = Harvester(db, fetcher, environment.page_sender(), seconds_left=seconds_left,
                              margin_seconds=margin)
        results = [harvester.fail(source.name, unavailable[source.name]) if source.name in unavailable
                   else harvester.run(source, backfill=backfill) for source in chosen]
    finally:
        fetcher.close()
        db.close()
    for result in results:
        _report(result)
    return {"results": [result.__dict__ for result in results]}


def _report(result: HarvestResult) -> None:
    if result.status == "failed":
        logger.error("harvest failed", extra=result.__dict__)
    else:
        logger.info("harvest finished", extra=result.__dict__)
    metrics.add_metric("PagesHarvested", MetricUnit.Count, result.pages)
    metrics.add_metric("MessagesSent", MetricUnit.Count, result.messages)
    metrics.add_metric("HarvestsFailed", MetricUnit.Count, int(result.status == "failed"))

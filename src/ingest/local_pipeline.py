"""The whole stack on one machine: an SQS emulator (moto server), the harvest and worker handlers, and the
event-source emulator between them. ``make demo`` and ``ocds-ingest harvest --url`` run it.

The handlers are passed in (this module sits below ``handler`` and does not import it), and they read their
settings from the environment exactly as in Lambda, so this exercises the deployed code paths.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ingest.queue import EventSourceEmulator, LocalContext, PollOutcome
from ingest.sources import Source
from ingest.store.connection import connect_url

Handler = Callable[[dict[str, Any], Any], Any]


@dataclass
class PipelineSummary:
    harvests: list[dict[str, Any]]
    drained: PollOutcome
    releases_before: int
    releases_after: int
    updated: int
    rejected_releases: int
    rejected_messages: int
    dead_letters: int
    seconds: float
    served: int

    def text(self) -> str:
        pages = sum(result["pages"] for result in self.harvests)
        messages = sum(result["messages"] for result in self.harvests)
        inserted = self.releases_after - self.releases_before
        rate = self.served / self.seconds if self.seconds else 0.0
        lines = [f"harvest          {result['source']}: {result['status']}, {result['pages']} pages fetched, "
                 f"{result['messages']} messages, {result['releases']} releases"
                 + (f" ({result['detail']})" if result.get("detail") else "") for result in self.harvests]
        lines += [
            f"pages            {pages} fetched by the harvester, {messages} messages queued",
            f"worker           {self.drained.received} messages received, {self.drained.succeeded} written, "
            f"{self.drained.failed} reported for retry",
            f"releases         {inserted} inserted, {self.updated} updated, "
            f"{max(0, self.served - inserted - self.updated - self.rejected_releases)} unchanged, "
            f"{self.rejected_releases} rejected (rejected_releases)",
            f"messages         {self.rejected_messages} rejected (rejected_messages), {self.dead_letters} in the DLQ",
            f"elapsed          {self.seconds:.2f} s ({rate:,.0f} releases/s end to end)",
        ]
        return "\n".join(lines)


def quiet() -> None:
    """Keep a terminal run readable: Powertools' JSON logs and metrics, and the emulator's access log, off.

    Call before importing the handlers: Powertools reads its log level when the handler module is imported."""
    import logging

    os.environ.update(POWERTOOLS_LOG_LEVEL="WARNING", POWERTOOLS_METRICS_DISABLED="true",
                      POWERTOOLS_TRACE_DISABLED="true", POWERTOOLS_METRICS_NAMESPACE="OcdsIngest")
    logging.getLogger("werkzeug").setLevel(logging.ERROR)


@contextmanager
def sqs_emulator() -> Iterator[str]:
    """A moto server on loopback; yields its endpoint URL and points boto3 at it through the environment."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    saved = {name: os.environ.get(name) for name in ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID",
                                                      "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION")}
    os.environ.update(AWS_ENDPOINT_URL=endpoint, AWS_ACCESS_KEY_ID="local", AWS_SECRET_ACCESS_KEY="local",
                      AWS_DEFAULT_REGION=os.environ.get("AWS_DEFAULT_REGION") or "eu-west-1")
    try:
        yield endpoint
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        server.stop()


def _scalar(url: str, sql: str, **params: Any) -> Any:
    db = connect_url(url)
    try:
        rows = db.execute_once(sql, "summarising the run", **params) if params else db.run(sql, "summarising the run")
        return rows[0][0]
    finally:
        db.close()


def run(sources: list[Source], database_url: str, harvest: Handler, worker: Handler, workdir: Path, *,
        served: int = 0, say: Callable[[str], None] = lambda text: print(text, file=sys.stderr)) -> PipelineSummary:
    """Harvest ``sources`` into the local queue, then drain it through the worker into ``database_url``."""
    import boto3

    from ingest.store.migrate import migrate

    db = connect_url(database_url)
    try:
        migrate(db)
    finally:
        db.close()
    with sqs_emulator() as endpoint:
        sqs = boto3.client("sqs")
        s3 = boto3.client("s3")
        dlq_url = sqs.create_queue(QueueName="pages-dlq")["QueueUrl"]
        dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        queue_url = sqs.create_queue(QueueName="pages", Attributes={
            "VisibilityTimeout": "730",
            "RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": "5"})})["QueueUrl"]
        s3.create_bucket(Bucket="pages",
                         CreateBucketConfiguration={"LocationConstraint": os.environ["AWS_DEFAULT_REGION"]})
        sources_file = workdir / "sources.json"
        sources_file.write_text(json.dumps({"sources": [_as_config(source) for source in sources]}))
        os.environ.update(DATABASE_URL=database_url, SOURCES_FILE=str(sources_file), PAGES_QUEUE_URL=queue_url,
                          PAGES_BUCKET="pages", TIME_SAFETY_MARGIN_MS="5000")
        say(f"SQS emulator (moto server) at {endpoint}; queue 'pages' with a DLQ after 5 receives")
        releases_before = _scalar(database_url, "SELECT count(*) FROM releases")
        started_at = _scalar(database_url, "SELECT now()")
        started = time.perf_counter()
        harvests = []
        for source in sources:
            say(f"harvesting {source.name} from {source.start_url} ({source.pagination}) …")
            response = harvest({"source": source.name}, LocalContext(900))
            harvests.extend(response["results"])
        say("draining the queue through the worker …")
        written = 0

        def progress(outcome: PollOutcome) -> None:
            nonlocal written
            written += outcome.succeeded
            say(f"  worker: {written} messages written")

        # A failed message comes back after 5 s, not the deployed queue's 730 s: a local run does not wait 12 minutes.
        drained = EventSourceEmulator(sqs, queue_url, worker, batch_size=5, function_timeout_seconds=120,
                                      retry_visibility_seconds=5).drain(on_poll=progress)
        seconds = time.perf_counter() - started
        dead = int(sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["ApproximateNumberOfMessages"])
                   ["Attributes"]["ApproximateNumberOfMessages"])
    return PipelineSummary(
        harvests=harvests, drained=drained, releases_before=int(releases_before),
        releases_after=int(_scalar(database_url, "SELECT count(*) FROM releases")),
        updated=int(_scalar(database_url, "SELECT count(*) FROM releases WHERE last_ingested_at > :since "
                                          "AND first_ingested_at <= :since", since=started_at)),
        rejected_releases=int(_scalar(database_url, "SELECT count(*) FROM rejected_releases "
                                                    "WHERE rejected_at > :since", since=started_at)),
        rejected_messages=int(_scalar(database_url, "SELECT count(*) FROM rejected_messages "
                                                    "WHERE rejected_at > :since", since=started_at)),
        dead_letters=dead, seconds=seconds, served=served or sum(result["releases"] for result in harvests))


def _as_config(source: Source) -> dict[str, Any]:
    config = {name: getattr(source, name) for name in source.__dataclass_fields__}
    config["allowed_hosts"] = list(source.allowed_hosts)
    return config

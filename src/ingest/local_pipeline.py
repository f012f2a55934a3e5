"""The whole stack on one machine: an SQS emulator (moto server), the harvest and worker handlers, and the
event-source emulator between them. ``make demo`` and ``ocds-ingest harvest --url`` run it.

The handlers are passed in (this module sits below ``handler`` and does not import it), and they read their
settings from the environment exactly as in Lambda, so this exercises the deployed code paths.
"""

from __future__ import annotations

import io
import json
import os
import sys
import time
import uuid
import warnings
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager, redirect_stdout
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ingest.queue import EventSourceEmulator, LocalContext, PollOutcome
from ingest.sources import Source
from ingest.store import harvest_state
from ingest.store.connection import connect_url
from ingest.store.harvest_state import HarvestState

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
    compiled: dict[str, Any] | None = None  # the compile step's response, when one ran

    @property
    def status(self) -> int:
        """The exit status: 1 when a harvest did not complete or a message ended in the DLQ."""
        return 0 if self.dead_letters == 0 and all(h["status"] == "complete" for h in self.harvests) else 1

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
            f"worker           {self.drained.received} messages received, "
            f"{self.drained.succeeded - self.rejected_messages} written, {self.rejected_messages} rejected, "
            f"{self.drained.failed} reported for retry",
            f"releases         {inserted} inserted, {self.updated} updated, "
            f"{max(0, self.served - inserted - self.updated - self.rejected_releases)} unchanged, "
            f"{self.rejected_releases} rejected (rejected_releases)",
            f"messages         {self.rejected_messages} rejected (rejected_messages), {self.dead_letters} in the DLQ",
            *([compile_line(self.compiled)] if self.compiled is not None else []),
            f"elapsed          {self.seconds:.2f} s ({rate:,.0f} releases/s end to end)",
        ]
        return "\n".join(lines)


@contextmanager
def quiet(verbose: bool = False) -> Iterator[None]:
    """Keep a terminal run readable: Powertools' JSON logs (unless ``verbose``), metrics and traces, and the
    emulator's access log, off; the environment is put back afterwards.

    Enter before importing the handlers: Powertools reads its log level when the handler module is imported."""
    import logging

    settings = {"POWERTOOLS_LOG_LEVEL": "INFO" if verbose else "CRITICAL", "POWERTOOLS_METRICS_DISABLED": "true",
                "POWERTOOLS_TRACE_DISABLED": "true", "POWERTOOLS_METRICS_NAMESPACE": "OcdsIngest"}
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    with environment(settings), warnings.catch_warnings():
        # Powertools warns when an invocation ends without metrics (an interrupted one): not news here.
        warnings.filterwarnings("ignore", message="No application metrics to publish")
        yield


@contextmanager
def environment(settings: dict[str, str]) -> Iterator[None]:
    """``settings`` in the environment for the duration, the previous values put back afterwards."""
    saved = {name: os.environ.get(name) for name in settings}
    os.environ.update(settings)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


class _WithoutMetrics(io.TextIOBase):
    """Standard output without CloudWatch EMF lines: Powertools prints its ColdStart metric even when metrics
    are disabled (``single_metric`` does not check POWERTOOLS_METRICS_DISABLED)."""

    def __init__(self, out: io.TextIOBase | Any) -> None:
        self.out = out
        self.pending = ""

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        self.pending += text
        *lines, self.pending = self.pending.split("\n")
        for line in lines:
            if not line.startswith('{"_aws":'):
                self.out.write(line + "\n")
        return len(text)

    def flush(self) -> None:
        if self.pending and not self.pending.startswith('{"_aws":'):
            self.out.write(self.pending)
        self.pending = ""
        self.out.flush()


def quiet_handler(handler: Handler) -> Handler:
    """``handler``, with the metric lines it prints on standard output dropped."""

    def invoke(event: dict[str, Any], context: Any) -> Any:
        filtered = _WithoutMetrics(sys.stdout)
        try:
            with redirect_stdout(filtered):  # type: ignore[type-var]
                return handler(event, context)
        finally:
            filtered.flush()

    return invoke


@contextmanager
def sqs_emulator() -> Iterator[str]:
    """A moto server on loopback; yields its endpoint URL and points boto3 at it through the environment."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    try:
        with environment({"AWS_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": "local", "AWS_SECRET_ACCESS_KEY": "local",
                           "AWS_DEFAULT_REGION": os.environ.get("AWS_DEFAULT_REGION") or "eu-west-1"}):
            yield endpoint
    finally:
        server.stop()


def database_now(url: str) -> Any:
    return _scalar(url, "SELECT now()")


def rejected_messages_since(url: str, since: Any) -> int:
    return int(_scalar(url, "SELECT count(*) FROM rejected_messages WHERE rejected_at > :since", since=since))


def _scalar(url: str, sql: str, **params: Any) -> Any:
    db = connect_url(url)
    try:
        rows = db.execute_once(sql, "summarising the run", **params) if params else db.run(sql, "summarising the run")
        return rows[0][0]
    finally:
        db.close()


class Interrupted(KeyboardInterrupt):
    """Raised if Ctrl-C stopped a local run; the harvest state of its sources is as it was before the run."""


@contextmanager
def _state_kept_unless_drained(database_url: str, states: dict[str, HarvestState]) -> Iterator[None]:
    """The local queue dies with the process: a harvest cursor that moved past pages still in it would skip them
    next time. So when the run stops before the queue is drained, each source's state is put back."""
    try:
        yield
    except KeyboardInterrupt:
        db = connect_url(database_url)
        try:
            for name, state in states.items():
                harvest_state.save(db, name, state)
        finally:
            db.close()
        raise Interrupted from None


def compile_line(response: dict[str, Any]) -> str:
    """The compile step's response (handler/compile.py) as one line of a summary."""
    return (f"compiled         {response['compiled']} contracting processes by the compile step "
            f"({response['unchanged']} already current), {response['pending']} still pending")


def run(sources: list[Source], database_url: str, harvest: Handler, worker: Handler, workdir: Path, *,
        compile_step: Handler | None = None, served: int = 0,
        say: Callable[[str], None] = lambda text: print(text, file=sys.stderr)) -> PipelineSummary:
    """Harvest ``sources`` into the local queue, drain it through the worker into ``database_url``, then run the
    compile step once (in AWS it runs on a schedule)."""
    import boto3

    from ingest.store.migrate import migrate

    harvest, worker = quiet_handler(harvest), quiet_handler(worker)

    db = connect_url(database_url)
    try:
        migrate(db)
        states_before = {source.name: harvest_state.load(db, source.name) for source in sources}
    finally:
        db.close()
    with sqs_emulator() as endpoint, _state_kept_unless_drained(database_url, states_before), \
            ExitStack() as settings:
        sqs = boto3.client("sqs")
        s3 = boto3.client("s3")
        # moto keeps its state per process, not per server: names of this run's own keep runs apart.
        run_name = f"pages-{uuid.uuid4().hex[:8]}"
        dlq_url = sqs.create_queue(QueueName=f"{run_name}-dlq")["QueueUrl"]
        dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        queue_url = sqs.create_queue(QueueName=run_name, Attributes={
            "VisibilityTimeout": "730",
            "RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": "5"})})["QueueUrl"]
        s3.create_bucket(Bucket=run_name,
                         CreateBucketConfiguration={"LocationConstraint": os.environ["AWS_DEFAULT_REGION"]})
        sources_file = workdir / "sources.json"
        sources_file.write_text(json.dumps({"sources": [_as_config(source) for source in sources]}))
        # The handlers read their settings from the environment, as in Lambda; put back when the run ends.
        settings.enter_context(environment({
            "DATABASE_URL": database_url, "SOURCES_FILE": str(sources_file), "PAGES_QUEUE_URL": queue_url,
            "PAGES_BUCKET": run_name, "TIME_SAFETY_MARGIN_MS": "5000"}))
        say(f"SQS emulator (moto server) at {endpoint}; queue {run_name} with a DLQ after 5 receives")
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
            if outcome.received:
                say(f"  worker: {written} messages handled")

        # A failed message comes back after 5 s, not the deployed queue's 730 s: a local run does not wait 12 minutes.
        drained = EventSourceEmulator(sqs, queue_url, worker, batch_size=5, function_timeout_seconds=120,
                                      retry_visibility_seconds=5).drain(on_poll=progress)
        compiled = None
        if compile_step is not None:
            say("compiling the contracting processes the worker changed …")
            compiled = quiet_handler(compile_step)({}, LocalContext(900))
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
        rejected_messages=rejected_messages_since(database_url, started_at),
        dead_letters=dead, seconds=seconds, served=served or sum(result["releases"] for result in harvests),
        compiled=compiled)


def _as_config(source: Source) -> dict[str, Any]:
    config = {name: getattr(source, name) for name in source.__dataclass_fields__}
    config["allowed_hosts"] = list(source.allowed_hosts)
    return config

"""One SQS message -> one page -> rows. The Lambda handler (handler/worker.py) only adapts events to this.

What fails how:
- a message that cannot be a page (not JSON, unknown version, refused URL, 404/410, a missing claim check) is
  recorded in ``rejected_messages`` and acknowledged: data trouble, retrying would not help;
- a release that cannot be a row goes to ``rejected_releases`` (``save_page`` does that) and the page proceeds;
- anything transient (database, HTTP 429/5xx/timeouts, S3 throttling, the invocation running out of time)
  raises, so the message is reported in ``batchItemFailures`` and SQS redelivers it; after maxReceiveCount tries
  it lands in the DLQ, which therefore means infrastructure trouble;
- a fetch told to wait (a 429, a 503 with Retry-After, the source's limits: ``politeness.MustWait``) raises too,
  and the handler puts the message back on the queue for later instead of failing it (README, Politeness).

Memory and time are bounded by design: a page above ``STREAM_ABOVE_BYTES`` is streamed and written in chunks, so
a worker holds at most two pages' bytes (the look-ahead) and one chunk's objects, whatever the releases' sizes;
every network call of a message (HTTP, S3, each statement) ends before the invocation's deadline.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

from ingest import documents, messages
from ingest.documents import Item
from ingest.errors import DatabaseUnavailable, PermanentError, TransientError
from ingest.pages import (
    PageResult,
    PreparedPage,
    can_send_ahead,
    prepare_items,
    prepare_page,
    send_prepared,
    write_prepared,
)
from ingest.sources import Source
from ingest.store.connection import Database, Sent
from ingest.store.quarantine import reject_message
from ingest.store.writer import DEFAULT_STRATEGY

# The worker's sizing, in one place. template.yaml's WorkerFunction MemorySize, its SQS BatchSize and the
# MAX_PAGE_BYTES it sets are checked against these (tests/unit/test_template.py), and the worst batch they admit
# (full-size pages of the smallest releases, look-ahead included) is measured against MEMORY_SIZE_MB
# (tests/e2e/test_worker_memory.py, bench/worker_memory.py).
DEFAULT_MAX_PAGE_BYTES = 16 * 1024 * 1024
BATCH_SIZE = 5
MEMORY_SIZE_MB = 1024
# Parsed whole, a page costs up to ~40x its bytes in Python objects (a 14.6 MiB page of 230,000 small releases
# peaked at 609 MiB). Above this size a page is streamed instead and written in chunks of at most
# CHUNK_CHARS characters (about the 1 MB statement the writer is tuned for: 250 releases of 4 KB) or
# CHUNK_RELEASES releases (small ones: 2,000 wrote a page of 254,000 65-byte releases in 24 s, 250 in 57 s),
# each in its own transaction: memory per page is its bytes plus one chunk. Every inline page (SQS caps a
# message at 1 MiB) stays below it: one page, one statement.
STREAM_ABOVE_BYTES = 1024 * 1024
CHUNK_RELEASES = 2000
CHUNK_CHARS = 1024 * 1024
# While a batch runs, the thread writing a page comes back from each socket call (the statement sent, its answer
# in) wanting the GIL, which the look-ahead thread holds: by default for up to 5 ms. A shorter switch interval
# hands it over sooner, so the next statement leaves sooner (+4% releases per second end to end, medians of 10
# alternated runs of 10,000 releases; the look-ahead thread's own work is unchanged).
BATCH_SWITCH_INTERVAL_SECONDS = 0.0005
# The look-ahead is background work: its thread runs this much nicer (Linux), so it never takes a core from what
# the current write waits on, the writing thread and, where they share a machine (local runs, make bench),
# PostgreSQL: on 2 cores the write was 4 ms shorter per 200-release page, +5% end to end (medians of 8 alternated
# runs of 10,000 releases). In Lambda, where the database is elsewhere, it only orders the function's threads.
LOOKAHEAD_NICENESS = 10
T = TypeVar("T")


class OutOfTime(TransientError):
    """Raised if too little of the invocation is left to start a message; SQS will redeliver it."""


class SourceUnavailable(TransientError):
    """Raised if a URL message names a source whose configuration cannot be completed (its auth secret)."""


@dataclass(frozen=True)
class Message:
    """What the worker needs of an SQS message, whatever delivered it."""

    message_id: str
    body: str
    source_attribute: str | None = None
    receive_count: int = 1
    body_md5: str | None = None


@dataclass
class MessageOutcome:
    source: str
    page: PageResult | None = None
    rejected_reason: str | None = None
    run_id: str | None = None


class Connections:
    """A lazily opened connection, reused across warm invocations, replaced at most once per invocation.

    RDS Proxy idle timeouts, failovers and restarts kill connections between invocations; the first use that
    finds the connection dead reconnects and retries (a page write is atomic and idempotent, so retrying it is
    safe). If the database is still unreachable, the rest of the invocation fails fast instead of waiting for a
    connect timeout per message.
    """

    def __init__(self, connect: Callable[[], Database]) -> None:
        self._connect = connect
        self._db: Database | None = None
        self._replaced = False
        self._down: DatabaseUnavailable | None = None

    def start_invocation(self) -> None:
        self._replaced = False
        self._down = None

    def call(self, work: Callable[[Database], T]) -> T:
        if self._down is not None:
            raise DatabaseUnavailable(f"{self._down} (not retried again in this invocation)")
        try:
            return work(self._open())
        except DatabaseUnavailable as lost:
            self.close()
            if self._replaced:
                self._down = lost
                raise
            self._replaced = True
            try:
                return work(self._open())
            except DatabaseUnavailable as again:
                self.close()
                self._down = again
                raise

    def _open(self) -> Database:
        if self._db is None or self._db.broken:
            if self._db is not None:
                self._db.close()
            self._db = self._connect()
        return self._db

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None


@dataclass
class Prepared:
    """A message made ready to write: its page's rows and parameters, or why it cannot be a page."""

    message: Message
    source: str
    page: PreparedPage | None = None
    rejected: PermanentError | None = None
    run_id: str | None = None
    streamed: bytes | None = None  # a page above STREAM_ABOVE_BYTES: read and written chunk by chunk
    context: str = ""


def chunks(items: Iterable[Item], max_items: int, max_chars: int) -> Iterator[list[Item]]:
    """Consecutive runs of items, each at most ``max_items`` long or (by raw text) about ``max_chars``."""
    chunk: list[Item] = []
    chars = 0
    for item in items:
        chunk.append(item)
        chars += len(getattr(item, "raw", None) or "")
        if len(chunk) >= max_items or chars >= max_chars:
            yield chunk
            chunk, chars = [], 0
    if chunk:
        yield chunk


class LookAhead:
    """Prepares the next message of a batch on one background thread while the current one is written.

    Only one message is prepared ahead (memory stays at one extra page). A transient failure of a preparation
    (a fetch that timed out) is raised when that message is taken, so it is attributed to its own message.
    ``executor`` (``prepare_thread()``) is the thread to prepare on, kept by the worker from one invocation to the
    next: starting one per invocation cost ~0.3 ms.
    """

    def __init__(self, prepare: Callable[[Message], Prepared], batch: list[Message],
                 executor: ThreadPoolExecutor) -> None:
        self._prepare = prepare
        self._order = [message.message_id for message in batch]
        self._messages = {message.message_id: message for message in batch}
        self._executor = executor
        self._futures: dict[str, Future[Prepared]] = {}
        self._submit(0)

    def _submit(self, index: int) -> None:
        if index < len(self._order) and self._order[index] not in self._futures:
            message_id = self._order[index]
            self._futures[message_id] = self._executor.submit(self._prepare, self._messages[message_id])

    def following(self, message: Message) -> Prepared | None:
        """The message after ``message`` in the batch, once prepared (waiting for it), without taking it; None
        if there is none or its preparation failed (``take`` raises that, for its own message)."""
        if message.message_id not in self._messages:
            return None
        index = self._order.index(message.message_id) + 1
        future = self._futures.get(self._order[index]) if index < len(self._order) else None
        if future is None:
            return None
        try:
            return future.result()
        except Exception:  # noqa: BLE001 - raised again by take(), where it is that message's failure
            return None

    def take(self, message: Message) -> Prepared:
        future = self._futures.pop(message.message_id, None)
        if message.message_id in self._messages:
            self._submit(self._order.index(message.message_id) + 1)  # overlaps this message's write
        return future.result() if future is not None else self._prepare(message)

    def close(self) -> None:
        # Not waiting: a preparation left running near the timeout only computes; it writes nothing.
        for future in self._futures.values():
            future.cancel()
        self._futures.clear()


def prepare_thread() -> ThreadPoolExecutor:
    """The one background thread a look-ahead prepares on, at a lower priority than the writing thread."""
    return ThreadPoolExecutor(max_workers=1, thread_name_prefix="prepare", initializer=_in_background)


def _in_background() -> None:
    """Lower the calling thread's priority by LOOKAHEAD_NICENESS (only lowering is ever allowed, so this cannot
    fail for want of privilege). Linux only: elsewhere PRIO_PROCESS would take the thread id for a process id."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError):
            thread = threading.get_native_id()
            niceness = os.getpriority(os.PRIO_PROCESS, thread) + LOOKAHEAD_NICENESS
            os.setpriority(os.PRIO_PROCESS, thread, min(19, niceness))


class Worker:
    """Turns messages into pages and writes them. Clients are made lazily by the factories it is given."""

    def __init__(self, connections: Connections, sources: dict[str, Source], *,
                 fetcher: Callable[[], Any] | None = None, s3: Callable[[], Any] | None = None,
                 max_page_bytes: int = DEFAULT_MAX_PAGE_BYTES, strategy: str = DEFAULT_STRATEGY,
                 unavailable: dict[str, str] | None = None, compile_releases: bool | str = True,
                 send_ahead: bool = True) -> None:
        self.connections = connections
        self.sources = sources
        self.unavailable = unavailable or {}  # source name -> why it cannot be fetched now (its auth secret)
        self._fetcher_factory = fetcher
        self._s3_factory = s3
        self._fetcher: Any = None
        self._s3: Any = None
        self.max_page_bytes = max_page_bytes
        self.strategy = strategy
        self.compile_releases = compile_releases
        self.send_ahead = send_ahead  # the next page's statement on the wire before the current answer is read
        self._ahead: LookAhead | None = None
        self._sent_ahead: dict[str, Sent] = {}  # message id -> its page's statement, on the wire behind another's
        self._prepare_thread: ThreadPoolExecutor | None = None  # started by the first batch, kept while warm
        self._deadline: float | None = None  # time.monotonic() by which every call of this invocation ends

    def close(self) -> None:
        """Release the connection, the HTTP client and the look-ahead thread (a container being recycled; tests)."""
        self.connections.close()
        if self._fetcher is not None:
            self._fetcher.close()
            self._fetcher = None
        if self._prepare_thread is not None:
            self._prepare_thread.shutdown(wait=False, cancel_futures=True)
            self._prepare_thread = None

    def process(self, message: Message) -> MessageOutcome:
        """Prepare (or take the prepared) message, then write it."""
        prepared = self._ahead.take(message) if self._ahead is not None else self.prepare(message)
        return self.write(prepared)

    @contextmanager
    def batch(self, batch: list[Message], deadline: float | None = None) -> Iterator[None]:
        """While the messages of one invocation are processed in order, prepare each next one on a thread.

        Reading, validating and hashing a page is Python work; writing it is mostly waiting for PostgreSQL, which
        releases the GIL. Overlapping the two keeps both the function's CPU and the database busy. ``deadline``
        (``time.monotonic()``) is when every network call of the batch must have ended.
        """
        self._deadline = deadline
        switch_interval = sys.getswitchinterval()
        sys.setswitchinterval(min(switch_interval, BATCH_SWITCH_INTERVAL_SECONDS))
        if self._prepare_thread is None:
            self._prepare_thread = prepare_thread()
        self._ahead = LookAhead(self.prepare, batch, self._prepare_thread)
        try:
            yield
        finally:
            self._ahead.close()
            self._ahead = None
            # A page sent ahead whose message was not processed (no time left) is written all the same; its
            # redelivery finds it unchanged. Its answer is read by the connection's next request.
            self._sent_ahead.clear()
            self._deadline = None
            sys.setswitchinterval(switch_interval)

    def seconds_left(self) -> float | None:
        """Seconds until the deadline (None without one); raises OutOfTime once it has passed."""
        if self._deadline is None:
            return None
        left = self._deadline - time.monotonic()
        if left <= 0:
            raise OutOfTime("the invocation's deadline passed mid-message; SQS will redeliver it")
        return left

    def prepare(self, message: Message) -> Prepared:
        """The CPU (and fetch) half: message -> page -> rows and statement parameters. No database."""
        source = message.source_attribute or messages.UNKNOWN_SOURCE
        try:
            request = messages.parse(message.body, message.source_attribute, split_up_to=STREAM_ABOVE_BYTES)
            source = request.source
            page, context = self._page(request, message)
            if isinstance(page, bytes) and len(page) > STREAM_ABOVE_BYTES:
                return Prepared(message, source, streamed=page, context=context, run_id=request.run_id)
            return Prepared(message, source, page=prepare_page(page, source, context, self.strategy),
                            run_id=request.run_id)
        except PermanentError as rejected:
            return Prepared(message, source, rejected=rejected)

    def write(self, prepared: Prepared) -> MessageOutcome:
        """The database half: the page in one statement, or the rejected message in its table."""
        rejected, message = prepared.rejected, prepared.message
        if rejected is not None:
            self._on_database(lambda db: reject_message(
                db, message_id=message.message_id, source=prepared.source, reason=rejected.reason,
                detail=rejected.detail, body=message.body))
            return MessageOutcome(prepared.source, rejected_reason=rejected.reason)
        if prepared.streamed is not None:
            return MessageOutcome(prepared.source, page=self._write_streamed(prepared), run_id=prepared.run_id)
        page = prepared.page
        assert page is not None
        sent = self._sent_ahead.pop(prepared.message.message_id, None)
        written = self._on_database(lambda db: self._write_page(db, prepared.message, page, sent))
        return MessageOutcome(prepared.source, page=written, run_id=prepared.run_id)

    def _write_page(self, db: Database, message: Message, page: PreparedPage, sent: Sent | None) -> PageResult:
        """Write a page, its answer read only once the next message's page is on the wire behind it: PostgreSQL
        then goes from one page to the next without waiting a round trip (a statement of its own, so a failure
        stays that page's). ``sent``: this page's statement, if it went out behind the previous one's."""
        if not self.send_ahead or not can_send_ahead(page, self.compile_releases):
            return write_prepared(db, page, self.compile_releases)
        if sent is None or sent.database is not db:  # not sent, or on a connection since replaced
            sent = send_prepared(db, page, self.compile_releases)
        following = self._ahead.following(message) if self._ahead is not None else None
        if (following is not None and following.page is not None and self._time_to_send()
                and can_send_ahead(following.page, self.compile_releases)):
            self._sent_ahead[following.message.message_id] = send_prepared(db, following.page,
                                                                           self.compile_releases)
        return write_prepared(db, page, self.compile_releases, sent)

    def _time_to_send(self) -> bool:
        try:
            self.seconds_left()
        except OutOfTime:
            return False
        return True

    def _on_database(self, work: Callable[[Database], T]) -> T:
        """``work`` on the connection, every statement of it limited to the time left before the deadline."""
        def limited(db: Database) -> T:
            db.limit_statements(self.seconds_left())
            return work(db)
        return self.connections.call(limited)

    def _write_streamed(self, prepared: Prepared) -> PageResult:
        """A large page chunk by chunk, one transaction each. A failure part-way raises for SQS to redeliver;
        the chunks already written are then unchanged rows (the conflict rule), not duplicates."""
        assert prepared.streamed is not None
        document = documents.read_stream(io.BytesIO(prepared.streamed))
        total = PageResult()
        for chunk in chunks(document.items(), CHUNK_RELEASES, CHUNK_CHARS):
            page = prepare_items(chunk, prepared.source, prepared.context, self.strategy)
            del chunk
            total += self._on_database(
                lambda db: write_prepared(db, page, self.compile_releases))  # noqa: B023 - called at once
        total.empty_packages += document.stats.empty_packages
        total.pages = 1
        return total

    def _page(self, request: messages.PageRequest, message: Message) -> tuple[Any, str]:
        if isinstance(request, messages.InlinePage):
            # The body's digest names the page stably across redeliveries, so its rejections are recorded once.
            # SQS computed one already (md5OfBody); hash only when a message came without it.
            digest = message.body_md5 or hashlib.md5(message.body.encode(), usedforsecurity=False).hexdigest()
            return request.page, f"inline md5:{digest}"
        if isinstance(request, messages.UrlPage):
            source = self.sources.get(request.source)
            if source is None:
                raise PermanentError("unknown_source", f"source {request.source!r} is not configured, so no URL "
                                     "is allowed for it; add it to the sources configuration")
            if request.source in self.unavailable:
                # Fixable by an operator (grant the secret, fix its value): retried, then parked in the DLQ for a
                # redrive, never acknowledged without its page. Other sources' messages are unaffected.
                raise SourceUnavailable(self.unavailable[request.source])
            if self._fetcher is None:
                if self._fetcher_factory is None:
                    raise PermanentError("url_refused", "this worker was configured without HTTP access")
                self._fetcher = self._fetcher_factory()
            return self._fetcher.get(request.url, source, deadline=self._deadline).body, request.url
        from ingest.storage import get_page

        if self._s3 is None:
            if self._s3_factory is None:
                raise PermanentError("invalid_s3", "this worker was configured without S3 access")
            self._s3 = self._s3_factory()
        return (get_page(self._s3, request.bucket, request.key, self.max_page_bytes, deadline=self._deadline),
                messages.describe(request))

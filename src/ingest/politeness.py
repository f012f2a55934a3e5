"""Politeness per publisher, for every fetch of a source at once: the harvester's walk and every worker, in every
process. A source's ``requests_per_second`` and ``concurrency`` are kept in PostgreSQL (store/source_limits.py),
the one thing all of them share, so raising the queue's MaximumConcurrency feeds the database faster without
asking any publisher more often.

- A fetch takes a turn (``Gate.turn``): a lease on one of the source's slots, granted only when the rate allows,
  the slots are not all in use and the publisher has not asked us to wait. A short wait is waited; a longer one
  raises ``MustWait``, which a worker answers by putting its message back on the queue for later (not a failure).
- A 429 (with or without Retry-After) or a 503 with Retry-After blocks the source for everyone for that long.
- The User-Agent names this project, its version and the contact the operator configured; nobody else.
"""

from __future__ import annotations

import math
import random
import re
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar
from urllib.parse import urlsplit

import httpx

from ingest import __version__, queue
from ingest.errors import ConfigurationError, DatabaseUnavailable, TransientError
from ingest.http import retry_after_seconds
from ingest.sources import Source
from ingest.store import source_limits
from ingest.store.connection import Database

T = TypeVar("T")

BURST = 1                      # requests that may start back to back: none beyond the rate
LEASE_SECONDS = 180.0          # a fetch's slot, should its process die mid-fetch (the worker times out at 120 s)
DEFAULT_429_WAIT = 30.0        # a 429 without Retry-After (Find a Tender sends those)
MAX_BLOCK_SECONDS = 3600.0     # a Retry-After beyond this is read as this
MAX_DEFER_SECONDS = 900        # SQS's longest DelaySeconds
MAX_DEFERRED_HOURS = 24.0      # a publisher that refuses this long is an operator's business (the DLQ's alarm)
WORKER_INLINE_WAIT = 1.0       # a worker waits this long at most in its invocation, then defers the message
HARVESTER_INLINE_WAIT = 60.0   # the harvester's walk waits in place (it has a 15-minute budget)
POLL_SECONDS = 0.1             # how often to ask again for a slot while every slot is in use

_EMAIL = re.compile(r"[^@\s()<>]+@[^@\s()<>]+\.[^@\s()<>]+")


class MustWait(TransientError):
    """Raised if a fetch may not happen now: the publisher asked us to wait, or the source's limits are reached.

    Not a failure of the message: the worker sends it back to the queue with a delay of ``seconds``."""

    def __init__(self, message: str, *, seconds: float, reason: str) -> None:
        super().__init__(message)
        self.seconds = seconds
        self.reason = reason  # blocked (the publisher), rate, concurrency


def user_agent(contact: str | None) -> str:
    """``ocds-ingest/VERSION (+CONTACT)``: a publisher can see who asks and whom to tell. CONTACT is the
    operator's URL or e-mail address; without one, only the project is named (never an organisation that did not
    configure it)."""
    if not contact or not contact.strip():
        return f"ocds-ingest/{__version__}"
    contact = contact.strip()
    parts = urlsplit(contact)
    is_url = parts.scheme in ("http", "https") and bool(parts.hostname)
    if not (is_url or _EMAIL.fullmatch(contact)) or not contact.isprintable() or any(c in contact for c in "()\\"):
        raise ConfigurationError(f"USER_AGENT_CONTACT must be an http(s) URL or an e-mail address publishers can "
                                 f"reach you at, not {contact[:100]!r}")
    return f"ocds-ingest/{__version__} (+{contact})"


def told_to_wait(status: int | None, retry_after: float | None) -> float | None:
    """Seconds a publisher asked every client of ours to stay away, or None when the answer was not that."""
    if status == 429:
        seconds = DEFAULT_429_WAIT if retry_after is None else retry_after
    elif status == 503 and retry_after is not None:
        seconds = retry_after
    else:
        return None
    return min(max(seconds, 1.0), MAX_BLOCK_SECONDS)


def deferral_delay(seconds: float, rng: random.Random | None = None) -> int:
    """SQS DelaySeconds for a message told to wait ``seconds``: never sooner, spread over up to a quarter more (so
    the messages of a blocked source do not all come back in the same second), within SQS's 900 s."""
    base = max(1, math.ceil(seconds))
    spread = (rng or random).randint(0, max(1, base // 4))
    return min(MAX_DEFER_SECONDS, base + spread)


def may_defer(first_deferred_at: float | None, now: float) -> bool:
    """Whether a message may be deferred again: not after MAX_DEFERRED_HOURS of deferrals; then it fails as any
    transient trouble does, so a publisher that refuses us for a day reaches the DLQ and its alarm."""
    return first_deferred_at is None or now - first_deferred_at < MAX_DEFERRED_HOURS * 3600


@dataclass(frozen=True)
class Limits:
    """A source's limits as the database's statement takes them."""

    interval: float
    tolerance: float
    concurrency: int

    @classmethod
    def of(cls, source: Source, burst: int = BURST) -> Limits:
        interval = 1.0 / source.requests_per_second
        return cls(interval, interval * (burst - 1), max(1, int(source.concurrency)))


class Gate:
    """Where fetches wait their turn. Holds its own connection (the worker's is busy writing while the next page
    is fetched), used by one thread at a time, reopened once when it was lost."""

    def __init__(self, connect: Callable[[], Database], *, max_inline_wait: float = WORKER_INLINE_WAIT,
                 lease_seconds: float = LEASE_SECONDS, sleep: Callable[[float], None] = time.sleep) -> None:
        self._connect = connect
        self._db: Database | None = None
        self._lock = threading.Lock()
        self._current = threading.local()  # the source whose turn this thread holds (for ``heard``)
        self.max_inline_wait = max_inline_wait
        self.lease_seconds = lease_seconds
        self.sleep = sleep

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None

    @contextmanager
    def turn(self, source: Source) -> Iterator[None]:
        """Hold one of ``source``'s slots while the body fetches. A 429 (or a 503 with Retry-After) raised by the
        body as an error with ``status`` and ``retry_after`` blocks the source for everyone and becomes MustWait."""
        lease = self.acquire(source)
        block = 0.0
        self._current.source = source
        try:
            yield
        except TransientError as failed:
            status = getattr(failed, "status", None)
            wait = told_to_wait(status, getattr(failed, "retry_after", None))
            if wait is None:
                raise
            block = wait
            raise MustWait(f"{source.name} answered {status}: no request to it from any worker for {wait:g} s",
                           seconds=wait, reason=source_limits.BLOCKED) from failed
        finally:
            self._current.source = None
            self._call(lambda db: source_limits.release(db, source.name, lease, block_seconds=block))

    def heard(self, response: httpx.Response) -> None:
        """A retrying transport (the harvester's) heard ``response`` within a turn and will wait before asking
        again: a 429, or a 503 with Retry-After, blocks the source for every other process for as long."""
        source: Source | None = getattr(self._current, "source", None)
        wait = told_to_wait(response.status_code, retry_after_seconds(response.headers.get("retry-after")))
        if source is not None and wait is not None:
            self._call(lambda db: source_limits.block(db, source.name, wait))

    def acquire(self, source: Source) -> datetime:
        limits = Limits.of(source)
        waited = 0.0
        while True:
            decision = self._call(lambda db: source_limits.acquire(
                db, source.name, interval=limits.interval, tolerance=limits.tolerance,
                concurrency=limits.concurrency, lease_seconds=self.lease_seconds))
            if decision.lease is not None:
                return decision.lease
            wait = decision.wait if decision.wait > 0 else POLL_SECONDS
            if waited + wait > self.max_inline_wait:
                later = wait if decision.outcome != source_limits.CONCURRENCY else max(1.0, limits.interval)
                raise MustWait(f"{source.name}: {_WHY[decision.outcome]}; asking again in {later:.1f} s",
                               seconds=later, reason=decision.outcome)
            self.sleep(wait)
            waited += wait

    def _call(self, work: Callable[[Database], T]) -> T:
        with self._lock:
            for attempt in (1, 2):
                if self._db is None or self._db.broken:
                    if self._db is not None:
                        self._db.close()
                    self._db = self._connect()
                try:
                    return work(self._db)
                except DatabaseUnavailable:
                    self._db.close()
                    self._db = None
                    if attempt == 2:
                        raise
            raise AssertionError("unreachable")


class Deferrals:
    """Puts the messages of fetches told to wait back on their queue for later, instead of failing them."""

    def __init__(self, sqs: Callable[[], Any], *, clock: Callable[[], float] = time.time,
                 rng: random.Random | None = None) -> None:
        self._sqs_factory = sqs
        self._sqs: Any = None
        self._urls: dict[str, str] = {}
        self.clock = clock
        self.rng = rng

    def defer(self, record: dict[str, Any], wait: MustWait) -> int:
        """Send ``record`` (a Lambda SQS record) back with a delay; returns the delay in seconds. Raises a
        TransientError (a failure, toward the DLQ) once the message has been deferred for MAX_DEFERRED_HOURS."""
        now = self.clock()
        first = queue.deferred_since(record)
        if not may_defer(first, now):
            raise TransientError(f"{wait} — and deferred for over {MAX_DEFERRED_HOURS:g} hours: failing it so that "
                                 "it reaches the DLQ and an operator looks at the publisher") from wait
        if self._sqs is None:
            self._sqs = self._sqs_factory()
        arn = record["eventSourceARN"]
        if arn not in self._urls:
            self._urls[arn] = queue.queue_url_of(self._sqs, arn)
        delay = deferral_delay(wait.seconds, self.rng)
        queue.send_later(self._sqs, self._urls[arn], record, delay, first if first is not None else now)
        return delay


_WHY = {
    source_limits.BLOCKED: "the publisher asked us to wait",
    source_limits.RATE: "its requests_per_second is reached",
    source_limits.CONCURRENCY: "all of its concurrent fetches are in flight",
}

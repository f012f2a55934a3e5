"""Walking a publisher's API and fanning its pages out to SQS, resumably and politely.

Two kinds of walk:
- a cursor walk (``next_link``: ``links.next`` or any JSON pointer to the next URL) must fetch each page to
  learn the next, so the harvester fetches and sends every page inline (through an S3 claim check when a page is
  above the SQS limit); workers then only write;
- an enumerable walk (``page_number``, ``offset``, ``date_window``) knows every URL up front, so the harvester
  enqueues URL messages and the workers fetch them in parallel, bounded by the queue's concurrency.

The cursor (the next URL, page, offset or window) is saved after every page is safely in the queue, so a harvest
stopped by its time budget resumes where it stopped: no gap, and at most one page sent twice, which the conflict
rule makes harmless. A per-source advisory lock means two harvests of one source never run at once.
"""

from __future__ import annotations

import hashlib
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from itertools import dropwhile, islice
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import msgspec

from ingest import documents, jsontext, messages
from ingest.errors import IngestError, PermanentError, TransientError
from ingest.http import Fetcher
from ingest.queue import MAX_MESSAGE_BYTES, Outgoing
from ingest.releases import parse_date
from ingest.sources import Source
from ingest.store import harvest_state
from ingest.store.connection import Database
from ingest.store.harvest_state import HarvestState

DEFAULT_MARGIN_SECONDS = 30.0


class PageNotOcds(TransientError):
    """Raised if an API answered 200 with something that is not a page (an error body, HTML, truncated JSON).

    Transient on purpose: publishers do this under load; the walk stops with its cursor saved and resumes."""


@dataclass
class HarvestResult:
    source: str
    run_id: str
    status: str = "running"  # complete, paused (time budget), locked (another harvest runs), failed
    pages: int = 0
    releases: int = 0
    messages: int = 0
    claim_checks: int = 0
    detail: str | None = None


class PageSender:
    """Sends pages to the queue: inline when they fit, else through an S3 claim check."""

    def __init__(self, sqs: Any, queue_url: str, *, s3: Any = None, bucket: str | None = None,
                 send: Callable[..., int] | None = None) -> None:
        from ingest.queue import send as send_batch

        self.sqs = sqs
        self.queue_url = queue_url
        self.s3 = s3
        self.bucket = bucket
        self._send = send or send_batch

    def page(self, source: str, text: str, raw: bytes, url: str, run_id: str | None = None) -> bool:
        """Send one page; returns True when it went through a claim check."""
        # Bytes that are not valid UTF-8 cannot travel in a message body: such a page goes by claim check (the
        # worker then reads each release's bytes itself), or inline with those bytes read as windows-1252.
        text, legacy = jsontext.repaired(text)
        body = messages.inline_raw(source, text, run_id)
        dedup = hashlib.sha256(f"{url}\n".encode() + raw).hexdigest()
        # Leave room for the message attribute within the SQS limit.
        inline = not (legacy and self.s3 is not None and self.bucket)
        if inline and len(body.encode("utf-8")) + 64 + len(source) <= MAX_MESSAGE_BYTES:
            self._send(self.sqs, self.queue_url, [Outgoing(body, source, dedup)])
            return False
        if self.s3 is None or not self.bucket:
            raise PermanentError("too_large", f"page {url} is above the SQS limit and no claim-check bucket is "
                                 "configured (PAGES_BUCKET)")
        from ingest.storage import put_page

        key = f"pages/{source}/{datetime.now(UTC):%Y/%m/%d}/{dedup}.json"
        put_page(self.s3, self.bucket, key, raw)
        self._send(self.sqs, self.queue_url, [Outgoing(messages.by_claim_check(source, self.bucket, key, run_id),
                                                       source, dedup)])
        return True

    def urls(self, source: str, urls: list[str], run_id: str | None = None) -> None:
        self._send(self.sqs, self.queue_url, [Outgoing(messages.by_url(source, url, run_id), source, url)
                                              for url in urls])


def with_query(url: str, **params: Any) -> str:
    """``url`` with query parameters set (replacing any of the same name), others kept in order."""
    parts = urlsplit(url)
    query = [(key, value) for key, value in parse_qsl(parts.query, keep_blank_values=True) if key not in params]
    query += [(key, str(value)) for key, value in params.items() if value is not None]
    return urlunsplit(parts._replace(query=urlencode(query)))


def json_pointer(document: Any, pointer: str) -> Any:
    """RFC 6901 lookup; None when the path does not exist."""
    if pointer in ("", "/"):
        return document
    node = document
    for token in pointer.lstrip("/").split("/"):
        token = token.replace("~1", "/").replace("~0", "~")
        if isinstance(node, dict):
            node = node.get(token)
        elif isinstance(node, list) and token.isdigit() and int(token) < len(node):
            node = node[int(token)]
        else:
            return None
    return node


@dataclass
class ParsedPage:
    text: str
    value: Any
    releases: int
    newest: datetime | None


class _Member(msgspec.Struct):
    date: Any = None


_PAGE = msgspec.json.Decoder(dict[str, msgspec.Raw] | list[msgspec.Raw])
_PACKAGE = msgspec.json.Decoder(dict[str, msgspec.Raw])


def _small_members(members: dict[str, Any]) -> dict[str, Any]:
    """A package's members parsed exactly (the links to follow), but its releases or records array left as []:
    the walk needs only their count, and reading them whole would hold a worst page in memory several times."""
    return {key: [] if key in ("releases", "records") and jsontext.text_of(member).lstrip()[:1] == "["
            else jsontext.value_of(member) for key, member in members.items()}


def _package_members(text: str) -> Any:
    """A page's packages with their small members parsed (``_small_members``); one bad release must not stop the
    walk (the worker isolates it), so a page that is not JSON as a whole is split leniently. None if it is not
    JSON at all, or was cut off (it is then fetched again)."""
    try:
        page = _PAGE.decode(text)
    except msgspec.ValidationError:
        return jsontext.value_of(text)  # a scalar: not a page
    except jsontext.PARSE_ERRORS:
        members = documents.object_members(text) if documents.is_closed(text) else None
        return _small_members(members) if members else None
    if isinstance(page, dict):
        return _small_members(page)
    packages = []
    for element in page:
        try:
            packages.append(_small_members(_PACKAGE.decode(element)))
        except msgspec.ValidationError:
            packages.append(jsontext.value_of(element))  # not an object: refused below
    return packages


def parse_page(raw: bytes, url: str) -> ParsedPage:
    """A fetched page, checked: an API page must be a package (releases or records), or a list of them."""
    text, _ = documents.decode(raw)
    value = _package_members(text)
    if value is None:
        raise PageNotOcds(f"{url} answered 200 with a body that is not JSON (starts {text[:80]!r}); "
                          "will resume here next time")
    for package in value if isinstance(value, list) else [value]:
        if not isinstance(package, dict) or not isinstance(package.get("releases", package.get("records")), list):
            raise PageNotOcds(f"{url} answered 200 with JSON that has no 'releases' or 'records' array "
                              f"(starts {text[:80]!r}); will resume here next time")
    releases = 0
    newest: datetime | None = None
    for item in documents.read_text(text).items():
        if isinstance(item, documents.Compiled):
            continue
        releases += 1
        try:
            date = msgspec.json.decode(item.raw, type=_Member).date if isinstance(item, documents.Found) else None
        except jsontext.PARSE_ERRORS:
            date = None
        if isinstance(date, str):
            try:
                moment = parse_date(date)[0]
            except ValueError:
                continue
            newest = moment if newest is None or moment > newest else newest
    return ParsedPage(text, value, releases, newest)


@dataclass
class Harvester:
    """Walks one source at a time. Clients come in; nothing here reads the environment."""

    db: Database
    fetcher: Fetcher
    sender: PageSender
    seconds_left: Callable[[], float]
    margin_seconds: float = DEFAULT_MARGIN_SECONDS
    now: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))
    sleep: Callable[[float], None] = time.sleep
    _last_request: float = field(default=float("-inf"), init=False)

    def run(self, source: Source, *, backfill: tuple[str, str | None] | None = None) -> HarvestResult:
        result = HarvestResult(source.name, run_id=self._run_id(source.name))
        if not harvest_state.try_lock(self.db, source.name):
            result.status = "locked"
            result.detail = "another harvest of this source is running; this one yields"
            return result
        try:
            harvest_state.start_run(self.db, result.run_id, source.name)
            try:
                self._walk(source, result, backfill)
            except IngestError as error:
                result.status = "failed"
                result.detail = str(error)
            harvest_state.finish_run(self.db, result.run_id, status=result.status, pages=result.pages,
                                     releases=result.releases, messages=result.messages,
                                     errors=int(result.status == "failed"), detail=result.detail)
        finally:
            harvest_state.unlock(self.db, source.name)
        return result

    def fail(self, source: str, reason: str) -> HarvestResult:
        """Record a run of ``source`` that could not start (its configuration is incomplete), with the reason."""
        result = HarvestResult(source, run_id=self._run_id(source), status="failed", detail=reason)
        harvest_state.start_run(self.db, result.run_id, source)
        harvest_state.finish_run(self.db, result.run_id, status="failed", pages=0, releases=0, messages=0,
                                 errors=1, detail=reason)
        return result

    def _run_id(self, source: str) -> str:
        return f"{source}-{self.now():%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:8]}"

    # -- walks ---------------------------------------------------------------------------------------------

    def _walk(self, source: Source, result: HarvestResult, backfill: tuple[str, str | None] | None) -> None:
        state = harvest_state.load(self.db, source.name)
        if backfill is not None:
            # A backfill walks its own range and leaves the scheduled walk's cursor and watermark alone.
            state = HarvestState()
        walk = {"next_link": self._walk_links, "page_number": self._walk_enumerated,
                "offset": self._walk_enumerated, "date_window": self._walk_windows}[source.pagination]
        walk(source, state, result, backfill)

    def _out_of_time(self) -> bool:
        return self.seconds_left() < self.margin_seconds

    def _save(self, source: Source, state: HarvestState, backfill: Any) -> None:
        if backfill is None:
            harvest_state.save(self.db, source.name, state)

    def _since(self, source: Source, state: HarvestState, backfill: tuple[str, str | None] | None) -> str | None:
        if backfill is not None:
            return backfill[0]
        if state.watermark is not None:
            # Overlap: releases published with the same timestamp as the watermark, or late, are not missed.
            return (state.watermark - timedelta(minutes=source.overlap_minutes)).strftime("%Y-%m-%dT%H:%M:%SZ")
        return source.start_date

    def _first_url(self, source: Source, state: HarvestState, backfill: tuple[str, str | None] | None) -> str:
        params: dict[str, Any] = {}
        if source.page_size_parameter and source.page_size:
            params[source.page_size_parameter] = source.page_size
        since = self._since(source, state, backfill)
        if since and source.pagination == "next_link" and (backfill is not None or state.watermark is not None):
            params[source.from_parameter] = since
        if backfill is not None and backfill[1]:
            params[source.until_parameter] = backfill[1]
        return with_query(source.start_url, **params)

    def _fetch(self, url: str, source: Source) -> tuple[ParsedPage, bytes]:
        # Politeness: at most requests_per_second requests from this walk (workers fetching URL messages are
        # bounded by the queue's concurrency instead).
        wait = self._last_request + 1.0 / source.requests_per_second - time.monotonic()
        if wait > 0:
            self.sleep(wait)
        self._last_request = time.monotonic()
        fetched = self.fetcher.get(url, source)
        return parse_page(fetched.body, url), fetched.body

    def _walk_links(self, source: Source, state: HarvestState, result: HarvestResult,
                    backfill: tuple[str, str | None] | None) -> None:
        url: str | None = state.cursor or self._first_url(source, state, backfill)
        watermark = state.watermark
        seen: set[str] = set()
        while url:
            if self._out_of_time():
                result.status = "paused"
                result.detail = f"time budget reached; resumes at {url}"
                self._save(source, HarvestState(url, state.watermark, state.last_success_at), backfill)
                return
            try:
                page, raw = self._fetch(url, source)
            except TransientError:
                self._save(source, HarvestState(url, state.watermark, state.last_success_at), backfill)
                raise
            seen.add(url)
            result.claim_checks += self.sender.page(source.name, page.text, raw, url, result.run_id)
            result.pages += 1
            result.messages += 1
            result.releases += page.releases
            if page.newest and (watermark is None or page.newest > watermark):
                watermark = page.newest
            following = json_pointer(page.value if isinstance(page.value, dict) else
                                     (page.value[0] if page.value else {}), source.next_pointer)
            url = following if isinstance(following, str) and following and following not in seen else None
            # The cursor moves only after the page is in the queue: a crash here re-sends one page, never skips one.
            self._save(source, HarvestState(url, state.watermark, state.last_success_at), backfill)
        result.status = "complete"
        self._save(source, HarvestState(None, watermark, self.now()), backfill)

    def _enumerated_urls(self, source: Source, first_url: str, page: ParsedPage) -> Iterator[tuple[str, str]]:
        """(cursor, url) of every page after the first, for page numbers and offsets."""
        value = page.value[0] if isinstance(page.value, list) and page.value else page.value
        total = json_pointer(value, source.total_pages_pointer)
        if not isinstance(total, int) or isinstance(total, bool) or total < 0:
            raise PageNotOcds(f"{first_url}: no whole number at {source.total_pages_pointer} to enumerate pages by")
        if source.pagination == "page_number":
            for number in range(2, total + 1):
                yield str(number), with_query(first_url, **{source.page_parameter: number})
        else:
            limit = source.page_size or page.releases or 1
            for offset in range(limit, total, limit):
                yield str(offset), with_query(first_url, **{source.offset_parameter: offset,
                                                             source.limit_parameter: limit})

    def _walk_enumerated(self, source: Source, state: HarvestState, result: HarvestResult,
                         backfill: tuple[str, str | None] | None) -> None:
        first_url = self._first_url(source, state, backfill)
        if source.pagination == "page_number":
            first_url = with_query(first_url, **{source.page_parameter: 1})
        page, raw = self._fetch(first_url, source)
        resume_after = state.cursor
        if resume_after is None:
            result.claim_checks += self.sender.page(source.name, page.text, raw, first_url, result.run_id)
            result.pages += 1
            result.messages += 1
            result.releases += page.releases
        entries = self._enumerated_urls(source, first_url, page)
        if resume_after is not None:
            entries = dropwhile(lambda entry: entry[0] != resume_after, entries)
            next(entries, None)  # the page the cursor names was sent already
        if not self._enqueue(source, state, result, entries, backfill):
            return
        result.status = "complete"
        watermark = max(filter(None, [state.watermark, page.newest]), default=None)
        self._save(source, HarvestState(None, watermark, self.now()), backfill)

    def _enqueue(self, source: Source, state: HarvestState, result: HarvestResult,
                 entries: Iterator[tuple[str, str]], backfill: Any) -> bool:
        """Send (cursor, url) entries as URL messages, ten per SQS batch, saving the cursor after each batch.
        Returns False when the time budget stopped it."""
        while pending := list(islice(entries, 10)):
            if not self._send_urls(source, state, result, pending, backfill):
                return False
        return True

    def _send_urls(self, source: Source, state: HarvestState, result: HarvestResult,
                   pending: list[tuple[str, str]], backfill: Any) -> bool:
        if self._out_of_time():
            result.status = "paused"
            result.detail = f"time budget reached; resumes after {pending[0][0]}"
            return False
        self.sender.urls(source.name, [url for _, url in pending], result.run_id)
        result.messages += len(pending)
        self._save(source, HarvestState(pending[-1][0], state.watermark, state.last_success_at), backfill)
        return True

    def _walk_windows(self, source: Source, state: HarvestState, result: HarvestResult,
                      backfill: tuple[str, str | None] | None) -> None:
        start_text = state.cursor or self._since(source, state, backfill)
        if not start_text:
            raise PermanentError("no_start", f"source {source.name!r} pages by date windows but has no start_date")
        start = parse_date(start_text)[0]
        until = parse_date(backfill[1])[0] if backfill and backfill[1] else self.now()
        step = timedelta(days=source.window_days)

        def windows(start: datetime) -> Iterator[tuple[str, str]]:
            while start < until:
                end = min(start + step, until)
                params: dict[str, Any] = {source.from_parameter: _iso(start), source.until_parameter: _iso(end)}
                if source.page_size_parameter and source.page_size:
                    params[source.page_size_parameter] = source.page_size
                yield _iso(end), with_query(source.start_url, **params)
                start = end

        if not self._enqueue(source, state, result, windows(start), backfill):
            return
        result.status = "complete"
        self._save(source, HarvestState(None, until, self.now()), backfill)


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")

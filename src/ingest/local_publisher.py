"""A real OCDS API on loopback, for tests and ``make demo``: the samples, paged in every style, with faults.

Endpoints (all return release packages):

| path | paging | next page |
|---|---|---|
| ``/keyset?limit=N&after=K`` | keyset | ``links.next`` = ``/keyset?limit=N&after=<last key>`` |
| ``/offset-links?limit=N&offset=K`` | offset | ``links.next`` = ``…&offset=K+N`` |
| ``/pointer?limit=N&offset=K`` | offset | ``next_page.uri`` (Armenia's style) |
| ``/pages?page=P&page_size=N`` | page numbers | ``pagination.total_pages`` (Paraguay's style) |
| ``/windows?from=A&until=B`` | date windows | releases with ``date`` in [A, B) |

Every request is recorded (``log``: path, start, end and status on the monotonic clock; ``most_in_flight`` per path),
so tests can check what a publisher saw: the rate, the concurrency, the pause after a 429.

Faults are queued per path and consumed one per request: ``Fault("429", retry_after="2")``, ``Fault("429")``
(no Retry-After, as Find a Tender does), ``Fault("500")``, ``Fault("slow", seconds=2)``, ``Fault("truncated")``,
``Fault("invalid_json")``, ``Fault("html")`` (an error page with status 200), ``Fault("redirect", to=URL)``.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter, defaultdict, deque
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

from ingest import documents, jsontext
from ingest.releases import parse_date


@dataclass(frozen=True)
class Served:
    path: str
    started: float
    ended: float
    status: int


@dataclass
class Fault:
    kind: str
    retry_after: str | None = None
    seconds: float = 0.0
    to: str = ""


def releases_from(paths: list[Path]) -> list[dict[str, Any]]:
    """Every valid release (ocid, id and date) in the files, unique by (ocid, id), sorted by date then key."""
    found: dict[tuple[str, str], dict[str, Any]] = {}
    for path in paths:
        for item in documents.read_bytes(path.read_bytes()).items():
            value = item.value if isinstance(item, documents.Found) else None
            if not isinstance(value, dict):
                continue
            ocid, release_id, date = value.get("ocid"), value.get("id"), value.get("date")
            if not (isinstance(ocid, str) and ocid and isinstance(release_id, str) and isinstance(date, str)):
                continue
            try:
                parse_date(date)
            except ValueError:
                continue
            found.setdefault((ocid, release_id), value)
    return sorted(found.values(), key=lambda r: (parse_date(r["date"])[0], r["ocid"], r["id"]))


class LocalPublisher:
    """A threaded HTTP server on 127.0.0.1 serving ``releases`` (a list it may be told to change)."""

    def __init__(self, releases: list[dict[str, Any]], *, publisher_name: str = "Local publisher",
                 uri_base: str | None = None) -> None:
        self.releases = list(releases)
        self.publisher_name = publisher_name
        # The packages' ``uri`` (stored with every release): the server's own address unless a stable one is given.
        self.uri_base = uri_base
        self.faults: dict[str, deque[Fault]] = defaultdict(deque)
        self.requests: Counter[str] = Counter()
        self.log: list[Served] = []
        self.in_flight: Counter[str] = Counter()
        self.most_in_flight: Counter[str] = Counter()
        self.lock = threading.Lock()
        publisher = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
                pass

            def do_GET(self) -> None:  # noqa: N802 - the base class's name
                publisher._serve(self)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, name="local-publisher", daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def start(self) -> LocalPublisher:
        self.thread.start()
        return self

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)

    def __enter__(self) -> LocalPublisher:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def fail(self, path: str, *faults: Fault) -> None:
        with self.lock:
            self.faults[path].extend(faults)

    def insert_at_front(self, releases: list[dict[str, Any]]) -> None:
        """New releases that sort before everything served so far (kingfisher-collect#965)."""
        with self.lock:
            self.releases[:0] = releases

    # -- serving -------------------------------------------------------------------------------------------

    def _serve(self, request: BaseHTTPRequestHandler) -> None:
        path, started = urlsplit(request.path).path, time.monotonic()
        with self.lock:
            self.in_flight[path] += 1
            self.most_in_flight[path] = max(self.most_in_flight[path], self.in_flight[path])
        try:
            self._answer(request)
        finally:
            with self.lock:
                self.in_flight[path] -= 1
                self.log.append(Served(path, started, time.monotonic(), getattr(request, "sent_status", 0)))

    def _answer(self, request: BaseHTTPRequestHandler) -> None:
        parts = urlsplit(request.path)
        query = {key: values[-1] for key, values in parse_qs(parts.query).items()}
        with self.lock:
            self.requests[parts.path] += 1
            fault = self.faults[parts.path].popleft() if self.faults[parts.path] else None
            releases = list(self.releases)
        if fault is not None and self._fault(request, fault):
            return
        try:
            status, body = self._page(parts.path, query, releases)
        except (KeyError, ValueError) as exc:
            status, body = 400, json.dumps({"error": str(exc)}).encode()
        if fault is not None and fault.kind == "truncated":
            body = body[: len(body) // 2]
        elif fault is not None and fault.kind == "invalid_json":
            body = body.replace(b'"releases"', b'"releases" "', 1)
        self._send(request, status, body)

    def _fault(self, request: BaseHTTPRequestHandler, fault: Fault) -> bool:
        if fault.kind in ("429", "500", "502", "503"):
            headers = {"Retry-After": fault.retry_after} if fault.retry_after else {}
            self._send(request, int(fault.kind), b'{"error": "try later"}', headers)
            return True
        if fault.kind == "html":
            self._send(request, 200, b"<html><body>Service temporarily unavailable</body></html>",
                       {"Content-Type": "text/html"})
            return True
        if fault.kind == "redirect":
            self._send(request, 302, b"", {"Location": fault.to})
            return True
        if fault.kind == "slow":
            time.sleep(fault.seconds)
        return False  # "none", "slow", "truncated", "invalid_json": the page is served (and maybe spoiled)

    def _send(self, request: BaseHTTPRequestHandler, status: int, body: bytes,
              headers: dict[str, str] | None = None) -> None:
        request.sent_status = status  # type: ignore[attr-defined]  # for the log
        try:
            request.send_response(status)
            request.send_header("Content-Type", (headers or {}).pop("Content-Type", "application/json"))
            for name, value in (headers or {}).items():
                request.send_header(name, value)
            request.send_header("Content-Length", str(len(body)))
            request.end_headers()
            request.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (a timeout test); nothing to tell it

    def _package(self, releases: list[dict[str, Any]], uri: str, **extra: Any) -> dict[str, Any]:
        if self.uri_base:
            uri = self.uri_base + uri.removeprefix(self.base_url)
        return {"uri": uri, "version": "1.1", "publishedDate": "2026-11-28T00:00:00Z",
                "publisher": {"name": self.publisher_name}, "releases": releases, **extra}

    def _page(self, path: str, query: dict[str, str], releases: list[dict[str, Any]]) -> tuple[int, bytes]:
        base = self.base_url
        limit = int(query.get("limit") or query.get("page_size") or 100)
        if path == "/keyset":
            keys = [_key(release) for release in releases]
            after = query.get("after")
            start = 0 if after is None else next((i + 1 for i, key in enumerate(keys) if key == after), len(keys))
            chunk = releases[start:start + limit]
            extra: dict[str, Any] = {}
            if start + limit < len(releases):
                extra["links"] = {"next": f"{base}/keyset?{urlencode({'limit': limit, 'after': _key(chunk[-1])})}"}
            return 200, _json(self._package(chunk, f"{base}{path}", **extra))
        if path in ("/offset-links", "/pointer"):
            offset = int(query.get("offset", 0))
            chunk = releases[offset:offset + limit]
            extra = {}
            if offset + limit < len(releases):
                following = f"{base}{path}?{urlencode({'limit': limit, 'offset': offset + limit})}"
                extra = {"links": {"next": following}} if path == "/offset-links" else \
                    {"next_page": {"uri": following}}
            return 200, _json(self._package(chunk, f"{base}{path}", **extra))
        if path == "/pages":
            page = int(query.get("page", 1))
            total = max(1, -(-len(releases) // limit))
            chunk = releases[(page - 1) * limit:page * limit]
            return 200, _json(self._package(chunk, f"{base}{path}", pagination={
                "total_items": len(releases), "total_pages": total, "current_page": page, "items_per_page": limit,
                "total_in_page": len(chunk)}))
        if path == "/windows":
            since, until = parse_date(query["from"])[0], parse_date(query["until"])[0]
            chunk = [r for r in releases if since <= parse_date(r["date"])[0] < until]
            return 200, _json(self._package(chunk, f"{base}{path}"))
        return 404, b'{"error": "not found"}'


def _key(release: dict[str, Any]) -> str:
    return f"{release['ocid']}/{release['id']}"


def _json(value: Any) -> bytes:
    return jsontext.dumps(value).encode("utf-8")  # numbers exactly as the samples publish them

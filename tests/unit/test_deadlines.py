"""Every network call of a message ends before the invocation's deadline (HTTP, S3, the harvester's retries)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import boto3
import httpx
import pytest
from moto import mock_aws

from ingest.errors import TransientError
from ingest.http import DEFAULT_TIMEOUT, Fetcher, HttpFailed, new_polite_client
from ingest.sources import Source
from ingest.storage import get_page

LOCAL = Source(name="local", allowed_hosts=("127.0.0.1",), allow_private_network=True)


def mock_fetcher(handler: Any) -> Fetcher:
    return Fetcher(httpx.Client(transport=httpx.MockTransport(handler), timeout=DEFAULT_TIMEOUT))


def test_a_fetcher_given_the_time_left_limits_every_fetch_by_it() -> None:
    seen: list[dict[str, float]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.extensions["timeout"])
        return httpx.Response(200, content=b"{}")

    fetcher = Fetcher(httpx.Client(transport=httpx.MockTransport(handler), timeout=DEFAULT_TIMEOUT),
                      time_left=lambda: 3.0)
    fetcher.get("http://127.0.0.1/page", LOCAL)
    assert all(0 < value <= 3 for value in seen[0].values())


def test_a_fetch_after_the_deadline_is_not_sent() -> None:
    sent: list[httpx.Request] = []
    fetcher = mock_fetcher(lambda request: sent.append(request) or httpx.Response(200, content=b"{}"))
    with pytest.raises(HttpFailed, match="no time left"):
        fetcher.get("http://127.0.0.1/page", LOCAL, deadline=time.monotonic() - 1)
    assert sent == []


def test_every_timeout_of_a_fetch_is_cut_to_the_time_left() -> None:
    seen: list[dict[str, float]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.extensions["timeout"])
        return httpx.Response(200, content=b"{}")

    # GIVEN 5 s left and the client's 60 s read timeout
    mock_fetcher(handler).get("http://127.0.0.1/page", LOCAL, deadline=time.monotonic() + 5)
    # THEN no limit of the request is above the 5 s
    assert seen and all(0 < value <= 5 for value in seen[0].values())
    # AND without a deadline the client's own timeouts apply
    mock_fetcher(handler).get("http://127.0.0.1/page", LOCAL)
    assert seen[1]["read"] == DEFAULT_TIMEOUT.read


class Dripping(httpx.SyncByteStream):
    """A body that keeps arriving: one piece, then another after a pause."""

    def __iter__(self) -> Iterator[bytes]:
        yield b'{"releases": ['
        time.sleep(0.3)
        yield b"]}"


def test_a_body_still_arriving_at_the_deadline_fails_transiently() -> None:
    fetcher = mock_fetcher(lambda request: httpx.Response(200, stream=Dripping()))
    with pytest.raises(HttpFailed, match="still arriving at the invocation's deadline"):
        fetcher.get("http://127.0.0.1/page", LOCAL, deadline=time.monotonic() + 0.1)


class Unavailable(BaseHTTPRequestHandler):
    hits = 0

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        Unavailable.hits += 1
        self.send_response(503)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass


@pytest.fixture
def unavailable() -> Iterator[str]:
    Unavailable.hits = 0
    server = ThreadingHTTPServer(("127.0.0.1", 0), Unavailable)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/page"
    server.shutdown()
    server.server_close()


def test_the_harvester_s_retries_stop_when_one_more_would_outlast_the_invocation(unavailable: str) -> None:
    sleeps: list[float] = []
    # GIVEN 30 s left: a retry's wait plus one more 60 s attempt does not fit
    client = new_polite_client(sleep=sleeps.append, time_left=lambda: 30.0)
    with pytest.raises(HttpFailed, match="would outlast the invocation"):
        Fetcher(client).get(unavailable, LOCAL)
    # THEN the failure is raised at once: one request, no wait
    assert (Unavailable.hits, sleeps) == (1, [])


def test_with_time_enough_the_harvester_retries_as_before(unavailable: str) -> None:
    sleeps: list[float] = []
    client = new_polite_client(sleep=sleeps.append, time_left=lambda: 10_000.0, attempts=2)
    with pytest.raises(HttpFailed, match="503"):
        Fetcher(client).get(unavailable, LOCAL)
    assert Unavailable.hits == 3 and len(sleeps) == 2


@mock_aws
def test_an_s3_read_after_the_deadline_fails_transiently_and_before_it_reads_whole() -> None:
    s3 = boto3.client("s3", region_name="eu-west-1")
    s3.create_bucket(Bucket="pages", CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
    s3.put_object(Bucket="pages", Key="pages/a.json", Body=b"x" * 3_000_000)
    with pytest.raises(TransientError, match="deadline passed"):
        get_page(s3, "pages", "pages/a.json", 16 * 1024 * 1024, deadline=time.monotonic() - 1)
    assert len(get_page(s3, "pages", "pages/a.json", 16 * 1024 * 1024, deadline=time.monotonic() + 60)) == 3_000_000

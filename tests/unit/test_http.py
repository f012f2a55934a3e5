"""Unit tests for ingest.http: the SSRF guard, status classification, size caps (no real network).

Requests go to an ``httpx.MockTransport``; host names resolve through a fake resolver. MockTransport responses
have no ``network_stream``, so the post-connect peer check is exercised with a stand-in stream, and once with a
real client against a server on 127.0.0.1.
"""

from __future__ import annotations

import gzip
import random
import socket
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest

from ingest import __version__
from ingest.errors import IngestError, PermanentError, TransientError
from ingest.http import (
    MAX_REDIRECTS,
    Fetcher,
    FetchRefused,
    HttpFailed,
    check_url,
    is_public_address,
    resolve,
    retry_after_seconds,
)
from ingest.politeness import user_agent
from ingest.sources import Source

PUBLIC_IP = "93.184.216.34"
DNS: dict[str, list[str]] = {
    "publisher.example": [PUBLIC_IP],
    "cdn.example": ["151.101.1.69"],
    "rebind.example": ["169.254.169.254"],
    "internal.example": ["10.0.0.5"],
    "mixed.example": [PUBLIC_IP, "127.0.0.1"],
    "evil.example": ["203.0.113.66"],
}

Route = Callable[[httpx.Request], httpx.Response]


def fake_resolve(host: str) -> list[str]:
    if host not in DNS:
        raise AssertionError(f"unexpected DNS lookup of {host}")
    return DNS[host]


def no_dns(host: str) -> list[str]:
    raise AssertionError(f"DNS lookup of {host} where none was expected")


def source(*hosts: str, **fields: Any) -> Source:
    return Source(name="publisher", allowed_hosts=hosts or ("publisher.example",), **fields)


class Publisher:
    """A MockTransport handler: answers from routes keyed by full URL and records every request."""

    def __init__(self, routes: dict[str, Route] | None = None) -> None:
        self.routes = routes or {}
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        url = logical_url(request)
        if url not in self.routes:
            raise AssertionError(f"unexpected request to {url}")
        return self.routes[url](request)

    @property
    def urls(self) -> list[str]:
        return [logical_url(request) for request in self.requests]


def logical_url(request: httpx.Request) -> str:
    """The URL as the fetcher was asked for it: a pinned request goes to the checked address under its name."""
    name = request.extensions.get("sni_hostname")
    return str(request.url.copy_with(host=name)) if name else str(request.url)


def ok(body: bytes = b'{"releases": []}', content_type: str = "application/json", **kwargs: Any) -> Route:
    return lambda request: httpx.Response(200, content=body, headers={"Content-Type": content_type}, **kwargs)


def answer(status: int, headers: dict[str, str] | list[tuple[bytes, bytes]] | None = None) -> Route:
    return lambda request: httpx.Response(status, headers=headers, content=b"")


def redirect(status: int, location: str) -> Route:
    return lambda request: httpx.Response(status, headers={"Location": location})


@pytest.fixture
def fetcher_for() -> Iterator[Callable[..., Fetcher]]:
    clients: list[httpx.Client] = []

    def make(publisher: Publisher, *, max_bytes: int = 1024 * 1024,
             resolver: Callable[[str], list[str]] = fake_resolve, **client_options: Any) -> Fetcher:
        client = httpx.Client(transport=httpx.MockTransport(publisher), **client_options)
        clients.append(client)
        return Fetcher(client, max_bytes=max_bytes, resolver=resolver)

    yield make
    for client in clients:
        client.close()


def refused(fetcher: Fetcher, url: str, src: Source) -> FetchRefused:
    with pytest.raises(FetchRefused) as caught:
        fetcher.get(url, src)
    return caught.value


def failed(fetcher: Fetcher, url: str, src: Source) -> HttpFailed:
    with pytest.raises(HttpFailed) as caught:
        fetcher.get(url, src)
    return caught.value


# --- the error tree ---------------------------------------------------------------------------------------------


def test_fetch_refused_is_permanent_and_http_failed_is_transient() -> None:
    assert issubclass(FetchRefused, PermanentError)
    assert issubclass(HttpFailed, TransientError)
    assert not issubclass(HttpFailed, PermanentError)
    assert issubclass(PermanentError, IngestError) and issubclass(TransientError, IngestError)


def test_permanent_error_carries_reason_and_detail() -> None:
    error = FetchRefused("too_large", "page.json is 9 bytes")

    assert (error.reason, error.detail, str(error)) == ("too_large", "page.json is 9 bytes",
                                                        "too_large: page.json is 9 bytes")


def test_http_failed_carries_status_and_retry_after() -> None:
    error = HttpFailed("GET x answered 429", status=429, retry_after=7.0)

    assert (str(error), error.status, error.retry_after) == ("GET x answered 429", 429, 7.0)
    assert (HttpFailed("network").status, HttpFailed("network").retry_after) == (None, None)


# --- allowed fetches ------------------------------------------------------------------------------------------------


def test_allowed_host_is_fetched_with_body_url_and_content_type(fetcher_for: Callable[..., Fetcher]) -> None:
    publisher = Publisher({"https://publisher.example/releases?page=1": ok(b'{"releases": [1]}',
                                                                           "application/json; charset=utf-8")})

    fetched = fetcher_for(publisher).get("https://publisher.example/releases?page=1", source())

    assert fetched.body == b'{"releases": [1]}'
    assert fetched.url == "https://publisher.example/releases?page=1"
    assert fetched.content_type == "application/json; charset=utf-8"
    assert publisher.urls == ["https://publisher.example/releases?page=1"]


def test_missing_content_type_is_empty(fetcher_for: Callable[..., Fetcher]) -> None:
    publisher = Publisher({"https://publisher.example/": lambda request: httpx.Response(200, content=b"{}")})

    assert fetcher_for(publisher).get("https://publisher.example/", source()).content_type == ""


def test_source_headers_and_user_agent_are_sent(fetcher_for: Callable[..., Fetcher]) -> None:
    # GIVEN a client with its own default user agent, and a source with credentials and its own user agent
    publisher = Publisher({"https://publisher.example/": ok()})
    fetcher = fetcher_for(publisher, headers={"User-Agent": "client-default"})
    src = source(headers={"Authorization": "Bearer token", "Accept": "application/json"}, user_agent="bot/2.0")

    # WHEN a page is fetched with a per-call header that overrides one of the source's
    fetcher.get("https://publisher.example/", src, headers={"Accept": "application/vnd.ocds+json"})

    # THEN the request carries the source's user agent and credentials, and the call's Accept
    (request,) = publisher.requests
    assert request.method == "GET"
    assert request.headers["User-Agent"] == "bot/2.0"
    assert request.headers["Authorization"] == "Bearer token"
    assert request.headers["Accept"] == "application/vnd.ocds+json"


def test_default_user_agent_names_the_project_and_its_version_and_no_one_else(
        fetcher_for: Callable[..., Fetcher]) -> None:
    publisher = Publisher({"https://publisher.example/": ok()})

    fetcher_for(publisher).get("https://publisher.example/", source())

    assert publisher.requests[0].headers["User-Agent"] == f"ocds-ingest/{__version__}"


def test_the_user_agent_carries_the_contact_the_operator_configured(fetcher_for: Callable[..., Fetcher]) -> None:
    publisher = Publisher({"https://publisher.example/": ok()})
    fetcher = fetcher_for(publisher)
    fetcher.user_agent = user_agent("data-team@example.org")

    fetcher.get("https://publisher.example/", source())

    assert publisher.requests[0].headers["User-Agent"] == f"ocds-ingest/{__version__} (+data-team@example.org)"


# --- the SSRF guard: hosts ----------------------------------------------------------------------------------------


def test_host_not_in_allowed_hosts_is_refused_naming_the_source_and_the_host(
        fetcher_for: Callable[..., Fetcher]) -> None:
    publisher = Publisher()

    error = refused(fetcher_for(publisher, resolver=no_dns), "https://evil.example/steal", source())

    assert error.reason == "url_refused"
    assert "host evil.example is not allowed for source 'publisher'" in error.detail
    assert "(allowed: publisher.example)" in error.detail
    assert publisher.requests == []


def test_source_with_no_allowed_hosts_says_so() -> None:
    with pytest.raises(FetchRefused) as caught:
        check_url("https://publisher.example/", Source(name="pushed"), no_dns)

    assert "(allowed: none)" in caught.value.detail


def test_user_info_cannot_smuggle_another_host_past_the_allow_list() -> None:
    with pytest.raises(FetchRefused) as caught:
        check_url("https://publisher.example@evil.example/", source(), no_dns)

    assert caught.value.reason == "url_refused"
    assert "host evil.example is not allowed" in caught.value.detail


@pytest.mark.parametrize("url", ["ftp://publisher.example/page.json", "file:///etc/passwd", "https:///no-host",
                                 "publisher.example/page.json"])
def test_url_that_is_not_http_is_refused(url: str) -> None:
    with pytest.raises(FetchRefused) as caught:
        check_url(url, source(), no_dns)

    assert caught.value.reason == "url_refused"
    assert caught.value.detail == f"{url} is not an http(s) URL"


@pytest.mark.parametrize(("url", "host"), [
    ("http://127.0.0.1/", "127.0.0.1"),
    ("http://127.8.9.10:8080/", "127.8.9.10"),
    ("http://[::1]/", "::1"),
    ("http://10.1.2.3/", "10.1.2.3"),
    ("http://172.16.0.1/", "172.16.0.1"),
    ("http://172.31.255.254/", "172.31.255.254"),
    ("http://192.168.1.1/", "192.168.1.1"),
    ("http://169.254.169.254/latest/meta-data/", "169.254.169.254"),
    ("http://0.0.0.0/", "0.0.0.0"),
    ("http://[::]/", "::"),
    ("http://[::ffff:127.0.0.1]/", "::ffff:127.0.0.1"),
    ("http://[::ffff:169.254.169.254]/", "::ffff:169.254.169.254"),
    ("http://[fe80::1]/", "fe80::1"),
    ("http://[fd00::1]/", "fd00::1"),
    ("http://100.64.0.1/", "100.64.0.1"),
    ("http://224.0.0.1/", "224.0.0.1"),
    ("http://240.0.0.1/", "240.0.0.1"),
])
def test_non_public_ip_literal_is_refused_even_when_allowed(fetcher_for: Callable[..., Fetcher], url: str,
                                                            host: str) -> None:
    # GIVEN a source that lists the address itself, so only the address check stands in the way
    publisher = Publisher({url: ok()})

    error = refused(fetcher_for(publisher, resolver=no_dns), url, source(host))

    assert error.reason == "url_refused"
    assert error.detail.startswith(f"{host} resolves to a non-public address ({host}); refused for source "
                                   "'publisher'")
    assert publisher.requests == []


def test_public_ip_literal_is_fetched_when_allowed_without_dns(fetcher_for: Callable[..., Fetcher]) -> None:
    publisher = Publisher({f"http://{PUBLIC_IP}/api": ok(b"[]")})

    fetched = fetcher_for(publisher, resolver=no_dns).get(f"http://{PUBLIC_IP}/api", source(PUBLIC_IP))

    assert fetched.body == b"[]"


@pytest.mark.parametrize(("host", "blocked"), [("internal.example", "10.0.0.5"),
                                               ("rebind.example", "169.254.169.254"),
                                               ("mixed.example", "127.0.0.1")])
def test_name_resolving_to_a_non_public_address_is_refused(fetcher_for: Callable[..., Fetcher], host: str,
                                                           blocked: str) -> None:
    publisher = Publisher({f"https://{host}/": ok()})

    error = refused(fetcher_for(publisher), f"https://{host}/", source(host))

    assert error.reason == "url_refused"
    assert error.detail.startswith(f"{host} resolves to a non-public address ({blocked}); refused for source "
                                   "'publisher'")
    assert publisher.requests == []


def test_decimal_ip_host_is_resolved_and_refused_as_loopback() -> None:
    # 2130706433 is 127.0.0.1 to getaddrinfo (a numeric host: no DNS query leaves the machine)
    with pytest.raises(FetchRefused) as caught:
        check_url("http://2130706433/", source("2130706433"))

    assert caught.value.reason == "url_refused"
    assert "(127.0.0.1)" in caught.value.detail


def test_private_network_is_fetched_when_the_source_allows_it(fetcher_for: Callable[..., Fetcher]) -> None:
    publisher = Publisher({"http://internal.example/api": ok(b"{}"), "http://10.0.0.5/api": ok(b"[]")})
    fetcher = fetcher_for(publisher, resolver=no_dns)
    src = source("internal.example", "10.0.0.5", allow_private_network=True)

    assert fetcher.get("http://internal.example/api", src).body == b"{}"
    assert fetcher.get("http://10.0.0.5/api", src).body == b"[]"


def test_private_network_allowance_does_not_widen_the_host_list() -> None:
    with pytest.raises(FetchRefused) as caught:
        check_url("http://10.0.0.6/", source("10.0.0.5", allow_private_network=True), no_dns)

    assert "host 10.0.0.6 is not allowed" in caught.value.detail


@pytest.mark.parametrize("address", ["127.0.0.1", "::1", "10.0.0.1", "172.16.5.4", "192.168.0.1", "169.254.169.254",
                                     "0.0.0.0", "::", "::ffff:127.0.0.1", "::ffff:10.0.0.1", "fe80::1%eth0",
                                     "fc00::1", "100.64.0.1", "255.255.255.255", "198.18.0.1", "192.0.2.1",
                                     "2001:db8::1", "ff02::1"])
def test_non_public_addresses_are_not_public(address: str) -> None:
    assert is_public_address(address) is False


@pytest.mark.parametrize("address", [PUBLIC_IP, "8.8.8.8", "151.101.1.69", "2606:4700:4700::1111",
                                     "::ffff:93.184.216.34"])
def test_public_addresses_are_public(address: str) -> None:
    assert is_public_address(address) is True


def test_resolve_answers_a_numeric_host_locally() -> None:
    assert resolve("127.0.0.1") == ["127.0.0.1"]


# --- the SSRF guard: after the connection -------------------------------------------------------------------------


class PeerStream:
    """Stands in for httpcore's network stream: reports the address actually connected to."""

    def __init__(self, address: str) -> None:
        self.address = address

    def get_extra_info(self, name: str) -> Any:
        return (self.address, 443) if name == "server_addr" else None


def served_from(address: str, body: bytes = b"{}") -> Route:
    return lambda request: httpx.Response(200, content=body, extensions={"network_stream": PeerStream(address)})


def test_connection_to_a_non_public_peer_is_refused_after_dns_said_public(
        fetcher_for: Callable[..., Fetcher]) -> None:
    # GIVEN DNS that answered a public address to the guard, then the connection landed on the metadata service
    publisher = Publisher({"https://publisher.example/": served_from("169.254.169.254")})

    error = refused(fetcher_for(publisher), "https://publisher.example/", source())

    assert error.reason == "url_refused"
    assert error.detail == "https://publisher.example/ connected to non-public address 169.254.169.254; refused"


def test_connection_to_a_public_peer_is_fetched(fetcher_for: Callable[..., Fetcher]) -> None:
    publisher = Publisher({"https://publisher.example/": served_from(PUBLIC_IP, b"[1]")})

    assert fetcher_for(publisher).get("https://publisher.example/", source()).body == b"[1]"


def test_connection_to_a_private_peer_is_fetched_when_the_source_allows_it(
        fetcher_for: Callable[..., Fetcher]) -> None:
    publisher = Publisher({"https://publisher.example/": served_from("10.0.0.5", b"[2]")})

    src = source(allow_private_network=True)

    assert fetcher_for(publisher, resolver=no_dns).get("https://publisher.example/", src).body == b"[2]"


# --- redirects ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_redirect_to_an_allowed_public_host_is_followed(fetcher_for: Callable[..., Fetcher], status: int) -> None:
    publisher = Publisher({"https://publisher.example/start": redirect(status, "https://cdn.example/page.json"),
                           "https://cdn.example/page.json": ok(b'{"page": 2}')})

    fetched = fetcher_for(publisher).get("https://publisher.example/start",
                                         source("publisher.example", "cdn.example"))

    assert fetched.body == b'{"page": 2}'
    assert fetched.url == "https://cdn.example/page.json"
    assert publisher.urls == ["https://publisher.example/start", "https://cdn.example/page.json"]


def test_relative_redirect_is_resolved_against_the_current_url(fetcher_for: Callable[..., Fetcher]) -> None:
    publisher = Publisher({"https://publisher.example/api/v1/releases": redirect(302, "../v2/releases?page=1"),
                           "https://publisher.example/api/v2/releases?page=1": ok()})

    fetched = fetcher_for(publisher).get("https://publisher.example/api/v1/releases", source())

    assert fetched.url == "https://publisher.example/api/v2/releases?page=1"


def test_redirect_hops_carry_the_source_headers(fetcher_for: Callable[..., Fetcher]) -> None:
    publisher = Publisher({"https://publisher.example/start": redirect(302, "/next"),
                           "https://publisher.example/next": ok()})

    fetcher_for(publisher).get("https://publisher.example/start", source(headers={"Authorization": "Bearer t"}))

    assert [request.headers["Authorization"] for request in publisher.requests] == ["Bearer t", "Bearer t"]


@pytest.mark.parametrize("allowed", [("publisher.example",), ("publisher.example", "169.254.169.254")])
@pytest.mark.parametrize("status", [301, 302, 307])
def test_redirect_to_the_metadata_address_is_refused_before_the_second_request(
        fetcher_for: Callable[..., Fetcher], status: int, allowed: tuple[str, ...]) -> None:
    # GIVEN a publisher redirecting to the cloud metadata service (listed or not: refused either way)
    target = "http://169.254.169.254/latest/meta-data/iam/security-credentials/"
    publisher = Publisher({"https://publisher.example/start": redirect(status, target), target: ok(b"secret")})

    error = refused(fetcher_for(publisher), "https://publisher.example/start", source(*allowed))

    assert error.reason == "url_refused"
    assert "169.254.169.254" in error.detail
    assert publisher.urls == ["https://publisher.example/start"]


def test_redirect_to_a_name_resolving_to_a_private_address_is_refused(fetcher_for: Callable[..., Fetcher]) -> None:
    publisher = Publisher({"https://publisher.example/start": redirect(302, "http://rebind.example/"),
                           "http://rebind.example/": ok()})

    error = refused(fetcher_for(publisher), "https://publisher.example/start",
                    source("publisher.example", "rebind.example"))

    assert error.reason == "url_refused"
    assert error.detail.startswith("rebind.example resolves to a non-public address (169.254.169.254)")
    assert publisher.urls == ["https://publisher.example/start"]


@pytest.mark.parametrize("status", [301, 302, 307])
def test_redirect_to_a_host_not_allowed_is_refused_before_the_second_request(
        fetcher_for: Callable[..., Fetcher], status: int) -> None:
    publisher = Publisher({"https://publisher.example/start": redirect(status, "https://evil.example/"),
                           "https://evil.example/": ok()})

    error = refused(fetcher_for(publisher), "https://publisher.example/start", source())

    assert error.reason == "url_refused"
    assert "host evil.example is not allowed for source 'publisher'" in error.detail
    assert publisher.urls == ["https://publisher.example/start"]


def chain(hops: int) -> dict[str, Route]:
    routes: dict[str, Route] = {f"https://publisher.example/{index}": redirect(302, f"/{index + 1}")
                                for index in range(hops)}
    routes[f"https://publisher.example/{hops}"] = ok(b"end")
    return routes


def test_five_redirects_are_followed(fetcher_for: Callable[..., Fetcher]) -> None:
    publisher = Publisher(chain(MAX_REDIRECTS))

    fetched = fetcher_for(publisher).get("https://publisher.example/0", source())

    assert MAX_REDIRECTS == 5
    assert fetched.body == b"end"
    assert len(publisher.requests) == 6


def test_more_than_five_redirects_is_an_http_error(fetcher_for: Callable[..., Fetcher]) -> None:
    publisher = Publisher(chain(MAX_REDIRECTS + 1))

    error = refused(fetcher_for(publisher), "https://publisher.example/0", source())

    assert error.reason == "http_error"
    assert error.detail == "https://publisher.example/6: more than 5 redirects"
    assert len(publisher.requests) == 6


# --- status classification ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [404, 410])
def test_gone_pages_are_not_found(fetcher_for: Callable[..., Fetcher], status: int) -> None:
    publisher = Publisher({"https://publisher.example/p": answer(status)})

    error = refused(fetcher_for(publisher), "https://publisher.example/p", source())

    assert isinstance(error, PermanentError)
    assert error.reason == "not_found"
    assert error.detail == f"GET https://publisher.example/p answered {status}: the page does not exist"


@pytest.mark.parametrize("status", [400, 405, 406, 418, 422, 451, 501, 505])
def test_other_client_errors_and_unretryable_server_errors_are_permanent_http_errors(
        fetcher_for: Callable[..., Fetcher], status: int) -> None:
    publisher = Publisher({"https://publisher.example/p": answer(status)})

    error = refused(fetcher_for(publisher), "https://publisher.example/p", source())

    assert error.reason == "http_error"
    assert error.detail == f"GET https://publisher.example/p answered {status}"


@pytest.mark.parametrize("status", [300, 302, 304, 307])
def test_redirect_status_without_location_is_an_http_error(fetcher_for: Callable[..., Fetcher], status: int) -> None:
    publisher = Publisher({"https://publisher.example/p": answer(status)})

    error = refused(fetcher_for(publisher), "https://publisher.example/p", source())

    assert error.reason == "http_error"
    assert error.detail == "https://publisher.example/p redirected without a Location header"
    assert len(publisher.requests) == 1


@pytest.mark.parametrize("status", [401, 403])
def test_credential_failures_are_transient_so_an_operator_can_fix_them(fetcher_for: Callable[..., Fetcher],
                                                                        status: int) -> None:
    publisher = Publisher({"https://publisher.example/p": answer(status, {"Retry-After": "5"})})

    error = failed(fetcher_for(publisher), "https://publisher.example/p", source())

    assert error.status == status
    assert error.retry_after is None
    assert str(error) == f"GET https://publisher.example/p answered {status}: check the source's credentials"


@pytest.mark.parametrize("status", [408, 429, 500, 502, 503, 504, 522, 524])
def test_retryable_statuses_are_transient_with_their_status(fetcher_for: Callable[..., Fetcher],
                                                            status: int) -> None:
    publisher = Publisher({"https://publisher.example/p": answer(status)})

    error = failed(fetcher_for(publisher), "https://publisher.example/p", source())

    assert error.status == status
    assert error.retry_after is None
    assert str(error) == f"GET https://publisher.example/p answered {status}; retry later"


def test_retry_after_in_seconds_is_carried(fetcher_for: Callable[..., Fetcher]) -> None:
    publisher = Publisher({"https://publisher.example/p": answer(429, {"Retry-After": "7"})})

    error = failed(fetcher_for(publisher), "https://publisher.example/p", source())

    assert (error.status, error.retry_after) == (429, 7.0)


def test_retry_after_as_an_http_date_is_carried_as_seconds_from_now(fetcher_for: Callable[..., Fetcher]) -> None:
    when = format_datetime(datetime.now(UTC) + timedelta(hours=1), usegmt=True)
    publisher = Publisher({"https://publisher.example/p": answer(503, {"Retry-After": when})})

    error = failed(fetcher_for(publisher), "https://publisher.example/p", source())

    assert error.retry_after is not None
    assert 3590.0 <= error.retry_after <= 3600.0


def test_unreadable_retry_after_still_gives_a_transient_error(fetcher_for: Callable[..., Fetcher]) -> None:
    publisher = Publisher({"https://publisher.example/p": answer(503, [(b"Retry-After", b"\xb2")])})

    error = failed(fetcher_for(publisher), "https://publisher.example/p", source())

    assert (error.status, error.retry_after) == (503, None)


# --- retry_after_seconds --------------------------------------------------------------------------------------------

NOW = datetime(2025, 11, 28, 12, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(("value", "seconds"), [("7", 7.0), (" 7 ", 7.0), ("0", 0.0), ("120", 120.0)])
def test_retry_after_in_seconds(value: str, seconds: float) -> None:
    assert retry_after_seconds(value, now=NOW) == seconds


def test_retry_after_as_an_http_date_thirty_seconds_ahead() -> None:
    assert retry_after_seconds("Fri, 28 Nov 2025 12:00:30 GMT", now=NOW) == 30.0


def test_retry_after_as_an_http_date_without_a_zone_is_taken_as_utc() -> None:
    assert retry_after_seconds("Fri, 28 Nov 2025 12:00:30 -0000", now=NOW) == 30.0


def test_retry_after_as_an_http_date_with_an_offset() -> None:
    assert retry_after_seconds("Fri, 28 Nov 2025 13:01:00 +0100", now=NOW) == 60.0


def test_retry_after_in_the_past_is_zero() -> None:
    assert retry_after_seconds("Fri, 28 Nov 2025 11:00:00 GMT", now=NOW) == 0.0


@pytest.mark.parametrize("value", [None, "", "   ", "soon", "7.5", "-1", "Fri, 99 Nov 2025 12:00:00 GMT"])
def test_retry_after_absent_or_unreadable_is_none(value: str | None) -> None:
    assert retry_after_seconds(value, now=NOW) is None


def test_retry_after_with_a_superscript_digit_is_unreadable() -> None:
    assert retry_after_seconds("²", now=NOW) is None


# --- size caps and decoding ----------------------------------------------------------------------------------------


def test_body_at_the_cap_is_fetched(fetcher_for: Callable[..., Fetcher]) -> None:
    publisher = Publisher({"https://publisher.example/p": ok(b"x" * 100)})

    assert fetcher_for(publisher, max_bytes=100).get("https://publisher.example/p", source()).body == b"x" * 100


def test_declared_content_length_above_the_cap_is_too_large_before_reading(
        fetcher_for: Callable[..., Fetcher]) -> None:
    # GIVEN a response declaring 101 bytes whose body must not even be read
    def body() -> Iterator[bytes]:
        raise AssertionError("the body was read")
        yield b""  # pragma: no cover

    publisher = Publisher({"https://publisher.example/p": lambda request: httpx.Response(
        200, headers={"Content-Length": "101"}, content=body())})

    error = refused(fetcher_for(publisher, max_bytes=100), "https://publisher.example/p", source())

    assert error.reason == "too_large"
    assert error.detail == "https://publisher.example/p is 101 bytes, above the 100-byte cap"


def test_streamed_body_without_content_length_above_the_cap_is_too_large(
        fetcher_for: Callable[..., Fetcher]) -> None:
    # GIVEN a chunked body that never says how long it is, and would go on for a megabyte
    chunks_read: list[int] = []

    def body() -> Iterator[bytes]:
        for index in range(1024):
            chunks_read.append(index)
            yield b"x" * 1024

    publisher = Publisher({"https://publisher.example/p": lambda request: httpx.Response(200, content=body())})

    error = refused(fetcher_for(publisher, max_bytes=4000), "https://publisher.example/p", source())

    assert error.reason == "too_large"
    assert error.detail == ("https://publisher.example/p is larger than the 4000-byte cap (after decompression)")
    assert len(chunks_read) == 4  # it stopped reading at the chunk that crossed the cap


def test_gzip_body_is_decoded(fetcher_for: Callable[..., Fetcher]) -> None:
    page = b'{"releases": [' + b'{"ocid": "ocds-a"},' * 100 + b"{}]}"
    publisher = Publisher({"https://publisher.example/p": lambda request: httpx.Response(
        200, headers={"Content-Encoding": "gzip", "Content-Type": "application/json"}, content=gzip.compress(page))})

    fetched = fetcher_for(publisher, max_bytes=len(page)).get("https://publisher.example/p", source())

    assert fetched.body == page


def test_small_gzip_inflating_above_the_cap_is_too_large(fetcher_for: Callable[..., Fetcher]) -> None:
    # GIVEN a zip bomb: 4 MiB of zeros in a few kilobytes, under a 64 KiB cap
    bomb = gzip.compress(b"\0" * (4 * 1024 * 1024))
    assert len(bomb) < 64 * 1024
    publisher = Publisher({"https://publisher.example/p": lambda request: httpx.Response(
        200, headers={"Content-Encoding": "gzip"}, content=bomb)})

    error = refused(fetcher_for(publisher, max_bytes=64 * 1024), "https://publisher.example/p", source())

    assert error.reason == "too_large"
    assert "(after decompression)" in error.detail


def test_cap_applies_to_the_decoded_size_not_the_wire_size(fetcher_for: Callable[..., Fetcher]) -> None:
    # GIVEN incompressible content whose gzip is larger on the wire than the cap, but not once decoded
    page = random.Random(0).randbytes(1000)
    wire = gzip.compress(page)
    assert len(wire) > 1000
    publisher = Publisher({"https://publisher.example/p": lambda request: httpx.Response(
        200, headers={"Content-Encoding": "gzip"}, content=wire)})

    fetched = fetcher_for(publisher, max_bytes=1000).get("https://publisher.example/p", source())

    assert fetched.body == page


# --- network failures ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("error_type", [httpx.ConnectTimeout, httpx.ReadTimeout, httpx.PoolTimeout])
def test_timeouts_are_transient(fetcher_for: Callable[..., Fetcher], error_type: type[httpx.HTTPError]) -> None:
    def time_out(request: httpx.Request) -> httpx.Response:
        raise error_type("timed out", request=request)

    error = failed(fetcher_for(Publisher({"https://publisher.example/p": time_out})),
                   "https://publisher.example/p", source())

    assert str(error) == f"GET https://publisher.example/p timed out ({error_type.__name__}); retry later"
    assert error.status is None
    assert isinstance(error.__cause__, error_type)


@pytest.mark.parametrize("error_type", [httpx.ConnectError, httpx.RemoteProtocolError, httpx.ReadError])
def test_network_errors_are_transient(fetcher_for: Callable[..., Fetcher], error_type: type[httpx.HTTPError]) -> None:
    def break_down(request: httpx.Request) -> httpx.Response:
        raise error_type("connection refused", request=request)

    error = failed(fetcher_for(Publisher({"https://publisher.example/p": break_down})),
                   "https://publisher.example/p", source())

    assert str(error) == f"GET https://publisher.example/p failed: {error_type.__name__}: connection refused"
    assert isinstance(error.__cause__, error_type)


def test_timeout_while_reading_the_body_is_transient(fetcher_for: Callable[..., Fetcher]) -> None:
    def body() -> Iterator[bytes]:
        yield b'{"releases": ['
        raise httpx.ReadTimeout("read timed out")

    publisher = Publisher({"https://publisher.example/p": lambda request: httpx.Response(200, content=body())})

    error = failed(fetcher_for(publisher), "https://publisher.example/p", source())

    assert "timed out (ReadTimeout)" in str(error)


def test_dns_failure_is_transient(monkeypatch: pytest.MonkeyPatch) -> None:
    # GIVEN a resolver that cannot answer (no DNS query leaves the machine: getaddrinfo is replaced)
    def no_answer(host: str, *args: Any) -> list[Any]:
        raise socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")

    monkeypatch.setattr(socket, "getaddrinfo", no_answer)

    with pytest.raises(HttpFailed) as caught:
        check_url("https://publisher.example/", source())

    assert str(caught.value) == ("cannot resolve publisher.example "
                                 "([Errno -3] Temporary failure in name resolution)")
    assert caught.value.status is None


def test_url_httpx_cannot_parse_is_refused(fetcher_for: Callable[..., Fetcher]) -> None:
    publisher = Publisher()

    error = refused(fetcher_for(publisher), "https://publisher.example/releases\t?page=1", source())

    assert error.reason == "url_refused"
    assert publisher.requests == []


# --- a real client against a real server on 127.0.0.1 --------------------------------------------------------------


class LocalServer:
    """An HTTP server on 127.0.0.1 in a thread, counting the requests that reach it."""

    def __init__(self) -> None:
        self.requests: list[dict[str, str]] = []
        seen = self.requests

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                seen.append({"path": self.path, **{name.lower(): value for name, value in self.headers.items()}})
                body = b'{"releases": ["local"]}'
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()


@pytest.fixture
def local_server() -> Iterator[LocalServer]:
    server = LocalServer()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def real_client() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=5.0, trust_env=False) as client:  # trust_env=False: no proxy from the environment
        yield client


def test_real_loopback_server_is_refused_before_any_request_unless_the_source_allows_private_network(
        local_server: LocalServer, real_client: httpx.Client) -> None:
    url = f"http://127.0.0.1:{local_server.port}/releases"
    fetcher = Fetcher(real_client, resolver=no_dns)

    # GIVEN a source that lists 127.0.0.1 but does not allow its private network: refused, nothing sent
    error = refused(fetcher, url, Source(name="local", allowed_hosts=("127.0.0.1",)))
    assert error.reason == "url_refused"
    assert local_server.requests == []

    # WHEN the source allows its private network THEN the page is fetched
    fetched = fetcher.get(url, Source(name="local", allowed_hosts=("127.0.0.1",), allow_private_network=True))
    assert fetched.body == b'{"releases": ["local"]}'
    assert fetched.url == url
    assert fetched.content_type == "application/json"
    assert [request["path"] for request in local_server.requests] == ["/releases"]


def test_the_connection_goes_to_the_checked_address_under_the_host_name(fetcher_for: Any) -> None:
    # GIVEN a name the guard resolved to a public address
    publisher = Publisher({"https://publisher.example/releases": ok()})
    fetcher = fetcher_for(publisher)
    # WHEN it is fetched
    fetched = fetcher.get("https://publisher.example/releases", source())
    # THEN the request is sent to that very address (no second DNS answer can redirect it: no rebinding),
    # with the name kept for the Host header and for TLS (SNI and certificate verification)
    request = publisher.requests[0]
    assert request.url.host == PUBLIC_IP
    assert request.headers["Host"] == "publisher.example"
    assert request.extensions["sni_hostname"] == "publisher.example"
    assert fetched.url == "https://publisher.example/releases"

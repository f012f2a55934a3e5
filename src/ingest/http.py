"""HTTP to publishers: every httpx call lives here, and every failure leaves as one of our errors.

- timeouts on connect and read, gzip decoded by httpx, a cap on the decoded size (zip bombs included);
- an SSRF guard: a URL is fetched only when its host is allowed for its source, and never from loopback,
  link-local (169.254.169.254), private or reserved addresses, before the request (DNS) and after the connection
  (the peer's address, which defeats DNS rebinding), on every redirect hop — unless the source explicitly allows
  its private network;
- classification: 404/410 and other 4xx are permanent (retrying gives the same answer); 408/429/5xx, timeouts
  and network errors are transient, with ``Retry-After`` (seconds or HTTP date) carried on the error.
"""

from __future__ import annotations

import ipaddress
import socket
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import urljoin, urlsplit

import httpx

from ingest import __version__
from ingest.errors import PermanentError, TransientError
from ingest.sources import Source

if TYPE_CHECKING:
    from ingest.politeness import Gate

DEFAULT_MAX_BYTES = 16 * 1024 * 1024
DEFAULT_TIMEOUT = httpx.Timeout(connect=10.0, read=60.0, write=30.0, pool=10.0)
RETRYABLE_STATUS = frozenset({408, 429, 500, 502, 503, 504, 522, 524})
MAX_REDIRECTS = 5
PROJECT_USER_AGENT = f"ocds-ingest/{__version__}"  # the edge adds the operator's contact (politeness.user_agent)

Resolver = Callable[[str], list[str]]


class FetchRefused(PermanentError):
    """Raised if a URL is not allowed for its source: a host not configured, or a private address."""


class HttpFailed(TransientError):
    """Raised if a fetch failed in a way that may pass: 408/429/5xx, timeouts, network errors."""

    def __init__(self, message: str, *, status: int | None = None, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after


@dataclass(frozen=True)
class Fetched:
    url: str
    body: bytes
    content_type: str


def resolve(host: str) -> list[str]:
    try:
        return sorted({info[4][0] for info in socket.getaddrinfo(host, None)})
    except socket.gaierror as exc:
        raise HttpFailed(f"cannot resolve {host} ({exc})") from None


def is_public_address(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%")[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not (ip.is_loopback or ip.is_link_local or ip.is_private or ip.is_reserved
                                 or ip.is_multicast or ip.is_unspecified)


def check_url(url: str, source: Source, resolver: Resolver = resolve) -> str | None:
    """Raise FetchRefused unless ``url`` may be fetched for ``source``; return the checked public address to
    connect to (None when the source allows its private network, where no address is pinned)."""
    if not url.isprintable() or any(char.isspace() for char in url):
        # urlsplit() silently drops tabs and newlines that httpx then refuses: refuse them here, once.
        raise FetchRefused("url_refused", f"{url[:200]!r} contains whitespace or control characters")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise FetchRefused("url_refused", f"{url[:200]} is not an http(s) URL")
    host = parts.hostname
    if not source.allows_host(host):
        raise FetchRefused("url_refused", f"host {host} is not allowed for source {source.name!r} "
                           f"(allowed: {', '.join(source.allowed_hosts) or 'none'}); add it to the source's "
                           "allowed_hosts if it is the publisher's")
    if source.allow_private_network:
        return None
    addresses = [host] if _is_ip(host) else resolver(host)
    blocked = [address for address in addresses if not is_public_address(address)]
    if blocked or not addresses:
        raise FetchRefused("url_refused", f"{host} resolves to a non-public address ({', '.join(blocked)}); "
                           f"refused for source {source.name!r} (set allow_private_network only for a "
                           "publisher inside your own network)")
    return addresses[0]


def pinned(url: str, address: str) -> str:
    """``url`` with its host replaced by the address it was checked against (the Host header keeps the name)."""
    parts = urlsplit(url)
    host = f"[{address}]" if ":" in address else address
    netloc = host if parts.port is None else f"{host}:{parts.port}"
    return parts._replace(netloc=netloc).geturl()


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def retry_after_seconds(value: str | None, now: datetime | None = None) -> float | None:
    """``Retry-After`` as seconds: a number of seconds or an HTTP date; None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def new_client(user_agent: str = PROJECT_USER_AGENT, timeout: httpx.Timeout = DEFAULT_TIMEOUT) -> httpx.Client:
    """A client for the edge to create and pass in (tests pass one with a MockTransport)."""
    return httpx.Client(timeout=timeout, follow_redirects=False, headers={"User-Agent": user_agent},
                        http2=False)


class PoliteRetry:
    """Retry policy for harvesting, on httpx-retries' transport: exponential backoff with jitter on 408/429/5xx
    and network errors, ``Retry-After`` honoured (seconds or HTTP date), and a default pause when a 429 comes
    without it (Find a Tender does that)."""

    @staticmethod
    def transport(*, attempts: int = 5, backoff_factor: float = 1.0, max_wait: float = 120.0,
                  default_429_wait: float = 30.0, sleep: Callable[[float], None] | None = None,
                  time_left: Callable[[], float] | None = None,
                  attempt_seconds: float = DEFAULT_TIMEOUT.read or 60.0,
                  on_wait: Callable[[httpx.Response], None] | None = None) -> httpx.BaseTransport:
        """``time_left`` (seconds until the caller must be done): a retry is made only when its wait plus one
        more attempt (``attempt_seconds``) fit in it; otherwise the failure is raised at once, so a harvest stops
        before its function's timeout with its cursor saved, instead of being killed mid-wait. ``on_wait`` hears
        every answer that is waited out (politeness: a Retry-After binds every process)."""
        from httpx_retries import Retry, RetryTransport

        pause = sleep or time.sleep

        class _Retry(Retry):
            def sleep(self, response: httpx.Response | Exception) -> None:
                if on_wait is not None and isinstance(response, httpx.Response):
                    on_wait(response)  # politeness: a Retry-After heard here binds every process (Gate.heard)
                if isinstance(response, httpx.Response) and response.status_code == 429 and \
                        not response.headers.get("Retry-After"):
                    seconds = default_429_wait
                else:
                    seconds = self._calculate_sleep(response.headers if isinstance(response, httpx.Response)
                                                    else {})
                if time_left is not None and time_left() < seconds + attempt_seconds:
                    what = f"answered {response.status_code}" if isinstance(response, httpx.Response) else \
                        f"failed: {type(response).__name__}"
                    raise HttpFailed(f"the request {what}; a retry in {seconds:.0f} s would outlast the "
                                     "invocation, so it is left for the next run",
                                     status=getattr(response, "status_code", None), retry_after=seconds)
                pause(seconds)
                self.elapsed_sleep += seconds

        retry = _Retry(total=attempts, backoff_factor=backoff_factor, max_backoff_wait=max_wait,
                       status_forcelist=sorted(RETRYABLE_STATUS), allowed_methods=["GET"],
                       retry_on_exceptions=[httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError])
        return RetryTransport(retry=retry)


def new_polite_client(user_agent: str = PROJECT_USER_AGENT, timeout: httpx.Timeout = DEFAULT_TIMEOUT,
                      **retry: Any) -> httpx.Client:
    """A client for harvesting: retries with backoff inside the transport (see ``PoliteRetry``)."""
    return httpx.Client(timeout=timeout, follow_redirects=False, headers={"User-Agent": user_agent},
                        transport=PoliteRetry.transport(**retry))


class Fetcher:
    """GETs publisher pages through a client it is given."""

    def __init__(self, client: httpx.Client, *, max_bytes: int = DEFAULT_MAX_BYTES,
                 resolver: Resolver = resolve, time_left: Callable[[], float] | None = None,
                 gate: Gate | None = None, user_agent: str = PROJECT_USER_AGENT) -> None:
        self.client = client
        self.max_bytes = max_bytes
        self.resolver = resolver
        self.time_left = time_left  # seconds until every fetch must have ended (the harvester's invocation)
        self.gate = gate  # politeness shared by every process (ingest/politeness.py); None: no limit here
        self.user_agent = user_agent  # unless the source names its own

    def close(self) -> None:
        self.client.close()
        if self.gate is not None:
            self.gate.close()

    def get(self, url: str, source: Source, headers: dict[str, str] | None = None, *,
            deadline: float | None = None) -> Fetched:
        """GET ``url`` for ``source``. With a ``deadline`` (``time.monotonic()``; else from ``time_left``) every
        timeout of the request is at most the time left, and the body's reading stops when it passes (HttpFailed:
        retry later)."""
        if deadline is None and self.time_left is not None:
            deadline = time.monotonic() + self.time_left()
        for _ in range(MAX_REDIRECTS + 1):
            address = check_url(url, source, self.resolver)
            request_headers = {"User-Agent": source.user_agent or self.user_agent, **source.headers, **(headers or {})}
            target, extensions = url, {}
            if address is not None and not _is_ip(urlsplit(url).hostname or ""):
                # Connect to the very address that was checked, so a DNS answer that changes between the check
                # and the connection (rebinding) cannot reach an internal service. TLS still verifies the name.
                host = urlsplit(url).hostname or ""
                target = pinned(url, address)
                request_headers["Host"] = urlsplit(url).netloc.rsplit("@", 1)[-1]
                extensions = {"sni_hostname": host}
            timeout = _within(self.client.timeout, deadline, url)
            try:
                # Politeness: each request to the source, from any process, waits for its turn (ingest/politeness).
                with self._turn(source), self.client.stream("GET", target, headers=request_headers,
                                                            extensions=extensions, timeout=timeout) as response:
                    self._check_peer(response, url, source)
                    if response.is_redirect:
                        location = response.headers.get("location")
                        if not location:
                            raise FetchRefused("http_error", f"{url} redirected without a Location header")
                        url = urljoin(url, location)
                        continue
                    self._check_status(response, url)
                    body = self._read_capped(response, url, deadline)
                    return Fetched(url, body, response.headers.get("content-type", ""))
            except httpx.InvalidURL as exc:
                raise FetchRefused("url_refused", f"{url[:200]} is not a URL httpx can fetch ({exc})") from exc
            except httpx.TimeoutException as exc:
                raise HttpFailed(f"GET {url} timed out ({type(exc).__name__}); retry later") from exc
            except httpx.HTTPError as exc:
                raise HttpFailed(f"GET {url} failed: {type(exc).__name__}: {exc}") from exc
        raise FetchRefused("http_error", f"{url}: more than {MAX_REDIRECTS} redirects")

    def _turn(self, source: Source) -> Any:
        return self.gate.turn(source) if self.gate is not None else nullcontext()

    def _check_peer(self, response: httpx.Response, url: str, source: Source) -> None:
        # The address actually connected to, so a DNS answer that changed after check_url cannot smuggle a
        # request to an internal address past the guard.
        if source.allow_private_network:
            return
        stream = response.extensions.get("network_stream")
        peer = stream.get_extra_info("server_addr") if stream is not None else None
        if peer and not is_public_address(str(peer[0])):
            raise FetchRefused("url_refused", f"{url} connected to non-public address {peer[0]}; refused")

    @staticmethod
    def _check_status(response: httpx.Response, url: str) -> None:
        status = response.status_code
        if 200 <= status < 300:
            return
        if status in RETRYABLE_STATUS:
            raise HttpFailed(f"GET {url} answered {status}; retry later", status=status,
                             retry_after=retry_after_seconds(response.headers.get("retry-after")))
        if status in (404, 410):
            raise FetchRefused("not_found", f"GET {url} answered {status}: the page does not exist")
        if status in (401, 403):
            # Credentials can be fixed by an operator; after a few tries SQS parks the message in the DLQ.
            raise HttpFailed(f"GET {url} answered {status}: check the source's credentials", status=status)
        raise FetchRefused("http_error", f"GET {url} answered {status}")

    def _read_capped(self, response: httpx.Response, url: str, deadline: float | None = None) -> bytes:
        declared = response.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > self.max_bytes and \
                not response.headers.get("content-encoding"):
            raise FetchRefused("too_large", f"{url} is {declared} bytes, above the {self.max_bytes}-byte cap")
        chunks: list[bytes] = []
        size = 0
        for chunk in response.iter_bytes():
            size += len(chunk)
            if size > self.max_bytes:
                raise FetchRefused("too_large", f"{url} is larger than the {self.max_bytes}-byte cap "
                                   "(after decompression)")
            chunks.append(chunk)
            if deadline is not None and time.monotonic() > deadline:
                raise HttpFailed(f"GET {url}: the body was still arriving at the invocation's deadline; retry later")
        return b"".join(chunks)


def _within(timeout: httpx.Timeout, deadline: float | None, url: str) -> httpx.Timeout:
    """``timeout`` with each of its limits cut to the time left before ``deadline``."""
    if deadline is None:
        return timeout
    left = deadline - time.monotonic()
    if left <= 0:
        raise HttpFailed(f"GET {url}: no time left before the invocation's deadline; retry later")

    def cut(value: float | None) -> float:
        return left if value is None else min(value, left)
    return httpx.Timeout(connect=cut(timeout.connect), read=cut(timeout.read), write=cut(timeout.write),
                         pool=cut(timeout.pool))

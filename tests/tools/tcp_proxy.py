"""A loopback TCP proxy that injects round-trip latency and counts round trips.

Benchmarks and tests put it between a database client and PostgreSQL to see how
code behaves on a slow network (``delay_seconds`` per round trip) and to assert
how many round trips an operation costs (``round_trips``).

Design: per connection and direction, a reader thread receives bytes and, when a
delay is set, queues ``(arrival_time, bytes)`` for a writer thread that sends each
chunk at ``arrival_time + delay_seconds / 2``. Deadlines are per chunk, so a burst
is delayed once, not once per packet. With no delay the reader forwards directly.
"""

from __future__ import annotations

import contextlib
import ipaddress
import queue
import selectors
import socket
import threading
import time
from collections.abc import Callable
from types import TracebackType
from typing import Final

__all__ = ["LatencyProxy"]

_CHUNK: Final = 64 * 1024
_CONNECT_TIMEOUT: Final = 5.0
# close() waits at most this long in total for threads to finish.
_CLOSE_BUDGET: Final = 5.0

# Queue markers: _EOF asks the writer to flush then half-close; _ABORT to stop now.
_EOF: Final = object()
_ABORT: Final = object()

# Either (arrival_time, data) or one of the markers above.
_QueueItem = object


def _require_loopback(host: str) -> None:
    """Raise ValueError unless every address ``host`` names is a loopback address."""
    try:
        addresses = {ipaddress.ip_address(host)}
    except ValueError:
        try:
            infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
        except socket.gaierror as exc:
            raise ValueError(f"cannot resolve host {host!r}") from exc
        # Strip an IPv6 zone ("fe80::1%eth0") that ipaddress does not accept.
        addresses = {ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in infos}
    if not addresses or not all(address.is_loopback for address in addresses):
        raise ValueError(f"LatencyProxy only uses loopback addresses, not {host!r}")


def _shutdown_quietly(sock: socket.socket, how: int) -> None:
    # OSError here means already shut down, reset by the peer, or closed: nothing to do.
    with contextlib.suppress(OSError):
        sock.shutdown(how)


def _close_quietly(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.close()


def _set_nodelay(sock: socket.socket) -> None:
    # Nagle would hold back small writes and add latency we did not ask for.
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class _Connection:
    """One proxied client connection: two directions, two or four threads."""

    def __init__(
        self,
        proxy: LatencyProxy,
        client: socket.socket,
        upstream: socket.socket,
        one_way_delay: float,
        name: str,
    ) -> None:
        self._proxy = proxy
        self._client = client
        self._upstream = upstream
        self._one_way_delay = one_way_delay
        self._name = name
        self._aborted = threading.Event()
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._queues: list[queue.SimpleQueue[_QueueItem]] = []
        self._live_threads = 0
        self._sockets_closed = False
        # Guarded by the proxy's lock: True until the client sends after a server reply.
        self.awaiting_request = True
        self.round_trips = 0

    def start(self) -> None:
        """Start the forwarding threads for both directions."""
        directions = (
            (self._client, self._upstream, True, "c2s"),
            (self._upstream, self._client, False, "s2c"),
        )
        for src, dst, from_client, tag in directions:
            if self._one_way_delay > 0:
                chunks: queue.SimpleQueue[_QueueItem] = queue.SimpleQueue()
                self._queues.append(chunks)
                self._add_thread(f"{tag}-read", self._read_loop, src, dst, from_client, chunks)
                self._add_thread(f"{tag}-write", self._write_loop, dst, chunks)
            else:
                self._add_thread(f"{tag}-read", self._read_loop, src, dst, from_client, None)
        # Count every thread before starting any, so an early finisher cannot see zero.
        self._live_threads = len(self._threads)
        for thread in self._threads:
            thread.start()

    def _add_thread(self, tag: str, target: Callable[..., None], *args: object) -> None:
        thread = threading.Thread(
            target=target,
            args=args,
            name=f"{self._name}-{tag}",
            daemon=True,
        )
        self._threads.append(thread)

    def _read_loop(
        self,
        src: socket.socket,
        dst: socket.socket,
        from_client: bool,
        chunks: queue.SimpleQueue[_QueueItem] | None,
    ) -> None:
        clean_eof = False
        try:
            while not self._aborted.is_set():
                data = src.recv(_CHUNK)
                arrived = time.monotonic()
                if not data:
                    clean_eof = True
                    break
                # Count before forwarding: the peer cannot answer bytes it has not got,
                # so a reply can never be counted ahead of the request that caused it.
                self._proxy._record_read(self, from_client)
                if chunks is None:
                    dst.sendall(data)
                else:
                    chunks.put((arrived, data))
        except OSError:
            pass
        finally:
            if clean_eof and not self._aborted.is_set():
                if chunks is None:
                    # Pass the half-close on; the other direction keeps running.
                    _shutdown_quietly(dst, socket.SHUT_WR)
                else:
                    chunks.put(_EOF)
            else:
                self.abort()
            self._thread_done()

    def _write_loop(self, dst: socket.socket, chunks: queue.SimpleQueue[_QueueItem]) -> None:
        try:
            while True:
                item = chunks.get()
                if item is _ABORT:
                    return
                if item is _EOF:
                    _shutdown_quietly(dst, socket.SHUT_WR)
                    return
                assert isinstance(item, tuple)
                arrived, data = item
                deadline = arrived + self._one_way_delay
                # Loop because a timed wait may return a hair early.
                while (remaining := deadline - time.monotonic()) > 0:
                    if self._aborted.wait(remaining):
                        return
                if self._aborted.is_set():
                    return
                dst.sendall(data)
        except OSError:
            self.abort()
        finally:
            self._thread_done()

    def abort(self) -> None:
        """Tear the connection down now: wake every thread, drop queued data."""
        with self._lock:
            if self._aborted.is_set():
                return
            self._aborted.set()
        # shutdown() (not close()) wakes threads blocked in recv/send on these sockets
        # without freeing a file descriptor another thread may still be using.
        for sock in (self._client, self._upstream):
            _shutdown_quietly(sock, socket.SHUT_RDWR)
        for chunks in self._queues:
            chunks.put(_ABORT)

    def _thread_done(self) -> None:
        with self._lock:
            self._live_threads -= 1
            last = self._live_threads == 0
        if last:
            self.close_sockets()
            self._proxy._forget(self)

    def join(self, deadline: float) -> None:
        """Wait for this connection's threads until the monotonic ``deadline``."""
        for thread in self._threads:
            if thread.is_alive() and thread is not threading.current_thread():
                thread.join(max(0.0, deadline - time.monotonic()))

    def close_sockets(self) -> None:
        """Close both sockets once; safe to call more than once."""
        with self._lock:
            if self._sockets_closed:
                return
            self._sockets_closed = True
        _close_quietly(self._client)
        _close_quietly(self._upstream)


class LatencyProxy:
    """TCP proxy on loopback that adds ``delay_seconds`` per round trip and counts them.

    A round trip is counted when the client sends data for the first time on a
    connection, or for the first time after the server has sent data; pipelined
    client writes before the server answers count once.
    """

    def __init__(
        self,
        target_host: str,
        target_port: int,
        *,
        delay_seconds: float = 0.0,
        listen_host: str = "127.0.0.1",
    ) -> None:
        if delay_seconds < 0:
            raise ValueError(f"delay_seconds must be >= 0, not {delay_seconds!r}")
        _require_loopback(target_host)
        _require_loopback(listen_host)
        self._target = (target_host, target_port)
        self._listen_host = listen_host
        self._one_way_delay = delay_seconds / 2
        self._lock = threading.Lock()
        self._round_trips = 0
        self._connections: set[_Connection] = set()
        self._connection_serial = 0
        self._started = False
        self._closed = False
        self._stopping = threading.Event()
        self._listener: socket.socket | None = None
        self._port: int | None = None
        self._selector: selectors.BaseSelector | None = None
        self._wake_reader: socket.socket | None = None
        self._wake_writer: socket.socket | None = None
        self._accept_thread: threading.Thread | None = None

    def start(self) -> LatencyProxy:
        """Bind an ephemeral port on ``listen_host`` and accept in a daemon thread."""
        with self._lock:
            if self._started:
                raise RuntimeError("LatencyProxy.start() called twice")
            self._started = True
        listener = socket.create_server((self._listen_host, 0))
        listener.setblocking(False)
        # A socketpair lets close() wake the selector at once instead of polling.
        wake_reader, wake_writer = socket.socketpair()
        wake_reader.setblocking(False)
        selector = selectors.DefaultSelector()
        selector.register(listener, selectors.EVENT_READ)
        selector.register(wake_reader, selectors.EVENT_READ)
        self._listener = listener
        self._port = listener.getsockname()[1]
        self._selector = selector
        self._wake_reader = wake_reader
        self._wake_writer = wake_writer
        self._accept_thread = threading.Thread(
            target=self._accept_loop,
            name=f"LatencyProxy-{self.port}-accept",
            daemon=True,
        )
        self._accept_thread.start()
        return self

    @property
    def port(self) -> int:
        """The port the proxy listens on (after ``start()``)."""
        if self._port is None:
            raise RuntimeError("LatencyProxy is not started")
        return self._port

    @property
    def round_trips(self) -> int:
        """Round trips over all connections since start or the last reset."""
        with self._lock:
            return self._round_trips

    def reset_round_trips(self) -> None:
        """Set the round-trip total back to zero."""
        with self._lock:
            self._round_trips = 0

    def close(self) -> None:
        """Stop accepting, close every connection and join threads (bounded time)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._stopping.set()
        if not self._started:
            return
        deadline = time.monotonic() + _CLOSE_BUDGET
        assert self._wake_writer is not None and self._accept_thread is not None
        with contextlib.suppress(OSError):
            self._wake_writer.send(b"\0")
        self._accept_thread.join(max(0.0, deadline - time.monotonic()))
        for sock in (self._listener, self._wake_reader, self._wake_writer):
            if sock is not None:
                _close_quietly(sock)
        if self._selector is not None:
            self._selector.close()
        # The accept thread has stopped, so no connection can be added from here on.
        with self._lock:
            connections = list(self._connections)
        for connection in connections:
            connection.abort()
        for connection in connections:
            connection.join(deadline)
            connection.close_sockets()

    def __enter__(self) -> LatencyProxy:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def _accept_loop(self) -> None:
        assert self._selector is not None and self._listener is not None
        try:
            while not self._stopping.is_set():
                for key, _ in self._selector.select():
                    if key.fileobj is self._wake_reader or self._stopping.is_set():
                        return
                    self._accept_one(self._listener)
        except (OSError, ValueError):
            # The selector or listener was closed under us: close() is running.
            pass

    def _accept_one(self, listener: socket.socket) -> None:
        try:
            client, _ = listener.accept()
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            # e.g. ECONNABORTED: the client gave up before we accepted it.
            return
        client.setblocking(True)
        try:
            upstream = socket.create_connection(self._target, timeout=_CONNECT_TIMEOUT)
        except OSError:
            # Target down: closing the client shows it the failure as EOF.
            _close_quietly(client)
            return
        upstream.settimeout(None)
        _set_nodelay(client)
        _set_nodelay(upstream)
        with self._lock:
            if self._stopping.is_set():
                _close_quietly(client)
                _close_quietly(upstream)
                return
            self._connection_serial += 1
            connection = _Connection(
                self,
                client,
                upstream,
                self._one_way_delay,
                f"LatencyProxy-{self.port}-conn{self._connection_serial}",
            )
            self._connections.add(connection)
        connection.start()

    def _record_read(self, connection: _Connection, from_client: bool) -> None:
        # One lock for the per-connection flag and the total keeps them consistent.
        with self._lock:
            if not from_client:
                connection.awaiting_request = True
            elif connection.awaiting_request:
                connection.awaiting_request = False
                connection.round_trips += 1
                self._round_trips += 1

    def _forget(self, connection: _Connection) -> None:
        with self._lock:
            self._connections.discard(connection)

"""Tests for tests.tools.tcp_proxy.LatencyProxy against a tiny loopback request/response server.

Wire format of the test server (a stand-in for PostgreSQL's extended protocol):
a request frame is 1 kind byte + 4-byte big-endian length + payload.
  b"P": buffer the payload, no reply (like Parse/Bind/Execute);
  b"S": reply with every payload buffered since the last reply, this one included (like Sync);
  b"R": reset the connection (RST) without replying.
A reply frame is 4-byte big-endian length + payload.
"""

from __future__ import annotations

import os
import selectors
import socket
import struct
import threading
import time
from collections.abc import Iterator

import pytest

from tests.tools.tcp_proxy import LatencyProxy

_LINGER_RESET = struct.pack("ii", 1, 0)


class FramedServer:
    """Single-threaded selector server speaking the framed protocol above."""

    def __init__(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.setblocking(False)
        self.port: int = self._listener.getsockname()[1]
        self._selector = selectors.DefaultSelector()
        self._selector.register(self._listener, selectors.EVENT_READ)
        self._buffers: dict[socket.socket, bytearray] = {}
        self._pending: dict[socket.socket, bytearray] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="FramedServer", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        for sock in list(self._buffers):
            sock.close()
        self._listener.close()
        self._selector.close()

    def _run(self) -> None:
        while not self._stop.is_set():
            for key, _ in self._selector.select(timeout=0.02):
                sock = key.fileobj
                assert isinstance(sock, socket.socket)
                if sock is self._listener:
                    conn, _ = self._listener.accept()
                    conn.setblocking(True)
                    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                    self._buffers[conn] = bytearray()
                    self._pending[conn] = bytearray()
                    self._selector.register(conn, selectors.EVENT_READ)
                else:
                    self._serve(sock)

    def _drop(self, sock: socket.socket, *, reset: bool = False) -> None:
        self._selector.unregister(sock)
        del self._buffers[sock], self._pending[sock]
        if reset:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RESET)
        sock.close()

    def _serve(self, sock: socket.socket) -> None:
        try:
            data = sock.recv(1 << 20)
        except OSError:
            data = b""
        if not data:
            self._drop(sock)
            return
        buffer = self._buffers[sock]
        buffer += data
        while len(buffer) >= 5:
            kind = bytes(buffer[:1])
            (length,) = struct.unpack("!I", buffer[1:5])
            if len(buffer) < 5 + length:
                break
            self._pending[sock] += buffer[5 : 5 + length]
            del buffer[: 5 + length]
            if kind == b"R":
                self._drop(sock, reset=True)
                return
            if kind == b"S":
                reply = bytes(self._pending[sock])
                self._pending[sock].clear()
                try:
                    sock.sendall(struct.pack("!I", len(reply)) + reply)
                except OSError:
                    self._drop(sock)
                    return


def send_frame(sock: socket.socket, kind: bytes, payload: bytes = b"") -> None:
    sock.sendall(kind + struct.pack("!I", len(payload)) + payload)


def recv_exact(sock: socket.socket, size: int) -> bytes:
    chunks = bytearray()
    while len(chunks) < size:
        chunk = sock.recv(min(size - len(chunks), 1 << 20))
        if not chunk:
            raise EOFError(f"EOF after {len(chunks)} of {size} bytes")
        chunks += chunk
    return bytes(chunks)


def recv_reply(sock: socket.socket) -> bytes:
    (length,) = struct.unpack("!I", recv_exact(sock, 4))
    return recv_exact(sock, length)


def exchange(sock: socket.socket, payload: bytes) -> bytes:
    send_frame(sock, b"S", payload)
    return recv_reply(sock)


def connect(proxy: LatencyProxy) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", proxy.port), timeout=5)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def assert_closed_by_peer(sock: socket.socket) -> None:
    """The peer closed (EOF) or reset the connection; both are fine."""
    try:
        data = sock.recv(1)
    except ConnectionResetError:
        return
    assert data == b""


def proxy_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("LatencyProxy-")]


@pytest.fixture
def server() -> Iterator[FramedServer]:
    srv = FramedServer()
    yield srv
    srv.close()


@pytest.fixture(autouse=True)
def thread_exceptions(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[BaseException]]:
    """Record exceptions escaping any thread; the test fails if there are any."""
    caught: list[BaseException] = []
    monkeypatch.setattr(threading, "excepthook", lambda args: caught.append(args.exc_value))
    yield caught
    assert caught == []


@pytest.mark.parametrize("delay", [0.0, 0.02])
def test_bytes_round_trip_intact_including_5_mb(server: FramedServer, delay: float) -> None:
    big = os.urandom(5 * 1024 * 1024)
    with LatencyProxy("127.0.0.1", server.port, delay_seconds=delay) as proxy, connect(proxy) as sock:
        assert exchange(sock, b"hello") == b"hello"
        assert exchange(sock, big) == big
        assert exchange(sock, b"") == b""
        # A 5 MB request arrives in many reads but is still one round trip.
        assert proxy.round_trips == 3


def test_counts_each_sequential_exchange_and_resets(server: FramedServer) -> None:
    with LatencyProxy("127.0.0.1", server.port) as proxy, connect(proxy) as sock:
        for i in range(7):
            assert exchange(sock, b"q%d" % i) == b"q%d" % i
        assert proxy.round_trips == 7
        proxy.reset_round_trips()
        assert proxy.round_trips == 0
        for _ in range(3):
            exchange(sock, b"x")
        assert proxy.round_trips == 3


def test_counts_over_several_connections(server: FramedServer) -> None:
    with LatencyProxy("127.0.0.1", server.port) as proxy:
        with connect(proxy) as first, connect(proxy) as second:
            exchange(first, b"a")
            exchange(second, b"b")
            exchange(first, b"c")
        assert proxy.round_trips == 3


@pytest.mark.parametrize("delay", [0.0, 0.02])
def test_pipelined_burst_counts_once(server: FramedServer, delay: float) -> None:
    with LatencyProxy("127.0.0.1", server.port, delay_seconds=delay) as proxy, connect(proxy) as sock:
        for part in (b"parse", b"bind", b"execute"):
            send_frame(sock, b"P", part)  # separate writes, sent before any reply
        send_frame(sock, b"S", b"sync")
        assert recv_reply(sock) == b"parsebindexecutesync"
        assert proxy.round_trips == 1
        send_frame(sock, b"P", b"again")
        send_frame(sock, b"S")
        assert recv_reply(sock) == b"again"
        assert proxy.round_trips == 2


def test_delay_is_added_once_per_round_trip(server: FramedServer) -> None:
    with LatencyProxy("127.0.0.1", server.port, delay_seconds=0.05) as proxy, connect(proxy) as sock:
        started = time.monotonic()
        for _ in range(5):
            assert exchange(sock, b"ping") == b"ping"
        elapsed = time.monotonic() - started
        assert 0.25 <= elapsed < 1.5
        assert proxy.round_trips == 5


def test_burst_of_writes_is_not_delayed_cumulatively(server: FramedServer) -> None:
    with LatencyProxy("127.0.0.1", server.port, delay_seconds=0.1) as proxy, connect(proxy) as sock:
        started = time.monotonic()
        for _ in range(10):
            send_frame(sock, b"P", b"x")
            time.sleep(0.001)  # let each write reach the proxy as its own read
        send_frame(sock, b"S")
        assert recv_reply(sock) == b"x" * 10
        elapsed = time.monotonic() - started
        # One round trip costs 0.1 s; delaying each of 11 chunks in turn would cost > 0.6 s.
        assert 0.1 <= elapsed < 0.4


def test_client_half_close_still_gets_reply(server: FramedServer) -> None:
    with LatencyProxy("127.0.0.1", server.port, delay_seconds=0.02) as proxy, connect(proxy) as sock:
        send_frame(sock, b"S", b"last")
        sock.shutdown(socket.SHUT_WR)
        assert recv_reply(sock) == b"last"
        assert sock.recv(1) == b""  # the server's close reaches the client too


def test_close_ends_threads_and_refuses_connections(server: FramedServer) -> None:
    baseline = threading.active_count()
    proxy = LatencyProxy("127.0.0.1", server.port, delay_seconds=0.02).start()
    port = proxy.port
    clients = [connect(proxy) for _ in range(3)]
    try:
        for sock in clients:
            assert exchange(sock, b"hi") == b"hi"
        assert threading.active_count() > baseline
        proxy.close()  # with connections still open
        assert proxy_threads() == []
        assert threading.active_count() == baseline
        for sock in clients:
            assert_closed_by_peer(sock)
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
        proxy.close()  # a second close is harmless
    finally:
        for sock in clients:
            sock.close()


@pytest.mark.parametrize("delay", [0.0, 0.02])
def test_abrupt_resets_are_quiet(
    server: FramedServer, delay: float, capfd: pytest.CaptureFixture[str]
) -> None:
    with LatencyProxy("127.0.0.1", server.port, delay_seconds=delay) as proxy:
        # The client resets mid-request.
        client = connect(proxy)
        send_frame(client, b"P", b"half a request")
        client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RESET)
        client.close()
        # The server resets mid-conversation.
        with connect(proxy) as sock:
            send_frame(sock, b"R")
            assert_closed_by_peer(sock)
        # The proxy still serves new connections.
        with connect(proxy) as sock:
            assert exchange(sock, b"still alive") == b"still alive"
    assert proxy_threads() == []
    assert capfd.readouterr().err == ""


def test_unreachable_target_closes_client(capfd: pytest.CaptureFixture[str]) -> None:
    with socket.create_server(("127.0.0.1", 0)) as placeholder:
        dead_port = placeholder.getsockname()[1]
    with LatencyProxy("127.0.0.1", dead_port) as proxy, connect(proxy) as sock:
        assert_closed_by_peer(sock)
    assert capfd.readouterr().err == ""


def test_port_before_start_and_double_start() -> None:
    proxy = LatencyProxy("127.0.0.1", 5432)
    with pytest.raises(RuntimeError):
        _ = proxy.port
    proxy.close()  # closing a proxy never started is harmless
    with LatencyProxy("127.0.0.1", 5432) as started, pytest.raises(RuntimeError):
        started.start()


@pytest.mark.parametrize(("target", "listen"), [("192.0.2.1", "127.0.0.1"), ("127.0.0.1", "0.0.0.0")])
def test_refuses_non_loopback_addresses(target: str, listen: str) -> None:
    with pytest.raises(ValueError, match="loopback"):
        LatencyProxy(target, 5432, listen_host=listen)


def test_rejects_negative_delay() -> None:
    with pytest.raises(ValueError):
        LatencyProxy("127.0.0.1", 5432, delay_seconds=-0.1)

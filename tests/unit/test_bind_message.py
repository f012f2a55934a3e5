"""The Bind message the database boundary sends: byte for byte what pg8000's own ``send_BIND`` sends, over a real
socket (gathered by ``sendmsg``) and over TLS (joined), after whatever pg8000 had buffered."""

from __future__ import annotations

import datetime
import socket
import ssl
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pg8000.core
import pg8000.native
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from hypothesis import given, settings
from hypothesis import strategies as st

from ingest.store.connection import Utf8Text, _send_bind

Pair = Callable[[], tuple[socket.socket, socket.socket]]


def _plain_pair() -> tuple[socket.socket, socket.socket]:
    ours, peer = socket.socketpair()
    ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)  # a small buffer: a send takes part of a page
    ours.settimeout(10)  # pg8000's sockets have a timeout, which makes a send return what fitted
    return ours, peer


@pytest.fixture(scope="module")
def tls_pair(tmp_path_factory: pytest.TempPathFactory) -> Pair:
    """A TLS connection over a socket pair (what pg8000 has after sslmode's handshake), with a throwaway cert."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(1).not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=1)).sign(key, hashes.SHA256()))
    folder = tmp_path_factory.mktemp("tls")
    cert_file, key_file = Path(folder, "cert.pem"), Path(folder, "key.pem")
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_context.load_cert_chain(cert_file, key_file)
    client_context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    client_context.load_verify_locations(cert_file)

    def pair() -> tuple[socket.socket, socket.socket]:
        ours, peer = _plain_pair()
        accepted: list[socket.socket] = []
        server = threading.Thread(target=lambda: accepted.append(server_context.wrap_socket(peer, server_side=True)))
        server.start()
        client = client_context.wrap_socket(ours, server_hostname="localhost")
        server.join(10)
        return client, accepted[0]

    return pair


@pytest.fixture(scope="module", params=["socket", "tls"])
def pair(request: pytest.FixtureRequest) -> Pair:
    return _plain_pair if request.param == "socket" else request.getfixturevalue("tls_pair")


def _connection(sock: socket.socket, encoding: str = "utf8") -> Any:
    connection = object.__new__(pg8000.core.CoreConnection)  # never connected: only what send_BIND reads
    connection._usock = sock
    connection._sock = sock.makefile(mode="rwb")  # as pg8000 wraps it
    connection._client_encoding = encoding
    return connection


def _received(peer: socket.socket) -> tuple[bytearray, threading.Thread]:
    into = bytearray()

    def read() -> None:
        while len(into) < 64 << 20 and (chunk := peer.recv(1 << 16)):  # a sender that repeats itself is cut off
            into.extend(chunk)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    return into, reader


def _sent(send: Any, statement: bytes, params: list[Any], pair: Pair, encoding: str = "utf8",
          before: bytes = b"", after: bytes = b"") -> bytes:
    """What the peer receives when pg8000 has ``before`` buffered, ``send`` sends the Bind and ``after`` follows."""
    ours, peer = pair()
    received, reader = _received(peer)
    connection = _connection(ours, encoding)
    connection._sock.write(before)
    send(connection, statement, params)
    connection._sock.write(after)
    connection._sock.flush()
    ours.shutdown(socket.SHUT_WR)
    reader.join(10)
    connection._sock.close()
    ours.close()
    peer.close()
    return bytes(received)


_params = st.lists(st.one_of(
    st.none(),
    st.text(),
    st.binary().map(lambda data: Utf8Text(data.decode("utf-8", "replace").encode("utf-8"))),
), max_size=25)


@settings(max_examples=150, deadline=None)
@given(statement=st.binary(max_size=12).map(lambda name: name.replace(b"\x00", b"")), params=_params)
def test_bind_is_byte_for_byte_what_pg8000_sends(pair: Pair, statement: bytes, params: list[Any]) -> None:
    assert _sent(_send_bind, statement, params, pair) == \
        _sent(pg8000.core.CoreConnection.send_BIND, statement, params, pair)


@pytest.mark.parametrize("params", [
    [Utf8Text(("é" * 600_000).encode()), None, "x" * 70_000, "", "ü" * 9_000],  # sent in several pieces
    [f"value {number}" if number % 7 else None for number in range(700)],  # more pieces than one sendmsg takes
], ids=["page-sized", "many-parameters"])
def test_the_bind_follows_what_pg8000_had_buffered_and_precedes_what_it_writes_next(
        pair: Pair, params: list[Any]) -> None:
    expected = _sent(pg8000.core.CoreConnection.send_BIND, b"statement_1", params, pair)
    assert _sent(_send_bind, b"statement_1", params, pair, before=b"P buffered", after=b"E next") == \
        b"P buffered" + expected + b"E next"


def test_another_client_encoding_is_sent_alike(pair: Pair) -> None:
    params = [Utf8Text(("é" * 600_000).encode()), None, "x" * 70_000, "ü"]
    assert _sent(_send_bind, b"statement_1", params, pair, "latin1") == \
        _sent(pg8000.core.CoreConnection.send_BIND, b"statement_1", params, pair, "latin1")


def test_a_closed_or_missing_socket_is_the_interface_error_pg8000_raises(pair: Pair) -> None:
    ours, peer = pair()
    closed = _connection(ours)
    closed._sock.close()
    with pytest.raises(pg8000.native.InterfaceError, match="connection is closed"):
        _send_bind(closed, b"s", ["x"])
    missing = _connection(ours)
    missing._sock.close()
    missing._sock = None
    with pytest.raises(pg8000.native.InterfaceError, match="connection is closed"):
        _send_bind(missing, b"s", ["x"])
    ours.close()
    peer.close()


def test_a_peer_that_went_away_is_the_network_error_pg8000_raises(pair: Pair) -> None:
    ours, peer = pair()
    peer.close()
    connection = _connection(ours)
    with pytest.raises(pg8000.native.InterfaceError, match="network error"):
        _send_bind(connection, b"s", ["x" * 1_000_000])
    connection._sock.close()
    ours.close()


def test_the_bind_is_whole_on_the_wire_only_with_what_pg8000_sends_next(pair: Pair) -> None:
    """The server answers a Bind followed by Flush at once: so that a page costs one round trip, not two, the
    Bind must not be complete before pg8000's Execute and Sync leave with it."""
    params = ["x" * 300_000, None, "y"]
    expected = _sent(pg8000.core.CoreConnection.send_BIND, b"s", params, pair)
    bind_length = 1 + int.from_bytes(expected[1:5], "big")
    ours, peer = pair()
    received, reader = _received(peer)
    connection = _connection(ours)
    _send_bind(connection, b"s", params)
    deadline = time.monotonic() + 10
    while len(received) < 300_000 and time.monotonic() < deadline:  # the long parameter has arrived
        time.sleep(0.01)
    time.sleep(0.1)  # and anything else sent with it
    early = bytes(received)
    assert expected.startswith(early) and len(early) >= 300_000
    assert len(early) < bind_length
    connection._sock.write(b"E next")
    connection._sock.flush()
    ours.shutdown(socket.SHUT_WR)
    reader.join(10)
    assert bytes(received) == expected + b"E next"
    connection._sock.close()
    ours.close()
    peer.close()

"""The Bind message the database boundary sends: byte for byte what pg8000's own ``send_BIND`` sends."""

from __future__ import annotations

import io
from typing import Any

import pg8000.core
import pg8000.native
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ingest.store.connection import Utf8Text, _send_bind


class _Socket(io.BytesIO):
    """pg8000's buffered socket, as far as a Bind goes: it records what is written."""


def _connection(encoding: str = "utf8") -> Any:
    connection = object.__new__(pg8000.core.CoreConnection)  # never connected: only what send_BIND reads
    connection._sock = _Socket()
    connection._client_encoding = encoding
    return connection


def _sent(send: Any, statement: bytes, params: list[Any], encoding: str = "utf8") -> bytes:
    connection = _connection(encoding)
    send(connection, statement, params)
    return connection._sock.getvalue()


_params = st.lists(st.one_of(
    st.none(),
    st.text(),
    st.binary().map(lambda data: Utf8Text(data.decode("utf-8", "replace").encode("utf-8"))),
), max_size=25)


@settings(max_examples=300, deadline=None)
@given(statement=st.binary(max_size=12).map(lambda name: name.replace(b"\x00", b"")), params=_params)
def test_bind_is_byte_for_byte_what_pg8000_sends(statement: bytes, params: list[Any]) -> None:
    assert _sent(_send_bind, statement, params) == _sent(pg8000.core.CoreConnection.send_BIND, statement, params)


def test_a_page_sized_parameter_and_another_client_encoding_are_sent_alike() -> None:
    params = [Utf8Text(("é" * 600_000).encode()), None, "x" * 70_000, ""]
    assert _sent(_send_bind, b"statement_1", params, "latin1") == \
        _sent(pg8000.core.CoreConnection.send_BIND, b"statement_1", params, "latin1")


def test_a_closed_or_missing_socket_is_the_interface_error_pg8000_raises() -> None:
    closed = _connection()
    closed._sock.close()
    with pytest.raises(pg8000.native.InterfaceError, match="connection is closed"):
        _send_bind(closed, b"s", ["x"])
    missing = _connection()
    missing._sock = None
    with pytest.raises(pg8000.native.InterfaceError, match="connection is closed"):
        _send_bind(missing, b"s", ["x"])


def test_a_network_error_is_the_interface_error_pg8000_raises() -> None:
    class Broken(io.RawIOBase):
        def write(self, data: Any) -> int:
            raise ConnectionResetError("reset by peer")

    connection = _connection()
    connection._sock = Broken()
    with pytest.raises(pg8000.native.InterfaceError, match="network error"):
        _send_bind(connection, b"s", ["x"])

"""Connecting to PostgreSQL: libpq-style URLs, verified TLS, and a small wrapper that counts round trips."""

from __future__ import annotations

import codecs
import io
import ipaddress
import socket
import ssl
import struct
import types
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib import resources
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import pg8000.core
import pg8000.native
from pg8000.converters import make_params

from ingest.errors import ConfigurationError, DatabaseUnavailable
from ingest.store.errors import translate

DEFAULT_TIMEOUT_SECONDS = 60.0
# verify-full without sslrootcert trusts these, shipped in the package (provenance: src/ingest/data/README.md):
# RDS instances and clusters present certificates of the RDS CAs, RDS Proxy presents ACM certificates, which
# chain to the Amazon Trust Services roots.
DEFAULT_CA_FILES = ("data/rds-global-bundle.pem", "data/amazon-trust-services-roots.pem")
# A deadline is rounded down to this step before it becomes statement_timeout, so a warm connection sends the
# SET only when the step changes (a few times per invocation), not before every page.
STATEMENT_TIMEOUT_STEP_MS = 5000
_SSL_MODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")


@dataclass(frozen=True)
class DatabaseSettings:
    """Where and how to connect; built from a URL (``parse_url``) or from parts (Secrets Manager, IAM)."""

    user: str
    host: str = "localhost"
    port: int = 5432
    database: str | None = None
    password: str | None = field(default=None, repr=False)
    unix_socket_dir: str | None = None
    sslmode: str | None = None
    sslrootcert: str | None = None
    timeout: float = DEFAULT_TIMEOUT_SECONDS
    application_name: str = "ocds-ingest"

    @property
    def is_local(self) -> bool:
        if self.unix_socket_dir:
            return True
        if self.host == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return False

    def describe(self) -> str:
        """Where, without the password: safe for logs and error messages."""
        where = self.unix_socket_dir or f"{self.host}:{self.port}"
        return f"postgresql://{self.user}@{where}/{self.database or self.user}"


def parse_url(url: str) -> DatabaseSettings:
    """Parse a libpq URI: ``postgresql://user:pw@host:5432/db?sslmode=verify-full``; ``?host=/dir`` for a socket."""
    parts = urlsplit(url)
    if parts.scheme not in ("postgresql", "postgres"):
        raise ConfigurationError(
            f"DATABASE_URL must start with postgresql://, not {parts.scheme or 'nothing'}:// "
            "(example: postgresql://user:password@host:5432/dbname)")
    query = {key: values[-1] for key, values in parse_qs(parts.query).items()}
    host = unquote(parts.hostname or "") or query.get("host", "localhost")
    socket_dir = host if host.startswith("/") else None
    try:
        port = int(query.get("port") or parts.port or 5432)
    except ValueError:
        raise ConfigurationError(f"the port in DATABASE_URL is not a number: {url.split('@')[-1]}") from None
    sslmode = query.get("sslmode")
    if sslmode is not None and sslmode not in _SSL_MODES:
        raise ConfigurationError(f"sslmode={sslmode} is not one of {', '.join(_SSL_MODES)}")
    timeout = float(query.get("connect_timeout") or DEFAULT_TIMEOUT_SECONDS)
    return DatabaseSettings(
        user=unquote(parts.username or query.get("user") or "postgres"),
        host="localhost" if socket_dir else host,
        port=port,
        database=unquote(parts.path.lstrip("/")) or query.get("dbname"),
        password=unquote(parts.password) if parts.password else query.get("password"),
        unix_socket_dir=socket_dir,
        sslmode=sslmode,
        sslrootcert=query.get("sslrootcert"),
        timeout=timeout,
        application_name=query.get("application_name", "ocds-ingest"),
    )


def ssl_context_for(settings: DatabaseSettings) -> ssl.SSLContext | bool | None:
    """TLS for anything that is not local, verified against the RDS CA bundle we ship (or ``sslrootcert``).

    pg8000 without a context silently talks plaintext, so a remote host without an explicit ``sslmode`` gets
    ``verify-full``: encryption, the certificate chain and the host name are all checked.
    """
    mode = settings.sslmode or ("disable" if settings.is_local else "verify-full")
    if mode in ("disable", "allow"):
        return False  # pg8000 reads None as "try TLS, unverified"; False is plaintext, as asked
    if mode == "prefer":
        return None
    if mode == "require":
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return context
    if settings.sslrootcert:
        context = ssl.create_default_context(cafile=settings.sslrootcert)
    else:
        context = ssl.create_default_context(cadata=default_ca_bundle())
    context.check_hostname = mode == "verify-full"
    return context


def default_ca_bundle() -> str:
    """The shipped CAs, as one PEM text: RDS's own and the Amazon Trust Services roots (RDS Proxy)."""
    data = resources.files("ingest")
    return "".join(data.joinpath(name).read_text("ascii") for name in DEFAULT_CA_FILES)


class Utf8Text:
    """A text parameter whose UTF-8 bytes the caller already has (a page's release texts, kept as read).

    pg8000 sends these bytes as they are: given a str, it would encode ~1 MB per page once more and copy the result,
    about 4 ms of the writing thread's CPU per page, spent before the server can start on the statement.
    """

    __slots__ = ("utf8",)

    def __init__(self, utf8: bytes) -> None:
        self.utf8 = utf8

    def encode(self, encoding: str) -> bytes:
        """What pg8000 sends, in the connection's client encoding (UTF-8 unless a server default changed it)."""
        if encoding == "utf8" or codecs.lookup(encoding).name == "utf-8":
            return self.utf8
        return self.utf8.decode("utf-8").encode(encoding)

    def __repr__(self) -> str:
        return f"Utf8Text({len(self.utf8):,} bytes)"


def _as_is(value: Utf8Text) -> Utf8Text:
    return value


_BIND_HEADER = struct.Struct("!ci")  # the Bind message's code and its length (which counts itself)
_UINT16 = struct.Struct("!H")
_INT32 = struct.Struct("!i")
_FLUSH = b"H\x00\x00\x00\x04"


def _send_bind(connection: pg8000.native.Connection, statement_name: bytes, params: Any) -> None:
    """pg8000 1.31's ``send_BIND`` (Bind with text parameters, then Flush), the same bytes on the wire, sent from
    our parts (``_send_parts``). pg8000 builds the whole message in a growing bytearray, then copies it twice
    more before writing: for a page's 1 MB statement 2.5 ms of the writing thread's CPU against 0.3 ms this way
    (about 11 µs per release; fresh megabytes are page-faulted in at each copy)."""
    parts = [b"", b"\x00" + statement_name + _UINT16.pack(0) + _UINT16.pack(len(params))]
    for value in params:
        if value is None:
            parts.append(_INT32.pack(-1))
        else:
            encoded = value.encode(connection._client_encoding)
            parts.append(_INT32.pack(len(encoded)))
            parts.append(encoded)
    parts.append(_UINT16.pack(0))  # no result formats: the Bind's last two bytes
    parts[0] = _BIND_HEADER.pack(b"B", 4 + sum(map(len, parts)))
    parts[-1] += _FLUSH  # one last part, which _send_parts holds back for pg8000's Execute and Sync
    try:
        _send_parts(connection, parts)
    except (AttributeError, ValueError) as exc:  # no socket, or a closed one: as pg8000 says it
        raise pg8000.native.InterfaceError("connection is closed") from exc
    except OSError as exc:
        raise pg8000.native.InterfaceError("network error") from exc


_SENDMSG_BUFFERS = 512  # below IOV_MAX (1024 on Linux)


def _send_parts(connection: pg8000.native.Connection, parts: list[bytes]) -> None:
    """Send the parts in order, after whatever pg8000 has buffered, in as few system calls as the socket takes;
    the last part (a few bytes) stays in pg8000's buffer and leaves with what it writes next (Execute, Sync), so
    the server never holds a whole Bind before the rest of the request and answers once.

    Each send releases the GIL, and a thread that releases it while the look-ahead thread computes gets it back
    only at the next switch interval. Written part by part through pg8000's 8 KB buffer, a page's statement took
    ~15 sends and ~150 futex calls (GIL handoffs): ``sendmsg`` gathers the parts into one. A TLS socket has no
    ``sendmsg``; there one copy of the message costs less than a handoff per part."""
    stream = connection._sock
    sock = connection._usock
    stream.flush()
    *head, tail = parts
    if isinstance(sock, ssl.SSLSocket):
        sock.sendall(b"".join(head))
    else:
        views = [memoryview(part) for part in head if part]
        first = 0
        while first < len(views):
            sent = sock.sendmsg(views[first:first + _SENDMSG_BUFFERS])
            while first < len(views) and sent >= len(views[first]):
                sent -= len(views[first])
                first += 1
            if sent:
                views[first] = views[first][sent:]
    stream.write(tail)


@dataclass(eq=False)
class Sent:
    """A statement sent with ``Database.send`` whose answer may not have been read yet (``Database.receive``)."""

    database: Database
    where: str
    context: Any  # pg8000's, which collects the answer's rows
    rows: list[list[Any]] | None = None
    error: Exception | None = None
    answered: bool = False


class Database:
    """A pg8000 connection with prepared statements cached, errors translated and round trips counted.

    ``round_trips`` counts each request the client sends and then waits on; the latency proxy in the benchmark
    counts the same thing on the wire, which is how the two are checked against each other.

    ``send`` puts a statement on the wire without waiting for its answer, so the server finds the next one queued
    when it finishes the current one. Answers are read strictly in the order the statements were sent: every
    other call reads the pending answers first (each kept for its ``receive``), so it never takes another
    statement's answer for its own.
    """

    def __init__(self, connection: pg8000.native.Connection, settings: DatabaseSettings) -> None:
        self.connection = connection
        self.settings = settings
        connection.register_out_adapter(Utf8Text, _as_is)  # sent by its encode(), not str()
        connection.send_BIND = types.MethodType(_send_bind, connection)  # type: ignore[method-assign]
        self.round_trips = 0
        self._prepared: dict[str, Any] = {}
        self._pending: deque[Sent] = deque()
        self.broken = False
        self.statement_timeout_ms: int | None = None  # as last set by limit_statements (None: the server's)

    def send(self, sql: str, where: str, **params: Any) -> Sent:
        """A parameterised statement (prepared once per connection) sent without reading its answer; each is one
        round trip, whatever else is on the wire. One Sync each: a statement that fails rolls back alone."""
        statement = self._prepared.get(sql)
        if statement is None:
            self.drain()
            self.round_trips += 1
            statement = self._prepare(sql, where)
        sent = Sent(self, where, pg8000.core.Context(statement.statement, columns=statement.cols,
                                                     input_funcs=statement.input_funcs))
        try:
            self.round_trips += 1
            values = make_params(self.connection.py_types, statement.make_vals(params))
            self.connection.send_BIND(statement.name_bin, values)
            self.connection.send_EXECUTE()
            pg8000.core._write(self.connection._sock, pg8000.core.SYNC_MSG)
            pg8000.core._flush(self.connection._sock)
        except Exception as exc:
            raise self._translate(exc, where) from exc
        self._pending.append(sent)
        return sent

    def receive(self, sent: Sent) -> list[list[Any]]:
        """The answer of a statement ``send`` sent (reading those sent before it first): its rows, or its error."""
        while not sent.answered and self._pending:
            self._answer_next()
        if not sent.answered:  # sent on a connection since closed
            sent.answered, sent.error = True, DatabaseUnavailable(f"{sent.where}: the connection was closed "
                                                                  "before the statement's answer came")
        if sent.error is not None:
            raise sent.error
        return sent.rows or []

    def drain(self) -> None:
        """Read every pending answer (kept for ``receive``), so the next request's answer is the next one read."""
        while self._pending:
            self._answer_next()

    def _answer_next(self) -> None:
        sent = self._pending.popleft()
        sent.answered = True
        if self.broken:
            sent.error = DatabaseUnavailable(f"{sent.where}: the connection was lost before the statement's "
                                             "answer came")
            return
        try:
            self.connection.handle_messages(sent.context)
            sent.rows = sent.context.rows or []
        except Exception as exc:
            sent.error = self._translate(exc, sent.where)

    def _prepare(self, sql: str, where: str) -> Any:
        try:
            statement = self.connection.prepare(sql)
        except Exception as exc:
            raise self._translate(exc, where) from exc
        self._prepared[sql] = statement
        return statement

    def run(self, sql: str, where: str) -> list[list[Any]]:
        """A statement without parameters, sent with the simple query protocol: one round trip."""
        self.drain()
        try:
            self.round_trips += 1
            return self.connection.run(sql) or []
        except Exception as exc:
            raise self._translate(exc, where) from exc

    def execute(self, sql: str, where: str, **params: Any) -> list[list[Any]]:
        """A parameterised statement, prepared once per connection; each later use is one round trip."""
        self.drain()
        statement = self._prepared.get(sql)
        if statement is None:
            self.round_trips += 1
            statement = self._prepare(sql, where)
        try:
            self.round_trips += 1
            return statement.run(**params) or []
        except Exception as exc:
            raise self._translate(exc, where) from exc

    def execute_once(self, sql: str, where: str, **params: Any) -> list[list[Any]]:
        """A parameterised statement not worth preparing (migrations, tests)."""
        self.drain()
        try:
            self.round_trips += 3  # pg8000 parses, describes and executes an unnamed statement in three
            return self.connection.run(sql, **params) or []
        except Exception as exc:
            raise self._translate(exc, where) from exc

    def copy_in(self, sql: str, data: bytes, where: str) -> None:
        """COPY … FROM STDIN. pg8000 sends it as an unnamed extended-protocol statement: parse, describe and
        bind, execute (answered by CopyInResponse), then the data; four round trips."""
        self.drain()
        try:
            self.round_trips += 4
            self.connection.run(sql, stream=io.BytesIO(data))
        except Exception as exc:
            raise self._translate(exc, where) from exc

    def limit_statements(self, seconds: float | None) -> None:
        """Make every following statement end within ``seconds`` (None: no limit of ours).

        The server cancels a statement past ``statement_timeout`` (SQLSTATE 57014, a transient error); the
        socket's timeout is set to the same bound plus a little, so a connection that stops answering cannot
        hold the caller longer either. The value is rounded down to ``STATEMENT_TIMEOUT_STEP_MS`` and sent only
        when it changes.
        """
        if seconds is None:
            return
        milliseconds = int(seconds * 1000)
        if milliseconds >= STATEMENT_TIMEOUT_STEP_MS:
            milliseconds -= milliseconds % STATEMENT_TIMEOUT_STEP_MS
        milliseconds = max(1, milliseconds)
        if milliseconds != self.statement_timeout_ms:
            self.execute("SELECT set_config('statement_timeout', :value, false)", "setting statement_timeout",
                         value=f"{milliseconds}ms")
            self.statement_timeout_ms = milliseconds
        sock = getattr(self.connection, "_usock", None)
        if sock is not None:
            sock.settimeout(seconds + 2.0)

    @contextmanager
    def transaction(self, where: str) -> Iterator[None]:
        self.run("BEGIN", where)
        try:
            yield
        except BaseException:
            if not self.broken:
                try:
                    self.run("ROLLBACK", where)
                except Exception:  # noqa: BLE001 - the original error matters more than the rollback's
                    self.broken = True
            raise
        self.run("COMMIT", where)

    def _translate(self, exc: BaseException, where: str) -> Exception:
        error = translate(exc, where)
        if isinstance(error, DatabaseUnavailable):
            self.broken = True
        return error

    def close(self) -> None:
        # Answers not read by now never will be: receive() says so for each.
        self._pending.clear()
        # pg8000 closes its socket but drops the buffered file it reads through without closing it, which
        # keeps the descriptor open until garbage collection: close that file too.
        stream = getattr(self.connection, "_sock", None)
        try:
            self.connection.close()
        except Exception:  # noqa: BLE001 - closing a dead connection cannot fail usefully
            pass
        if stream is not None:
            try:
                stream.close()
            except OSError:
                pass


def _tcp_socket(settings: DatabaseSettings) -> socket.socket:
    """Our own socket, because pg8000's leaves Nagle's algorithm on: a page larger than its write buffer goes
    out in several segments, the last one waits for the server's delayed ACK, and every page costs 40 ms."""
    sock = socket.create_connection((settings.host, settings.port), timeout=settings.timeout)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    return sock


def connect(settings: DatabaseSettings) -> Database:
    """Open a connection; an unreachable database raises DatabaseUnavailable saying where it tried."""
    unix_sock = f"{settings.unix_socket_dir}/.s.PGSQL.{settings.port}" if settings.unix_socket_dir else None
    sock = None
    try:
        sock = None if unix_sock else _tcp_socket(settings)
        connection = pg8000.native.Connection(
            settings.user,
            host=settings.host,
            port=settings.port,
            database=settings.database,
            password=settings.password,
            unix_sock=unix_sock,
            sock=sock,
            ssl_context=ssl_context_for(settings),
            timeout=settings.timeout,
            application_name=settings.application_name,
        )
    except Exception as exc:
        if sock is not None:
            sock.close()
        if settings.password is None and _asks_for_password(exc):
            raise ConfigurationError(f"connecting to {settings.describe()}: the server asks for a password and none "
                                     "was given: put it in the URL (postgresql://user:PASSWORD@host/db) or, on the "
                                     "command line, set PGPASSWORD") from None
        raise translate(exc, f"connecting to {settings.describe()}") from exc
    return Database(connection, settings)


def _asks_for_password(exc: Exception) -> bool:
    # pg8000 says so for cleartext and md5, and fails with AttributeError (None.decode) for SCRAM.
    return isinstance(exc, AttributeError) or (isinstance(exc, pg8000.native.InterfaceError)
                                               and "password" in str(exc))


def connect_url(url: str) -> Database:
    return connect(parse_url(url))

"""Translate pg8000's errors into ours, by SQLSTATE: the one place that decides what a database failure means."""

from __future__ import annotations

import socket
import struct

import pg8000.native

from ingest.errors import ConfigurationError, DatabaseUnavailable, IngestError, PermanentError, TransientError

# SQLSTATE classes whose errors come from the values written: bisecting the batch finds the releases at fault.
DATA_CLASSES = ("22", "23", "54")
_UNAVAILABLE = ("08", "57P01", "57P02", "57P03")
_RETRYABLE = ("40", "53", "55P03", "57014", "58")
_CONFIGURATION = ("28", "3D", "42")


class DataRefused(PermanentError):
    """Raised if PostgreSQL refused a value (SQLSTATE class 22, 23 or 54); the release at fault is quarantined."""

    def __init__(self, sqlstate: str, message: str) -> None:
        super().__init__("database_refused", f"PostgreSQL refused it: {message} (SQLSTATE {sqlstate})")
        self.sqlstate = sqlstate


def sqlstate_of(exc: pg8000.native.DatabaseError) -> tuple[str, str]:
    info = exc.args[0] if exc.args and isinstance(exc.args[0], dict) else {}
    return str(info.get("C", "")), str(info.get("M", exc))


def translate(exc: BaseException, where: str) -> IngestError:
    """Our error for a failure of the database call described by ``where`` (e.g. 'writing a page')."""
    if isinstance(exc, IngestError):
        return exc
    if isinstance(exc, pg8000.native.DatabaseError):
        code, message = sqlstate_of(exc)
        if code.startswith(DATA_CLASSES):
            return DataRefused(code, message)
        if code.startswith(_UNAVAILABLE):
            return DatabaseUnavailable(f"{where}: the database went away ({message}, SQLSTATE {code}); "
                                       "the work was rolled back and can be retried")
        if code.startswith(_CONFIGURATION):
            hint = "check the credentials and database name in DATABASE_URL" if code.startswith(("28", "3D")) \
                else "the schema may be missing or outdated: run `ocds-ingest migrate`"
            return ConfigurationError(f"{where}: {message} (SQLSTATE {code}); {hint}")
        if code.startswith(_RETRYABLE):
            return TransientError(f"{where}: {message} (SQLSTATE {code}); rolled back, retry")
        return TransientError(f"{where}: unexpected database error {message} (SQLSTATE {code})")
    if isinstance(exc, ConnectionRefusedError):
        return DatabaseUnavailable(f"{where}: connection refused: nothing listens there; is PostgreSQL running, and "
                                   "are the host and port right?")
    if isinstance(exc, socket.gaierror):
        return DatabaseUnavailable(f"{where}: the host name does not resolve ({exc.strerror}); check the host")
    if isinstance(exc, pg8000.native.InterfaceError) and "refuses SSL" in str(exc):
        return ConfigurationError(f"{where}: the server does not offer TLS; on a trusted network (a local or "
                                  "private server) add ?sslmode=disable to the URL, else enable ssl on the server")
    if isinstance(exc, (pg8000.native.InterfaceError, OSError, socket.timeout, struct.error, EOFError)):
        return DatabaseUnavailable(f"{where}: lost the connection to the database ({exc}); "
                                   "nothing was committed, retry")
    raise exc

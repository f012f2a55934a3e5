"""Database settings from a Secrets Manager secret or an IAM auth token (pure: the caller fetches)."""

from __future__ import annotations

from typing import Any

from ingest.errors import ConfigurationError
from ingest.store.connection import DEFAULT_TIMEOUT_SECONDS, DatabaseSettings


def from_secret(secret: Any, *, host: str | None = None, port: int | None = None, database: str | None = None,
                sslrootcert: str | None = None, timeout: float = DEFAULT_TIMEOUT_SECONDS) -> DatabaseSettings:
    """An RDS-style secret (``username``, ``password``, ``host``, ``port``, ``dbname``); explicit values win
    (an RDS Proxy endpoint in front of the instance the secret names, for example)."""
    if not isinstance(secret, dict) or not secret.get("username") or not secret.get("password"):
        raise ConfigurationError("the database secret must be JSON with at least 'username' and 'password' "
                                 "(the format RDS uses for managed secrets)")
    chosen_host = host or secret.get("host")
    if not chosen_host:
        raise ConfigurationError("the database secret has no 'host': set DB_HOST")
    return DatabaseSettings(user=str(secret["username"]), password=str(secret["password"]), host=str(chosen_host),
                            port=int(port or secret.get("port") or 5432),
                            database=database or secret.get("dbname") or secret.get("database"),
                            sslrootcert=sslrootcert, timeout=timeout)


def for_iam(user: str, host: str, port: int, database: str | None, token: str,
            sslrootcert: str | None = None, timeout: float = DEFAULT_TIMEOUT_SECONDS) -> DatabaseSettings:
    """IAM database authentication: the token is the password, valid for 15 minutes, and TLS is mandatory."""
    return DatabaseSettings(user=user, password=token, host=host, port=port, database=database,
                            sslmode="verify-full", sslrootcert=sslrootcert, timeout=timeout)

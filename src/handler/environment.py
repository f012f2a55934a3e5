"""The edge: read the environment, create the clients, hand them to ``ingest``. Only handlers call this.

| variable | meaning |
|---|---|
| DATABASE_URL | libpq URI (local runs, tests) |
| DB_SECRET_ARN | Secrets Manager secret with username/password/host/port/dbname (cached 5 minutes) |
| DB_IAM_USER | IAM database authentication as this user (with DB_HOST, DB_PORT, DB_NAME) |
| DB_HOST, DB_PORT, DB_NAME | override the secret's (e.g. an RDS Proxy endpoint) or name the IAM target |
| DB_SSLROOTCERT | a CA bundle newer than the RDS bundle shipped in the package |
| SOURCES_FILE, SOURCES_PARAMETER | sources configuration: a file, or an SSM parameter name; else the packaged one |
| WRITE_STRATEGY | unnest (default), json or copy |
| MAX_PAGE_BYTES | cap on a fetched or claim-checked page (default 16 MiB) |
| TIME_SAFETY_MARGIN_MS | do not start a message with less time left than this (default 20000) |
| PAGES_BUCKET | claim-check bucket (harvest) |
| PAGES_QUEUE_URL | the pages queue (harvest) |
| USER_AGENT_CONTACT | a URL or e-mail address publishers can reach the operator at, in the User-Agent |
"""

from __future__ import annotations

import os
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import Any

from ingest.errors import ConfigurationError
from ingest.sources import Source, parse_sources
from ingest.store.connection import Database, connect, connect_url
from ingest.worker import DEFAULT_MAX_PAGE_BYTES

_SECRET_MAX_AGE_SECONDS = 300


def _int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if not value:
        return default
    try:
        return int(value)
    except ValueError:
        raise ConfigurationError(f"{name} must be a whole number, not {value!r}") from None


def database_connector() -> Callable[[], Database]:
    """A function that opens a new connection, with credentials as configured."""
    env = os.environ
    if env.get("DATABASE_URL"):
        url = env["DATABASE_URL"]
        return lambda: connect_url(url)
    host, port, name, rootcert = env.get("DB_HOST"), _int("DB_PORT", 5432), env.get("DB_NAME"), \
        env.get("DB_SSLROOTCERT")
    if env.get("DB_SECRET_ARN"):
        arn = env["DB_SECRET_ARN"]

        def with_secret() -> Database:
            from aws_lambda_powertools.utilities.parameters import get_secret

            from ingest.store.credentials import from_secret

            secret = get_secret(arn, transform="json", max_age=_SECRET_MAX_AGE_SECONDS)
            try:
                return connect(from_secret(secret, host=host, port=port if env.get("DB_PORT") else None,
                                           database=name, sslrootcert=rootcert))
            except ConfigurationError:
                # The secret may have been rotated since it was cached: fetch it afresh once.
                secret = get_secret(arn, transform="json", force_fetch=True)
                return connect(from_secret(secret, host=host, port=port if env.get("DB_PORT") else None,
                                           database=name, sslrootcert=rootcert))
        return with_secret
    if env.get("DB_IAM_USER"):
        user = env["DB_IAM_USER"]
        if not host:
            raise ConfigurationError("DB_IAM_USER needs DB_HOST (the instance or RDS Proxy endpoint)")

        def with_iam_token() -> Database:
            import boto3

            from ingest.store.credentials import for_iam

            token = boto3.client("rds").generate_db_auth_token(DBHostname=host, Port=port, DBUsername=user)
            return connect(for_iam(user, host, port, name, token, rootcert))
        return with_iam_token
    raise ConfigurationError("no database configured: set DATABASE_URL, DB_SECRET_ARN, or DB_IAM_USER with DB_HOST")


def sources() -> dict[str, Source]:
    """The sources configuration, with each source's auth secret (a JSON object of headers) merged in."""
    configured = _configured_sources()
    with_secrets = {name: source for name, source in configured.items() if source.auth_secret_arn}
    if not with_secrets:
        return configured
    from dataclasses import replace

    from aws_lambda_powertools.utilities.parameters import get_secret

    for name, source in with_secrets.items():
        headers = get_secret(source.auth_secret_arn, transform="json", max_age=_SECRET_MAX_AGE_SECONDS)
        if not isinstance(headers, dict) or not all(isinstance(value, str) for value in headers.values()):
            raise ConfigurationError(f"source {name!r}: the secret {source.auth_secret_arn} must be a JSON object "
                                     "of header names and values, e.g. {\"Authorization\": \"Bearer …\"}")
        configured[name] = replace(source, headers={**source.headers, **headers})
    return configured


def _configured_sources() -> dict[str, Source]:
    env = os.environ
    if env.get("SOURCES_FILE"):
        path = Path(env["SOURCES_FILE"])
        try:
            return parse_sources(path.read_text("utf-8"), str(path))
        except OSError as exc:
            raise ConfigurationError(f"SOURCES_FILE {path}: {exc.strerror}") from None
    if env.get("SOURCES_PARAMETER"):
        from aws_lambda_powertools.utilities.parameters import get_parameter

        name = env["SOURCES_PARAMETER"]
        return parse_sources(str(get_parameter(name, max_age=_SECRET_MAX_AGE_SECONDS)), f"SSM parameter {name}")
    packaged = resources.files("ingest").joinpath("data/sources.json")
    return parse_sources(packaged.read_text("utf-8"), "the packaged sources.json")


def http_fetcher() -> Any:
    from ingest.http import Fetcher, new_client

    return Fetcher(new_client(user_agent()), max_bytes=_int("MAX_PAGE_BYTES", DEFAULT_MAX_PAGE_BYTES),
                   gate=politeness_gate(), user_agent=user_agent())


def user_agent() -> str:
    from ingest.politeness import user_agent

    return user_agent(os.environ.get("USER_AGENT_CONTACT"))


def politeness_gate(max_inline_wait: float | None = None) -> Any:
    """Each source's limits, shared with every other process through the database (its own connection)."""
    from ingest.politeness import WORKER_INLINE_WAIT, Gate

    return Gate(database_connector(), max_inline_wait=WORKER_INLINE_WAIT if max_inline_wait is None
                else max_inline_wait)


def sqs_client() -> Any:
    import boto3

    return boto3.client("sqs")


def s3_client() -> Any:
    import boto3

    return boto3.client("s3")


def build_worker() -> Any:
    from ingest.store.writer import DEFAULT_STRATEGY
    from ingest.worker import Connections, Worker

    return Worker(Connections(database_connector()), sources(), fetcher=http_fetcher, s3=s3_client,
                  max_page_bytes=_int("MAX_PAGE_BYTES", DEFAULT_MAX_PAGE_BYTES),
                  strategy=os.environ.get("WRITE_STRATEGY") or DEFAULT_STRATEGY)


def time_safety_margin_ms() -> int:
    return _int("TIME_SAFETY_MARGIN_MS", 20_000)


def polite_fetcher() -> Any:
    """The harvester's fetcher: retries with backoff and Retry-After inside the transport."""
    from ingest.http import Fetcher, new_polite_client
    from ingest.politeness import HARVESTER_INLINE_WAIT

    gate = politeness_gate(HARVESTER_INLINE_WAIT)
    return Fetcher(new_polite_client(user_agent(), on_wait=gate.heard),
                   max_bytes=_int("MAX_PAGE_BYTES", DEFAULT_MAX_PAGE_BYTES), gate=gate, user_agent=user_agent())


def page_sender() -> Any:
    import boto3

    from ingest.harvest import PageSender

    queue_url = os.environ.get("PAGES_QUEUE_URL")
    if not queue_url:
        raise ConfigurationError("PAGES_QUEUE_URL is not set: the harvester needs the pages queue's URL")
    bucket = os.environ.get("PAGES_BUCKET")
    return PageSender(boto3.client("sqs"), queue_url, s3=boto3.client("s3") if bucket else None, bucket=bucket)

"""The edge: read the environment, create the clients, hand them to ``ingest``. Only handlers call this.

| variable | meaning |
|---|---|
| DATABASE_URL | libpq URI (local runs, tests) |
| DB_SECRET_ARN | Secrets Manager secret with username/password/host/port/dbname (cached 5 minutes) |
| DB_IAM_USER | IAM database authentication as this user (with DB_HOST, DB_PORT, DB_NAME) |
| DB_HOST, DB_PORT, DB_NAME | override the secret's (e.g. an RDS Proxy endpoint) or name the IAM target |
| DB_SSLROOTCERT | a CA bundle file instead of the shipped ones (RDS CAs + Amazon Trust Services roots) |
| SOURCES_JSON, SOURCES_FILE | sources configuration for local runs: inline JSON, or a file |
| SOURCES_PARAMETER | sources configuration: an SSM parameter name; without any of the three, the packaged one |
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
from dataclasses import replace
from importlib import resources
from pathlib import Path
from typing import Any

from ingest.errors import ConfigurationError
from ingest.sources import Source, parse_sources
from ingest.store.connection import Database, connect, connect_url, parse_url
from ingest.worker import DEFAULT_MAX_PAGE_BYTES

_SECRET_MAX_AGE_SECONDS = 300
WORKER_CONNECT_TIMEOUT_SECONDS = 10.0


def _int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if not value:
        return default
    try:
        return int(value)
    except ValueError:
        raise ConfigurationError(f"{name} must be a whole number, not {value!r}") from None


def database_connector(timeout: float | None = None) -> Callable[[], Database]:
    """A function that opens a new connection, with credentials as configured; ``timeout`` (seconds) bounds the
    connection's socket until the caller sets its own (the worker does, per message)."""
    env = os.environ
    extra: dict[str, Any] = {} if timeout is None else {"timeout": timeout}
    if env.get("DATABASE_URL"):
        url = env["DATABASE_URL"]
        if timeout is None:
            return lambda: connect_url(url)
        settings = replace(parse_url(url), timeout=timeout)
        return lambda: connect(settings)
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
                                           database=name, sslrootcert=rootcert, **extra))
            except ConfigurationError:
                # The secret may have been rotated since it was cached: fetch it afresh once.
                secret = get_secret(arn, transform="json", force_fetch=True)
                return connect(from_secret(secret, host=host, port=port if env.get("DB_PORT") else None,
                                           database=name, sslrootcert=rootcert, **extra))
        return with_secret
    if env.get("DB_IAM_USER"):
        user = env["DB_IAM_USER"]
        if not host:
            raise ConfigurationError("DB_IAM_USER needs DB_HOST (the instance or RDS Proxy endpoint)")

        def with_iam_token() -> Database:
            import boto3

            from ingest.store.credentials import for_iam

            token = boto3.client("rds").generate_db_auth_token(DBHostname=host, Port=port, DBUsername=user)
            return connect(for_iam(user, host, port, name, token, rootcert, **extra))
        return with_iam_token
    raise ConfigurationError("no database configured: set DATABASE_URL, DB_SECRET_ARN, or DB_IAM_USER with DB_HOST")


def sources() -> tuple[dict[str, Source], dict[str, str]]:
    """The sources configuration, with each source's auth secret (a JSON object of headers) merged in; and, by
    name, why a source is unavailable (its secret cannot be read or is malformed). One source's secret never
    stops the others: that source alone fails, with the reason recorded where it is used."""
    configured = _configured_sources()
    with_secrets = {name: source for name, source in configured.items() if source.auth_secret_arn}
    if not with_secrets:
        return configured, {}
    from aws_lambda_powertools.utilities.parameters import get_secret
    from aws_lambda_powertools.utilities.parameters.exceptions import GetParameterError, TransformParameterError

    unavailable: dict[str, str] = {}
    for name, source in with_secrets.items():
        try:
            headers = get_secret(source.auth_secret_arn, transform="json", max_age=_SECRET_MAX_AGE_SECONDS)
        except (GetParameterError, TransformParameterError) as error:
            unavailable[name] = (f"source {name!r}: its auth secret {source.auth_secret_arn} cannot be read "
                                 f"({str(error)[:300]}); check that the secret exists and that its ARN is in the "
                                 "stack's SourceSecretArns")
            continue
        if not isinstance(headers, dict) or not all(isinstance(value, str) for value in headers.values()):
            unavailable[name] = (f"source {name!r}: the secret {source.auth_secret_arn} must be a JSON object "
                                 "of header names and values, e.g. {\"Authorization\": \"Bearer …\"}")
            continue
        configured[name] = replace(source, headers={**source.headers, **headers})
    return configured, unavailable


def _configured_sources() -> dict[str, Source]:
    env = os.environ
    if env.get("SOURCES_JSON"):
        return parse_sources(env["SOURCES_JSON"], "SOURCES_JSON")
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
    from botocore.config import Config

    # Bounded calls: a message's S3 read must end before the invocation's deadline (the body's reads are cut
    # to the time left in ingest.storage); botocore's defaults (60 s, 5 attempts in legacy mode) are not.
    return boto3.client("s3", config=Config(connect_timeout=5, read_timeout=15,
                                            retries={"mode": "standard", "max_attempts": 2}))


def build_worker() -> Any:
    from ingest.worker import Connections, Worker

    configured, unavailable = sources()
    # A connection opened in the middle of a message must not outlast it: a connect (TCP, TLS, auth) gets
    # WORKER_CONNECT_TIMEOUT_SECONDS, then every statement the time left (Worker._on_database).
    connections = Connections(database_connector(timeout=WORKER_CONNECT_TIMEOUT_SECONDS))
    return Worker(connections, configured, fetcher=http_fetcher, s3=s3_client,
                  max_page_bytes=_int("MAX_PAGE_BYTES", DEFAULT_MAX_PAGE_BYTES),
                  strategy=write_strategy(), unavailable=unavailable,
                  compile_releases=compile_releases(), send_ahead=send_ahead())


def send_ahead() -> bool:
    """SEND_AHEAD: whether the worker puts the next page's statement on the wire before the current page's answer
    is read (README, The worker); ``false`` for a connection pooler in between that cannot take that."""
    value = (os.environ.get("SEND_AHEAD") or "true").strip().lower()
    if value not in ("true", "false"):
        raise ConfigurationError(f"SEND_AHEAD={value!r} is neither true nor false: set one of those or unset it")
    return value == "true"


def write_strategy() -> str:
    """WRITE_STRATEGY, checked: an unknown one would fail every message, so the function fails at once, saying so."""
    from ingest.store.writer import DEFAULT_STRATEGY, STRATEGIES

    value = os.environ.get("WRITE_STRATEGY") or DEFAULT_STRATEGY
    if value not in STRATEGIES:
        raise ConfigurationError(f"WRITE_STRATEGY={value!r} is not one of {', '.join(STRATEGIES)}: "
                                 "set one of those or unset it")
    return value


def compile_releases() -> str:
    """COMPILE_RELEASES: how compiled_releases is kept current (ingest.store.compiled.COMPILE_MODES). ``deferred``
    (the default, the stack's): the worker marks the ocids it changed and the compile function compiles them;
    ``inline``: the worker compiles after each page; ``off``: nothing until ``ocds-ingest compile``. "true" and
    "false" still mean inline and off."""
    from ingest.store.compiled import COMPILE_MODES, compile_mode

    value = os.environ.get("COMPILE_RELEASES") or "deferred"
    try:
        return compile_mode(value)
    except ValueError:
        raise ConfigurationError(f"COMPILE_RELEASES is {value!r}: give one of {', '.join(COMPILE_MODES)}") from None


def time_safety_margin_ms() -> int:
    return _int("TIME_SAFETY_MARGIN_MS", 20_000)


def deadline(context: Any) -> float:
    """``time.monotonic()`` by which every network call of this invocation ends: the invocation's end less
    half the safety margin (a message is started only with the whole margin left, so it gets at least half of
    it; the other half answers Lambda and saves state)."""
    import time

    return time.monotonic() + (context.get_remaining_time_in_millis() - time_safety_margin_ms() / 2) / 1000


def polite_fetcher(time_left: Callable[[], float] | None = None) -> Any:
    """The harvester's fetcher: every fetch ends within ``time_left()`` seconds, and its retries (backoff and
    Retry-After, inside the transport) are made only while one more still fits."""
    from ingest.http import Fetcher, new_polite_client
    from ingest.politeness import HARVESTER_INLINE_WAIT

    gate = politeness_gate(HARVESTER_INLINE_WAIT)
    return Fetcher(new_polite_client(user_agent(), time_left=time_left, on_wait=gate.heard),
                   max_bytes=_int("MAX_PAGE_BYTES", DEFAULT_MAX_PAGE_BYTES), time_left=time_left, gate=gate,
                   user_agent=user_agent())


def page_sender() -> Any:
    import boto3

    from ingest.harvest import PageSender

    queue_url = os.environ.get("PAGES_QUEUE_URL")
    if not queue_url:
        raise ConfigurationError("PAGES_QUEUE_URL is not set: the harvester needs the pages queue's URL")
    bucket = os.environ.get("PAGES_BUCKET")
    return PageSender(boto3.client("sqs"), queue_url, s3=boto3.client("s3") if bucket else None, bucket=bucket)

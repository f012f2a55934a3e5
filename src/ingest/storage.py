"""S3 claim checks: pages too large for an SQS message. The client is created at the edge and passed in."""

from __future__ import annotations

import time
from typing import Any

from ingest.errors import PermanentError, TransientError

_MISSING = {"NoSuchKey", "NoSuchBucket", "404", "NotFound"}
_THROTTLED = {"SlowDown", "Throttling", "ThrottlingException", "RequestTimeout", "RequestTimeTooSkewed",
              "InternalError", "ServiceUnavailable", "503", "500"}


def _translate(exc: Exception, where: str) -> Exception:
    """botocore's errors as ours: a missing object is permanent, throttling and outages transient."""
    from botocore.exceptions import BotoCoreError, ClientError

    if isinstance(exc, ClientError):
        code = str(exc.response.get("Error", {}).get("Code", ""))
        if code in _MISSING:
            return PermanentError("claim_check_missing", f"{where}: the object does not exist ({code}); the "
                                  "claim check expired or was never written")
        if code in _THROTTLED:
            return TransientError(f"{where}: S3 answered {code}; retry later")
        return TransientError(f"{where}: S3 error {code}: {exc}")
    if isinstance(exc, BotoCoreError):
        return TransientError(f"{where}: {exc}")
    return exc


_READ_BYTES = 1024 * 1024


def get_page(s3: Any, bucket: str, key: str, max_bytes: int, deadline: float | None = None) -> bytes:
    """The object's bytes, at most ``max_bytes``. With a ``deadline`` (``time.monotonic()``) the body is read
    in pieces with the socket's timeout set to the time left, and the read stops when the deadline passes (the
    request itself is bounded by the client's connect and read timeouts, set where it is created)."""
    where = f"reading s3://{bucket}/{key}"
    try:
        _check(deadline, where)
        response = s3.get_object(Bucket=bucket, Key=key)
        stream = response["Body"]
        declared = response.get("ContentLength")
        if isinstance(declared, int) and declared > max_bytes:
            stream.close()
            raise PermanentError("too_large", f"{where}: {declared} bytes, larger than the {max_bytes}-byte cap")
        body = bytearray()
        while len(body) <= max_bytes:
            if deadline is not None:
                _limit_socket(stream, _check(deadline, where))
            piece = stream.read(min(_READ_BYTES, max_bytes + 1 - len(body)))
            if not piece:
                break
            body += piece
    except PermanentError:
        raise
    except Exception as exc:
        raise _translate(exc, where) from exc
    if len(body) > max_bytes:
        raise PermanentError("too_large", f"{where}: larger than the {max_bytes}-byte cap")
    return bytes(body)


def _limit_socket(stream: Any, seconds: float) -> None:
    """The body's socket times out after ``seconds`` (botocore's own way in; responses that do not come from a
    socket, such as moto's in-process ones, have none to limit)."""
    from botocore.compat import set_socket_timeout

    try:
        set_socket_timeout(stream._raw_stream, seconds)
    except AttributeError:
        pass


def _check(deadline: float | None, where: str) -> float:
    """Seconds left before ``deadline``; raises TransientError once it has passed."""
    if deadline is None:
        return float("inf")
    left = deadline - time.monotonic()
    if left <= 0:
        raise TransientError(f"{where}: the invocation's deadline passed; retry later")
    return left


def put_page(s3: Any, bucket: str, key: str, body: bytes) -> None:
    where = f"writing s3://{bucket}/{key}"
    try:
        s3.put_object(Bucket=bucket, Key=key, Body=body, ContentType="application/json")
    except Exception as exc:
        raise _translate(exc, where) from exc

"""S3 claim checks: pages too large for an SQS message. The client is created at the edge and passed in."""

from __future__ import annotations

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


def get_page(s3: Any, bucket: str, key: str, max_bytes: int) -> bytes:
    where = f"reading s3://{bucket}/{key}"
    try:
        response = s3.get_object(Bucket=bucket, Key=key)
        body = response["Body"].read(max_bytes + 1)
    except Exception as exc:
        raise _translate(exc, where) from exc
    if len(body) > max_bytes:
        raise PermanentError("too_large", f"{where}: larger than the {max_bytes}-byte cap")
    return bytes(body)


def put_page(s3: Any, bucket: str, key: str, body: bytes) -> None:
    where = f"writing s3://{bucket}/{key}"
    try:
        s3.put_object(Bucket=bucket, Key=key, Body=body, ContentType="application/json")
    except Exception as exc:
        raise _translate(exc, where) from exc

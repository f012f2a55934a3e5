"""The SQS message contract (pure): a message body is one page, inline, by URL, or by S3 claim check.

Version 1 bodies (JSON objects):

- ``{"version": 1, "source": NAME, "page": <OCDS JSON in any shape>}`` — the page inline;
- ``{"version": 1, "source": NAME, "url": "https://…"}`` — the worker fetches the page;
- ``{"version": 1, "source": NAME, "s3": {"bucket": B, "key": K}}`` — a claim check for a page above the SQS
  size limit.

Each may carry ``"run_id"``: the harvest run that sent it, which the worker adds to its log lines.

Any other JSON body is taken as a bare OCDS document (a package pushed straight into the queue); its source is
the ``source`` message attribute, else ``unknown``. A body that cannot be a page raises ``MessageRejected``: it is
recorded in ``rejected_messages`` and acknowledged, since redelivering it would give the same answer.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from ingest.errors import PermanentError

VERSION = 1
UNKNOWN_SOURCE = "unknown"
_ENVELOPE_KEYS = {"version", "source", "page", "url", "s3", "context", "run_id"}


class MessageRejected(PermanentError):
    """Raised if a message body cannot be a page (not JSON, unknown version, missing fields)."""


@dataclass(frozen=True)
class InlinePage:
    source: str
    page: Any  # parsed JSON, or the raw text when the body could not be parsed whole (isolation happens later)
    run_id: str | None = None  # the harvest run that sent it, for the logs


@dataclass(frozen=True)
class UrlPage:
    source: str
    url: str
    run_id: str | None = None


@dataclass(frozen=True)
class S3Page:
    source: str
    bucket: str
    key: str
    run_id: str | None = None


PageRequest = InlinePage | UrlPage | S3Page


def parse(body: str, source_attribute: str | None = None) -> PageRequest:
    """The page a message asks for; raises MessageRejected saying why a body cannot be one."""
    if not body.strip():
        raise MessageRejected("empty_message", "the message body is empty")
    try:
        value = json.loads(body)
    except RecursionError:
        # Deeper than the whole-document parser goes: hand the text to the reader, which isolates the release.
        return InlinePage(source_attribute or UNKNOWN_SOURCE, body)
    except ValueError as exc:
        if body.lstrip()[:1] in ("{", "["):
            return InlinePage(source_attribute or UNKNOWN_SOURCE, body)  # the reader records what is broken
        raise MessageRejected("not_json", f"the message body is not JSON ({exc})") from None
    if not isinstance(value, dict) or "version" not in value or not set(value) <= _ENVELOPE_KEYS:
        if isinstance(value, (dict, list)):
            return InlinePage(source_attribute or UNKNOWN_SOURCE, value)
        raise MessageRejected("not_ocds", f"the message body is a JSON {type(value).__name__}, not a page")
    return _envelope(value)


def _envelope(message: dict[str, Any]) -> PageRequest:
    version = message.get("version")
    if isinstance(version, bool) or version != VERSION:  # True == 1 in Python; it is not version 1
        raise MessageRejected("unknown_version", f"message version {json.dumps(version)} is not supported "
                              f"(this worker reads version {VERSION})")
    source = message.get("source")
    if not isinstance(source, str) or not source:
        raise MessageRejected("missing_source", "a version 1 message needs a non-empty 'source'")
    given = [key for key in ("page", "url", "s3") if key in message]
    if len(given) != 1:
        raise MessageRejected("missing_page", "a version 1 message needs exactly one of 'page', 'url' or 's3'"
                              + (f" (it has {', '.join(given)})" if given else ""))
    run_id = message.get("run_id") if isinstance(message.get("run_id"), str) else None
    if "page" in message:
        return InlinePage(source, message["page"], run_id)
    if "url" in message:
        url = message["url"]
        if not isinstance(url, str) or not url.startswith(("https://", "http://")):
            raise MessageRejected("invalid_url", f"'url' must be an http(s) URL, not {json.dumps(url)[:200]}")
        return UrlPage(source, url, run_id)
    claim = message["s3"]
    if not isinstance(claim, dict) or not isinstance(claim.get("bucket"), str) or \
            not isinstance(claim.get("key"), str) or not claim["bucket"] or not claim["key"]:
        raise MessageRejected("invalid_s3", "'s3' must be {\"bucket\": …, \"key\": …} with non-empty strings")
    return S3Page(source, claim["bucket"], claim["key"], run_id)


def inline(source: str, page: Any) -> str:
    return json.dumps({"version": VERSION, "source": source, "page": page}, ensure_ascii=False,
                      separators=(",", ":"))


def inline_raw(source: str, page_text: str, run_id: str | None = None) -> str:
    """An inline message around page text that is already JSON (no re-encoding of a large page)."""
    run = f',"run_id":{json.dumps(run_id)}' if run_id else ""
    return f'{{"version":{VERSION},"source":{json.dumps(source)}{run},"page":{page_text}}}'


def by_url(source: str, url: str, run_id: str | None = None) -> str:
    return json.dumps({"version": VERSION, "source": source, "url": url, **({"run_id": run_id} if run_id else {})})


def by_claim_check(source: str, bucket: str, key: str, run_id: str | None = None) -> str:
    return json.dumps({"version": VERSION, "source": source, "s3": {"bucket": bucket, "key": key},
                       **({"run_id": run_id} if run_id else {})})


def describe(request: PageRequest) -> str:
    """A stable description of where a page came from, used as the rejection context."""
    if isinstance(request, UrlPage):
        return request.url
    if isinstance(request, S3Page):
        return f"s3://{request.bucket}/{request.key}"
    return "inline"

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

The page is never parsed here: its text goes to the reader as published, so one bad release inside an envelope
(too deep, a syntax error, a lone surrogate) is isolated exactly as it would be in a bare package. The worker asks
(``split_up_to``) for the usual page, a release package, to be split in the pass that reads the envelope: each
release's text is cut from the body as published, and the body is not scanned a second time.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import msgspec

from ingest import documents, jsontext
from ingest.errors import PermanentError

VERSION = 1
UNKNOWN_SOURCE = "unknown"
_ENVELOPE_KEYS = {"version", "source", "page", "url", "s3", "context", "run_id"}


class MessageRejected(PermanentError):
    """Raised if a message body cannot be a page (not JSON, unknown version, missing fields)."""


@dataclass(frozen=True)
class InlinePage:
    source: str
    # The page as published in the body: the reader isolates what is wrong with it. Its UTF-8 bytes when the
    # envelope parsed (the decoder cut them from the body): the reader splits those as they are, where a text
    # would be decoded from them and encoded again to split (9 µs per ~4 KB release); else the body's text.
    # Or, asked for (``parse(split_up_to=…)``), a release package already split in the pass that read the
    # envelope, as a document: a second pass over the body would cost as much again.
    page: str | bytes | documents.Document
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


class _Envelope(msgspec.Struct, forbid_unknown_fields=True):
    """A version 1 body's members, each kept as its text: the page is not parsed here (the reader isolates what
    is wrong with it, release by release)."""

    version: msgspec.Raw | msgspec.UnsetType = msgspec.UNSET
    source: msgspec.Raw | msgspec.UnsetType = msgspec.UNSET
    page: msgspec.Raw | msgspec.UnsetType = msgspec.UNSET
    url: msgspec.Raw | msgspec.UnsetType = msgspec.UNSET
    s3: msgspec.Raw | msgspec.UnsetType = msgspec.UNSET
    context: msgspec.Raw | msgspec.UnsetType = msgspec.UNSET
    run_id: msgspec.Raw | msgspec.UnsetType = msgspec.UNSET


_ENVELOPE = msgspec.json.Decoder(_Envelope | list[msgspec.Raw])


class _PackageEnvelope(_Envelope, forbid_unknown_fields=True):
    """A version 1 body around a release package, read and split in one pass."""

    page: documents.ReleasePackage | msgspec.UnsetType = msgspec.UNSET


_PACKAGE_ENVELOPE = msgspec.json.Decoder(_PackageEnvelope)


def parse(body: str, source_attribute: str | None = None, split_up_to: int | None = None) -> PageRequest:
    """The page a message asks for; raises MessageRejected saying why a body cannot be one.

    ``split_up_to``: an inline release package of up to this many bytes of releases comes already split (a
    ``documents.Document``), read in the same pass as its envelope; a larger one comes as its bytes, for the
    caller to stream.
    """
    if not body.strip():
        raise MessageRejected("empty_message", "the message body is empty")
    if split_up_to is not None:
        split = _split_package(body, split_up_to)
        if split is not None:
            return split
    bare = InlinePage(source_attribute or UNKNOWN_SOURCE, body)
    try:
        envelope = _ENVELOPE.decode(body)
    except msgspec.ValidationError:
        if body.lstrip()[:1] == "{":
            return bare  # an object with other members: a bare OCDS document
        raise MessageRejected("not_ocds", "the message body is a JSON value that is neither an object nor an "
                              "array, so it is not a page") from None
    except jsontext.PARSE_ERRORS:
        # Not JSON as a whole: perhaps one bad release inside an envelope or a package. Split it leniently.
        if body.lstrip()[:1] not in ("{", "["):
            raise MessageRejected("not_json", "the message body is not JSON (it does not start with { or [)") \
                from None
        members = documents.object_members(body, followed_takes_rest=True)
        if members is None or "version" not in members or not set(members) <= _ENVELOPE_KEYS:
            return bare  # the reader records what is broken
        return _envelope(members, body)
    if isinstance(envelope, list) or envelope.version is msgspec.UNSET:
        return bare
    return _envelope(_members(envelope), body)


def _members(envelope: _Envelope) -> dict[str, Any]:
    return {name: getattr(envelope, name) for name in _ENVELOPE_KEYS if getattr(envelope, name) is not msgspec.UNSET}


def _split_package(body: str, up_to: int) -> PageRequest | None:
    """The usual body, a valid version 1 envelope around a release package, read and split in one pass; None for
    any other body (or a larger package), which ``parse`` then reads the usual way."""
    try:
        data = body.encode()  # what msgspec reads; encoded here, it also gives the body's length in bytes
        envelope = _PACKAGE_ENVELOPE.decode(data)
    except jsontext.PARSE_ERRORS:  # (a lone surrogate: UnicodeEncodeError, a ValueError)
        return None
    if envelope.version is msgspec.UNSET or envelope.page is msgspec.UNSET:
        return None
    document = documents.from_split(envelope.page)
    if document is None or sum(map(len, envelope.page.releases)) > up_to:
        return None
    if documents.may_repeat_array(data, "releases", envelope.page.releases):
        return None  # msgspec kept only the last 'releases' of the page: the reader walks it
    return _envelope({**_members(envelope), "page": document}, body)


def _envelope(members: dict[str, Any], body: str) -> PageRequest:
    """A version 1 envelope from its members' texts."""
    version = jsontext.value_of(members["version"])
    if isinstance(version, bool) or version != VERSION:  # True == 1 in Python; it is not version 1
        raise MessageRejected("unknown_version", f"message version {jsontext.text_of(members['version'])[:40]} is "
                              f"not supported (this worker reads version {VERSION})")
    source = jsontext.value_of(members["source"]) if "source" in members else None
    if not isinstance(source, str) or not source:
        raise MessageRejected("missing_source", "a version 1 message needs a non-empty 'source'")
    if jsontext.storable_text(source) != source:
        raise MessageRejected("invalid_source", "the message's 'source' holds a NUL or a lone surrogate, which "
                              "cannot name a source")
    given = [key for key in ("page", "url", "s3") if key in members]
    if len(given) != 1:
        raise MessageRejected("missing_page", "a version 1 message needs exactly one of 'page', 'url' or 's3'"
                              + (f" (it has {', '.join(given)})" if given else ""))
    run_id = jsontext.value_of(members["run_id"]) if "run_id" in members else None
    run_id = run_id if isinstance(run_id, str) and jsontext.storable_text(run_id) == run_id else None
    if "page" in members:
        page = members["page"]
        if isinstance(page, documents.Document):
            return InlinePage(source, page, run_id)
        page = bytes(page) if isinstance(page, msgspec.Raw) else page
        # A page cut off before it began: the whole body goes to the reader, which records it as broken.
        return InlinePage(source, page if page.strip() else body, run_id)
    if "url" in members:
        url = jsontext.value_of(members["url"])
        if not isinstance(url, str) or not url.startswith(("https://", "http://")):
            raise MessageRejected("invalid_url", "'url' must be an http(s) URL, not "
                                  f"{jsontext.text_of(members['url'])[:200]}")
        return UrlPage(source, url, run_id)
    claim = jsontext.value_of(members["s3"])
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

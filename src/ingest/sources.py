"""Publisher configuration (pure): load and validate, with errors that say which source and which field.

A sources file is JSON: ``{"sources": [{"name": …, "start_url": …, …}, …]}``. The stack ships one in the
package (``ingest/data/sources.json``); an operator overrides it with a file or an SSM parameter (see README).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from ingest.errors import ConfigurationError

PAGINATION_STYLES = ("next_link", "page_number", "offset", "date_window")
_NAME = re.compile(r"[a-z0-9][a-z0-9_.-]{0,62}")


@dataclass(frozen=True)
class Source:
    """One publisher: where its API is, how it pages, and how politely to ask."""

    name: str
    start_url: str = ""
    enabled: bool = True
    pagination: str = "next_link"
    next_pointer: str = "/links/next"  # JSON pointer to the next page's URL (Armenia: /next_page/uri)
    page_parameter: str = "page"
    total_pages_pointer: str = "/pagination/total_pages"
    offset_parameter: str = "offset"
    limit_parameter: str = "limit"
    page_size_parameter: str | None = None
    page_size: int | None = None
    from_parameter: str = "from"
    until_parameter: str = "until"
    window_days: int = 1
    start_date: str | None = None
    requests_per_second: float = 2.0
    concurrency: int = 2
    headers: dict[str, str] = field(default_factory=dict)
    auth_secret_arn: str | None = None
    allowed_hosts: tuple[str, ...] = ()
    allow_private_network: bool = False
    user_agent: str | None = None  # None: ocds-ingest/VERSION and the operator's contact (USER_AGENT_CONTACT)
    overlap_minutes: int = 60

    def allows_host(self, host: str) -> bool:
        host = host.lower().rstrip(".")
        for allowed in self.allowed_hosts:
            allowed = allowed.lower()
            if host == allowed or (allowed.startswith("*.") and host.endswith(allowed[1:])):
                return True
        return False


_FIELDS = {name for name in Source.__dataclass_fields__}


def parse_source(entry: Any, where: str = "sources") -> Source:
    if not isinstance(entry, dict):
        raise ConfigurationError(f"{where}: each source must be a JSON object")
    name = entry.get("name")
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise ConfigurationError(f"{where}: 'name' must be lower-case letters, digits, '-', '_' or '.' "
                                 f"(got {json.dumps(name)})")
    here = f"{where}: source {name!r}"
    unknown = set(entry) - _FIELDS
    if unknown:
        raise ConfigurationError(f"{here}: unknown field(s) {', '.join(sorted(unknown))}; "
                                 f"known fields are {', '.join(sorted(_FIELDS))}")
    values = dict(entry)
    if values.get("pagination", "next_link") not in PAGINATION_STYLES:
        raise ConfigurationError(f"{here}: pagination must be one of {', '.join(PAGINATION_STYLES)}")
    start_url = values.get("start_url", "")
    if start_url:
        parts = urlsplit(start_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigurationError(f"{here}: start_url must be an http(s) URL, not {start_url!r}")
        hosts = values.get("allowed_hosts") or [parts.hostname]
    else:
        hosts = values.get("allowed_hosts") or []
    if not isinstance(hosts, list) or not all(isinstance(host, str) and host for host in hosts):
        raise ConfigurationError(f"{here}: allowed_hosts must be a list of host names")
    values["allowed_hosts"] = tuple(hosts)
    for flag in ("enabled", "allow_private_network"):
        if flag in values and not isinstance(values[flag], bool):
            # A quoted "false" is truthy: for allow_private_network that would switch the SSRF guard off.
            raise ConfigurationError(f"{here}: {flag} must be true or false (a JSON boolean), "
                                     f"not {json.dumps(values[flag])}")
    for number in ("requests_per_second", "concurrency", "window_days", "overlap_minutes"):
        if number in values and (not isinstance(values[number], (int, float)) or values[number] <= 0):
            raise ConfigurationError(f"{here}: {number} must be a positive number")
    if "headers" in values and not (isinstance(values["headers"], dict) and
                                    all(isinstance(v, str) for v in values["headers"].values())):
        raise ConfigurationError(f"{here}: headers must be an object of strings")
    return Source(**values)


def parse_sources(text: str, where: str = "sources") -> dict[str, Source]:
    """Parse a sources document; every error names the document and the source."""
    try:
        document = json.loads(text)
    except ValueError as exc:
        raise ConfigurationError(f"{where}: not valid JSON ({exc})") from None
    entries = document.get("sources") if isinstance(document, dict) else None
    if not isinstance(entries, list):
        raise ConfigurationError(f'{where}: expected {{"sources": [ … ]}}')
    sources: dict[str, Source] = {}
    for entry in entries:
        source = parse_source(entry, where)
        if source.name in sources:
            raise ConfigurationError(f"{where}: source {source.name!r} is defined twice")
        sources[source.name] = source
    return sources

"""Which sources a schedule event asks for (pure)."""

from __future__ import annotations

import json
from typing import Any

from ingest.errors import ConfigurationError
from ingest.sources import Source


def sources_to_harvest(event: Any, sources: dict[str, Source]) -> tuple[list[Source], tuple[str, str | None] | None]:
    """The sources an event names, and the backfill range if it gives one.

    ``{"source": NAME}`` harvests one source (``"from"``/``"until"`` make it a backfill of that range).
    EventBridge Scheduler's default input (``detail`` is the string ``"{}"``) and the classic "Scheduled Event"
    (whose ``source`` is ``aws.events``, not a publisher) harvest every enabled source.
    """
    if not isinstance(event, dict):
        raise ConfigurationError("the harvest event must be a JSON object such as {\"source\": \"name\"}")
    name = event.get("source")
    if event.get("detail-type") == "Scheduled Event" or name in ("aws.events", "aws.scheduler") or name is None:
        detail = event.get("detail", "{}")
        if isinstance(detail, str):
            try:
                detail = json.loads(detail or "{}")
            except ValueError:
                detail = {}
        if isinstance(detail, dict) and isinstance(detail.get("source"), str):
            name = detail["source"]
        else:
            return [source for source in sources.values() if source.enabled and source.start_url], None
    if not isinstance(name, str) or name not in sources:
        known = ", ".join(sorted(sources)) or "none are configured"
        raise ConfigurationError(f"the event names source {name!r}, which is not configured (known: {known})")
    since, until = event.get("from"), event.get("until")
    if until is not None and since is None:
        raise ConfigurationError("a backfill needs 'from' (and optionally 'until')")
    return [sources[name]], (str(since), str(until) if until else None) if since else None

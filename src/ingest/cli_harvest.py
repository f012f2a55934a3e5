"""``ocds-ingest harvest``: one API from the command line, through the local pipeline.

What the configuration file says with fields, the command line says with flags; this module turns one into the
other, names the source after its URL, looks at the first page before walking (to refuse a URL early, and to say
when the API seems to page in another style), and says when a walk stopped at a page that looked full.
"""

from __future__ import annotations

import argparse
import hashlib
import re
import sys
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from ingest.errors import ConfigurationError, PermanentError

STYLES = {"next-link": "next_link", "page-number": "page_number", "offset": "offset"}
_TOTAL_POINTER = {"page-number": "/pagination/total_pages", "offset": "/pagination/total_items"}
# Where publishers put the next page's URL, and the number of pages or items (Armenia, Paraguay, others).
_NEXT_POINTERS = ("/links/next", "/next_page/uri", "/next", "/pagination/next", "/links/next_page")
_TOTALS = (("/pagination/total_pages", "page-number"), ("/pagination/totalPages", "page-number"),
           ("/total_pages", "page-number"), ("/pagination/total_items", "offset"), ("/total", "offset"))
_SIZE_PARAMETERS = ("limit", "page_size", "pageSize", "per_page", "size")
USUAL_PAGE_SIZES = (10, 20, 25, 50, 100, 200, 250, 500, 1000)
# The configuration's words, as the command line says them (the messages come from code shared with Lambda).
_FLAGS = (("add it to the source's allowed_hosts", "pass --allow-host with it"),
          ("set allow_private_network", "pass --allow-private-network"),
          ("allowed_hosts", "--allow-host"), ("allow_private_network", "--allow-private-network"))


def name_for(url: str) -> str:
    """A source name from the URL's host, port and path (and a hash of its query): one API, one harvest state."""
    parts = urlsplit(url)
    host = (parts.hostname or "api").lower().removeprefix("www.")
    slug = f"{host}{f'-{parts.port}' if parts.port else ''}{parts.path}".lower()
    slug = re.sub(r"[^a-z0-9_.-]+", "-", slug).strip("-._") or "api"
    if parts.query:
        slug += "-" + hashlib.sha256(parts.query.encode()).hexdigest()[:6]
    if len(slug) > 63:
        slug = slug[:56].rstrip("-._") + "-" + hashlib.sha256(url.encode()).hexdigest()[:6]
    return slug


def for_the_command_line(text: str) -> str:
    for field, flag in _FLAGS:
        text = text.replace(field, flag)
    return text


def add_arguments(commands: Any, source_name: Callable[[str], str], positive_int: Callable[[str], int]) -> Any:
    harvest = commands.add_parser(
        "harvest", help="harvest an OCDS API into the database",
        description="Walk an OCDS API page by page with the harvest handler, queue the pages in a local SQS "
        "emulator and write them with the worker handler, as Lambda would, into DATABASE_URL or the embedded "
        "database. The harvest state (where to resume, the newest release seen) is kept per source: a walk that "
        "failed resumes at the page that failed, one stopped with Ctrl-C starts again where it started, a "
        "complete one asks next time only for what is new (--restart forgets it all). Exit 1 if the walk did "
        "not complete.")
    harvest.add_argument("--url", required=True, help="the first page, e.g. https://example.org/api/releases")
    harvest.add_argument("--source", type=source_name,
                         help="the source name stored with the releases and the harvest state (default: made from "
                         "the URL's host and path, e.g. example.org-api-releases)")
    harvest.add_argument("--paging", choices=STYLES, default="next-link",
                         help="next-link: follow a URL in each page (--next-pointer); page-number: pages 1..N, N "
                         "read from the first page (--total-pointer); offset: offset=0,K,2K.. up to a total of "
                         "items (--total-pointer). Default: next-link")
    harvest.add_argument("--next-pointer", default="/links/next", metavar="POINTER",
                         help="next-link: JSON pointer to the next page's URL (default: /links/next; Armenia: "
                         "/next_page/uri)")
    harvest.add_argument("--total-pointer", metavar="POINTER",
                         help="page-number: JSON pointer to the number of pages (default: /pagination/total_pages); "
                         "offset: to the number of items (default: /pagination/total_items)")
    harvest.add_argument("--page-parameter", default="page", metavar="NAME",
                         help="page-number: the query parameter of the page number (default: page)")
    harvest.add_argument("--offset-parameter", default="offset", metavar="NAME",
                         help="offset: the query parameter of the offset (default: offset)")
    harvest.add_argument("--limit-parameter", default="limit", metavar="NAME",
                         help="offset: the query parameter of the page size (default: limit)")
    harvest.add_argument("--page-size", type=positive_int, metavar="N",
                         help="ask for N releases per page (sent as --page-size-parameter)")
    harvest.add_argument("--page-size-parameter", metavar="NAME",
                         help="the query parameter for --page-size (default: limit; page_size with page-number)")
    harvest.add_argument("--allow-host", action="append", default=[], metavar="HOST",
                         help="another host the API's links may point to (repeatable; *.example.org allowed); "
                         "the URL's own host is always allowed")
    harvest.add_argument("--allow-private-network", action="store_true",
                         help="allow a publisher on a private or loopback address (a local test server)")
    harvest.add_argument("--restart", action="store_true",
                         help="forget where the last harvest of this source stopped and what it saw: walk from "
                         "--url's first page")
    harvest.add_argument("--verbose", action="store_true", help="show the handlers' JSON log lines")
    return harvest


def source_from(args: argparse.Namespace) -> Any:
    from ingest.sources import parse_source

    host = urlsplit(args.url).hostname
    if urlsplit(args.url).scheme not in ("http", "https") or not host:
        raise ConfigurationError(f"--url must be an http(s) URL, not {args.url!r}")
    config: dict[str, Any] = {
        "name": args.source or name_for(args.url), "start_url": args.url, "pagination": STYLES[args.paging],
        "next_pointer": args.next_pointer, "allowed_hosts": [host, *args.allow_host],
        "allow_private_network": args.allow_private_network, "page_parameter": args.page_parameter,
        "offset_parameter": args.offset_parameter, "limit_parameter": args.limit_parameter,
    }
    if args.paging in _TOTAL_POINTER:
        config["total_pages_pointer"] = args.total_pointer or _TOTAL_POINTER[args.paging]
    if args.page_size:
        config["page_size"] = args.page_size
        config["page_size_parameter"] = args.page_size_parameter or (
            "page_size" if args.paging == "page-number" else args.limit_parameter)
    return parse_source(config, "the command line")


def probe(source: Any) -> Any:
    """The first page, fetched as the harvester will: a refused or broken URL fails here, in one line."""
    from handler.environment import user_agent
    from ingest.harvest import parse_page
    from ingest.http import Fetcher, new_client

    fetcher = Fetcher(new_client(user_agent()), user_agent=user_agent())
    try:
        fetched = fetcher.get(source.start_url, source)
        return parse_page(fetched.body, source.start_url)
    except PermanentError as error:
        raise ConfigurationError(for_the_command_line(error.detail)) from None
    finally:
        fetcher.close()


def paging_hints(source: Any, page: Any) -> list[str]:
    """Warnings about the first page: the chosen style's pointer is missing and another style's is there."""
    from ingest.harvest import json_pointer

    value = page.value[0] if isinstance(page.value, list) and page.value else page.value
    hints: list[str] = []
    if source.pagination == "next_link" and not isinstance(json_pointer(value, source.next_pointer), str):
        hints += [f"has a URL at {pointer}: try --next-pointer {pointer}" for pointer in _NEXT_POINTERS
                  if pointer != source.next_pointer and isinstance(json_pointer(value, pointer), str)]
        hints += [f"has a number at {pointer}: try --paging {style}" + (
            f" --total-pointer {pointer}" if pointer != _TOTAL_POINTER[style] else "")
            for pointer, style in _TOTALS if _whole(json_pointer(value, pointer))][:1]
        if hints:
            hints = [f"the first page has no next-page URL at {source.next_pointer}, but " + hint for hint in hints]
    if source.pagination != "next_link" and not _whole(json_pointer(value, source.total_pages_pointer)):
        raise ConfigurationError(f"the first page has no whole number at {source.total_pages_pointer} to enumerate "
                                 "the pages by: pass --total-pointer with the JSON pointer to the number of "
                                 f"{'pages' if source.pagination == 'page_number' else 'items'}")
    return hints


def _whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def page_size_asked(source: Any) -> int | None:
    if source.page_size:
        return int(source.page_size)
    for key, value in parse_qsl(urlsplit(source.start_url).query):
        if key in _SIZE_PARAMETERS and value.isdigit():
            return int(value)
    return None


def stopped_full(source: Any, first: Any, result: dict[str, Any]) -> str | None:
    """A warning when a link walk ended on a page as full as a page can be: the API may have more."""
    if source.pagination != "next_link" or result["status"] != "complete" or not first.releases:
        return None
    pages, releases, size = result["pages"], result["releases"], page_size_asked(source)
    if pages == 1:
        full = first.releases >= size if size else first.releases in USUAL_PAGE_SIZES
    else:
        full = releases == pages * first.releases  # every page as full as the first, the last one too
    if not full:
        return None
    return (f"the walk stopped after {pages} page{'s' if pages > 1 else ''} and the last one looked full "
            f"({first.releases} releases): if the API has more, its pages link on in another way; see --paging "
            "and --next-pointer")


def run(args: argparse.Namespace, database_url: Callable[[], str], pipeline: Callable[..., Any],
        interrupted: Callable[[str, str], int]) -> int:
    from ingest.store import harvest_state
    from ingest.store.connection import connect_url
    from ingest.store.migrate import migrate

    source = source_from(args)
    first = probe(source)
    for hint in paging_hints(source, first):
        print(f"warning: {hint}", file=sys.stderr)
    url = database_url()
    db = connect_url(url)
    try:
        migrate(db)
        if args.restart:
            if harvest_state.forget(db, source.name):
                print(f"{source.name}: forgot the saved harvest state; walking from {source.start_url}",
                      file=sys.stderr)
        elif (state := harvest_state.load(db, source.name)).cursor:
            print(f"{source.name}: resuming where the last harvest stopped ({state.cursor}); --restart walks from "
                  "--url instead", file=sys.stderr)
        elif state.watermark is not None and source.pagination == "next_link":
            since = f"{state.watermark:%Y-%m-%d %H:%M}"
            print(f"{source.name}: asking only for releases since the last complete harvest ({since}, less "
                  f"{source.overlap_minutes} minutes); --restart walks everything", file=sys.stderr)
    finally:
        db.close()
    print(f"harvesting source {source.name}", file=sys.stderr)
    try:
        summary = pipeline([source], url, verbose=args.verbose)
    except KeyboardInterrupt:
        # The local queue died with the run, so the source's place was put back to where this run started.
        return interrupted("harvest", f"the pages written so far are committed; {source.name} resumes where this "
                           "run started: run the same command again")
    for result in summary.harvests:
        if result.get("detail"):
            result["detail"] = for_the_command_line(result["detail"])
    print(summary.text())
    for result in summary.harvests:
        if warning := stopped_full(source, first, result):
            print(f"warning: {warning}", file=sys.stderr)
    return int(summary.status)

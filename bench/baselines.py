"""What the engine is measured against: the seed's inserts, a Python COPY loader and the physical limit.

* ``seed per-row``: one INSERT ... ON CONFLICT DO UPDATE and one COMMIT per release (what the seed did);
* ``seed VALUES x100``: multi-row INSERT ... VALUES with 100 rows per statement, one transaction per page;
* ``pg8000 COPY per page``: a Python loader that encodes each page's rows as COPY text and copies them through
  pg8000, one COPY (and commit) per page, into the unindexed UNLOGGED ``raw_releases``;
* ``raw COPY (the limit)``: the same rows, encoded before the clock starts, copied into ``raw_releases`` in ONE
  COPY by psycopg and committed: what PostgreSQL takes when the client does nothing but send bytes.

The seed's tables have four columns and one index; ``raw_releases`` has the columns the engine writes (minus
those with defaults) and no index at all.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from typing import Any

from data import SOURCE

from ingest.store.connection import Database

RAW_COLUMNS = ("ocid", "release_id", "release_date", "date_text", "tag", "initiation_type", "buyer_id",
               "buyer_name", "tender_title", "tender_status", "procurement_method", "value_amount",
               "value_currency", "publisher_name", "package_uri", "ocds_version", "source", "content_hash",
               "data")
COPY_SQL = f"COPY raw_releases ({', '.join(RAW_COLUMNS)}) FROM STDIN"
Pages = Sequence[Sequence[dict[str, Any]]]


def create_tables(db: Database) -> None:
    """``seed_releases`` (the seed's table) and ``raw_releases`` (the engine's columns: no index, UNLOGGED)."""
    db.run("CREATE TABLE seed_releases (ocid text NOT NULL, release_id text NOT NULL, "
           "release_date timestamptz NOT NULL, data jsonb NOT NULL, PRIMARY KEY (ocid, release_id))", "bench")
    columns = db.run("SELECT column_name, data_type, udt_name FROM information_schema.columns "
                     "WHERE table_name = 'releases' AND column_default IS NULL ORDER BY ordinal_position", "bench")
    names = tuple(column[0] for column in columns)
    if names != RAW_COLUMNS:
        raise SystemExit(f"the releases table has changed ({names}): update bench/baselines.py's RAW_COLUMNS")
    # The data column compressed as the releases table's is (lz4 where the server has it, migration 0008): the
    # limit pays what our rows pay to be stored, no more and no less.
    lz4 = {row[0] for row in db.run("SELECT attname FROM pg_attribute WHERE attrelid = 'releases'::regclass "
                                    "AND attcompression = 'l'", "bench")}
    definitions = ", ".join(f"{column} {'text[]' if udt == '_text' else kind}"
                            f"{' COMPRESSION lz4' if column in lz4 else ''}" for column, kind, udt in columns)
    db.run(f"CREATE UNLOGGED TABLE raw_releases ({definitions})", "bench")


# --- rows ---------------------------------------------------------------------------------------------------

def _dumps(release: dict[str, Any]) -> str:
    return json.dumps(release, ensure_ascii=False, separators=(",", ":"))


def seed_values(release: dict[str, Any]) -> tuple[str, str, str, str]:
    """(ocid, release_id, release_date, data): the seed's columns, data serialised here."""
    return release["ocid"], str(release["id"]), release["date"], _dumps(release)


def _copy_escape(text: str) -> str:
    """COPY text format: backslash, tab, newline and carriage return escaped (JSON text never holds a NUL)."""
    if "\\" in text:
        text = text.replace("\\", "\\\\")
    if "\t" in text:
        text = text.replace("\t", "\\t")
    if "\n" in text:
        text = text.replace("\n", "\\n")
    if "\r" in text:
        text = text.replace("\r", "\\r")
    return text


def _copy_field(value: Any) -> str:
    if value is None:
        return "\\N"
    if isinstance(value, str):
        return _copy_escape(value)
    if isinstance(value, bool):
        return "t" if value else "f"
    return _copy_escape(str(value))


def _array_literal(values: list[str] | None) -> str | None:
    if values is None:
        return None
    return "{" + ",".join('"' + item.replace("\\", "\\\\").replace('"', '\\"') + '"' for item in values) + "}"


def _text_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def copy_line(release: dict[str, Any]) -> str:
    """One line of COPY text for ``raw_releases``: the same columns the engine writes (minus the defaults)."""
    data = _dumps(release)
    tender = release.get("tender") or {}
    value = tender.get("value") or {}
    buyer = release.get("buyer") or {}
    amount = value.get("amount")
    tag = release.get("tag")
    return "\t".join(map(_copy_field, (
        release["ocid"], str(release["id"]), release["date"], release["date"],
        _array_literal(tag if isinstance(tag, list) else None), _text_or_none(release.get("initiationType")),
        _text_or_none(buyer.get("id")), _text_or_none(buyer.get("name")), _text_or_none(tender.get("title")),
        _text_or_none(tender.get("status")), _text_or_none(tender.get("procurementMethod")),
        repr(amount) if isinstance(amount, (int, float)) else None, _text_or_none(value.get("currency")),
        None, None, None, SOURCE, "\\x" + hashlib.sha256(data.encode("utf-8")).hexdigest(), data,
    )))



def encode_copy(releases: Sequence[dict[str, Any]]) -> bytes:
    """Every release as one line of COPY text, UTF-8: the limit's input, built before its clock starts."""
    return ("\n".join(map(copy_line, releases)) + "\n").encode("utf-8")


# --- the loaders --------------------------------------------------------------------------------------------

_SEED_ROW_SQL = ("INSERT INTO seed_releases (ocid, release_id, release_date, data) "
                 "VALUES (:ocid, :release_id, :release_date, :data) "
                 "ON CONFLICT (ocid, release_id) DO UPDATE SET release_date = EXCLUDED.release_date, "
                 "data = EXCLUDED.data")


def seed_per_row(db: Database, pages: list[list[dict[str, Any]]]) -> dict[str, int]:
    run = db.connection.run
    for page in pages:
        for release in page:
            ocid, release_id, release_date, data = seed_values(release)
            run("BEGIN")
            run(_SEED_ROW_SQL, ocid=ocid, release_id=release_id, release_date=release_date, data=data)
            run("COMMIT")
    return {}


def _values_sql(rows: int) -> str:
    values = ",".join(f"(:p{4 * row},:p{4 * row + 1},:p{4 * row + 2},:p{4 * row + 3})" for row in range(rows))
    return (f"INSERT INTO seed_releases (ocid, release_id, release_date, data) VALUES {values} "
            "ON CONFLICT (ocid, release_id) DO UPDATE SET release_date = EXCLUDED.release_date, "
            "data = EXCLUDED.data")


_VALUES_SQL: dict[int, str] = {}


def seed_values_x100(db: Database, pages: list[list[dict[str, Any]]]) -> dict[str, int]:
    run = db.connection.run
    for page in pages:
        run("BEGIN")
        for start_at in range(0, len(page), 100):
            chunk = page[start_at:start_at + 100]
            params: dict[str, str] = {}
            for row, release in enumerate(chunk):
                for column, value in enumerate(seed_values(release)):
                    params[f"p{4 * row + column}"] = value
            sql = _VALUES_SQL.get(len(chunk)) or _VALUES_SQL.setdefault(len(chunk), _values_sql(len(chunk)))
            run(sql, **params)
        run("COMMIT")
    return {}


def pg8000_copy_per_page(db: Database, pages: Pages) -> dict[str, int]:
    """Each page encoded in Python, then copied through pg8000; autocommit: each COPY commits (and flushes)."""
    run = db.connection.run
    for page in pages:
        run(COPY_SQL, stream=[encode_copy(page)])
    return {}


def copy_limit(connection: Any, data: bytes, chunk: int = 1 << 20) -> None:
    """ONE COPY of ``data`` (already encoded) through a psycopg connection, then COMMIT."""
    view = memoryview(data)
    with connection.cursor() as cursor, cursor.copy(COPY_SQL) as copy:
        for start in range(0, len(view), chunk):
            copy.write(view[start:start + chunk])
    connection.commit()

"""The bulk writer: one statement per page, newest wins, bad rows isolated by bisection.

The fast path sends a page as ONE prepared statement whose single parameter is a JSON document holding every
row: PostgreSQL unpacks it with ``jsonb_to_recordset`` and writes releases, rejections and compiled releases in
data-modifying CTEs. One statement is one implicit transaction (all or nothing) and one round trip, whatever the
page size. Values only ever travel inside that parameter; nothing is formatted into SQL.

When PostgreSQL refuses a value (SQLSTATE class 22, 23, 54) the statement writes nothing; the page is then
written again inside one explicit transaction, halving the failing part under savepoints until each refused
row is alone, and those rows are quarantined with PostgreSQL's own message.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

from ingest.releases import CompiledRow, Rejection, ReleaseRow
from ingest.store.connection import Database
from ingest.store.errors import DataRefused

_RELEASE_COLUMNS = (
    # (column, recordset key, recordset type)
    ("ocid", "o", "text"),
    ("release_id", "i", "text"),
    ("release_date", "d", "timestamptz"),
    ("date_text", "dt", "text"),
    ("tag", "t", "text[]"),
    ("initiation_type", "it", "text"),
    ("buyer_id", "bi", "text"),
    ("buyer_name", "bn", "text"),
    ("tender_title", "tt", "text"),
    ("tender_status", "ts", "text"),
    ("procurement_method", "pm", "text"),
    ("value_amount", "a", "numeric"),
    ("value_currency", "c", "text"),
    ("publisher_name", "pn", "text"),
    ("package_uri", "pu", "text"),
    ("ocds_version", "v", "text"),
    ("source", "s", "text"),
    ("flags", "f", "text[]"),
    ("content_hash", "h", "text"),
    ("data", "j", "jsonb"),
)


def _upsert_sql() -> str:
    """The page statement. Built once from the column list above; it contains no values."""
    recordset = ", ".join(f"{key} {kind}" for _, key, kind in _RELEASE_COLUMNS)
    columns = ", ".join(column for column, _, _ in _RELEASE_COLUMNS)
    selected = ", ".join("decode(h, 'hex')" if key == "h" else key for _, key, _ in _RELEASE_COLUMNS)
    updates = ", ".join(f"{column} = EXCLUDED.{column}" for column, _, _ in _RELEASE_COLUMNS[2:])
    return f"""
WITH page AS (SELECT CAST(:page AS jsonb) AS doc),
written AS (
    INSERT INTO releases AS stored ({columns})
    SELECT {selected}
    FROM page, jsonb_to_recordset(page.doc->'r') AS r({recordset})
    ORDER BY o COLLATE "C", i COLLATE "C"
    ON CONFLICT (ocid, release_id) DO UPDATE SET {updates}, last_ingested_at = now()
    WHERE (stored.release_date, stored.content_hash) < (EXCLUDED.release_date, EXCLUDED.content_hash)
    RETURNING (xmax = 0) AS inserted
),
quarantined AS (
    INSERT INTO rejected_releases (source, context, position, reason, detail, ocid, release_id, raw_hash, raw_text)
    SELECT s, cx, p, r, dt, o, i, decode(h, 'hex'), x
    FROM page, jsonb_to_recordset(page.doc->'x')
        AS x(s text, cx text, p text, r text, dt text, o text, i text, h text, x text)
    ORDER BY r COLLATE "C", h COLLATE "C"
    ON CONFLICT (reason, raw_hash) DO NOTHING
    RETURNING 1
),
compiled AS (
    INSERT INTO compiled_releases AS stored (ocid, release_date, source, package_uri, content_hash, data)
    SELECT o, d, s, pu, decode(h, 'hex'), j
    FROM page, jsonb_to_recordset(page.doc->'c') AS c(o text, d timestamptz, s text, pu text, h text, j jsonb)
    ORDER BY o COLLATE "C"
    ON CONFLICT (ocid) DO UPDATE SET release_date = EXCLUDED.release_date, source = EXCLUDED.source,
        package_uri = EXCLUDED.package_uri, content_hash = EXCLUDED.content_hash, data = EXCLUDED.data,
        last_ingested_at = now()
    WHERE (coalesce(stored.release_date, '-infinity'), stored.content_hash)
        < (coalesce(EXCLUDED.release_date, '-infinity'), EXCLUDED.content_hash)
    RETURNING 1
)
SELECT (SELECT count(*) FILTER (WHERE inserted) FROM written),
       (SELECT count(*) FILTER (WHERE NOT inserted) FROM written),
       (SELECT count(*) FROM quarantined),
       (SELECT count(*) FROM compiled)
"""


UPSERT_SQL = _upsert_sql()

_dumps = json.dumps


def _release_json(row: ReleaseRow) -> str:
    # Hand-assembled because ``data_text`` is already JSON: embedding it costs a copy, not a re-encode.
    return (
        f'{{"o":{_dumps(row.ocid)},"i":{_dumps(row.release_id)},"d":"{row.release_date.isoformat()}",'
        f'"dt":{_dumps(row.date_text)},"t":{_dumps(row.tag)},"it":{_dumps(row.initiation_type)},'
        f'"bi":{_dumps(row.buyer_id)},"bn":{_dumps(row.buyer_name)},"tt":{_dumps(row.tender_title)},'
        f'"ts":{_dumps(row.tender_status)},"pm":{_dumps(row.procurement_method)},'
        f'"a":{row.value_amount or "null"},"c":{_dumps(row.value_currency)},'
        f'"pn":{_dumps(row.publisher_name)},"pu":{_dumps(row.package_uri)},"v":{_dumps(row.ocds_version)},'
        f'"s":{_dumps(row.source)},"f":{_dumps(row.flags)},"h":"{row.content_hash.hex()}","j":{row.data_text}}}'
    )


def _rejection_json(rejection: Rejection, source: str, context: str) -> str:
    return _dumps({
        "s": source, "cx": context, "p": rejection.position, "r": rejection.reason, "dt": rejection.detail,
        "o": rejection.ocid, "i": rejection.release_id, "h": rejection_hash(rejection, source, context).hex(),
        "x": rejection.raw_text,
    })


def rejection_hash(rejection: Rejection, source: str, context: str) -> bytes:
    """Identifies one rejected thing, so a replayed page does not quarantine it twice."""
    key = "\x1f".join((source, context, rejection.position, rejection.raw_text))
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).digest()


def _compiled_json(row: CompiledRow) -> str:
    date = f'"{row.release_date.isoformat()}"' if row.release_date else "null"
    return (f'{{"o":{_dumps(row.ocid)},"d":{date},"s":{_dumps(row.source)},"pu":{_dumps(row.package_uri)},'
            f'"h":"{row.content_hash.hex()}","j":{row.data_text}}}')


def page_parameter(releases: Sequence[ReleaseRow], rejections: Sequence[Rejection],
                   compiled: Sequence[CompiledRow], source: str, context: str) -> str:
    """The statement's one parameter (pure; tested without a database)."""
    return (
        '{"r":[' + ",".join(map(_release_json, releases)) + '],'
        '"x":[' + ",".join(_rejection_json(item, source, context) for item in rejections) + '],'
        '"c":[' + ",".join(map(_compiled_json, compiled)) + ']}'
    )


@dataclass
class WriteResult:
    inserted: int = 0
    updated: int = 0
    quarantined: int = 0
    compiled: int = 0
    refused: list[Rejection] | None = None


def write_page(db: Database, releases: Sequence[ReleaseRow], rejections: Sequence[Rejection],
               compiled: Sequence[CompiledRow], source: str, context: str) -> WriteResult:
    """Write one page: all of its acceptable rows commit together, or nothing does."""
    where = f"writing a page of {source} ({context})" if context else f"writing a page of {source}"
    try:
        return _run(db, page_parameter(releases, rejections, compiled, source, context), where)
    except DataRefused:
        pass
    result = WriteResult(refused=[])
    with db.transaction(where):
        good_releases = _bisect(db, list(releases), lambda part: page_parameter(part, [], [], source, context),
                                result, where)
        good_compiled = _bisect(db, list(compiled), lambda part: page_parameter([], [], part, source, context),
                                result, where)
        del good_releases, good_compiled
        assert result.refused is not None
        written = _run(db, page_parameter([], [*rejections, *result.refused], [], source, context), where)
        result.quarantined += written.quarantined
    return result


Row = TypeVar("Row", ReleaseRow, CompiledRow)


def _bisect(db: Database, rows: list[Row], parameter: Callable[[list[Row]], str], result: WriteResult,
            where: str) -> list[Row]:
    """Write ``rows`` inside the open transaction; refused rows end up in ``result.refused``."""
    if not rows:
        return rows
    db.run("SAVEPOINT bisect", where)
    try:
        written = _run(db, parameter(rows), where)
    except DataRefused as refused:
        db.run("ROLLBACK TO SAVEPOINT bisect", where)
        if len(rows) == 1:
            assert result.refused is not None
            result.refused.append(_refused_rejection(rows[0], refused))
            return []
        middle = len(rows) // 2
        return _bisect(db, rows[:middle], parameter, result, where) + \
            _bisect(db, rows[middle:], parameter, result, where)
    db.run("RELEASE SAVEPOINT bisect", where)
    result.inserted += written.inserted
    result.updated += written.updated
    result.compiled += written.compiled
    return rows


def _refused_rejection(row: ReleaseRow | CompiledRow, refused: DataRefused) -> Rejection:
    if isinstance(row, ReleaseRow):
        return Rejection("database_refused", refused.detail, row.data_text, row.position, ocid=row.ocid,
                         release_id=row.release_id)
    return Rejection("database_refused", refused.detail, row.data_text, "compiledRelease", ocid=row.ocid)


def _run(db: Database, parameter: str, where: str) -> WriteResult:
    row = db.execute(UPSERT_SQL, where, page=parameter)[0]
    return WriteResult(inserted=row[0], updated=row[1], quarantined=row[2], compiled=row[3])

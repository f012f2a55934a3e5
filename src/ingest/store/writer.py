"""The bulk writer: one statement per page, newest wins, bad rows isolated by bisection.

The fast path sends a page as ONE prepared statement: the release rows as one array parameter per column
(``unnest``, the default) or as one JSON document (``json``), and the page's rejections and compiled releases as a
small JSON parameter. PostgreSQL writes releases, rejections and compiled releases in data-modifying CTEs. One
statement is one implicit transaction (all or nothing) and one round trip, whatever the page size. Values only
ever travel as parameters (or COPY fields, for the ``copy`` strategy); nothing is formatted into SQL.

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

from ingest.releases import CompiledRow, Rejection, ReleaseRow, is_usual_utc
from ingest.store.connection import Database, Sent, Utf8Text
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


_DATA = "j"  # the data column's key: last in _RELEASE_COLUMNS
DATA_SEPARATOR = "\x1e"  # between a column's values in the unnest strategy's parameters
NULL_FIELD = "\x1f"  # a NULL among them
_SEPARATOR_UTF8 = DATA_SEPARATOR.encode("utf-8")  # a byte no multi-byte UTF-8 sequence holds
Parameters = dict[str, str | Utf8Text]  # a statement's, by placeholder name
assert _RELEASE_COLUMNS[-1][1] == _DATA

STRATEGIES = ("json", "unnest", "copy")
# unnest ties json on throughput but costs PostgreSQL less CPU (it parses each release's JSON once, and not at
# all for rows a replay skips), and the database is what many workers share; see README, Benchmark.
DEFAULT_STRATEGY = "unnest"
_STAGING = "ocds_ingest_page"


def _release_source(strategy: str) -> str:
    """Where the page's release rows come from, per strategy; the rest of the statement is shared."""
    if strategy == "json":
        recordset = ", ".join(f"{key} {kind}" for _, key, kind in _RELEASE_COLUMNS)
        return f"page, jsonb_to_recordset(page.doc->'r') AS r({recordset})"
    if strategy == "unnest":
        # One text parameter per column: the column's values joined by U+001E, NULL written as U+001F, split by
        # string_to_array. No escaping in Python and no array_in parsing every character on the server. The data
        # column is always joined: valid JSON never holds a raw U+001E (JSON allows control characters in strings
        # only escaped) and the reader stores only text it parsed. The other columns hold decoded strings, which
        # may hold either character: for such a page (and a page of one row whose value is the empty string,
        # which string_to_array turns into no element) the columns travel as array literals instead, and
        # ``:literal`` says so. Were a data text ever to hold U+001E, the split would give more pieces than rows
        # and unnest would pad the last row's key columns with NULL: the statement fails (ocid is NOT NULL, half
        # a text is not JSON), writes nothing, and bisection quarantines that release.
        arrays = ", ".join(_column_array(key, kind) for _, key, kind in _RELEASE_COLUMNS if key != _DATA)
        keys = ", ".join(key for _, key, _ in _RELEASE_COLUMNS)
        return f"unnest({arrays}, {_split(_DATA)}) AS r({keys})"
    if strategy == "copy":
        return f"{_STAGING} AS r"
    raise ValueError(f"unknown write strategy {strategy!r}; choose one of {', '.join(STRATEGIES)}")


def _split(key: str) -> str:
    return (f"string_to_array(CAST(:{key} AS text), chr({ord(DATA_SEPARATOR)}), chr({ord(NULL_FIELD)}))"
            if key != _DATA else f"string_to_array(CAST(:{key} AS text), chr({ord(DATA_SEPARATOR)}))")


def _column_array(key: str, kind: str) -> str:
    """A column's array, from its joined text or, on a page that needs it, its array literal."""
    element = "text" if kind == "text[]" else kind  # array-valued columns travel as one array literal per row
    joined = _split(key) if element == "text" else f"CAST({_split(key)} AS {element}[])"
    # The parameter is cast to text in both arms: a parameter's type is inferred from its first cast, and as
    # text[] PostgreSQL would parse the joined text as an array literal before choosing the arm.
    return f"CASE WHEN CAST(:literal AS boolean) THEN CAST(CAST(:{key} AS text) AS {element}[]) ELSE {joined} END"


def _selected(strategy: str) -> str:
    def expression(key: str, kind: str) -> str:
        if key == "h":
            return "decode(h, 'hex')"
        if strategy == "unnest" and kind in ("text[]", "jsonb"):
            return f"CAST({key} AS {kind})"
        return key
    return ", ".join(expression(key, kind) for _, key, kind in _RELEASE_COLUMNS)


def _upsert_sql(strategy: str = DEFAULT_STRATEGY, mark_pending: bool = False) -> str:
    """The page statement of a strategy. Built from the column list above; it contains no values. With
    ``mark_pending`` it also records, in the same transaction, each ocid it changed in ``compile_pending`` (for
    the compile step; see store/compiled.py)."""
    columns = ", ".join(column for column, _, _ in _RELEASE_COLUMNS)
    updates = ", ".join(f"{column} = EXCLUDED.{column}" for column, _, _ in _RELEASE_COLUMNS[2:])
    return f"""
WITH page AS (SELECT CAST(:page AS jsonb) AS doc),
written AS (
    INSERT INTO releases AS stored ({columns})
    SELECT {_selected(strategy)}
    FROM {_release_source(strategy)}
    -- Rows already stored at this version or newer are skipped before the insert: ON CONFLICT would lock
    -- (and dirty) each of them even when its WHERE refuses the update, so a replay would still write. A scalar
    -- subquery, not NOT EXISTS, which the planner made a hash anti-join reading the whole table for every page
    -- while the table was small: this one it cannot make a join, so each row is one probe of the primary key.
    WHERE (SELECT (current.release_date, current.content_hash) >= (CAST(r.d AS timestamptz), decode(r.h, 'hex'))
           FROM releases current WHERE current.ocid = r.o AND current.release_id = r.i) IS NOT TRUE
    ORDER BY o COLLATE "C", i COLLATE "C"
    ON CONFLICT (ocid, release_id) DO UPDATE SET {updates}, last_ingested_at = now()
    WHERE (stored.release_date, stored.content_hash) < (EXCLUDED.release_date, EXCLUDED.content_hash)
    RETURNING (xmax = 0) AS inserted, ocid
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
    -- The publisher's own compiledRelease (its columns only; ``data``, the merge of the releases, is compiled's).
    INSERT INTO compiled_releases AS stored (ocid, publisher_date, publisher_source, publisher_package_uri,
                                             publisher_hash, publisher_data)
    SELECT o, d, s, pu, decode(h, 'hex'), j
    FROM page, jsonb_to_recordset(page.doc->'c') AS c(o text, d timestamptz, s text, pu text, h text, j jsonb)
    ORDER BY o COLLATE "C"
    ON CONFLICT (ocid) DO UPDATE SET publisher_date = EXCLUDED.publisher_date,
        publisher_source = EXCLUDED.publisher_source, publisher_package_uri = EXCLUDED.publisher_package_uri,
        publisher_hash = EXCLUDED.publisher_hash, publisher_data = EXCLUDED.publisher_data, last_ingested_at = now()
    WHERE (coalesce(stored.publisher_date, '-infinity'), coalesce(stored.publisher_hash, ''::bytea))
        < (coalesce(EXCLUDED.publisher_date, '-infinity'), EXCLUDED.publisher_hash)
    RETURNING ocid
){_PENDING if mark_pending else ""}
SELECT (SELECT count(*) FILTER (WHERE inserted) FROM written),
       (SELECT count(*) FILTER (WHERE NOT inserted) FROM written),
       (SELECT count(*) FROM quarantined),
       (SELECT count(*) FROM compiled)
"""


# Only what this statement changed is marked (a replay marks nothing). The table has no key, so a mark never waits.
_PENDING = """,
pending AS (
    INSERT INTO compile_pending (ocid)
    SELECT ocid FROM written UNION SELECT ocid FROM compiled
)"""


def _staging_sql() -> str:
    columns = ", ".join(f"{key} {'text' if key == 'h' else kind}" for _, key, kind in _RELEASE_COLUMNS)
    return f"CREATE TEMPORARY TABLE IF NOT EXISTS {_STAGING} ({columns}) ON COMMIT DELETE ROWS"


UPSERT_SQL = {strategy: _upsert_sql(strategy) for strategy in STRATEGIES}
MARKING_UPSERT_SQL = {strategy: _upsert_sql(strategy, mark_pending=True) for strategy in STRATEGIES}

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


def array_literal(values: Sequence[str | None]) -> str:
    """A PostgreSQL array literal, escaped with C-speed string methods (pg8000 escapes arrays per character)."""
    return "{" + ",".join("NULL" if value is None else
                          '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"' for value in values) + "}"


def _list_literal(values: list[str] | None) -> str | None:
    """A list of texts (a row's tag or flags) as an array literal; the usual lists, empty or one plain word,
    without array_literal's generator (it costs a row about a microsecond each)."""
    if values is None:
        return None
    if not values:
        return "{}"
    if len(values) == 1 and '"' not in values[0] and "\\" not in values[0]:
        return '{"' + values[0] + '"}'
    return array_literal(values)


def _timestamp(row: ReleaseRow) -> str:
    """The row's instant as a parameter: its published date itself in the usual form (isoformat costs a row
    more than a microsecond), else written out."""
    return row.date_text if is_usual_utc(row.date_text) else row.release_date.isoformat()


def unnest_parameters(releases: Sequence[ReleaseRow], *, literal: bool = False) -> Parameters:
    """Each column's values joined by ``DATA_SEPARATOR`` for ``unnest`` (pure); array literals instead when a value
    makes joining ambiguous (see ``_release_source``), or when asked (the bench's A/B). The data column, most of
    the page's bytes, is joined from the texts' UTF-8 as reading kept it."""
    keys = [key for _, key, _ in _RELEASE_COLUMNS]
    columns = list(zip(*map(_column_values, releases), strict=True)) or [()] * (len(keys) - 1)
    parameters: Parameters = {"literal": "false"}
    for key, values in zip(keys[:-1], columns, strict=True):
        joined = None if literal else _joined(values)
        if joined is None:
            parameters = {key: array_literal(values) for key, values in zip(keys[:-1], columns, strict=True)}
            parameters["literal"] = "true"
            break
        parameters[key] = joined
    parameters[_DATA] = Utf8Text(_SEPARATOR_UTF8.join([row.data for row in releases]))
    return parameters


def _joined(values: Sequence[str | None]) -> str | None:
    """The values joined so that string_to_array gives them back, or None where it would not."""
    if not values:
        return ""
    nulls = values.count(None)
    joined = DATA_SEPARATOR.join([NULL_FIELD if value is None else value for value in values] if nulls else values)
    # Counted at C speed: a value holding either character, or one row of '' (string_to_array('') is no element)
    if not joined or joined.count(DATA_SEPARATOR) != len(values) - 1 or joined.count(NULL_FIELD) != nulls:
        return None
    return joined


def _column_values(row: ReleaseRow) -> tuple[str | None, ...]:
    """A row's values as text but its data, in ``_RELEASE_COLUMNS`` order (array columns as array literals)."""
    return (row.ocid, row.release_id, _timestamp(row), row.date_text, _list_literal(row.tag),
            row.initiation_type, row.buyer_id, row.buyer_name, row.tender_title, row.tender_status,
            row.procurement_method, row.value_amount, row.value_currency, row.publisher_name, row.package_uri,
            row.ocds_version, row.source, _list_literal(row.flags), row.content_hash.hex())


def _row_values(row: ReleaseRow) -> tuple[str | None, ...]:
    """A row's values as text, in ``_RELEASE_COLUMNS`` order (array columns as array literals)."""
    return (*_column_values(row), row.data_text)


def _copy_field(value: str | None) -> str:
    if value is None:
        return "\\N"
    # Chained replace() runs at C speed; the JSON text itself holds no raw tabs or newlines, only backslashes.
    return value.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")


def copy_text(releases: Sequence[ReleaseRow]) -> bytes:
    """The rows in COPY text format (pure): tab-separated, backslash escapes, \\N for NULL."""
    lines = ["\t".join(map(_copy_field, _row_values(row))) for row in releases]
    return ("\n".join(lines) + "\n").encode("utf-8") if lines else b""


@dataclass
class WriteResult:
    inserted: int = 0
    updated: int = 0
    quarantined: int = 0
    compiled: int = 0
    refused: list[Rejection] | None = None


def statement_parameters(strategy: str, releases: Sequence[ReleaseRow], rejections: Sequence[Rejection],
                         compiled: Sequence[CompiledRow], source: str, context: str) -> Parameters:
    """The page statement's parameters (pure): the CPU half of a write, which can run while another page's
    statement is on the server. (``copy`` builds its COPY data at write time.)"""
    if strategy == "json":
        return {"page": page_parameter(releases, rejections, compiled, source, context)}
    page = page_parameter([], rejections, compiled, source, context)
    if strategy == "unnest":
        return {"page": page, **unnest_parameters(releases)}
    return {"page": page}


SENDABLE_STRATEGIES = ("json", "unnest")  # one statement a page, which Database.send can put on the wire ahead


def _where(source: str, context: str) -> str:
    return f"writing a page of {source} ({context})" if context else f"writing a page of {source}"


def send_page(db: Database, source: str, context: str, strategy: str, parameters: Parameters,
              mark_pending: bool = False) -> Sent:
    """Put a page's statement (its ``statement_parameters``) on the wire without waiting for its answer;
    ``write_page(..., sent=)`` reads the answer and does what a refusal asks."""
    if strategy not in SENDABLE_STRATEGIES:
        raise ValueError(f"the {strategy} strategy writes a page in more than one statement; it cannot be sent ahead")
    return db.send(_page_sql(strategy, mark_pending), _where(source, context), **parameters)


def _page_sql(strategy: str, mark_pending: bool) -> str:
    return (MARKING_UPSERT_SQL if mark_pending else UPSERT_SQL)[strategy]


def write_page(db: Database, releases: Sequence[ReleaseRow], rejections: Sequence[Rejection],
               compiled: Sequence[CompiledRow], source: str, context: str,
               strategy: str = DEFAULT_STRATEGY, parameters: Parameters | None = None,
               mark_pending: bool = False, sent: Sent | None = None) -> WriteResult:
    """Write one page: all of its acceptable rows commit together, or nothing does. ``parameters`` are the
    page's ``statement_parameters`` when they were built ahead; ``mark_pending`` records the ocids it changed
    for the compile step, in the same transaction; ``sent`` is the page's statement if ``send_page`` already
    put it on the wire."""
    writer = _Writer(db, strategy, source, context, _where(source, context), mark_pending)
    try:
        if sent is not None:
            return writer.result(db.receive(sent))
        return writer.attempt(releases, rejections, compiled, parameters)
    except DataRefused:
        pass
    result = WriteResult(refused=[])
    with db.transaction(writer.where):
        writer.in_transaction = True
        writer.bisect(list(releases), lambda part: writer.attempt(part, [], []), result)
        writer.bisect(list(compiled), lambda part: writer.attempt([], [], part), result)
        assert result.refused is not None
        result.quarantined += writer.attempt([], [*rejections, *result.refused], []).quarantined
    return result


Row = TypeVar("Row", ReleaseRow, CompiledRow)


class _Writer:
    def __init__(self, db: Database, strategy: str, source: str, context: str, where: str,
                 mark_pending: bool = False) -> None:
        if strategy not in STRATEGIES:
            raise ValueError(f"unknown write strategy {strategy!r}; choose one of {', '.join(STRATEGIES)}")
        self.db, self.strategy, self.source, self.context, self.where = db, strategy, source, context, where
        self.mark_pending = mark_pending
        self.in_transaction = False

    def attempt(self, releases: Sequence[ReleaseRow], rejections: Sequence[Rejection],
                compiled: Sequence[CompiledRow], parameters: Parameters | None = None) -> WriteResult:
        """One statement (json, unnest) or one staged COPY (copy) for these rows."""
        sql = _page_sql(self.strategy, self.mark_pending)
        if parameters is None:
            parameters = statement_parameters(self.strategy, releases, rejections, compiled, self.source,
                                              self.context)
        if self.strategy != "copy":
            return self.result(self.db.execute(sql, self.where, **parameters))
        if self.in_transaction:
            return self._copy_and_upsert(sql, releases, parameters["page"])
        with self.db.transaction(self.where):
            return self._copy_and_upsert(sql, releases, parameters["page"])

    def _copy_and_upsert(self, sql: str, releases: Sequence[ReleaseRow], page: str) -> WriteResult:
        self.db.run(f"{_staging_sql()}; TRUNCATE {_STAGING}", self.where)
        columns = ", ".join(key for _, key, _ in _RELEASE_COLUMNS)
        self.db.copy_in(f"COPY {_STAGING} ({columns}) FROM STDIN", copy_text(releases), self.where)
        return self.result(self.db.execute(sql, self.where, page=page))

    @staticmethod
    def result(rows: list[list[int]]) -> WriteResult:
        """What the page statement's one row of counts says."""
        row = rows[0]
        return WriteResult(inserted=row[0], updated=row[1], quarantined=row[2], compiled=row[3])

    def bisect(self, rows: list[Row], attempt: Callable[[list[Row]], WriteResult], result: WriteResult) -> None:
        """Write ``rows`` inside the open transaction; refused rows end up in ``result.refused``."""
        if not rows:
            return
        self.db.run("SAVEPOINT bisect", self.where)
        try:
            written = attempt(rows)
        except DataRefused as refused:
            self.db.run("ROLLBACK TO SAVEPOINT bisect", self.where)
            if len(rows) == 1:
                assert result.refused is not None
                result.refused.append(_refused_rejection(rows[0], refused))
                return
            middle = len(rows) // 2
            self.bisect(rows[:middle], attempt, result)
            self.bisect(rows[middle:], attempt, result)
            return
        self.db.run("RELEASE SAVEPOINT bisect", self.where)
        result.inserted += written.inserted
        result.updated += written.updated
        result.compiled += written.compiled


def _refused_rejection(row: ReleaseRow | CompiledRow, refused: DataRefused) -> Rejection:
    if isinstance(row, ReleaseRow):
        return Rejection("database_refused", refused.detail, row.published or row.data_text, row.position,
                         ocid=row.ocid, release_id=row.release_id)
    return Rejection("database_refused", refused.detail, row.data_text, "compiledRelease", ocid=row.ocid)

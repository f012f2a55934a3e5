"""Keeping ``compiled_releases`` current: lock the ocids, read their releases, merge, upsert (the SQL of it).

Three modes (``COMPILE_MODES``; the worker's COMPILE_RELEASES):
- ``deferred`` (the stack's): the page statement records the ocids it changed in ``compile_pending``, in the same
  transaction; the compile step (``compile_pending``: the scheduled compile function, ``ocds-ingest compile
  --pending``) claims those marks with FOR UPDATE SKIP LOCKED, compiles their ocids and deletes the marks in one
  transaction. The worker's time per page is then the write alone; many compile steps can run at once.
- ``inline``: after a page's rows are written (``pages.write_prepared``), every ocid the page touched is compiled
  in its own transaction.
- ``off``: nothing (``ocds-ingest compile`` re-compiles everything later).

Lock order and why nothing is lost. Each batch of ocids takes one transaction-level advisory lock per ocid, in
ascending key order, in one statement, before it reads anything; only then does it read (a later statement, so a
fresh READ COMMITTED snapshot). Every compile of an ocid starts after the write that changed it has committed
(inline: the writer compiles after its commit; deferred: the mark becomes visible with the write's commit), so the
last compile of an ocid to take the lock sees every release written before it: whatever the interleaving, the table
ends equal to compiling all stored releases from scratch. Locks in one global order cannot deadlock; the rows of
``compiled_releases`` are upserted in ocid order, the same order as the writer's publisher upsert.

Incremental where it is safe. ``inputs_hash`` is the sha256 of the merged (release id, content hash) pairs in merge
order. If the stored hash is the hash of the first ``release_count`` releases in today's order, the stored
compiled release is exactly their merge, and only the newer releases are read and merged onto it; otherwise every
release of the ocid is read and merged. Equal hash and count: nothing to do (a replayed page costs two reads).
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from ingest.compile import (
    MergeFailed,
    NotIncremental,
    compile_releases,
    dumps,
    extract,
    loads,
    merge_rules,
    ocid_schema_version,
)
from ingest.store.connection import Database
from ingest.store.writer import array_literal

# Ocids per transaction: bounds the locks held, the memory of one batch and the size of the upsert.
BATCH_OCIDS = 250

COMPILE_MODES = ("deferred", "inline", "off")
# The spellings of the boolean setting it replaces.
_BOOLEAN = {"true": "inline", "1": "inline", "yes": "inline", "on": "inline", "false": "off", "0": "off", "no": "off"}


def compile_mode(value: bool | str) -> str:
    """One of ``COMPILE_MODES``; True and False (and their spellings) are ``inline`` and ``off``, as before."""
    if isinstance(value, bool):
        return "inline" if value else "off"
    word = value.strip().lower()
    mode = word if word in COMPILE_MODES else _BOOLEAN.get(word)
    if mode is None:
        raise ValueError(f"compiling {value!r}: give one of {', '.join(COMPILE_MODES)}")
    return mode


_LOCK = "SELECT count(pg_advisory_xact_lock(key)) FROM unnest(CAST(:keys AS bigint[])) AS key"
_STATES = """
SELECT ocid, compiled_from, release_count, inputs_hash, ocds_version, publisher_hash, publisher_data IS NOT NULL,
       data IS NOT NULL
FROM compiled_releases WHERE ocid = ANY(CAST(:ocids AS text[]))"""
# release_date travels as microseconds since 1970 (same order; pg8000 parses timestamptz with strptime, which
# costs more than the rest of reading an ocid's thousand keys).
_MICROS = "CAST(extract(epoch FROM {}) * 1000000 AS bigint)"
_KEYS = f"""
SELECT ocid, release_id, {_MICROS.format("release_date")}, content_hash, ocds_version, source, date_text
FROM releases WHERE ocid = ANY(CAST(:ocids AS text[]))"""
_RELEASES = f"""
SELECT r.ocid, r.release_id, {_MICROS.format("r.release_date")}, r.content_hash, r.ocds_version, r.source,
       r.date_text, r.data::text
FROM releases r JOIN unnest(CAST(:ocids AS text[]), CAST(:ids AS text[])) AS k(ocid, id)
  ON r.ocid = k.ocid AND r.release_id = k.id"""
# A claim: the oldest marks, skipping those another compile step holds, deleted by the transaction that compiles
# them (a failed compile rolls back, and the marks are there again).
_CLAIM = """
DELETE FROM compile_pending WHERE ctid = ANY(ARRAY(
    SELECT ctid FROM compile_pending ORDER BY marked_at LIMIT :limit FOR UPDATE SKIP LOCKED))
RETURNING ocid"""
# Counted up to a bound: a metric every minute must not scan a backlog of millions.
BACKLOG_COUNT_LIMIT = 1_000_000
_BACKLOG = f"""
SELECT (SELECT count(*) FROM (SELECT FROM compile_pending LIMIT {BACKLOG_COUNT_LIMIT}) AS marks),
       CAST(extract(epoch FROM now() - (SELECT min(marked_at) FROM compile_pending)) AS float8)"""
_COMPILED_DATA = "SELECT ocid, data::text FROM compiled_releases WHERE ocid = ANY(CAST(:ocids AS text[]))"
_PUBLISHER_DATA = """
SELECT ocid, publisher_hash, publisher_source, publisher_data::text
FROM compiled_releases WHERE ocid = ANY(CAST(:ocids AS text[]))"""

_EXTRACTED = (("initiation_type", "text"), ("buyer_id", "text"), ("buyer_name", "text"), ("tender_id", "text"),
              ("tender_title", "text"), ("tender_status", "text"), ("procurement_method", "text"),
              ("value_amount", "numeric"), ("value_currency", "text"), ("awards_count", "integer"),
              ("awards_amount", "numeric"), ("awards_currency", "text"), ("contracts_count", "integer"),
              ("contracts_amount", "numeric"), ("contracts_currency", "text"))
_COLUMNS = (("data", "jsonb"), ("compiled_from", "text"), ("release_count", "integer"),
            ("release_date", "timestamptz"), ("date_text", "text"), ("inputs_hash", "text"),
            ("ocds_version", "text"), ("source", "text"), ("compile_error", "text"), *_EXTRACTED)


def _upsert_sql() -> str:
    names = ", ".join(name for name, _ in _COLUMNS)
    recordset = ", ".join(f"{name} {'text' if name == 'inputs_hash' else kind}" for name, kind in _COLUMNS)
    selected = ", ".join("decode(inputs_hash, 'hex')" if name == "inputs_hash" else name for name, _ in _COLUMNS)
    updates = ", ".join(f"{name} = EXCLUDED.{name}" for name, _ in _COLUMNS)
    return f"""
INSERT INTO compiled_releases AS stored (ocid, {names}, compiled_at)
SELECT ocid, {selected}, now()
FROM jsonb_to_recordset(CAST(:rows AS jsonb)) AS c(ocid text, {recordset})
ORDER BY ocid COLLATE "C"
ON CONFLICT (ocid) DO UPDATE SET {updates}, compiled_at = now()"""


_UPSERT = _upsert_sql()


def lock_key(ocid: str) -> int:
    """A stable 64-bit advisory-lock key for an ocid (hashtext() is not guaranteed stable across versions)."""
    return int.from_bytes(hashlib.sha256(f"ocds-ingest compile {ocid}".encode()).digest()[:8], "big", signed=True)


@dataclass
class CompileResult:
    """What compiling some ocids did."""

    compiled: int = 0      # rows written
    incremental: int = 0   # ... of which merged onto the stored compiled release
    unchanged: int = 0     # ocids whose stored compiled release was already current
    merges: int = 0        # releases merged
    claimed: int = 0       # marks of compile_pending taken (compile_pending only)

    def __iadd__(self, other: CompileResult) -> CompileResult:
        for name in ("compiled", "incremental", "unchanged", "merges", "claimed"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        return self


@dataclass(frozen=True, slots=True)
class _Key:
    release_id: str
    release_date: int  # microseconds since 1970
    content_hash: bytes
    ocds_version: str | None
    source: str
    date_text: str

    @property
    def order(self) -> tuple[int, str, bytes]:
        """The merge order: date, then release id and content hash, so equal dates never depend on arrival."""
        return (self.release_date, self.release_id, self.content_hash)


def _entry(release_id: str, content_hash: bytes) -> bytes:
    return f"{release_id}\x1f{content_hash.hex()}\n".encode("utf-8", "surrogatepass")


def inputs_hash(keys: Iterable[tuple[str, bytes]]) -> bytes:
    digest = hashlib.sha256()
    for release_id, content_hash in keys:
        digest.update(_entry(release_id, content_hash))
    return digest.digest()


@dataclass
class _Plan:
    ocid: str
    version: str
    keys: list[_Key]
    onto: int = 0  # how many releases the stored compiled release already holds (incremental), else 0
    rows: list[dict[str, Any]] = field(default_factory=list)


Known = dict[tuple[str, str], tuple[bytes, Any]]


def compile_ocids(db: Database, ocids: Iterable[str], *, force: bool = False, known: Known | None = None
                  ) -> CompileResult:
    """Bring the compiled releases of ``ocids`` up to date; ``force`` re-merges each from scratch (after an
    upgrade of the rules). ``known`` maps (ocid, release id) to (content hash, the release parsed exactly) of releases
    the caller has at hand (the page just written): a stored release with that hash is not read back."""
    result = CompileResult()
    ordered = sorted(set(ocids))
    for start in range(0, len(ordered), BATCH_OCIDS):
        batch = ordered[start:start + BATCH_OCIDS]
        with db.transaction(f"compiling {len(batch)} contracting processes"):
            result += _compile_batch(db, batch, force, known or {})
    return result


def compile_pending(db: Database, *, seconds_left: Callable[[], float] | None = None,
                    margin_seconds: float = 0.0, batch: int = BATCH_OCIDS) -> CompileResult:
    """The compile step: claim marks of ``compile_pending`` and compile their ocids, one transaction per claim of
    ``batch`` marks, until none is left or ``seconds_left()`` falls under ``margin_seconds``."""
    result = CompileResult()
    while seconds_left is None or seconds_left() > margin_seconds:
        with db.transaction("compiling the pending contracting processes"):
            claimed = [row[0] for row in db.execute(_CLAIM, "claiming contracting processes to compile",
                                                    limit=batch)]
            if not claimed:
                break
            result.claimed += len(claimed)
            result += _compile_batch(db, sorted(set(claimed)), False, {})
    return result


@dataclass
class Backlog:
    """What the compile step has still to do: marks waiting (at most ``BACKLOG_COUNT_LIMIT``), and the age of the
    oldest (seconds; 0 if none)."""

    marks: int
    oldest_seconds: float


def backlog(db: Database) -> Backlog:
    marks, oldest = db.execute(_BACKLOG, "measuring the compile backlog")[0]
    return Backlog(marks, oldest or 0.0)


def _compile_batch(db: Database, ocids: list[str], force: bool, known: Known) -> CompileResult:
    where = f"compiling {len(ocids)} contracting processes"
    db.execute(_LOCK, where, keys=_bigint_array(sorted({lock_key(ocid) for ocid in ocids})))
    listed = array_literal(ocids)
    states = {row[0]: row for row in db.execute(_STATES, where, ocids=listed)}
    keys: dict[str, list[_Key]] = defaultdict(list)
    for ocid, release_id, release_date, content_hash, version, source, date_text in db.execute(
            _KEYS, where, ocids=listed):
        keys[ocid].append(_Key(release_id, release_date, bytes(content_hash), version, source, date_text))

    result = CompileResult()
    plans: list[_Plan] = []
    publisher_only: list[str] = []
    for ocid in ocids:
        state = states.get(ocid)
        if ocid not in keys:
            # No releases of its own: the publisher's compiledRelease, if any, is the current state.
            if state is not None and state[6] and (force or state[1] != "publisher" or state[3] != state[5]):
                publisher_only.append(ocid)
            elif state is not None and state[6]:
                result.unchanged += 1
            continue
        plan = _plan(ocid, sorted(keys[ocid], key=lambda key: key.order), state, force)
        if plan is None:
            result.unchanged += 1
        else:
            plans.append(plan)

    rows = _merged_rows(db, plans, where, result, known) + _publisher_rows(db, publisher_only, where)
    if rows:
        db.execute(_UPSERT, where, rows="[" + ",".join(rows) + "]")
    result.compiled += len(rows)
    return result


def _plan(ocid: str, ordered: list[_Key], state: Sequence[Any] | None, force: bool) -> _Plan | None:
    """None if the stored compiled release is current; else what to merge."""
    version = ocid_schema_version(key.ocds_version for key in ordered)
    plan = _Plan(ocid, version, ordered)
    if force or state is None or state[1] != "releases" or state[4] != version or state[3] is None:
        return plan
    stored_count, stored_hash = state[2], bytes(state[3])
    if stored_count > len(ordered):
        return plan
    prefix = hashlib.sha256()
    for key in ordered[:stored_count]:
        prefix.update(_entry(key.release_id, key.content_hash))
    if prefix.digest() != stored_hash:
        return plan
    if stored_count == len(ordered):
        return None
    # A merge refused before (state[7]: no data) left nothing to merge onto: all of them again.
    plan.onto = stored_count if state[7] else 0
    return plan


def _merged_rows(db: Database, plans: list[_Plan], where: str, result: CompileResult, known: Known) -> list[str]:
    if not plans:
        return []
    fetched: dict[tuple[str, str], Sequence[Any]] = {}
    wanted = []
    for plan in plans:
        for key in plan.keys[plan.onto:]:
            at_hand = known.get((plan.ocid, key.release_id))
            if at_hand is not None and at_hand[0] == key.content_hash:
                fetched[(plan.ocid, key.release_id)] = (plan.ocid, key.release_id, key.release_date,
                                                        key.content_hash, key.ocds_version, key.source,
                                                        key.date_text, at_hand[1])
            else:
                wanted.append((plan.ocid, key.release_id))
    if wanted:
        for row in db.execute(_RELEASES, where, ocids=array_literal([o for o, _ in wanted]),
                              ids=array_literal([i for _, i in wanted])):
            fetched[(row[0], row[1])] = row
    incremental = [plan.ocid for plan in plans if plan.onto]
    stored = dict(db.execute(_COMPILED_DATA, where, ocids=array_literal(incremental))) if incremental else {}

    rows = []
    for plan in plans:
        # The releases as read now (a concurrent writer may have replaced one since the keys were read: then
        # its own compile, which waits for this lock, re-merges), in merge order.
        tail = sorted((fetched[(plan.ocid, key.release_id)] for key in plan.keys[plan.onto:]
                       if (plan.ocid, key.release_id) in fetched), key=_row_order)
        # compiled_from = 'releases' (checked by _plan) means data was written with inputs_hash.
        onto = loads(stored[plan.ocid]) if plan.onto else None
        head = plan.keys[:plan.onto]
        try:
            compiled, error = _merge(tail, plan.version, onto)
        except NotIncremental:
            # Merging onto the stored compiled release might differ from merging all: all of them, then.
            tail = sorted(db.execute(_RELEASES, where, ocids=array_literal([plan.ocid] * len(plan.keys)),
                                     ids=array_literal([key.release_id for key in plan.keys])), key=_row_order)
            onto, head = None, []
            compiled, error = _merge(tail, plan.version, None)
        result.merges += len(tail)
        result.incremental += onto is not None
        merged = [(key.release_id, key.content_hash) for key in head] + [(row[1], bytes(row[3])) for row in tail]
        last = tail[-1] if tail else None
        rows.append(_row_json(plan.ocid, compiled, "releases", len(merged), inputs_hash(merged), plan.version,
                              last[2] if last else None, last[6] if last else None, last[5] if last else None,
                              error=error))
    return rows


def _merge(tail: list[Any], version: str, onto: dict[str, Any] | None) -> tuple[dict[str, Any] | None, str | None]:
    """The compiled release of ``tail`` (rows in merge order) onto ``onto``, or None and why the merge refused."""
    try:
        # A release of the page just written comes parsed already (``known``); one read back is JSON text.
        return compile_releases([loads(row[7]) if isinstance(row[7], str) else row[7] for row in tail],
                                merge_rules(version), onto=onto), None
    except MergeFailed as failed:
        # Recorded with the inputs' hash: the same releases fail the same way, so this is not retried until they
        # change, and the page goes on.
        return None, str(failed)


def _row_order(row: Any) -> tuple[int, str, bytes]:
    return (row[2], row[1], bytes(row[3]))


def _publisher_rows(db: Database, ocids: list[str], where: str) -> list[str]:
    if not ocids:
        return []
    rows = []
    for ocid, publisher_hash, source, text in db.execute(_PUBLISHER_DATA, where, ocids=array_literal(ocids)):
        if text is None:
            continue
        compiled = loads(text)
        date = compiled.get("date") if isinstance(compiled.get("date"), str) else None
        rows.append(_row_json(ocid, compiled, "publisher", 0, bytes(publisher_hash), None, None, date, source,
                              data_text=text))
    return rows


def _row_json(ocid: str, compiled: dict[str, Any] | None, compiled_from: str, count: int, hashed: bytes,
              version: str | None, release_micros: int | None, date_text: str | None, source: str | None,
              data_text: str | None = None, error: str | None = None) -> str:
    """One row of the upsert's JSON parameter; the compiled release and every number go in as exact text."""
    extracted = dumps(extract(compiled)) if compiled is not None else "{}"
    data = data_text if data_text is not None else dumps(compiled)
    return (f'{{"ocid":{dumps(ocid)},"data":{data},"compiled_from":"{compiled_from}","release_count":{count},'
            f'"release_date":{_iso(release_micros)},'
            f'"date_text":{dumps(date_text)},"inputs_hash":"{hashed.hex()}","ocds_version":{dumps(version)},'
            f'"source":{dumps(source)},"compile_error":{dumps(error)}{"," if compiled is not None else ""}'
            f'{extracted[1:]}')


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _iso(micros: int | None) -> str:
    return "null" if micros is None else f'"{(_EPOCH + timedelta(microseconds=micros)).isoformat()}"'


def _bigint_array(values: Sequence[int]) -> str:
    return "{" + ",".join(map(str, values)) + "}"


def ocids_to_compile(db: Database, source: str | None = None) -> list[str]:
    """Every ocid with releases or a publisher's compiled release (of one source, if given)."""
    if source is None:
        sql = "SELECT DISTINCT ocid FROM releases UNION SELECT ocid FROM compiled_releases"
        return [row[0] for row in db.execute(sql, "listing the contracting processes")]
    sql = ("SELECT DISTINCT ocid FROM releases WHERE source = :source "
           "UNION SELECT ocid FROM compiled_releases WHERE publisher_source = :source")
    return [row[0] for row in db.execute(sql, "listing the contracting processes", source=source)]


def stored_releases(db: Database, ocid: str) -> tuple[str, list[dict[str, Any]]]:
    """The merge rules' version and every release of one ocid, parsed exactly, in merge order."""
    rows = db.execute("SELECT release_id, release_date, content_hash, ocds_version, data::text FROM releases "
                      "WHERE ocid = :ocid", f"reading the releases of {ocid}", ocid=ocid)
    rows.sort(key=lambda row: (row[1], row[0], bytes(row[2])))
    return ocid_schema_version(row[3] for row in rows), [loads(row[4]) for row in rows]

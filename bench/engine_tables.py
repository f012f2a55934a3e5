"""The engine (``save_page``) against the baselines, per release size: one table of rates and one of CPU.

Every strategy loads the same release dicts into an empty table, timed from the dicts to committed rows
(serialisation included), through the latency proxy (a process of its own) at 0, 1 and 5 ms of round-trip
latency (5 ms: the chart's strategies only). The engine runs with compiling off: the write path alone
(compiling's cost per page is bench/compile_bench.py's).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import baselines
from data import SOURCE, json_size, paginate
from measure import ONE_MS, Bench, Body, NullDatabase, Run, best_of, progress

from ingest.pages import PageResult, save_page
from ingest.store import writer
from ingest.store.connection import Database

DEFAULT_STRATEGY: str = getattr(writer, "DEFAULT_STRATEGY", "json")
STRATEGIES: tuple[str, ...] = tuple(getattr(writer, "STRATEGIES", (DEFAULT_STRATEGY,)))
ENGINE = "engine (save_page)"
PER_ROW = "seed per-row"
VALUES = "seed VALUES x100"
PG8000_COPY = "pg8000 COPY per page"
FIVE_MS = 0.005


def _save(db: Database, page: list[dict[str, Any]], strategy: str) -> PageResult:
    return save_page(db, page, SOURCE, strategy=strategy, compile_releases=False)


def engine_prepare(db: Database, strategy: str = DEFAULT_STRATEGY) -> None:
    """An empty page: prepares the page statement (once per connection, like a warm worker), writes nothing."""
    _save(db, [], strategy)


def engine(db: Database, pages: list[list[dict[str, Any]]], strategy: str = DEFAULT_STRATEGY) -> dict[str, int]:
    total = PageResult()
    for page in pages:
        total += _save(db, page, strategy)
    return {"inserted": total.inserted, "updated": total.updated, "unchanged": total.unchanged,
            "rejected": total.rejected_total, "round_trips": total.round_trips, "pages": total.pages}


def engine_with(strategy: str) -> tuple[Body, Callable[[Database], None]]:
    """The body and the warm-up of the engine with a given write strategy."""
    return (lambda db, pages: engine(db, pages, strategy)), (lambda db: engine_prepare(db, strategy))


def bench_size(bench: Bench, label: str, key: str, releases: list[dict[str, Any]], page_size: int,
               args: Any) -> dict[str, Any]:
    database = f"bench_{key}"
    bench.create_database(database)
    sizes = list(map(json_size, releases))
    mean = round(sum(sizes) / len(releases))
    pages = paginate(releases, page_size)
    encoded = baselines.encode_copy(releases)
    info: dict[str, Any] = {"releases": len(releases), "mean_bytes": mean, "page_size": page_size,
                            "pages": len(pages), "repeat": args.repeat}
    progress(f"[{label}] {len(releases):,} releases, mean {mean:,} B (compact UTF-8 JSON), min {min(sizes):,} B, "
             f"max {max(sizes):,} B; {len(pages)} pages of {page_size}")
    runs: list[Run] = []
    common = {"size": label, "database": database, "page_size": page_size, "mean_bytes": mean}

    def best(**measure: Any) -> Run:
        return best_of([bench.measure(**measure, **common) for _ in range(max(1, args.repeat))])

    def record(run: Run) -> Run:
        runs.append(run)
        wire = "" if run.wire_per_page is None else f", {run.wire_per_page:,.2f} RT/page on the wire"
        own = "" if run.self_per_page is None else f" ({run.self_per_page:,.2f} self-counted)"
        where = "direct" if run.direct else f"{run.delay_ms:g} ms"
        progress(f"[{label}] {run.strategy} @ {where}: {run.releases:,} releases in {run.seconds:.2f} s = "
                 f"{run.rate:,.0f} rel/s, {run.mb_per_second:.1f} MB/s{wire}{own}")
        return run

    def checked(run: Run, count: str) -> Run:
        if run.counts.get(count) != len(releases):
            raise SystemExit(f"{run.strategy}: {run.counts}, expected {len(releases)} {count}")
        return run

    per_row_limits = {0.0: args.per_row, ONE_MS: args.per_row_1ms, FIVE_MS: args.per_row_5ms}
    for delay in (0.0, ONE_MS, FIVE_MS):
        if per_row_limits[delay] > 0:  # slow and far behind: measured once, on fewer releases
            record(bench.measure(strategy=PER_ROW, table="seed_releases", delay=delay, body=baselines.seed_per_row,
                                 pages=paginate(releases[:per_row_limits[delay]], page_size), **common))
        record(best(strategy=VALUES, table="seed_releases", delay=delay, pages=pages,
                    body=baselines.seed_values_x100))
        checked(record(best(strategy=ENGINE, table="releases", delay=delay, pages=pages, body=engine,
                            prepare=engine_prepare)), "inserted")
        if delay == 0:
            # Right after an engine run: the table holds every release already.
            checked(record(best(strategy="engine, replay (unchanged)", table="releases", delay=delay, pages=pages,
                                body=engine, prepare=engine_prepare, truncate=False)), "unchanged")
        if delay != FIVE_MS:
            for strategy in args.strategies:
                body, prepare = engine_with(strategy)
                checked(record(best(strategy=f"engine [{strategy}]", table="releases", delay=delay, pages=pages,
                                    body=body, prepare=prepare)), "inserted")
            record(best(strategy=PG8000_COPY, table="raw_releases", delay=delay, pages=pages,
                        body=baselines.pg8000_copy_per_page))
        record(best_of([bench.measure_limit(delay=delay, data=encoded, releases=len(releases),
                                            **common) for _ in range(max(1, args.repeat))]))
        if delay == 0:
            record(best(strategy="engine, direct (no proxy)", table="releases", delay=None, pages=pages,
                        body=engine, prepare=engine_prepare))

    # The engine's client side alone: everything save_page does before the database is involved.
    null = NullDatabase()
    started = time.perf_counter()
    for page in pages:
        save_page(null, page, SOURCE, compile_releases=False)  # type: ignore[arg-type]
    info["client_only_seconds"] = time.perf_counter() - started
    info["client_only_rate"] = len(releases) / info["client_only_seconds"]
    progress(f"[{label}] engine client side alone: {info['client_only_seconds']:.2f} s, "
             f"{info['client_only_rate']:,.0f} rel/s")
    if args.explain:
        info["explain"] = explain_page(bench, database, pages[0], label)
    info["run_objects"] = runs
    return info


def explain_page(bench: Bench, database: str, releases: list[dict[str, Any]], label: str) -> list[str]:
    """EXPLAIN (ANALYZE, BUFFERS) of the engine's statement for one page, on an empty table, rolled back."""
    null = NullDatabase()
    null.keep = True
    save_page(null, releases, SOURCE, compile_releases=False)  # type: ignore[arg-type]
    parameter = null.parameters[0]
    bench.reset(database, "releases")
    connection = bench.dbs[database].connection
    lines: list[str] = []
    connection.run("BEGIN")
    try:
        started = time.perf_counter()
        connection.run("SELECT jsonb_typeof(CAST(:page AS jsonb))", page=parameter)
        parse_only = time.perf_counter() - started
        sql = writer.UPSERT_SQL
        sql = sql[DEFAULT_STRATEGY] if isinstance(sql, dict) else sql
        rows = connection.run("EXPLAIN (ANALYZE, BUFFERS) " + sql, page=parameter)
        lines = [row[0] for row in rows]
    finally:
        connection.run("ROLLBACK")
    print(f"\n--- EXPLAIN (ANALYZE, BUFFERS) of one engine page: {label}, {len(releases)} releases, "
          f"parameter {len(parameter.encode('utf-8')) / 1e6:.2f} MB; parsing the parameter alone "
          f"(SELECT jsonb_typeof(CAST(:page AS jsonb)), one round trip incl.): {parse_only * 1000:.1f} ms")
    for line in lines:
        print("    " + line)
    return [f"parse only: {parse_only * 1000:.1f} ms", *lines]


# --- the tables ---------------------------------------------------------------------------------------------


def _fmt_opt(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def find(runs: list[Run], strategy: str, delay_ms: float, direct: bool = False) -> Run | None:
    return next((run for run in runs if run.strategy == strategy and run.delay_ms == delay_ms
                 and run.direct == direct), None)


def _rtt(run: Run) -> str:
    return "dir" if run.direct else f"{run.delay_ms:g}ms"


def print_table(label: str, info: dict[str, Any], runs: list[Run]) -> None:
    print(f"\n=== {label} releases: {info['releases']:,} releases, mean {info['mean_bytes']:,} B of JSON, "
          f"pages of {info['page_size']} releases (~{info['page_size'] * info['mean_bytes'] / 1e6:.2f} MB) ===")
    header = (f"{'strategy':<30} {'RTT':>4} {'releases':>8} {'rel/s':>8} {'MB/s':>6} {'engine is':>10} "
              f"{'RT/page wire':>12} {'RT/page self':>12} {'vs 0 ms':>8}")
    print("(engine is = engine rel/s / this strategy's rel/s at the same RTT; RT/page wire = round trips counted "
          "by the proxy per page;\n RT/page self = the engine's own count; vs 0 ms = rel/s / the same at 0 ms; "
          "dir = no proxy; "
          f"best of {info['repeat']} runs except the per-row seed)")
    print(header)
    print("-" * len(header))
    for run in runs:
        engine_run = find(runs, ENGINE, run.delay_ms)
        if run.strategy == ENGINE or engine_run is None or not run.rate:
            ratio = "-"
        else:
            ratio = f"{engine_run.rate / run.rate:.2f}x"
        loopback = find(runs, run.strategy, 0.0) if run.delay_ms and not run.direct else None
        versus = f"{run.rate / loopback.rate:.0%}" if loopback and loopback.rate else "-"
        rtt = _rtt(run)
        print(f"{run.strategy:<30} {rtt:>4} {run.releases:>8,} {run.rate:>8,.0f} "
              f"{run.mb_per_second:>6.1f} {ratio:>10} {_fmt_opt(run.wire_per_page):>12} "
              f"{_fmt_opt(run.self_per_page):>12} {versus:>8}")
    print("\nwhere the time goes (seconds; client = main thread CPU, threads = the client's other threads (the "
          "proxy runs in a process of its own),\nbackend = the connection's postgres process, other = the rest of "
          "the server: WAL writer, checkpointer, autovacuum; waiting = wall - client - backend;\n"
          "WAL = bytes of WAL written by the whole server during the run, autovacuum included)")
    header = (f"{'strategy':<30} {'RTT':>4} {'wall':>7} {'client':>7} {'threads':>7} {'backend':>7} "
              f"{'other':>6} {'waiting':>7} {'WAL MB':>7} {'WAL/data':>8}")
    print(header)
    print("-" * len(header))
    for run in runs:
        waiting = max(0.0, run.seconds - run.client_cpu - run.backend_cpu)
        rtt = _rtt(run)
        data_bytes = run.releases * run.mean_bytes
        print(f"{run.strategy:<30} {rtt:>4} {run.seconds:>7.2f} {run.client_cpu:>7.2f} {run.proxy_cpu:>7.2f} "
              f"{run.backend_cpu:>7.2f} {run.other_server_cpu:>6.2f} {waiting:>7.2f} "
              f"{run.wal_bytes / 1e6:>7.1f} {run.wal_bytes / data_bytes if data_bytes else 0:>8.2f}")
    if info.get("client_only_seconds"):
        engine_run = find(runs, ENGINE, 0.0)
        share = f" = {info['client_only_seconds'] / engine_run.seconds:.0%} of the engine's wall time" \
            if engine_run else ""
        print(f"engine client side alone (no database: read, validate, serialise, hash, build the "
              f"parameter): "
              f"{info['client_only_seconds']:.2f} s, {info['client_only_rate']:,.0f} rel/s{share}")



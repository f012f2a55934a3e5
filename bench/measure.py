"""The bench house: the throwaway server, its databases, timed runs and where their CPU goes.

A run is timed end to end (wall clock) and charged with: the client's main-thread CPU, the rest of the client
process (other threads: the worker's look-ahead; the latency proxy runs in a process of its own), the
connection's backend, every other server process (WAL writer, checkpointer,
autovacuum: ``server_cpu`` sums /proc/<pid>/stat utime+stime of the postmaster, its children and those it
reaped), the WAL written, and the round trips counted on the wire by the latency proxy.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from baselines import copy_limit, create_tables
from proxy_process import ProxyProcess

from ingest.store.connection import Database, connect_url
from ingest.store.local_server import LocalServer
from ingest.store.migrate import migrate

ONE_MS = 0.001
Body = Callable[[Database, list[list[dict[str, Any]]]], dict[str, int]]


def progress(message: str) -> None:
    print(message, flush=True)


_TICKS = os.sysconf("SC_CLK_TCK")


def _proc_stat(pid: int) -> list[str] | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def process_cpu(pid: int) -> float:
    fields = _proc_stat(pid)
    return (int(fields[11]) + int(fields[12])) / _TICKS if fields else 0.0


def server_cpu(postmaster: int) -> float:
    """CPU seconds of the postmaster, its live children and the children it has reaped."""
    stat = _proc_stat(postmaster)
    total = sum(int(value) for value in stat[11:15]) / _TICKS if stat else 0.0
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            fields = _proc_stat(int(entry.name))
            if fields and fields[1] == str(postmaster):
                total += (int(fields[11]) + int(fields[12])) / _TICKS
    return total


@dataclass
class Run:
    """One strategy on one release size at one latency."""

    strategy: str
    size: str
    delay_ms: float
    releases: int
    page_size: int
    pages: int
    seconds: float
    mean_bytes: int
    wire_round_trips: int | None = None
    self_round_trips: int | None = None
    client_cpu: float = 0.0
    proxy_cpu: float = 0.0  # the client process's other threads (the worker's look-ahead; the proxy has its own)
    process_cpu: float = 0.0  # the whole client process
    backend_cpu: float = 0.0
    other_server_cpu: float = 0.0
    wal_bytes: int = 0
    rows_after: int = 0
    counts: dict[str, int] = field(default_factory=dict)
    all_seconds: list[float] = field(default_factory=list)  # every repetition; the fastest one is reported
    direct: bool = False  # connected straight to the server, no proxy in between (no wire count)
    # CPU seconds of json.loads of the same bodies, timed between the worker's invocations (the clock and the
    # CPU figures above leave it out); None where none ran (see worker_runs.measure_worker)
    interleaved_parse_cpu: float | None = None

    @property
    def rate(self) -> float:
        return self.releases / self.seconds if self.seconds else 0.0

    @property
    def server_cpu(self) -> float:
        """CPU seconds of every server process during the run."""
        return self.backend_cpu + self.other_server_cpu

    @property
    def mb_per_second(self) -> float:
        return self.rate * self.mean_bytes / 1e6

    @property
    def wire_per_page(self) -> float | None:
        # Per-row strategies run on fewer releases: per page means per ``page_size`` releases.
        if self.wire_round_trips is None:
            return None
        return self.wire_round_trips / (self.releases / self.page_size)

    @property
    def wire_per_message(self) -> float | None:
        """Round trips per page actually sent (the worker: per message, a short last one included)."""
        return None if self.wire_round_trips is None or not self.pages else self.wire_round_trips / self.pages

    @property
    def self_per_message(self) -> float | None:
        return None if self.self_round_trips is None or not self.pages else self.self_round_trips / self.pages

    @property
    def self_per_page(self) -> float | None:
        if self.self_round_trips is None:
            return None
        return self.self_round_trips / (self.releases / self.page_size)

    def as_json(self) -> dict[str, Any]:
        data = asdict(self)
        data.update(rate=round(self.rate, 1), mb_per_second=round(self.mb_per_second, 2),
                    wire_round_trips_per_page=_round(self.wire_per_page),
                    self_round_trips_per_page=_round(self.self_per_page))
        for key in ("seconds", "client_cpu", "proxy_cpu", "process_cpu", "backend_cpu", "other_server_cpu"):
            data[key] = round(data[key], 4)
        return data


def _round(value: float | None, digits: int = 3) -> float | None:
    return None if value is None else round(value, digits)



def best_of(tries: list[Run]) -> Run:
    """The fastest of several runs of the same thing, with every run's seconds kept beside it."""
    chosen = min(tries, key=lambda run: run.seconds)
    chosen.all_seconds = [round(run.seconds, 4) for run in tries]
    return chosen


class Bench:
    """The server, one database per measurement, and the timed runs."""

    def __init__(self, server: LocalServer) -> None:
        self.server = server
        self.admin = connect_url(server.url)
        self.postmaster = int((server.data_dir / "postmaster.pid").read_text().split()[0])
        self.dbs: dict[str, Database] = {}

    def create_database(self, name: str) -> None:
        self.admin.run(f"DROP DATABASE IF EXISTS {name}", "bench")
        self.admin.run(f"CREATE DATABASE {name}", "bench")
        db = connect_url(self.server.url_for(name))
        migrate(db)
        create_tables(db)
        self.dbs[name] = db

    def server_cpu(self) -> float:
        return server_cpu(self.postmaster)

    def close(self) -> None:
        for db in self.dbs.values():
            db.close()
        self.admin.close()

    def reset(self, database: str, table: str) -> None:
        """An empty table and a clean checkpoint, so no run pays for the previous one's dirty buffers."""
        db = self.dbs[database]
        db.run(f"TRUNCATE {table}", "bench")
        db.run("CHECKPOINT", "bench")

    def count(self, database: str, table: str) -> int:
        return int(self.dbs[database].run(f"SELECT count(*) FROM {table}", "bench")[0][0])

    def wal_lsn(self) -> int:
        text = self.admin.run("SELECT pg_current_wal_insert_lsn()::text", "bench")[0][0]
        high, low = text.split("/")
        return (int(high, 16) << 32) + int(low, 16)

    @contextmanager
    def connection(self, database: str,
                   delay: float | None) -> Iterator[tuple[Database, ProxyProcess | None]]:
        """A connection through the latency proxy (``delay`` s per round trip), or direct if ``delay`` is None."""
        with proxied(self.server.port, delay) as (port, proxy):
            db = connect_url(self.server.url_for(database) if proxy is None else
                             f"postgresql://postgres@127.0.0.1:{port}/{database}")
            try:
                yield db, proxy
            finally:
                db.close()

    def round_trip(self, delay: float | None, count: int = 200) -> float:
        """Mean seconds of one ``SELECT 1`` (simple query: one round trip): what a round trip really costs."""
        with self.connection("postgres", delay) as (db, _proxy):
            for _ in range(20):
                db.run("SELECT 1", "bench")
            started = time.perf_counter()
            for _ in range(count):
                db.run("SELECT 1", "bench")
            return (time.perf_counter() - started) / count

    def measure(self, *, strategy: str, size: str, database: str, table: str, delay: float | None,
                pages: list[list[dict[str, Any]]], page_size: int, mean_bytes: int,
                body: Callable[[Database, list[list[dict[str, Any]]]], dict[str, int]],
                prepare: Callable[[Database], None] | None = None, truncate: bool = True,
                expected_rows: int | None = None) -> Run:
        """Time ``body(db, pages)``, release dicts to committed rows, with CPU, WAL and wire round trips."""
        releases = sum(map(len, pages))
        if truncate:
            self.reset(database, table)
        else:
            self.dbs[database].run("CHECKPOINT", "bench")
        with self.connection(database, delay) as (db, proxy):
            if prepare is not None:
                prepare(db)
            backend = int(db.run("SELECT pg_backend_pid()", "bench")[0][0])
            wal_before = self.wal_lsn()
            server_before, backend_before = server_cpu(self.postmaster), process_cpu(backend)
            self_before = db.round_trips
            if proxy is not None:
                proxy.reset_round_trips()
            process_before, thread_before = time.process_time(), time.thread_time()
            started = time.perf_counter()
            counts = body(db, pages)
            seconds = time.perf_counter() - started
            thread_cpu = time.thread_time() - thread_before
            process_cpu_used = time.process_time() - process_before
            wire = proxy.round_trips if proxy is not None else None
            backend_used = process_cpu(backend) - backend_before
            server_used = server_cpu(self.postmaster) - server_before
            self_trips = db.round_trips - self_before
        run = Run(strategy=strategy, size=size, delay_ms=(delay or 0.0) * 1000, releases=releases,
                  page_size=page_size, pages=len(pages), seconds=seconds, mean_bytes=mean_bytes,
                  wire_round_trips=wire,
                  self_round_trips=self_trips if strategy.startswith("engine") else None,
                  client_cpu=thread_cpu, proxy_cpu=max(0.0, process_cpu_used - thread_cpu),
                  process_cpu=process_cpu_used,
                  backend_cpu=backend_used, other_server_cpu=max(0.0, server_used - backend_used),
                  wal_bytes=self.wal_lsn() - wal_before, rows_after=self.count(database, table),
                  counts=counts, direct=delay is None)
        wanted = releases if expected_rows is None else expected_rows
        if run.rows_after != wanted:
            raise SystemExit(f"{strategy}: {run.rows_after} rows in {table} after the run, expected {wanted}")
        return run


    def measure_limit(self, *, database: str, delay: float | None, data: bytes, releases: int, size: str,
                      page_size: int, mean_bytes: int) -> Run:
        """The physical limit: ``data`` (encoded before the clock starts) in ONE psycopg COPY, committed."""
        import psycopg

        self.reset(database, "raw_releases")
        with proxied(self.server.port, delay) as (port, proxy):
            with psycopg.connect(host="127.0.0.1", port=port, user="postgres", dbname=database) as connection:
                backend = connection.info.backend_pid
                server_before, backend_before = self.server_cpu(), process_cpu(backend)
                if proxy is not None:
                    proxy.reset_round_trips()
                process_before, thread_before = time.process_time(), time.thread_time()
                started = time.perf_counter()
                copy_limit(connection, data)
                seconds = time.perf_counter() - started
                thread_cpu = time.thread_time() - thread_before
                process_cpu_used = time.process_time() - process_before
                backend_used = process_cpu(backend) - backend_before
                server_used = self.server_cpu() - server_before
                wire = proxy.round_trips if proxy is not None else None
        run = Run(strategy=LIMIT, size=size, delay_ms=(delay or 0.0) * 1000, releases=releases,
                  page_size=page_size, pages=1, seconds=seconds, mean_bytes=mean_bytes, wire_round_trips=wire,
                  client_cpu=thread_cpu, proxy_cpu=max(0.0, process_cpu_used - thread_cpu),
                  process_cpu=process_cpu_used,
                  backend_cpu=backend_used, other_server_cpu=max(0.0, server_used - backend_used),
                  rows_after=self.count(database, "raw_releases"), direct=delay is None)
        if run.rows_after != releases:
            raise SystemExit(f"{LIMIT}: {run.rows_after} rows after the run, expected {releases}")
        return run


LIMIT = "raw COPY (the limit)"


@contextmanager
def proxied(port: int, delay: float | None) -> Iterator[tuple[int, ProxyProcess | None]]:
    """The port to connect to: the server's own (``delay`` None) or that of a latency proxy in front of it, in
    a process of its own (bench/proxy_process.py: in this one its threads would take the GIL from the client)."""
    if delay is None:
        yield port, None
        return
    with ProxyProcess(port, delay) as proxy:
        yield proxy.port, proxy


class NullDatabase:
    """Stands in for the database to time the engine's client side alone (and to capture a page parameter)."""

    broken = False  # what ingest.worker.Connections checks before reusing a connection

    def __init__(self) -> None:
        self.round_trips = 0
        self.parameters: list[str] = []
        self.keep = False

    def execute(self, sql: str, where: str, **params: Any) -> list[list[Any]]:
        self.round_trips += 1
        if self.keep:
            self.parameters.append(params["page"])
        return [[0, 0, 0, 0]]

    def send(self, sql: str, where: str, **params: Any) -> SimpleNamespace:
        """A statement sent ahead (ingest.store.connection.Database.send): its answer is ready at once."""
        return SimpleNamespace(database=self, rows=self.execute(sql, where, **params))

    def receive(self, sent: SimpleNamespace) -> list[list[Any]]:
        return sent.rows

    def limit_statements(self, seconds: float | None) -> None:
        pass  # nothing runs long on a stand-in

    def close(self) -> None:
        pass

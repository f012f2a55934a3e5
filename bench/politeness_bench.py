"""What politeness costs per page: a source's acquire and release against PostgreSQL (store/source_limits.py).

Each fetch of a URL page takes a turn (one statement) and gives it back (one statement). Measured here on the
embedded PostgreSQL, with no rate limit so nothing waits and only the coordination is timed:

* ``one worker``: one connection, acquire + release in a loop (time and round trips per page);
* ``one worker @ 1 ms``: the same through the latency proxy at 1 ms per round trip (a database across a network);
* ``4 workers, one source``: four threads with their own connections taking turns at the same source's row (the
  row lock serialises them: the contended case);
* ``4 workers, 4 sources``: the same on four sources (no contention: sources never wait on each other).

Run alone: ``.venv/bin/python bench/politeness_bench.py [--pages N]``; ``make bench`` runs it after the worker.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ingest.store import source_limits
from ingest.store.connection import Database, connect_url
from ingest.store.local_server import start
from ingest.store.migrate import migrate

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # tests.tools, when this file is run as a script
    sys.path.insert(0, str(ROOT))
from tests.tools.tcp_proxy import LatencyProxy  # noqa: E402

DATABASE = "bench_politeness"
NO_RATE = dict(interval=0.0, tolerance=0.0, lease_seconds=180.0)


def turns(db: Database, source: str, pages: int, concurrency: int = 4) -> int:
    """Acquire and release ``pages`` times; returns how many turns were refused (all slots busy)."""
    refused = 0
    done = 0
    while done < pages:
        decision = source_limits.acquire(db, source, concurrency=concurrency, **NO_RATE)
        if decision.lease is None:
            refused += 1
            continue
        source_limits.release(db, source, decision.lease)
        done += 1
    return refused


def one_worker(url: str, pages: int, label: str) -> dict[str, Any]:
    db = connect_url(url)
    try:
        turns(db, f"warm-{label}", 20)
        before = db.round_trips
        started = time.perf_counter()
        turns(db, f"one-{label}", pages)
        seconds = time.perf_counter() - started
        return {"pages": pages, "us_per_page": round(seconds / pages * 1e6, 1),
                "round_trips_per_page": round((db.round_trips - before) / pages, 2)}
    finally:
        db.close()


def many_workers(url: str, pages: int, workers: int, source_of: Callable[[int], str]) -> dict[str, Any]:
    connections = [connect_url(url) for _ in range(workers)]
    refused = [0] * workers
    per_page: list[float] = []
    try:
        for number, db in enumerate(connections):
            turns(db, f"warm-{number}", 5)

        def work(number: int) -> None:
            started = time.perf_counter()
            refused[number] = turns(connections[number], source_of(number), pages // workers, concurrency=workers)
            per_page.append((time.perf_counter() - started) / (pages // workers))

        threads = [threading.Thread(target=work, args=(number,)) for number in range(workers)]
        started = time.perf_counter()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        seconds = time.perf_counter() - started
        return {"workers": workers, "pages": pages // workers * workers,
                "pages_per_second": round(pages // workers * workers / seconds),
                "us_per_page_per_worker": round(statistics.mean(per_page) * 1e6, 1), "refused": sum(refused)}
    finally:
        for db in connections:
            db.close()


def run(server_url: str, url_for: Callable[[str], str], pages: int = 2000,
        say: Callable[[str], None] = print) -> dict[str, Any]:
    """Measure on a fresh database of the server; returns the figures for results.json."""
    admin = connect_url(server_url)
    try:
        admin.run(f"DROP DATABASE IF EXISTS {DATABASE}", "bench")
        admin.run(f"CREATE DATABASE {DATABASE}", "bench")
        url = url_for(DATABASE)
        db = connect_url(url)
        try:
            migrate(db)
        finally:
            db.close()
        port = int(url.rsplit(":", 1)[1].split("/")[0])
        results: dict[str, Any] = {"one worker": one_worker(url, pages, "direct")}
        with LatencyProxy("127.0.0.1", port, delay_seconds=0.001) as proxy:
            results["one worker @ 1 ms"] = one_worker(f"postgresql://postgres@127.0.0.1:{proxy.port}/{DATABASE}",
                                                      max(100, pages // 10), "1ms")
        results["4 workers, one source"] = many_workers(url, pages, 4, lambda number: "shared")
        results["4 workers, 4 sources"] = many_workers(url, pages, 4, lambda number: f"own-{number}")
    finally:
        admin.run(f"DROP DATABASE IF EXISTS {DATABASE}", "bench")
        admin.close()
    say("[politeness] acquire + release per fetched page (store/source_limits.py):")
    for name, figures in results.items():
        say(f"[politeness]   {name:<24} " + ", ".join(f"{key} {value}" for key, value in figures.items()))
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pages", type=int, default=2000)
    args = parser.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="ocds-politeness-bench-"))
    server = start(tmp / "pg")
    try:
        run(server.url, server.url_for, args.pages)
    finally:
        server.stop(delete=True)
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

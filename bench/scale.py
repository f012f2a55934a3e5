"""Scale: on paper from the measured database CPU per release, and measured with 1, 2 and 4 worker processes.

On paper: one RDS instance of N vCPU takes at most N / (database CPU per release) releases per second (every
vCPU busy with these statements and nothing else: a ceiling, not a plan); one worker at 1 ms RTT (a Lambda
beside its database) writes what the bench measured, so ceil(instance rate / worker rate) workers saturate it;
a backfill of 10 million releases then takes 10^7 / instance rate.

Measured: ``n`` worker processes (each ``handler.worker.lambda_handler`` on a warm worker, compiling off, every
``n``-th message of the worker bench's) against the one PostgreSQL, connected directly, started together;
aggregate releases per second over the wall time from the first start to the last end, and the server's CPU
per release and in cores.
On a 2-core machine the workers and PostgreSQL share the same two cores: more workers than that mostly
measure contention, not the database's ceiling.
"""

from __future__ import annotations

import functools
import math
import multiprocessing
import os
import queue
import time
from collections.abc import Callable
from typing import Any

import worker_bench
from data import SOURCE
from measure import Bench, progress

DATABASE = "bench_scale"
VCPUS = (2, 4, 8)
BACKFILL = 10_000_000


def on_paper(server_cpu_per_release: float, worker_rate: float) -> dict[str, Any]:
    instances = []
    for vcpus in VCPUS:
        rate = vcpus / server_cpu_per_release
        instances.append({"vcpus": vcpus, "releases_per_second": round(rate),
                          "workers_to_saturate": math.ceil(rate / worker_rate),
                          "backfill_hours": round(BACKFILL / rate / 3600, 2)})
    return {"server_cpu_us_per_release": round(server_cpu_per_release * 1e6, 1),
            "one_worker_releases_per_second": round(worker_rate), "backfill_releases": BACKFILL,
            "instances": instances}


def _child(url: str, strategy: str, events: list[dict[str, Any]], warm: dict[str, Any], ready: Any,
           go: Any, results: Any) -> None:
    """One worker process: warm up, wait for the start, run its events, report its times."""
    os.environ.update(worker_bench.POWERTOOLS_ENV, DATABASE_URL=url, WRITE_STRATEGY=strategy,
                      COMPILE_RELEASES="false")
    import contextlib

    import handler.worker as module
    from ingest.queue import LocalContext

    with open(os.devnull, "w") as sink, contextlib.redirect_stdout(sink):
        module.lambda_handler(warm, LocalContext(120))
        ready.release()
        go.wait()
        cpu, started = time.process_time(), time.time()
        failures = []
        for event in events:
            failures += module.lambda_handler(event, LocalContext(120)).get("batchItemFailures", [])
        results.put({"started": started, "ended": time.time(), "cpu": time.process_time() - cpu,
                     "failures": len(failures)})


def measure(bench: Bench, bodies: list[str], releases: int, strategy: str, per_event: int,
            counts: tuple[int, ...] = (1, 2, 4)) -> list[dict[str, Any]]:
    """``counts`` worker processes at a time, each with every ``count``-th message in events of ``per_event``."""
    bench.create_database(DATABASE)
    context = multiprocessing.get_context("spawn")
    rows = []
    for count in counts:
        bench.reset(DATABASE, "releases")
        ready, go, results = context.Semaphore(0), context.Event(), context.Queue()
        shares = [worker_bench.events(bodies[index::count], per_event, SOURCE, first_number=index * len(bodies))
                  for index in range(count)]
        processes = [context.Process(target=_child, args=(bench.server.url_for(DATABASE), strategy, share,
                                                          worker_bench.tiny_event(SOURCE, 7_000_000 + index),
                                                          ready, go, results))
                     for index, share in enumerate(shares)]
        for process in processes:
            process.start()
        for _ in processes:
            _wait(functools.partial(ready.acquire, timeout=1), processes, "warm up")
        server_before = bench.server_cpu()
        go.set()
        reports = [_wait(functools.partial(_get, results), processes, "run its events") for _ in processes]
        for process in processes:
            process.join()
        server_used = bench.server_cpu() - server_before
        wall = max(item["ended"] for item in reports) - min(item["started"] for item in reports)
        stored = bench.count(DATABASE, "releases")
        if any(item["failures"] for item in reports) or stored != releases + count:
            raise SystemExit(f"scale with {count} workers: {stored} rows (expected {releases + count}), "
                             f"failures {[item['failures'] for item in reports]}")
        row = {"workers": count, "releases": releases, "seconds": round(wall, 3),
               "releases_per_second": round(releases / wall, 1),
               "server_cpu_us_per_release": round(server_used / releases * 1e6, 1),
               "server_cores_busy": round(server_used / wall, 2),
               "worker_cpu_us_per_release": round(sum(item["cpu"] for item in reports) / releases * 1e6, 1)}
        rows.append(row)
        progress(f"[scale] {count} worker process(es): {row['releases_per_second']:,.0f} rel/s, server "
                 f"{row['server_cpu_us_per_release']:.0f} µs/release = {row['server_cores_busy']:.2f} cores busy")
    return rows


def _get(results: Any) -> Any:
    try:
        return results.get(timeout=1)
    except queue.Empty:
        return None


def _wait(poll: Callable[[], Any], processes: list[Any], what: str, seconds: float = 600) -> Any:
    """Poll until ``poll()`` answers; a worker process that died (or ``seconds`` passed) ends the bench."""
    deadline = time.monotonic() + seconds
    while not (answer := poll()):
        if any(process.exitcode not in (None, 0) for process in processes) or time.monotonic() > deadline:
            for process in processes:
                process.kill()
            raise SystemExit(f"scale: a worker process failed to {what} (exit codes "
                             f"{[process.exitcode for process in processes]}); its traceback is above")
    return answer


def print_scale(scale: dict[str, Any], nproc: int) -> None:
    paper = scale.get("on_paper")
    if paper:
        print(f"\n=== scale on paper: {paper['server_cpu_us_per_release']:.0f} µs of database CPU per release "
              f"(the worker's, measured), one worker {paper['one_worker_releases_per_second']:,} rel/s at 1 ms ===")
        print("(an RDS vCPU counted as one core of this machine, every vCPU busy with these writes: a ceiling)")
        print(f"{'RDS vCPU':>8} {'rel/s':>8} {'workers to saturate':>20} {'10M backfill':>13}")
        for item in paper["instances"]:
            print(f"{item['vcpus']:>8} {item['releases_per_second']:>8,} {item['workers_to_saturate']:>20} "
                  f"{item['backfill_hours']:>11.2f} h")
    measured = scale.get("measured")
    if measured:
        print(f"\n=== scale measured: worker processes against one PostgreSQL on THIS {nproc}-core machine "
              "(workers and server share the cores) ===")
        print(f"{'workers':>7} {'rel/s':>8} {'server µs/rel':>13} {'server cores':>12} {'worker µs/rel':>13}")
        for row in measured:
            print(f"{row['workers']:>7} {row['releases_per_second']:>8,.0f} {row['server_cpu_us_per_release']:>13.0f} "
                  f"{row['server_cores_busy']:>12.2f} {row['worker_cpu_us_per_release']:>13.0f}")

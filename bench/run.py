"""Benchmark: the worker and the engine against the seed's inserts and PostgreSQL's physical limit.

Run ``make bench`` (or ``.venv/bin/python bench/run.py [--quick]``). It starts a throwaway PostgreSQL with the
default durability (fsync on, synchronous commit), generates synthetic OCDS releases of about 4 KB and 20 KB
(seeded: every run loads the same data) and, in one run:

1. per release size (bench/engine_tables.py): the seed's per-row upsert and VALUES x100, the engine
   (``save_page``) with each write strategy, a pg8000 COPY per page and raw COPY (the limit: the same rows,
   encoded beforehand, in ONE psycopg COPY into an unindexed UNLOGGED table), at 0, 1 and 5 ms of RTT;
2. the worker Lambda handler on SQS events against the limit, alternated (bench/worker_runs.py), its memory and
   its cold import (bench/worker_resources.py, bench/worker_bench.py);
3. scale (bench/scale.py): on paper from the database CPU per release, and 1, 2, 4 worker processes;
4. compiling on and off (bench/compile_bench.py) and politeness (bench/politeness_bench.py);

then prints the issue's figures side by side as ratios against their targets (bench/figures.py), draws the chart
(bench/chart.py) and writes bench/results.json (``--quick``: build/, never over the tracked figures).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import shutil
import signal
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
if str(HERE) not in sys.path:  # the bench's modules, also when this file is run some other way
    sys.path.insert(0, str(HERE))

import chart  # noqa: E402
import compile_bench  # noqa: E402
import politeness_bench  # noqa: E402
import scale  # noqa: E402
import worker_bench  # noqa: E402
from data import SEED, SOURCE, generate  # noqa: E402
from engine_tables import DEFAULT_STRATEGY, STRATEGIES, bench_size, print_table  # noqa: E402
from figures import engine_targets, issue_figures, print_figures  # noqa: E402
from measure import ONE_MS, Bench, progress  # noqa: E402
from worker_resources import print_worker_resources, resource_targets, worker_memory  # noqa: E402
from worker_runs import FIVE_MS, bench_worker, print_worker_runs  # noqa: E402

from ingest.store.local_server import LocalServer, start  # noqa: E402

CHART = HERE / "throughput.svg"


def machine() -> dict[str, Any]:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory = ""
    try:
        memory = Path("/proc/meminfo").read_text().splitlines()[0].split(":", 1)[1].strip()
    except (OSError, IndexError):
        pass
    return {"nproc": len(os.sched_getaffinity(0)), "cpu_count": os.cpu_count(), "cpu": model,
            "load_average": " ".join(f"{value:.2f}" for value in os.getloadavg()),
            "memory": memory,
            "python": platform.python_version(), "implementation": platform.python_implementation(),
            "platform": platform.platform()}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a tenth of every count (a smoke run)")
    parser.add_argument("--releases-4k", type=int, help="releases of ~4 KB (default 20000, --quick 2000)")
    parser.add_argument("--releases-20k", type=int, help="releases of ~20 KB (default 5000, --quick 500)")
    parser.add_argument("--page-size-4k", type=int, default=250, help="releases per page of 4 KB ones")
    parser.add_argument("--page-size-20k", type=int, default=50, help="releases per page of 20 KB ones")
    parser.add_argument("--per-row", type=int, help="releases for the per-row seed (default 2000)")
    parser.add_argument("--per-row-1ms", type=int, help="releases for the per-row seed at 1 ms (default 500)")
    parser.add_argument("--per-row-5ms", type=int, help="releases for the per-row seed at 5 ms (default 200)")
    parser.add_argument("--repeat", type=int, default=2,
                        help="runs of each strategy but the per-row seed; the fastest is reported (default 2)")
    parser.add_argument("--strategies", default=",".join(s for s in STRATEGIES if s != DEFAULT_STRATEGY),
                        help="the engine's other write strategies to run as well, comma-separated "
                             f"(default: %(default)s; the default one, {DEFAULT_STRATEGY}, always runs)")
    parser.add_argument("--seed", type=int, default=SEED, help="random seed of the synthetic releases")
    parser.add_argument("--pg-bin", type=Path, help="PostgreSQL bin directory (default: the wheel's)")
    parser.add_argument("--explain", action="store_true",
                        help="also print EXPLAIN (ANALYZE, BUFFERS) of one engine page of each size")
    parser.add_argument("--output", type=Path,
                        help="where to write the JSON (default: bench/results.json; with --quick, "
                        "build/bench-quick.json, so a smoke run never replaces the tracked figures)")
    parser.add_argument("--chart", type=Path,
                        help="where to write the SVG chart (default: bench/throughput.svg; with --quick, "
                        "build/throughput-quick.svg)")
    parser.add_argument("--no-scale", action="store_true", help="skip the 1, 2, 4 worker processes")
    worker = parser.add_argument_group("the worker Lambda")
    worker.add_argument("--no-worker", action="store_true", help="skip the worker's throughput, memory and import")
    worker.add_argument("--worker-only", action="store_true",
                        help="only the worker's sections (no seed/engine tables; the 4 KB releases are still made)")
    worker.add_argument("--worker-releases", type=int,
                        help="4 KB releases sent through the handler (default 10000, --quick 1000)")
    worker.add_argument("--worker-pairs", type=int,
                        help="alternated tries of the worker and the limit, connected directly (json.loads of "
                             "each event's bodies timed between the worker's invocations) and through the proxy "
                             "(0, 1, 5 ms); the issue's figures are the median ratios within a try (default 5, "
                             "--quick 3)")
    worker.add_argument("--worker-per-message", type=int, default=200, help="releases per inline message")
    worker.add_argument("--worker-batch", type=int, default=5, help="records per event (the stack's BatchSize)")
    worker.add_argument("--worker-strategies", default=",".join([DEFAULT_STRATEGY, *(name for name in STRATEGIES
                                                                                     if name != DEFAULT_STRATEGY)]),
                        help="WRITE_STRATEGY values to run, the first one everywhere (the issue's figures), the "
                             "others connected directly only (default: %(default)s)")
    worker.add_argument("--worker-client-events", type=int, default=4,
                        help="events used to time the handler's client side without a database (default 4)")
    worker.add_argument("--worker-overhead-invocations", type=int, default=200,
                        help="invocations of a five-tiny-page event timing the handler's fixed cost (default 200)")
    worker.add_argument("--memory-page-bytes", type=int, default=950_000,
                        help="bytes of each inline body of the memory probe's event (default 950000)")
    worker.add_argument("--memory-records", type=int, default=5, help="records of the memory probe's event")
    worker.add_argument("--no-tracemalloc", action="store_true",
                        help="skip the second memory probe that finds where the memory goes")
    worker.add_argument("--import-repeat", type=int, help="fresh interpreters per variant (default 9, --quick 7)")
    worker.add_argument("--import-deployed-repeat", type=int, default=5,
                        help="fresh interpreters per variant without the package's bytecode, as deployed (default 5)")
    args = parser.parse_args(argv)
    divide = 10 if args.quick else 1
    if args.output is None:
        args.output = ROOT / "build" / "bench-quick.json" if args.quick else HERE / "results.json"
    if args.chart is None:
        args.chart = ROOT / "build" / "throughput-quick.svg" if args.quick else CHART
    args.worker_releases = args.worker_releases if args.worker_releases is not None else 10_000 // divide
    args.releases_4k = args.releases_4k if args.releases_4k is not None else 20_000 // divide
    args.releases_20k = args.releases_20k if args.releases_20k is not None else 5_000 // divide
    args.per_row = args.per_row if args.per_row is not None else 2_000 // divide
    args.per_row_1ms = args.per_row_1ms if args.per_row_1ms is not None else 500 // divide
    args.per_row_5ms = args.per_row_5ms if args.per_row_5ms is not None else 200 // divide
    args.strategies = [name for name in args.strategies.split(",") if name and name != DEFAULT_STRATEGY]
    args.worker_strategies = [name for name in args.worker_strategies.split(",") if name]
    args.import_repeat = args.import_repeat if args.import_repeat is not None else (7 if args.quick else 9)
    args.worker_pairs = args.worker_pairs if args.worker_pairs is not None else (3 if args.quick else 5)
    if set(args.worker_strategies) - set(STRATEGIES):
        parser.error(f"unknown worker strategies; the engine has {', '.join(STRATEGIES)}")
    unknown = set(args.strategies) - set(STRATEGIES)
    if unknown:
        parser.error(f"unknown write strategies {', '.join(sorted(unknown))}; the engine has {', '.join(STRATEGIES)}")
    return args


def _on_sigterm(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def settings_of(bench: Bench) -> dict[str, str]:
    return {name: bench.admin.run(f"SHOW {name}", "bench")[0][0]
            for name in ("fsync", "synchronous_commit", "full_page_writes", "wal_level", "shared_buffers",
                         "work_mem", "max_wal_size", "checkpoint_timeout", "wal_compression", "data_checksums",
                         "default_toast_compression")}


def without_runs(info: dict[str, Any]) -> dict[str, Any]:
    return {**{key: value for key, value in info.items() if key != "run_objects"},
            "runs": [run.as_json() for run in info["run_objects"]]}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _on_sigterm)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    begun = time.perf_counter()
    details = machine()
    progress(f"machine: {details['nproc']} CPUs ({details['cpu']}), {details['memory']} RAM, Python "
             f"{details['python']} on {details['platform']}; load average {details['load_average']}")

    specs = [("4 KB", "4k", args.releases_4k, 4_000, args.page_size_4k, 0),
             ("20 KB", "20k", args.releases_20k, 20_000, args.page_size_20k, 1_000_000)]
    data: dict[str, list[dict[str, Any]]] = {}
    started = time.perf_counter()
    for _label, key, count, target, _page_size, first in specs:
        if count > 0:
            data[key] = generate(count, target, first, args.seed + first)
    pool = data.get("4k", [])
    worker_releases = (pool[:args.worker_releases] if len(pool) >= args.worker_releases
                       else generate(args.worker_releases, 4_000, 0, args.seed))
    # The releases stay in memory for every run: keep the garbage collector from walking them again and again.
    gc.collect()
    gc.freeze()
    progress(f"generated {sum(map(len, data.values())):,} releases in {time.perf_counter() - started:.1f} s "
             f"(seed {args.seed})")

    tmp = Path(tempfile.mkdtemp(prefix="ocds-bench-"))
    server: LocalServer | None = None
    bench: Bench | None = None
    sizes: dict[str, dict[str, Any]] = {}
    try:
        server = start(tmp / "pg", args.pg_bin)
        bench = Bench(server)
        version = bench.admin.run("SELECT version()", "bench")[0][0]
        settings = settings_of(bench)
        progress(f"PostgreSQL {server.version()}: {version}")
        progress("settings: " + ", ".join(f"{name}={value}" for name, value in settings.items()))
        round_trips = {"direct": bench.round_trip(None), "proxy 0 ms": bench.round_trip(0.0),
                       "proxy 1 ms": bench.round_trip(ONE_MS), "proxy 5 ms": bench.round_trip(FIVE_MS, 50)}
        progress("one round trip (SELECT 1, mean): " +
                 ", ".join(f"{name} {seconds * 1000:.3f} ms" for name, seconds in round_trips.items()))
        for label, key, _count, _target, page_size, _first in specs:
            if key in data and not args.worker_only:
                sizes[label] = bench_size(bench, label, key, data[key], page_size, args)
        worker = memory = imports = None
        scaling: dict[str, Any] = {}
        if not args.no_worker:
            worker = bench_worker(bench, worker_releases, args)
            if not args.no_scale:
                bodies = worker_bench.inline_bodies(worker_releases, args.worker_per_message, SOURCE)
                scaling["measured"] = scale.measure(bench, bodies, len(worker_releases), args.worker_strategies[0],
                                                    args.worker_batch)
            memory = worker_memory(bench, args, tmp)
            progress(f"[import] cold imports: {args.import_repeat} fresh interpreters per variant")
            imports = worker_bench.cold_import(args.import_repeat, tmp, deployed_repeat=args.import_deployed_repeat)
            progress(f"[import] handler.worker {imports['handler_median'] * 1000:.0f} ms vs libraries "
                     f"{imports['libraries_median'] * 1000:.0f} ms (medians): {imports['ratio_median']:.2f}x")
        # What keeping compiled_releases current costs the worker per page (bench/compile_bench.py).
        compiling = None if args.no_worker else compile_bench.run(bench, generate, args.seed,
                                                                  2_000 if args.quick else 10_000)
        politeness = politeness_bench.run(server.url, server.url_for, 200 if args.quick else 2000, progress)

        for label, info in sizes.items():
            print_table(label, info, info["run_objects"])
        if worker:
            print_worker_runs(worker)
            direct = next(run for run in worker["run_objects"]
                          if run.strategy == f"worker [{args.worker_strategies[0]}]" and run.direct)
            slow = next(run for run in worker["run_objects"]
                        if run.strategy == direct.strategy and run.delay_ms == 1.0 and not run.direct)
            scaling["on_paper"] = scale.on_paper(direct.server_cpu / direct.releases, slow.rate)
        print_worker_resources(memory, imports)
        scale.print_scale(scaling, details["nproc"])
        figures = issue_figures(worker)
        print_figures(f"the issue's figures (worker, {args.worker_releases:,} releases of ~4 KB, messages of "
                      f"{args.worker_per_message}, events of {args.worker_batch}; {details['nproc']} cores shared)",
                      figures)
        others = engine_targets(sizes) + resource_targets(memory, imports)
        print_figures("the engine's and the worker's other targets", others)
        total = time.perf_counter() - begun
        print(f"\ntotal {total:.0f} s")
        generated = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        subtitle = (f"PostgreSQL {server.version()} on {details['nproc']} shared cores, {generated[:10]}, through a "
                    f"latency proxy; seed: {args.releases_4k:,} releases in pages of {args.page_size_4k}\n(per-row: "
                    f"fewer); ours (compiling off) and raw COPY: {args.worker_releases:,} releases, messages of "
                    f"{args.worker_per_message} / one COPY")
        if sizes or worker:
            chart.write(args.chart, sizes, worker, subtitle)
            print(f"wrote {args.chart}")
        output: dict[str, Any] = {
            "generated_at": generated,
            "command": " ".join(["bench/run.py", *(argv if argv is not None else sys.argv[1:])]),
            "quick": args.quick, "seed": args.seed, "machine": details,
            "postgresql": {"major": server.version(), "version": version, "settings": settings},
            "round_trip_ms": {name: round(seconds * 1000, 4) for name, seconds in round_trips.items()},
            "figures": figures, "other_targets": others, "chart_subtitle": subtitle,
            "sizes": {label: without_runs(info) for label, info in sizes.items()},
            "scale": scaling, "total_seconds": round(total, 1),
        }
        if worker:
            output["worker"] = without_runs(worker)
        if memory:
            output["worker_memory"] = memory
        if compiling:
            output["compile"] = compiling
        if imports:
            output["worker_cold_import"] = imports
        output["politeness"] = politeness
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(json.dumps(output, indent=2, ensure_ascii=False) + "\n")
        print(f"wrote {args.output}")
        return 0
    except KeyboardInterrupt:
        print("\ninterrupted: stopping PostgreSQL", file=sys.stderr, flush=True)
        return 130
    finally:
        try:
            if bench is not None:
                bench.close()
        finally:  # the server is stopped even when closing a broken connection fails
            if server is not None:
                server.stop(delete=True)
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())

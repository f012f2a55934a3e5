"""The worker Lambda's throughput: ``handler.worker.lambda_handler`` in-process against the physical limit.

The events are SQS events of inline pages (release packages of 200 synthetic ~4 KB releases per message, five
records per event: the stack's BatchSize, so an event fits Lambda's 6 MB payload), timed from the event dicts
to committed rows on a warm worker (connected and prepared by one warm-up invocation), compiling off (its cost is
bench/compile_bench.py's). Each repetition runs the limit (the same rows, encoded beforehand, in one psycopg
COPY) and then the worker, alternated, so a busy moment of this shared machine touches both:

* directly connected (no proxy): end to end vs the limit, database CPU and the worker process's CPU per release,
  against json.loads of the same bodies timed between the worker's invocations (off its clock);
* through the latency proxy at 0, 1 and 5 ms, one delay after the other within a try: round trips per message on
  the wire, and what latency costs.

Without a database (a stand-in that answers at once): ``json.loads`` of the same bodies, ``Worker.process`` and
the whole handler, and the handler's fixed cost per invocation (Powertools).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import statistics
import time
from collections.abc import Iterator
from typing import Any

import worker_bench
from baselines import encode_copy, seed_per_row
from data import SOURCE, json_size, paginate
from engine_tables import PER_ROW
from measure import LIMIT, ONE_MS, Bench, NullDatabase, Run, best_of, process_cpu, progress, proxied

WORKER_DATABASE = "bench_worker"
FIVE_MS = 0.005
PROXIED_DELAYS = (0.0, ONE_MS, FIVE_MS)


def _handler_module() -> Any:
    """``handler.worker``, imported once the environment it reads at import (Powertools) is set."""
    os.environ.update(worker_bench.POWERTOOLS_ENV)
    import handler.worker as module

    return module


def _drop_worker(module: Any) -> None:
    """Close the warm worker and forget it, so the next invocation reconnects with the current environment."""
    if module._worker is not None:
        module._worker.close()
    module._worker = None


def _failures(responses: list[dict[str, Any]]) -> list[Any]:
    return [item for response in responses for item in (response or {}).get("batchItemFailures", [None])]


def measure_worker(bench: Bench, module: Any, *, strategy: str, delay: float | None,
                   events: list[dict[str, Any]], warm: dict[str, Any], releases: int, messages: int,
                   per_message: int, mean_bytes: int, sink: Any,
                   divisor_bodies: list[list[str]] | None = None) -> Run:
    """Invoke the handler with every event through a freshly connected (then warmed) worker; ``delay`` None:
    connected straight to the server, else through a fresh proxy adding ``delay`` seconds per round trip.

    ``divisor_bodies``: after each invocation, json.loads of the same bodies as the event's (other str objects,
    as cold), timed on its own and left out of the run's clock and CPU (``Run.interleaved_parse_cpu``); the
    look-ahead thread is idle there (the batch has ended). The worker's CPU and its divisor are then sampled at
    the same moments (an invocation is about a sixth of a second here) and in the same units of work: this shared
    machine's speed moves by up to 2x within a second, too fast for a json.loads before and after the try to stand
    for the moments between, and json.loads of an event's five bodies after a pause costs 5-15% more per release
    than of fifty bodies in a row, which the worker never gets either."""
    from ingest.queue import LocalContext

    database = WORKER_DATABASE
    with proxied(bench.server.port, delay) as (port, proxy):
        os.environ["DATABASE_URL"] = f"postgresql://postgres@127.0.0.1:{port}/{database}"
        os.environ["WRITE_STRATEGY"] = strategy
        os.environ["COMPILE_RELEASES"] = "false"
        _drop_worker(module)
        try:
            with contextlib.redirect_stdout(sink):
                warmed = module.lambda_handler(warm, LocalContext(120))
            if _failures([warmed]):
                raise SystemExit(f"worker [{strategy}]: the warm-up invocation failed: {warmed}")
            bench.reset(database, "releases")  # the warm-up's row gone, a clean checkpoint
            db = module._worker.connections._db
            backend = int(db.run("SELECT pg_backend_pid()", "bench")[0][0])
            wal_before = bench.wal_lsn()
            server_before, backend_before = bench.server_cpu(), process_cpu(backend)
            if proxy is not None:
                proxy.reset_round_trips()
            self_before = db.round_trips
            responses = []
            # Fresh event objects, as the Lambda runtime parses each invocation's payload: a body read in an
            # earlier try keeps the UTF-8 that msgspec made of it, a cost every real message pays.
            fresh = [json.loads(worker_bench.event_bytes(event)) for event in events]
            parse_cpu = parse_wall = 0.0
            with contextlib.redirect_stdout(sink):
                process_before, thread_before = time.process_time(), time.thread_time()
                started = time.perf_counter()
                for number, event in enumerate(fresh):
                    responses.append(module.lambda_handler(event, LocalContext(120)))
                    if divisor_bodies is not None:
                        paused, parse_began = time.perf_counter(), time.process_time()
                        for body in divisor_bodies[number]:
                            json.loads(body)
                        parse_cpu += time.process_time() - parse_began
                        parse_wall += time.perf_counter() - paused
                seconds = time.perf_counter() - started - parse_wall
                thread_cpu = time.thread_time() - thread_before - parse_cpu
                process_cpu_used = time.process_time() - process_before - parse_cpu
            wire = proxy.round_trips if proxy is not None else None
            backend_used = process_cpu(backend) - backend_before
            server_used = bench.server_cpu() - server_before
            if module._worker.connections._db is not db:
                raise SystemExit(f"worker [{strategy}]: the worker reconnected during the run")
            self_trips = db.round_trips - self_before
        finally:
            _drop_worker(module)
    failures = _failures(responses)
    if failures or len(responses) != len(events):
        raise SystemExit(f"worker [{strategy}]: batchItemFailures {failures[:5]} in {len(responses)} responses")
    rejected = {table: bench.count(database, table) for table in ("rejected_messages", "rejected_releases")}
    run = Run(strategy=f"worker [{strategy}]", size="worker", delay_ms=(delay or 0.0) * 1000, releases=releases,
              page_size=per_message, pages=messages, seconds=seconds, mean_bytes=mean_bytes,
              wire_round_trips=wire, self_round_trips=self_trips, client_cpu=thread_cpu,
              proxy_cpu=max(0.0, process_cpu_used - thread_cpu), process_cpu=process_cpu_used,
              backend_cpu=backend_used, other_server_cpu=max(0.0, server_used - backend_used),
              wal_bytes=bench.wal_lsn() - wal_before, rows_after=bench.count(database, "releases"),
              counts={"events": len(events), "messages": messages, "failures": 0, **rejected}, direct=delay is None,
              interleaved_parse_cpu=parse_cpu if divisor_bodies is not None else None)
    if run.rows_after != releases or any(rejected.values()):
        raise SystemExit(f"worker [{strategy}]: {run.rows_after} rows after the run (expected {releases}), "
                         f"rejected {rejected}")
    return run


def paired(parses: list[float], limits: list[Run], workers: list[Run]) -> list[dict[str, float]]:
    """Each alternated try's figures side by side: the limit and the worker, run one after the other. This shared
    machine's speed moves by up to 2x within seconds (the same json.loads, from one moment to the next), so a
    ratio is taken within a try, where both sides ran at the same moment, never between the bests of each.

    The divisor of the worker's CPU is the json.loads timed between its invocations (``measure_worker``); the
    mean of those timed just before and just after the try (``parses`` has one more item than the tries) is kept
    beside it, with its ratio, as the bench measured it before stop 29."""
    pairs = []
    brackets = [(before + after) / 2 for before, after in zip(parses[:-1], parses[1:], strict=True)]
    for bracket, limit, worker in zip(brackets, limits, workers, strict=True):
        parse = bracket if worker.interleaved_parse_cpu is None else worker.interleaved_parse_cpu
        pair = {
            "limit_rate": round(limit.rate, 1), "worker_rate": round(worker.rate, 1),
            "limit_server_us": round(limit.server_cpu / limit.releases * 1e6, 1),
            "worker_server_us": round(worker.server_cpu / worker.releases * 1e6, 1),
            "json_loads_us": round(parse / worker.releases * 1e6, 1),
            "json_loads_bracket_us": round(bracket / worker.releases * 1e6, 1),
            "worker_process_us": round(worker.process_cpu / worker.releases * 1e6, 1),
            # Its two halves: the thread that writes (the handler, pg8000, the socket, freeing written pages) and
            # the look-ahead thread that prepares the next message (the process's other threads; no proxy here).
            "worker_writing_us": round(worker.client_cpu / worker.releases * 1e6, 1),
            "worker_lookahead_us": round(worker.proxy_cpu / worker.releases * 1e6, 1),
        }
        pairs.append(_with_ratios(pair, PAIRED_RATIOS + BRACKET_RATIOS))
    return pairs


def latency_paired(loopback: list[Run], slow: list[Run], per_row: list[Run]) -> list[dict[str, float]]:
    """Each proxied try's latency figures: the worker at 0 ms and at 1 ms, and the per-row seed at 1 ms (if it
    ran), within seconds of each other; the ratios within the try are named as figures.TARGETS names them."""
    pairs = []
    for number, (fast, late) in enumerate(zip(loopback, slow, strict=True)):
        pair = {"loopback_rate": round(fast.rate, 1), "slow_rate": round(late.rate, 1)}
        if per_row:
            pair["per_row_rate"] = round(per_row[number].rate, 1)
        pairs.append(_with_ratios(pair, LATENCY_RATIOS))
    return pairs


def _with_ratios(pair: dict[str, float], ratios: tuple[tuple[str, str, str], ...]) -> dict[str, float]:
    """The try's figures with its ratios added, named as figures.TARGETS names them (those whose both sides ran)."""
    for name, ours, theirs in ratios:
        if theirs in pair:
            pair[name] = round(pair[ours] / pair[theirs], 3) if pair[theirs] else float("nan")
    return pair


LATENCY_RATIOS = (("latency", "slow_rate", "loopback_rate"), ("vs_per_row", "slow_rate", "per_row_rate"))
PAIRED_RATIOS = (("vs_limit", "worker_rate", "limit_rate"), ("server_cpu", "worker_server_us", "limit_server_us"),
                 ("client_cpu", "worker_process_us", "json_loads_us"))
# Not a figure of the issue: the worker's CPU against the json.loads timed before and after its try.
BRACKET_RATIOS = (("client_cpu_bracketed", "worker_process_us", "json_loads_bracket_us"),)


def body_parse_cpu(bodies: list[str], repeat: int = 3) -> float:
    """Process CPU seconds of the standard library's ``json.loads`` of every body (best of ``repeat``)."""
    best = float("inf")
    for _ in range(repeat):
        began = time.process_time()
        for body in bodies:
            json.loads(body)
        best = min(best, time.process_time() - began)
    return best


def worker_client_side(module: Any, events: list[dict[str, Any]], strategy: str, sink: Any,
                       overhead_invocations: int) -> dict[str, Any]:
    """Where the worker's client time goes, with no database (a stand-in that answers at once).

    On real events: json.loads of the bodies, ``Worker.process`` of them, the whole handler. On events of
    five one-release pages: the handler's fixed cost per invocation (Powertools: batch processor, logger,
    metrics flush) as handler - Worker.process, and what its INFO logs would add if they were not silenced.
    """
    from ingest.queue import LocalContext
    from ingest.worker import Connections, Message, Worker

    null = NullDatabase()

    def null_worker() -> Worker:
        # The client side of the write alone (compiling's cost: bench/compile_bench.py).
        return Worker(Connections(lambda: null), {}, strategy=strategy,  # type: ignore[arg-type, return-value]
                      compile_releases=False)

    def process_all(bodies: list[str], repeat: int = 1) -> float:
        worker = null_worker()
        # Each with its digest, as SQS delivers it (md5OfBody): without one the worker hashes the body itself.
        batch = [Message(f"client-{number}", body, SOURCE, 1, hashlib.md5(body.encode()).hexdigest())  # noqa: S324
                 for number, body in enumerate(bodies)]
        began = time.perf_counter()
        for _ in range(repeat):
            for message in batch:
                worker.process(message)
        return time.perf_counter() - began

    def handler_all(batch: list[dict[str, Any]], repeat: int = 1) -> float:
        module._worker = null_worker()
        try:
            with contextlib.redirect_stdout(sink):
                began = time.perf_counter()
                for _ in range(repeat):
                    for event in batch:
                        response = module.lambda_handler(event, LocalContext(120))
                        if _failures([response]):
                            raise SystemExit(f"the handler without a database failed: {response}")
                return time.perf_counter() - began
        finally:
            module._worker = None

    @contextlib.contextmanager
    def info_logs() -> Iterator[None]:
        """Powertools' INFO logs on (as deployed), written to /dev/null instead of stdout."""
        handlers = [handler for handler in module.logger.handlers if isinstance(handler, logging.StreamHandler)]
        level, streams = module.logger.log_level, [handler.stream for handler in handlers]
        module.logger.setLevel("INFO")
        for handler in handlers:
            handler.setStream(sink)
        try:
            yield
        finally:
            module.logger.setLevel(level)
            for handler, stream in zip(handlers, streams, strict=True):
                handler.setStream(stream)

    bodies = [record["body"] for event in events for record in event["Records"]]
    releases = sum(len(json.loads(body)["page"]["releases"]) for body in bodies)
    began = time.perf_counter()
    for body in bodies:
        json.loads(body)
    parse = time.perf_counter() - began
    process = process_all(bodies)
    handler = handler_all(events)

    tiny = worker_bench.events([worker_bench.tiny_event(SOURCE, 8_000_000 + number)["Records"][0]["body"]
                                for number in range(5)], 5, SOURCE, 8_000_000)
    tiny_bodies = [record["body"] for record in tiny[0]["Records"]]
    handler_all(tiny, 20)  # warm
    tiny_process = min(process_all(tiny_bodies, overhead_invocations) for _ in range(3))
    tiny_quiet = min(handler_all(tiny, overhead_invocations) for _ in range(3))
    with info_logs():
        tiny_loud = min(handler_all(tiny, overhead_invocations) for _ in range(3))
    per_invocation = (tiny_quiet - tiny_process) / overhead_invocations
    logs = (tiny_loud - tiny_quiet) / overhead_invocations
    seconds_per_event = handler / len(events)
    return {"releases": releases, "messages": len(bodies), "invocations": len(events),
            "body_parse_seconds": round(parse, 4), "worker_process_seconds": round(process, 4),
            "handler_seconds": round(handler, 4), "handler_rate": round(releases / handler, 1),
            "overhead_invocations": overhead_invocations,
            "powertools_ms_per_invocation": round(per_invocation * 1000, 4),
            "info_logging_ms_per_invocation": round(logs * 1000, 4),
            "info_logging_share_of_an_event": round(logs / seconds_per_event, 5)}



def bench_worker(bench: Bench, releases: list[dict[str, Any]], args: Any) -> dict[str, Any]:
    module = _handler_module()
    bench.create_database(WORKER_DATABASE)
    mean = round(sum(map(json_size, releases)) / len(releases))
    bodies = worker_bench.inline_bodies(releases, args.worker_per_message, SOURCE)
    events = worker_bench.events(bodies, args.worker_batch, SOURCE)
    warm = worker_bench.tiny_event(SOURCE, 9_000_000)
    encoded = encode_copy(releases)
    body_bytes = [len(body.encode("utf-8")) for body in bodies]
    payloads = [len(worker_bench.event_bytes(event)) for event in events]
    info: dict[str, Any] = {
        "releases": len(releases), "mean_bytes": mean, "per_message": args.worker_per_message,
        "messages": len(bodies), "records_per_event": args.worker_batch, "events": len(events),
        "body_bytes_mean": round(statistics.mean(body_bytes)), "body_bytes_max": max(body_bytes),
        "event_payload_bytes_max": max(payloads), "tries": max(1, args.worker_pairs),
        "strategies": args.worker_strategies, "copy_bytes": len(encoded),
    }
    if max(body_bytes) > worker_bench.SQS_MESSAGE_LIMIT or max(payloads) > worker_bench.LAMBDA_PAYLOAD_LIMIT:
        progress(f"[worker] warning: bodies up to {max(body_bytes):,} B, events up to {max(payloads):,} B: "
                 "above what SQS and Lambda accept")
    progress(f"[worker] {len(releases):,} releases (mean {mean:,} B) in {len(bodies)} inline bodies of "
             f"{args.worker_per_message} (mean {info['body_bytes_mean'] / 1e3:,.0f} KB, max "
             f"{max(body_bytes) / 1e3:,.0f} KB), {len(events)} events of {args.worker_batch} records "
             f"(payload up to {max(payloads) / 1e6:.2f} MB); the limit copies {len(encoded) / 1e6:.1f} MB")
    runs: list[Run] = []
    parses: list[float] = []  # json.loads of every body, before each try of the direct runs and after the last
    default = args.worker_strategies[0]
    sink = open(os.devnull, "w")  # noqa: SIM115 - closed below
    try:

        # The bodies of each event, for json.loads between the worker's invocations (the divisor of its CPU)
        per_event = args.worker_batch
        bodies_by_event = [bodies[start:start + per_event] for start in range(0, len(bodies), per_event)]

        def limit_and_workers(delay: float | None, strategies: list[str], tries: dict[str, list[Run]]) -> None:
            tries.setdefault(LIMIT, []).append(bench.measure_limit(
                database=WORKER_DATABASE, delay=delay, data=encoded, releases=len(releases), size="worker",
                page_size=args.worker_per_message, mean_bytes=mean))
            for strategy in strategies:
                tries.setdefault(strategy, []).append(measure_worker(
                    bench, module, strategy=strategy, delay=delay, events=events, warm=warm,
                    releases=len(releases), messages=len(bodies), per_message=args.worker_per_message,
                    mean_bytes=mean, sink=sink,
                    divisor_bodies=bodies_by_event if delay is None and strategy == default else None))

        # Directly connected, every strategy: each try bracketed by two json.loads of the bodies.
        direct: dict[str, list[Run]] = {}
        for _ in range(max(1, args.worker_pairs)):
            parses.append(body_parse_cpu(bodies, repeat=1))
            limit_and_workers(None, args.worker_strategies, direct)
        parses.append(body_parse_cpu(bodies, repeat=1))
        info["pairs"] = paired(parses, direct[LIMIT], direct[default])
        # Through the proxy, the default strategy: each try runs every delay one after the other, and the per-row
        # seed (on fewer of the same releases) right after the worker at 1 ms, so what latency costs and how the
        # worker compares with one upsert per release are ratios within a try too.
        proxied: dict[float, dict[str, list[Run]]] = {delay: {} for delay in PROXIED_DELAYS}
        per_row_pages = paginate(releases[:args.per_row_1ms], args.worker_per_message)
        for _ in range(max(1, args.worker_pairs)):
            for delay in PROXIED_DELAYS:
                limit_and_workers(delay, [default], proxied[delay])
                if delay == ONE_MS and per_row_pages:
                    proxied[delay].setdefault(PER_ROW, []).append(bench.measure(
                        strategy=PER_ROW, size="worker", database=WORKER_DATABASE, table="seed_releases",
                        delay=delay, pages=per_row_pages, page_size=args.worker_per_message, mean_bytes=mean,
                        body=seed_per_row))
        info["latency_pairs"] = latency_paired(proxied[0.0][default], proxied[ONE_MS][default],
                                               proxied[ONE_MS].get(PER_ROW, []))
        for delay, tries in [(None, direct), *proxied.items()]:
            where = "direct" if delay is None else f"{delay * 1000:g} ms"
            for items in tries.values():
                run = best_of(items)
                runs.append(run)
                trips = "" if run.strategy == LIMIT else (
                    f", {_opt(run.wire_per_message)} RT/message on the wire ({_opt(run.self_per_message)} "
                    "self-counted)")
                progress(f"[worker] {run.strategy} @ {where}: {run.releases:,} releases in {run.seconds:.2f} s = "
                         f"{run.rate:,.0f} rel/s; server CPU {run.server_cpu / run.releases * 1e6:.0f} µs/release, "
                         f"client process {run.process_cpu / run.releases * 1e6:.0f} µs/release{trips}")
        info["body_parse_cpu_seconds"] = round(min(parses), 4)
        subset = max(1, min(len(events), args.worker_client_events))
        info["client_side"] = worker_client_side(module, events[:subset], default, sink,
                                                 args.worker_overhead_invocations)
        client = info["client_side"]
        progress(f"[worker] json.loads of the {len(bodies)} bodies: {info['body_parse_cpu_seconds']:.2f} s of CPU; "
                 f"without a database ({client['releases']:,} releases): Worker.process "
                 f"{client['worker_process_seconds']:.2f} s, whole handler {client['handler_seconds']:.2f} s; "
                 f"Powertools {client['powertools_ms_per_invocation']:.3f} ms/invocation")
    finally:
        sink.close()
        for name in ("DATABASE_URL", "WRITE_STRATEGY", "COMPILE_RELEASES"):
            os.environ.pop(name, None)
    info["run_objects"] = runs
    return info


def _opt(value: float | None) -> str:
    return "-" if value is None else f"{value:,.2f}"


def same_delay(runs: list[Run], strategy: str, run: Run) -> Run | None:
    return next((other for other in runs if other.strategy == strategy and other.delay_ms == run.delay_ms
                 and other.direct == run.direct), None)


def print_worker_runs(info: dict[str, Any]) -> None:
    runs: list[Run] = info["run_objects"]
    print(f"\n=== worker: handler.worker.lambda_handler in-process, {info['releases']:,} releases (mean "
          f"{info['mean_bytes']:,} B) in {info['messages']} inline messages of {info['per_message']} releases "
          f"(mean body {info['body_bytes_mean'] / 1e3:,.0f} KB), {info['events']} events of "
          f"{info['records_per_event']} records ===")
    print("(from the event dicts to committed rows on a warm worker, compiling off; vs limit = rel/s / the limit's "
          "at the same RTT (the same rows,\n encoded beforehand, in one psycopg COPY into an unindexed UNLOGGED "
          "table); dir = connected directly, no proxy; RT/msg = round trips per\n message on the wire and "
          "self-counted; server and client CPU in µs per release (client = the whole client process);\n"
          f" best of {info['tries']} tries, directly connected and through the proxy, the limit and the worker "
          "alternated)")
    header = (f"{'strategy':<24} {'RTT':>4} {'releases':>8} {'rel/s':>8} {'MB/s':>6} {'vs limit':>8} "
              f"{'RT/msg wire':>11} {'RT/msg self':>11} {'server µs':>9} {'client µs':>9} {'wall':>6}")
    print(header)
    print("-" * len(header))
    for run in runs:
        limit = same_delay(runs, LIMIT, run)
        versus = f"{run.rate / limit.rate:.2f}x" if limit and run is not limit and limit.rate else "-"
        rtt = "dir" if run.direct else f"{run.delay_ms:g}ms"
        print(f"{run.strategy:<24} {rtt:>4} {run.releases:>8,} {run.rate:>8,.0f} {run.mb_per_second:>6.1f} "
              f"{versus:>8} {_opt(run.wire_per_message):>11} {_opt(run.self_per_message):>11} "
              f"{run.server_cpu / run.releases * 1e6:>9.0f} {run.process_cpu / run.releases * 1e6:>9.0f} "
              f"{run.seconds:>6.2f}")
    if info.get("pairs"):
        print("the directly connected tries, one after the other (the figures' ratios are taken within a try):")
        for number, pair in enumerate(info["pairs"], 1):
            print(f" try {number}: worker {pair['worker_rate']:,.0f} vs limit {pair['limit_rate']:,.0f} rel/s = "
                  f"{pair['vs_limit']:.2f}x; database {pair['worker_server_us']:.0f} vs "
                  f"{pair['limit_server_us']:.0f} µs = {pair['server_cpu']:.2f}x; "
                  f"worker process {pair['worker_process_us']:.0f} µs (writing thread "
                  f"{pair['worker_writing_us']:.0f}, look-ahead {pair['worker_lookahead_us']:.0f}) vs json.loads "
                  f"{pair['json_loads_us']:.0f} = {pair['client_cpu']:.2f}x"
                  + (f" (timed before and after the try: {pair['json_loads_bracket_us']:.0f} = "
                     f"{pair['client_cpu_bracketed']:.2f}x)" if "client_cpu_bracketed" in pair else ""))
        bracketed = sorted(pair["client_cpu_bracketed"] for pair in info["pairs"] if "client_cpu_bracketed" in pair)
        if bracketed:
            print(f" the worker's CPU against json.loads timed before and after each try (the divisor until stop 29): "
                  f"median {statistics.median(bracketed):.2f}x ({bracketed[0]:.2f}–{bracketed[-1]:.2f})")
    for number, pair in enumerate(info.get("latency_pairs", []), 1):
        if number == 1:
            print("the proxied tries (0 ms, 1 ms, the per-row seed at 1 ms, 5 ms, one after the other; the latency "
                  "figures are taken within a try):")
        seed = (f"; vs the per-row seed at 1 ms {pair['per_row_rate']:,.0f} rel/s = {pair['vs_per_row']:.1f}x"
                if "per_row_rate" in pair else "")
        print(f" try {number}: worker at 1 ms {pair['slow_rate']:,.0f} vs at 0 ms {pair['loopback_rate']:,.0f} rel/s = "
              f"{pair['latency']:.2f}{seed}")
    client = info.get("client_side")
    if client:
        print(f"client side without a database, {client['releases']:,} releases in {client['invocations']} "
              f"invocations: json.loads of the bodies {client['body_parse_seconds']:.2f} s, Worker.process "
              f"{client['worker_process_seconds']:.2f} s,\n whole handler {client['handler_seconds']:.2f} s = "
              f"{client['handler_rate']:,.0f} rel/s; the handler's fixed cost (Powertools; "
              f"{client['overhead_invocations']} invocations of five one-release pages) "
              f"{client['powertools_ms_per_invocation']:.3f} ms per invocation;\n its INFO logs, silenced in the "
              f"timed runs, would add {client['info_logging_ms_per_invocation']:.3f} ms per invocation = "
              f"{client['info_logging_share_of_an_event']:.3%} of an invocation of the timed events")

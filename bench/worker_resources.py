"""The worker's resources: the peak memory of one full invocation and the cold import (bench/worker_bench.py
runs both in fresh interpreters); this module drives them from the bench and prints them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import worker_bench
from data import SOURCE, generate
from measure import Bench, progress

MEMORY_DATABASE = "bench_worker_memory"


def _wide(release: dict[str, Any]) -> dict[str, Any]:
    """The release with curly quotes in its title, as real notices have: its text no longer fits in Latin-1."""
    tender = release["tender"]
    return {**release, "tender": {**tender, "title": f"\u201c{tender['title']}\u201d"}}


def worker_memory(bench: Bench, args: Any, workdir: Path) -> dict[str, Any]:
    """Peak RSS of one full invocation in a fresh interpreter (bench/worker_probe.py), then where it goes.

    Twice: with the synthetic releases as they are (all their text is Latin-1, so CPython keeps every body in
    one byte per character) and with curly quotes in each title (two bytes per character, as with most real
    data); the target applies to the larger.
    """
    bench.create_database(MEMORY_DATABASE)
    needed = args.memory_records * (args.memory_page_bytes // 3_000 + 1)  # releases are >= ~3.2 KB
    releases = generate(needed, 4_000, 3_000_000, args.seed + 3_000_000)
    url = bench.server.url_for(MEMORY_DATABASE)
    warm = worker_bench.tiny_event(SOURCE, 3_900_000)
    info: dict[str, Any] = {"target_mib": worker_bench.TARGET_ADDED_PEAK_MIB,
                            "payload_limit_bytes": worker_bench.LAMBDA_PAYLOAD_LIMIT, "variants": {}}
    events: dict[str, dict[str, Any]] = {}
    for variant, pool in (("latin-1", releases), ("wide", [_wide(release) for release in releases])):
        bodies = worker_bench.bodies_of_size(pool, args.memory_records, args.memory_page_bytes, SOURCE,
                                             first_number=3_000_000)
        event = events[variant] = worker_bench.events(bodies, args.memory_records, SOURCE,
                                                      first_number=3_000_000)[0]
        payload = len(worker_bench.event_bytes(event))
        body_bytes = [len(body.encode("utf-8")) for body in bodies]
        releases_per_body = [body.count('"ocid":"') for body in bodies]
        progress(f"[memory] {variant}: one invocation of {len(bodies)} records, bodies "
                 f"{sum(body_bytes) / 1e6:.2f} MB ({', '.join(f'{size / 1e3:.0f} KB' for size in body_bytes)}), "
                 f"payload {payload / 1e6:.2f} MB (Lambda limit {worker_bench.LAMBDA_PAYLOAD_LIMIT / 1e6:.2f} MB)")
        bench.reset(MEMORY_DATABASE, "releases")
        clean = worker_bench.probe_memory(workdir, url, event, warm, name=variant)
        expected = sum(releases_per_body) + 1
        stored = bench.count(MEMORY_DATABASE, "releases")
        if clean["failures"] or stored != expected:
            raise SystemExit(f"the memory probe's invocation failed: {clean['failures']}, {stored} rows "
                             f"(expected {expected})")
        info["variants"][variant] = {"records": len(bodies), "body_bytes": body_bytes,
                                     "releases_per_body": releases_per_body, "payload_bytes": payload,
                                     "clean": clean}
        progress(f"[memory] {variant}: warm RSS {clean['kib']['rss_before'] / 1024:.1f} MiB; added peak "
                 f"{clean['added_peak_mib']:.1f} MiB (the event alone +{clean['event_built_added_mib']:.1f} MiB; "
                 f"ru_maxrss delta {clean['maxrss_delta_mib']:.1f} MiB); invocation {clean['invoke_seconds']:.2f} s")
    worst = max(info["variants"], key=lambda name: info["variants"][name]["clean"]["added_peak_mib"])
    info["worst"] = worst
    info["added_peak_mib"] = info["variants"][worst]["clean"]["added_peak_mib"]
    info["pass"] = info["added_peak_mib"] <= worker_bench.TARGET_ADDED_PEAK_MIB
    if not args.no_tracemalloc:
        bench.reset(MEMORY_DATABASE, "releases")  # the same rows again: inserted, not unchanged
        traced = worker_bench.probe_memory(workdir, url, events[worst], warm, name=worst, trace=True)
        info["tracemalloc_variant"] = worst
        info["tracemalloc"] = traced.get("tracemalloc")
        info["tracemalloc_run_added_peak_mib"] = traced["added_peak_mib"]
    return info




def print_worker_resources(memory: dict[str, Any] | None, imports: dict[str, Any] | None) -> None:
    if memory:
        print(f"\nmemory (fresh interpreter each; one full invocation after a warm-up invocation; added peak = VmHWM "
              f"after - VmRSS before the event was read,\n the peak reset just before; target <= "
              f"{memory['target_mib']} MiB on the larger):")
        for variant, item in memory["variants"].items():
            clean = item["clean"]
            kib = clean["kib"]
            print(f"  {variant:<8} event of {item['records']} records, bodies {sum(item['body_bytes']):,} B "
                  f"({', '.join(f'{size / 1e3:.0f} KB' for size in item['body_bytes'])}; "
                  f"{sum(item['releases_per_body']):,} releases), payload {item['payload_bytes']:,} B (limit "
                  f"{memory['payload_limit_bytes']:,})")
            print(f"           warm RSS {kib['rss_before'] / 1024:.1f} MiB (peak so far {kib['hwm_before'] / 1024:.1f}"
                  f" MiB); peak during the invocation {kib['hwm_after'] / 1024:.1f} MiB; added peak "
                  f"{clean['added_peak_mib']:.1f} MiB (ru_maxrss after - before {clean['maxrss_delta_mib']:.1f} MiB)")
            print(f"           the event alone (payload bytes + parsed dict): +{clean['event_built_added_mib']:.1f} "
                  f"MiB; still resident after: +{clean['retained_after_mib']:.1f} MiB; invocation "
                  f"{clean['invoke_seconds']:.2f} s")
        print(f"  added peak {memory['added_peak_mib']:.1f} MiB ({memory['worst']}): "
              f"{'PASS' if memory['pass'] else 'FAIL'}")
        traced = memory.get("tracemalloc")
        if traced:
            print(f"  tracemalloc ({memory['tracemalloc_variant']}, another fresh interpreter): Python peak "
                  f"{traced['peak_mib']:.1f} MiB; biggest holders in a snapshot at {traced['snapshot_at_mib']:.1f} "
                  f"MiB traced:")
            for item in traced.get("by_line", [])[:10]:
                print(f"    {item['mib']:>6.2f} MiB {item['blocks']:>8,} blocks  {item['where']}")
            print("  by call path (our frames, outermost first -> where the allocation happened):")
            for item in traced.get("by_path", [])[:8]:
                path = " > ".join(item["our_frames"]) or "(no frame of ours)"
                print(f"    {item['mib']:>6.2f} MiB  {path} -> {item['allocated_at']}")
    if imports:
        print(f"\ncold import (fresh interpreters, {imports['repeat']} each, alternated; in-process, from the first "
              f"import to the objects built at import):")
        print(f"  import handler.worker: median {imports['handler_median'] * 1000:.0f} ms, min "
              f"{imports['handler_min'] * 1000:.0f} ms; libraries only: median "
              f"{imports['libraries_median'] * 1000:.0f} ms, min {imports['libraries_min'] * 1000:.0f} ms; "
              f"ratio {imports['ratio_median']:.2f}x (min/min "
              f"{imports['ratio_min']:.2f}x; target <= {worker_bench.TARGET_IMPORT_RATIO}x: "
              f"{'PASS' if imports['pass'] else 'FAIL'}); whole interpreter (median wall): "
              f"{imports['process_wall_median']['handler'] * 1000:.0f} ms vs "
              f"{imports['process_wall_median']['libraries'] * 1000:.0f} ms")
        print(f"  our modules' self time (-X importtime, median of {imports['importtime_runs']}; total "
              f"{imports['our_modules_self_us_total'] / 1000:.1f} ms of "
              f"{imports['importtime_handler_cumulative_us_median'] / 1000:.0f} ms cumulative for handler.worker):")
        for item in imports["our_modules_self_us"][:10]:
            print(f"    {item['self_us'] / 1000:>6.2f} ms  {item['module']}")
        deployed = imports.get("without_package_bytecode")
        if deployed:
            print(f"  a package without bytecode (make build byte-compiles when it finds python3.13; without it, "
                  f"/var/task being read-only,\n the package's modules compile at every cold start; stdlib and "
                  f"{', '.join(deployed['provided_by_runtime'][:3])}... "
                  f"keep theirs), medians of {deployed['repeat']}: import handler.worker "
                  f"{deployed['handler_median'] * 1000:.0f} ms, libraries only "
                  f"{deployed['libraries_median'] * 1000:.0f} ms ({deployed['ratio_median']:.2f}x); with bytecode "
                  f"{imports['handler_median'] * 1000:.0f} ms: "
                  f"+{(deployed['handler_median'] - imports['handler_median']) * 1000:.0f} ms per cold start")



def resource_targets(memory: dict[str, Any] | None, imports: dict[str, Any] | None) -> list[dict[str, Any]]:
    """The worker's memory and cold-import targets, in the shape of figures.py's rows."""
    rows: list[dict[str, Any]] = []
    if memory:
        worst = memory["variants"][memory["worst"]]
        rows.append({"figure": "worker: added peak RSS of a full invocation, MiB",
                     "measured": f"{sum(worst['body_bytes']) / 1e6:.2f} MB of bodies in {worst['records']} records "
                                 f"({memory['worst']})",
                     "value": memory["added_peak_mib"], "target": f"≤ {worker_bench.TARGET_ADDED_PEAK_MIB}",
                     "pass": memory["pass"]})
    if imports:
        rows.append({"figure": "worker: cold import vs its libraries",
                     "measured": f"{imports['handler_median'] * 1000:.0f} vs {imports['libraries_median'] * 1000:.0f}"
                                 " ms (medians)",
                     "value": imports["ratio_median"], "target": f"≤ {worker_bench.TARGET_IMPORT_RATIO}",
                     "pass": imports["pass"]})
    return rows

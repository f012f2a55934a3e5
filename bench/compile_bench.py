"""What compiling costs the worker: time per page with compiled releases kept current, and without.

``bench/run.py`` calls ``run``. Pages of 4 KB synthetic releases go through ``save_page`` (the worker's whole
per-page work: read, validate, hash, write) with compiling off, deferred (the stack's: the page statement marks
the ocids it changed, and the compile step, timed apart, compiles them) and inline (the page's ocids compiled
after its write), on a fresh table each time, directly and through a proxy that adds 1 ms per round trip.

The ocids follow the distribution of the real samples (../shared/ocds-samples, real-publisher files: 782 distinct
releases of 709 ocids), scaled to the number of releases:

    releases per ocid   1    2   3   4   5   6   7   8
    ocids             677   15   6   5   2   2   1   1

Then one ocid with 1,000 releases gets a page with one newer release, 20 times: each page merges one release
onto the stored compiled release (the incremental case), not 1,000.

Two arrival orders: by date (a harvest walking forward in time: every new release is newer than its ocid's
compiled state, so it is merged onto it) and shuffled (releases of an ocid arrive out of order: full re-merges).
"""

from __future__ import annotations

import contextlib
import copy
import random
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from ingest.pages import save_page

DISTRIBUTION = {1: 677, 2: 15, 3: 6, 4: 5, 5: 2, 6: 2, 7: 1, 8: 1}
TARGET_SHARE = 0.25  # compiling may cost at most this share of the worker's time per page
PAGE_SIZE = 200      # releases per page, as the worker bench's inline messages


def shaped(templates: list[dict[str, Any]], seed: int) -> list[dict[str, Any]]:
    """The templates' content under ocids, ids and dates that follow ``DISTRIBUTION``, in date order."""
    per_ocid = [size for size, ocids in DISTRIBUTION.items() for _ in range(ocids)]
    rng = random.Random(seed)
    start = datetime(2024, 1, 1, tzinfo=UTC)
    releases: list[dict[str, Any]] = []
    number = 0
    while len(releases) < len(templates):
        for size in per_ocid:
            ocid = f"ocds-bench-{number}"
            number += 1
            # An ocid's releases are spread over the period, as a contracting process's notices are.
            for index, minute in enumerate(sorted(rng.sample(range(500_000), size))):
                if len(releases) == len(templates):
                    break
                release = copy.deepcopy(templates[len(releases)])
                release.update(ocid=ocid, id=f"{ocid}-{index}",
                               date=(start + timedelta(minutes=minute)).strftime("%Y-%m-%dT%H:%M:%SZ"))
                releases.append(release)
    releases.sort(key=lambda release: release["date"])
    return releases


MODES = ("off", "deferred", "inline")


def _time_pages(bench: Any, databases: dict[str, str], pages: list[list[dict[str, Any]]],
                delay: float | None) -> dict[str, dict[str, float]]:
    """Per page and mode: the worker path's seconds and CPU seconds (its process and every server process); for
    ``deferred`` also the compile step's, which then compiles what the pages marked (per page written, so the
    two add up to the whole cost). Each page is written in every mode, one database per mode, the order of the
    modes turning from page to page: a machine shared with other work slows some moments, and interleaving
    spreads that over the modes instead of charging it to one."""
    from ingest.store.compiled import compile_pending

    totals = {mode: {"worker": 0.0, "worker_cpu": 0.0, "step": 0.0, "step_cpu": 0.0} for mode in MODES}
    with contextlib.ExitStack() as stack:
        connections = {}
        for mode, database in databases.items():
            bench.dbs[database].run("TRUNCATE releases, compiled_releases, compile_pending", "bench")
            bench.dbs[database].run("CHECKPOINT", "bench")
            db, _proxy = stack.enter_context(bench.connection(database, delay))
            save_page(db, {"version": "1.1", "releases": [dict(pages[0][0], ocid="warm", id="warm")]}, "bench",
                      compile_releases=mode)  # prepares the statements
            compile_pending(db)
            connections[mode] = db
        for number, page in enumerate(pages):
            for mode in MODES[number % 3:] + MODES[:number % 3]:
                wall, cpu = _timed(bench, save_page, connections[mode],
                                   {"version": "1.1", "releases": page}, "bench", compile_releases=mode)
                totals[mode]["worker"] += wall
                totals[mode]["worker_cpu"] += cpu
        wall, cpu = _timed(bench, compile_pending, connections["deferred"])
        totals["deferred"]["step"], totals["deferred"]["step_cpu"] = wall, cpu
    return {mode: {name: value / len(pages) for name, value in figures.items()} for mode, figures in totals.items()}


def _timed(bench: Any, work: Callable[..., Any], *args: Any, **kwargs: Any) -> tuple[float, float]:
    """Wall seconds and CPU seconds (this process and every server process) of ``work(*args, **kwargs)``."""
    server = bench.server_cpu()
    started, cpu = time.perf_counter(), time.process_time()
    work(*args, **kwargs)
    wall, cpu = time.perf_counter() - started, time.process_time() - cpu
    return wall, cpu + bench.server_cpu() - server


def run(bench: Any, generate: Callable[[int, int, int, int], list[dict[str, Any]]], seed: int,
        releases: int) -> dict[str, Any]:
    """Time per page with compiling off, deferred (the stack's: the worker marks, the compile step compiles) and
    inline; print a table; return the figures for results.json."""
    databases = {mode: f"compile_bench_{mode}" for mode in MODES}
    for database in databases.values():
        bench.create_database(database)
    in_date_order = shaped(generate(releases, 4_000, 0, seed), seed)
    shuffled = in_date_order[:]
    random.Random(seed).shuffle(shuffled)
    ocids = len({release["ocid"] for release in in_date_order})
    results: dict[str, Any] = {"releases": len(in_date_order), "ocids": ocids, "page_size": PAGE_SIZE,
                               "distribution": DISTRIBUTION, "target_share": TARGET_SHARE, "runs": []}
    print(f"\nCompiling's cost per page ({len(in_date_order)} releases of ~4 KB, {ocids} ocids, "
          f"{PAGE_SIZE} per page; releases per ocid as in the real samples). The worker's share is what "
          "deferred compiling adds to its time\nper page; the compile step runs in its own function, and its time "
          "is per page written.")
    print(f"{'order':<10} {'latency':>7} {'off':>7} {'deferred':>9} {'share':>6} {'step':>7} {'inline':>7} "
          f"{'share':>6}   ms per page; CPU ms per page (worker process + server):")
    print(f"{'':<10} {'':>7} {'off':>7} {'deferred':>9} {'share':>6} {'step':>7} {'inline':>7} {'share':>6}")
    for order, items in (("by date", in_date_order), ("shuffled", shuffled)):
        pages = [items[start:start + PAGE_SIZE] for start in range(0, len(items), PAGE_SIZE)]
        for delay in (None, 0.001):
            timed = _time_pages(bench, databases, pages, delay)
            latency = "direct" if delay is None else f"{delay * 1000:.0f} ms"
            row: dict[str, Any] = {"order": order, "latency": latency}
            for kind in ("", "_cpu"):
                off, deferred = timed["off"][f"worker{kind}"], timed["deferred"][f"worker{kind}"]
                inline, step = timed["inline"][f"worker{kind}"], timed["deferred"][f"step{kind}"]
                share, inline_share = (deferred - off) / deferred, (inline - off) / inline
                row.update({f"off{kind}_ms_per_page": round(off * 1000, 2),
                            f"deferred{kind}_ms_per_page": round(deferred * 1000, 2),
                            f"compile{kind}_share": round(share, 3),
                            f"compile_step{kind}_ms_per_page": round(step * 1000, 2),
                            f"inline{kind}_ms_per_page": round(inline * 1000, 2),
                            f"inline{kind}_share": round(inline_share, 3)})
                print(f"{order if not kind else '':<10} {latency if not kind else 'CPU':>7} {off * 1000:>7.1f} "
                      f"{deferred * 1000:>9.1f} {share:>6.0%} {step * 1000:>7.1f} {inline * 1000:>7.1f} "
                      f"{inline_share:>6.0%}{'' if share <= TARGET_SHARE else '  (deferred over the target)'}")
            results["runs"].append(row)
    results["met"] = all(run["compile_share"] <= TARGET_SHARE for run in results["runs"])
    results["long_ocid"] = long_ocid(bench, databases["inline"], in_date_order[0])
    return results


def long_ocid(bench: Any, database: str, template: dict[str, Any], stored: int = 1_000,
              pages: int = 20) -> dict[str, Any]:
    """One ocid with ``stored`` releases, then pages that each bring one newer release of it: each must cost one
    merge onto the stored compiled release, not ``stored`` merges."""
    from ingest.store.compiled import compile_ocids

    bench.dbs[database].run("TRUNCATE releases, compiled_releases", "bench")
    start = datetime(2024, 1, 1, tzinfo=UTC)

    # The synthetic items' deliveryAddresses (an extension's array of objects without ids) would be appended by
    # every release, as the merge rules say, growing the compiled release with the ocid: not what is timed here.
    template = copy.deepcopy(template)
    for item in template.get("tender", {}).get("items", []):
        item.pop("deliveryAddresses", None)

    def one(number: int) -> dict[str, Any]:
        release = copy.deepcopy(template)
        release.update(ocid="ocds-bench-long", id=f"long-{number}",
                       date=(start + timedelta(minutes=number)).strftime("%Y-%m-%dT%H:%M:%SZ"))
        return release

    with bench.connection(database, None) as (db, _proxy):
        for first in range(0, stored, PAGE_SIZE):
            save_page(db, {"version": "1.1", "releases": [one(n) for n in range(first, first + PAGE_SIZE)]},
                      "bench", compile_releases=False)
        compile_ocids(db, ["ocds-bench-long"])
        started = time.perf_counter()
        for number in range(stored, stored + pages):
            save_page(db, {"version": "1.1", "releases": [one(number)]}, "bench")
        per_page = (time.perf_counter() - started) / pages
        merges = compile_ocids(db, ["ocds-bench-long"], force=True).merges
    print(f"one ocid with {stored} releases, then {pages} pages of one newer release each: {per_page * 1000:.1f} ms "
          f"per page (a full re-merge of it: {merges} merges)")
    return {"stored": stored, "pages": pages, "ms_per_page": round(per_page * 1000, 2)}

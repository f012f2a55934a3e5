"""A/B of the page statement with and without its anti-join, interleaved in one run (not in make bench).

``.venv/bin/python bench/antijoin_ab.py [--rounds 3] [--quick]``. Same server, same data, same process: for each
release size and write strategy, fresh inserts (empty table) and replays (every release unchanged) run with
the statement as it is (``current``) and with its anti-join (``WHERE (SELECT ...) IS NOT TRUE``) taken out
(``no anti-join``, the statement before it had one), alternating, so a slower or faster machine affects both
alike. Besides rates and the backend's CPU it prints the mean time per page over the first and the last tenth
of each fresh run (a plan that scans the table would make late pages slower) and the generic plan of the insert.
"""

from __future__ import annotations

import argparse
import re
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from data import SEED, generate, json_size, paginate  # noqa: E402
from engine_tables import _save, engine_prepare  # noqa: E402
from measure import Bench  # noqa: E402

from ingest.store import writer  # noqa: E402
from ingest.store.local_server import start  # noqa: E402

_BLOCK = re.compile(r"\n    -- Rows already stored.*?IS NOT TRUE", re.S)


def without_antijoin(sql: str) -> str:
    stripped, count = _BLOCK.subn("", sql)
    assert count == 1 and "IS NOT TRUE" not in stripped, "the statement no longer has the expected block"
    return stripped


def numbered(sql: str) -> str:
    """pg8000's :name parameters as $1, $2, ... (for EXPLAIN (GENERIC_PLAN))."""
    names: list[str] = []

    def number(match: re.Match[str]) -> str:
        if match.group(1) not in names:
            names.append(match.group(1))
        return f"${names.index(match.group(1)) + 1}"

    return re.sub(r"(?<!:):([a-z]\w*)", number, sql)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--strategies", default="json,unnest")
    args = parser.parse_args()
    strategies = args.strategies.split(",")
    current = {strategy: writer.UPSERT_SQL[strategy] for strategy in strategies}
    variants = {"current": current, "no anti-join": {s: without_antijoin(sql) for s, sql in current.items()}}
    divide = 10 if args.quick else 1
    specs = [("4 KB", 20_000 // divide, 4_000, 250, 0), ("20 KB", 5_000 // divide, 20_000, 50, 1_000_000)]
    tmp = Path(tempfile.mkdtemp(prefix="ocds-ab-"))
    server = start(tmp / "pg")
    bench = Bench(server)
    results: dict[tuple[str, str, str, str], list[dict[str, Any]]] = {}
    try:
        for label, count, target, page_size, first in specs:
            releases = generate(count, target, first, SEED + first)
            pages = paginate(releases, page_size)
            database = f"ab_{target}"
            bench.create_database(database)
            common = {"size": label, "database": database, "page_size": page_size,
                      "mean_bytes": round(sum(map(json_size, releases)) / len(releases))}
            for round_number in range(args.rounds):
                order = list(variants) if round_number % 2 == 0 else list(reversed(variants))
                for strategy in strategies:
                    for variant in order:
                        writer.UPSERT_SQL[strategy] = variants[variant][strategy]
                        page_seconds: list[float] = []

                        def body(db: Any, pages: list[list[dict[str, Any]]], strategy: str = strategy,
                                 page_seconds: list[float] = page_seconds) -> dict[str, int]:
                            for page in pages:
                                began = time.perf_counter()
                                _save(db, page, strategy)
                                page_seconds.append(time.perf_counter() - began)
                            return {}

                        def prepare(db: Any, strategy: str = strategy) -> None:
                            engine_prepare(db, strategy)

                        fresh = bench.measure(strategy=strategy, table="releases", delay=0.0, pages=pages,
                                              body=body, prepare=prepare, **common)
                        tenth = max(1, len(page_seconds) // 10)
                        early = statistics.mean(page_seconds[:tenth]) * 1000
                        late = statistics.mean(page_seconds[-tenth:]) * 1000
                        page_seconds.clear()
                        replay = bench.measure(strategy=strategy, table="releases", delay=0.0, pages=pages,
                                               body=body, prepare=prepare, truncate=False, **common)
                        for kind, measured in (("fresh", fresh), ("replay", replay)):
                            results.setdefault((label, strategy, variant, kind), []).append({
                                "rate": measured.rate, "backend": measured.backend_cpu,
                                "client": measured.client_cpu, "wal_mb": measured.wal_bytes / 1e6,
                                **({"early_ms": early, "late_ms": late} if kind == "fresh" else {})})
                        print(f"[{label}] round {round_number + 1} {strategy:<6} {variant:<12} fresh "
                              f"{fresh.rate:>6,.0f} rel/s (backend {fresh.backend_cpu:.2f} s, pages {early:.1f} -> "
                              f"{late:.1f} ms), replay {replay.rate:>6,.0f} rel/s (backend {replay.backend_cpu:.2f} s, "
                              f"WAL {replay.wal_bytes / 1e6:.1f} MB)", flush=True)
            for strategy in strategies:
                sql = numbered(variants["current"][strategy])
                try:
                    plan = bench.dbs[database].run("EXPLAIN (GENERIC_PLAN, COSTS OFF) " + sql, "ab")
                    print(f"\n[{label}] generic plan of the {strategy} statement (table holding {count:,} rows):")
                    for (line,) in plan:
                        if any(word in line for word in ("Anti", "Insert", "Index", "Seq Scan", "Hash", "Nested")):
                            print("    " + line)
                except Exception as exc:  # noqa: BLE001 - informative only
                    print(f"[{label}] no generic plan for {strategy}: {exc}")
        print("\nmedian over rounds (rate rel/s, backend CPU s, client CPU s; fresh: mean ms per page, first -> last "
              "tenth)")
        for (label, strategy, variant, kind), items in results.items():
            rate = statistics.median(item["rate"] for item in items)
            backend = statistics.median(item["backend"] for item in items)
            client = statistics.median(item["client"] for item in items)
            pages_text = ""
            if kind == "fresh":
                pages_text = (f"  pages {statistics.median(item['early_ms'] for item in items):.1f} -> "
                              f"{statistics.median(item['late_ms'] for item in items):.1f} ms")
            print(f"{label:>5} {strategy:<6} {kind:<6} {variant:<12} {rate:>7,.0f} rel/s  backend {backend:5.2f}  "
                  f"client {client:5.2f}  WAL {statistics.median(item['wal_mb'] for item in items):6.1f} MB"
                  f"{pages_text}")
    finally:
        for strategy, sql in current.items():
            writer.UPSERT_SQL[strategy] = sql
        bench.close()
        server.stop(delete=True)
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The issue's figures side by side, each as a ratio against its target, and the bench's other targets.

| figure | measured as |
|---|---|
| worker end to end vs the limit | worker rel/s / raw COPY (the limit) rel/s, both connected directly |
| database CPU per release vs the limit's | every server process's CPU (utime+stime) per release, the same runs |
| worker process CPU per release vs json.loads | the whole worker process's CPU per release (direct run) / the
  standard library's ``json.loads`` of the same message bodies per release, timed between the worker's invocations
  of that run (each event's bodies after the event) |
| round trips per page | counted on the wire by the proxy, per message (a page) |
| at 1 ms RTT vs loopback; vs one upsert per release | worker rel/s at 1 ms / at 0 ms (both through the proxy);
  worker rel/s at 1 ms / the seed's per-row upsert at 1 ms (on the worker's releases) |

The first three are each the median, over the directly connected tries (the limit, then the worker with json.loads
between its invocations), of the ratio within a try (``worker_runs.paired``): this shared machine's speed moves too
much between tries for a ratio of two separately chosen bests to mean anything. So are the two latency figures, over
the proxied tries (0 ms, 1 ms, the per-row seed at 1 ms and 5 ms one after the other, ``worker_runs.latency_paired``).
"""

from __future__ import annotations

import math
from typing import Any

from engine_tables import ENGINE, find
from measure import LIMIT, Run
from worker_runs import PAIRED_RATIOS

TARGETS = {"vs_limit": 0.60, "server_cpu": 1.3, "client_cpu": 1.5, "round_trips": 4, "latency": 0.85,
           "vs_per_row": 50.0}


def _row(figure: str, measured: str, value: float, target: float, higher_is_better: bool) -> dict[str, Any]:
    met = value >= target if higher_is_better else value <= target
    return {"figure": figure, "measured": measured, "value": round(value, 3),
            "target": f"{'≥' if higher_is_better else '≤'} {target:g}", "pass": met}


def issue_figures(worker: dict[str, Any] | None) -> list[dict[str, Any]]:
    if not worker:
        return []
    runs: list[Run] = worker["run_objects"]
    name = f"worker [{worker['strategies'][0]}]"
    loopback = find(runs, name, 0.0)
    rows = []
    pairs = worker.get("pairs") or []
    if pairs:
        for figure, (target, ours, theirs), unit, higher in zip(
                ("worker end to end vs raw COPY (the limit)",
                 "database CPU per release, all server processes, vs raw COPY's",
                 "worker process CPU per release vs json.loads of the same bodies"),
                PAIRED_RATIOS, ("rel/s", "µs", "µs"), (True, False, False), strict=True):
            rows.append(_paired_row(figure, pairs, target, ours, theirs, unit, higher))
    if loopback and loopback.wire_per_message is not None:
        rows.append(_row("round trips per page (on the wire)", f"{loopback.wire_per_message:.2f}",
                         loopback.wire_per_message, TARGETS["round_trips"], False))
    latency_pairs = worker.get("latency_pairs") or []
    if latency_pairs:
        rows.append(_paired_row("at 1 ms RTT vs loopback", latency_pairs, "latency", "slow_rate", "loopback_rate",
                                "rel/s", True))
    if any("vs_per_row" in pair for pair in latency_pairs):
        rows.append(_paired_row("at 1 ms RTT vs one upsert per release", latency_pairs, "vs_per_row", "slow_rate",
                                "per_row_rate", "rel/s", True))
    return rows


def _paired_row(figure: str, pairs: list[dict[str, float]], target: str, ours: str, theirs: str, unit: str,
                higher_is_better: bool) -> dict[str, Any]:
    """The median of the ratio taken within each alternated try, shown with that try's figures and the range."""
    ratios = sorted((pair[target], index) for index, pair in enumerate(pairs) if not math.isnan(pair[target]))
    ratio, middle = ratios[(len(ratios) - 1) // 2]  # the lower median: a try that happened
    spread = f", {ratios[0][0]:.2f}–{ratios[-1][0]:.2f}" if len(ratios) > 1 else ""
    measured = (f"{pairs[middle][ours]:,.0f} vs {pairs[middle][theirs]:,.0f} {unit}; "
                f"median of {len(ratios)} tries{spread}")
    return _row(figure, measured, ratio, TARGETS[target], higher_is_better)


def engine_targets(sizes: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """The engine (save_page, from release dicts) per release size: vs the limit, round trips, latency."""
    rows = []
    for label, info in sizes.items():
        runs: list[Run] = info["run_objects"]
        engine, limit, slow = find(runs, ENGINE, 0.0), find(runs, LIMIT, 0.0), find(runs, ENGINE, 1.0)
        if engine and limit:
            rows.append(_row(f"{label}: engine vs raw COPY (the limit), both via the proxy at 0 ms",
                             f"{engine.rate:,.0f} vs {limit.rate:,.0f} rel/s", engine.rate / limit.rate,
                             TARGETS["vs_limit"], True))
        if engine and engine.wire_per_page is not None:
            rows.append(_row(f"{label}: engine round trips per page (on the wire)", f"{engine.wire_per_page:.2f}",
                             engine.wire_per_page, TARGETS["round_trips"], False))
        if engine and slow:
            rows.append(_row(f"{label}: engine at 1 ms RTT vs loopback",
                             f"{slow.rate:,.0f} vs {engine.rate:,.0f} rel/s", slow.rate / engine.rate,
                             TARGETS["latency"], True))
    return rows


def print_figures(title: str, rows: list[dict[str, Any]]) -> None:
    if not rows:
        return
    print(f"\n=== {title} ===")
    width = max(len(row["figure"]) for row in rows)
    measured = max(len(row["measured"]) for row in rows)
    print(f"{'figure':<{width}}  {'measured':<{measured}}  {'ratio':>7}  {'target':<7}")
    for row in rows:
        print(f"{row['figure']:<{width}}  {row['measured']:<{measured}}  {row['value']:>7.2f}  {row['target']:<7}  "
              f"{'PASS' if row['pass'] else 'FAIL'}")

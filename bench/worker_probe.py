"""Run by bench/run.py in a fresh interpreter: the worker handler's peak memory for one full invocation.

``worker_probe.py memory --warm WARM.json --event EVENT.json [--tracemalloc]`` (DATABASE_URL and the Powertools
variables come from the environment). It imports ``handler.worker``, invokes it once with the small warm-up event
(so the connection, the imports and the prepared statement exist), records the resident set, then reads the
full event the way the Lambda runtime gets it (the JSON payload as bytes, then ``json.loads``), invokes the
handler with it and records the new peak. The peak is reset (``/proc/self/clear_refs``) just before the event is
read, so "added peak" = VmHWM after the invocation - VmRSS before the event existed: the event is included.

With ``--tracemalloc`` it also traces Python allocations from that point on and keeps a snapshot taken near the
highest traced memory (re-taken whenever the traced total grows by another ``--step`` bytes, checked on every
function call and return), then prints the biggest holders at that moment, by line and by call path.
Tracing slows the run down and costs memory itself, so its RSS numbers are not the clean ones.

The result is one JSON object on the last line of stdout.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import os
import re
import resource
import sys
import time
import tracemalloc
from pathlib import Path
from typing import Any

_KIB = 1024


def _status() -> dict[str, int]:
    """VmRSS and VmHWM of this process, in KiB."""
    text = Path("/proc/self/status").read_text()
    return {key: int(re.search(rf"^{key}:\s+(\d+)", text, re.M).group(1))  # type: ignore[union-attr]
            for key in ("VmRSS", "VmHWM")}


def _maxrss() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux


def _reset_peak() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM (and ru_maxrss) to the current RSS
    except OSError:
        return False
    return True


class _PeakSnapshots:
    """A tracemalloc snapshot taken whenever traced memory passes the previous high by ``step`` bytes."""

    def __init__(self, step: int) -> None:
        self.step = step
        self.high = 0
        self.snapshot: tracemalloc.Snapshot | None = None
        self.snapshot_bytes = 0
        self.snapshots = 0
        self.seconds = 0.0

    def __call__(self, frame: Any, event: str, arg: Any) -> None:
        current = tracemalloc.get_traced_memory()[0]
        if current > self.high + self.step:
            started = time.perf_counter()
            self.high = current
            self.snapshot = tracemalloc.take_snapshot()
            self.snapshot_bytes = current
            self.snapshots += 1
            self.seconds += time.perf_counter() - started


def _ours(filename: str) -> bool:
    return f"{os.sep}ingest{os.sep}" in filename or f"{os.sep}handler{os.sep}" in filename


def _short(filename: str) -> str:
    for marker in (f"{os.sep}site-packages{os.sep}", f"{os.sep}src{os.sep}", f"{os.sep}lib{os.sep}python"):
        if marker in filename:
            return filename.split(marker, 1)[1]
    return filename


def _holders(snapshot: tracemalloc.Snapshot, limit: int) -> dict[str, Any]:
    snapshot = snapshot.filter_traces((tracemalloc.Filter(False, tracemalloc.__file__),
                                       tracemalloc.Filter(False, __file__)))
    total = sum(stat.size for stat in snapshot.statistics("filename"))
    by_line = [{"where": f"{_short(stat.traceback[0].filename)}:{stat.traceback[0].lineno}",
                "mib": round(stat.size / 2**20, 2), "blocks": stat.count}
               for stat in snapshot.statistics("lineno")[:limit]]
    paths = []
    for stat in snapshot.statistics("traceback")[:limit]:
        frames = list(stat.traceback)  # the oldest call first, the allocating line last
        ours = [f"{_short(frame.filename)}:{frame.lineno}" for frame in frames if _ours(frame.filename)]
        innermost = frames[-1]
        paths.append({"mib": round(stat.size / 2**20, 2), "blocks": stat.count,
                      "allocated_at": f"{_short(innermost.filename)}:{innermost.lineno}",
                      "our_frames": ours})
    return {"traced_mib": round(total / 2**20, 2), "by_line": by_line, "by_path": paths}


def memory(args: argparse.Namespace) -> dict[str, Any]:
    sink = open(os.devnull, "w")  # noqa: SIM115 - Powertools' metrics go to stdout; the result goes last
    started = time.perf_counter()
    import handler.worker as worker_module
    from ingest.queue import LocalContext

    import_seconds = time.perf_counter() - started
    warm_event = json.loads(Path(args.warm).read_text("utf-8"))
    with contextlib.redirect_stdout(sink):
        warm = worker_module.lambda_handler(warm_event, LocalContext(120))
    del warm_event
    if warm.get("batchItemFailures"):
        raise SystemExit(f"the warm-up invocation failed: {warm}")
    gc.collect()
    before = _status()
    maxrss_before = _maxrss()
    reset = _reset_peak()
    after_reset = _status()
    peaks = None
    if args.tracemalloc:
        tracemalloc.start(args.depth)
        peaks = _PeakSnapshots(args.step)
        sys.setprofile(peaks)
    began = time.perf_counter()
    payload = Path(args.event).read_bytes()  # what the runtime receives
    event = json.loads(payload)  # what it hands to the handler
    built = _status()
    with contextlib.redirect_stdout(sink):
        response = worker_module.lambda_handler(event, LocalContext(120))
    seconds = time.perf_counter() - began
    sys.setprofile(None)
    after = _status()
    maxrss_after = _maxrss()
    traced = tracemalloc.get_traced_memory() if args.tracemalloc else None
    records = len(event["Records"])
    bodies = sum(len(record["body"].encode("utf-8")) for record in event["Records"])
    body_chars = [len(record["body"]) for record in event["Records"]]
    body_kinds = sorted({"ascii" if record["body"].isascii() else "non-ascii" for record in event["Records"]})
    result: dict[str, Any] = {
        "records": records,
        "payload_bytes": len(payload),
        "body_bytes": bodies,
        "body_chars": body_chars,
        "bodies": body_kinds,
        "failures": response.get("batchItemFailures"),
        "import_seconds": round(import_seconds, 3),
        "invoke_seconds": round(seconds, 3),
        "peak_reset": reset,
        "kib": {"rss_before": before["VmRSS"], "hwm_before": before["VmHWM"], "maxrss_before": maxrss_before,
                "rss_after_reset": after_reset["VmRSS"], "hwm_after_reset": after_reset["VmHWM"],
                "rss_event_built": built["VmRSS"], "hwm_event_built": built["VmHWM"],
                "rss_after": after["VmRSS"], "hwm_after": after["VmHWM"], "maxrss_after": maxrss_after},
        # The memory this invocation needs on top of the warm process: its peak above the resident set it
        # started from (exact when the peak could be reset; else an upper bound taken from the older peak).
        "added_peak_mib": round((after["VmHWM"] - before["VmRSS"]) / _KIB, 2),
        # ru_maxrss after - ru_maxrss before (the literal reading; the reset makes it new peak - old peak).
        "maxrss_delta_mib": round((maxrss_after - maxrss_before) / _KIB, 2),
        "event_built_added_mib": round((built["VmHWM"] - before["VmRSS"]) / _KIB, 2),
        "retained_after_mib": round((after["VmRSS"] - before["VmRSS"]) / _KIB, 2),
    }
    if traced is not None and peaks is not None:
        result["tracemalloc"] = {"peak_mib": round(traced[1] / 2**20, 2),
                                 "current_after_mib": round(traced[0] / 2**20, 2),
                                 "snapshot_at_mib": round(peaks.snapshot_bytes / 2**20, 2),
                                 "snapshots": peaks.snapshots, "snapshot_seconds": round(peaks.seconds, 2),
                                 **(_holders(peaks.snapshot, args.limit) if peaks.snapshot else {})}
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="mode", required=True)
    probe = sub.add_parser("memory")
    probe.add_argument("--warm", required=True, type=Path)
    probe.add_argument("--event", required=True, type=Path)
    probe.add_argument("--tracemalloc", action="store_true")
    probe.add_argument("--depth", type=int, default=40, help="frames kept per traced allocation")
    probe.add_argument("--step", type=int, default=1 << 20, help="bytes of growth between snapshots")
    probe.add_argument("--limit", type=int, default=15)
    args = parser.parse_args()
    result = memory(args)
    sys.stdout.write(json.dumps(result) + "\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())

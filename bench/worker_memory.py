"""The worker's worst batch against its MemorySize: python bench/worker_memory.py [--pages N] [--distinct].

The worst batch the stack accepts is BATCH_SIZE URL messages, each naming a page of MAX_PAGE_BYTES made of the
smallest releases a row can come from (~65 bytes each: ocid, id, date), so the look-ahead holds two of them.
The pages are served on loopback from this process; the worker handler runs in a fresh interpreter (``probe``)
exactly as Lambda calls it, and its peak resident set (VmHWM: the whole process, imports and the event
included, which is what Lambda holds against MemorySize) is compared with 90% of ``MEMORY_SIZE_MB``, the figure
template.yaml's WorkerFunction is checked against. DATABASE_URL names the database (migrated); without it an
embedded PostgreSQL is started in a temporary directory. tests/e2e/test_worker_memory.py runs the same.

The result is one JSON object on the last line of stdout.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
HEADROOM = 0.9  # the worst batch may use at most this share of MemorySize


def smallest_releases_page(max_bytes: int, prefix: str) -> bytes:
    """A release package of exactly ``max_bytes`` or just under, of the smallest valid releases."""
    head, tail = b'{"releases":[', b"]}"
    parts: list[bytes] = []
    size = len(head) + len(tail)
    number = 0
    while True:
        release = b'{"ocid":"ocds-%s-%07d","id":"1","date":"2020-01-01T00:00:00Z"}' % (prefix.encode(), number)
        if size + len(release) + 1 > max_bytes:
            break
        parts.append(release)
        size += len(release) + 1
        number += 1
    return head + b",".join(parts) + tail


class _Pages(BaseHTTPRequestHandler):
    pages: dict[str, bytes] = {}

    def do_GET(self) -> None:  # noqa: N802 - the base class's name
        body = self.pages.get(self.path)
        if body is None:
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass


@contextlib.contextmanager
def serving(pages: dict[str, bytes]) -> Iterator[str]:
    """The pages on loopback; yields the base URL."""
    _Pages.pages = pages
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Pages)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def worst_event(base_url: str, paths: list[str]) -> dict[str, Any]:
    records = [{"messageId": f"memory-{n}", "receiptHandle": f"handle-{n}",
                "body": json.dumps({"version": 1, "source": "memory", "url": f"{base_url}{path}"}),
                "attributes": {"ApproximateReceiveCount": "1", "SentTimestamp": "1764345600000",
                               "SenderId": "AIDAEXAMPLE", "ApproximateFirstReceiveTimestamp": "1764345600100"},
                "messageAttributes": {}, "md5OfBody": "", "eventSource": "aws:sqs",
                "eventSourceARN": "arn:aws:sqs:eu-west-1:123456789012:pages", "awsRegion": "eu-west-1"}
               for n, path in enumerate(paths)]
    return {"Records": records}


def measure(database_url: str, workdir: Path, *, pages: int | None = None, distinct: bool = True,
            timeout_seconds: int = 900) -> dict[str, Any]:
    """Serve the worst pages, run one invocation in a fresh interpreter, return its figures."""
    from ingest.worker import BATCH_SIZE, DEFAULT_MAX_PAGE_BYTES, MEMORY_SIZE_MB

    count = pages or BATCH_SIZE
    bodies = {f"/page/{n}": smallest_releases_page(DEFAULT_MAX_PAGE_BYTES, f"m{n if distinct else 0}")
              for n in range(count)}
    releases = bodies["/page/0"].count(b'"ocid"')
    sources = workdir / "sources.json"
    sources.write_text(json.dumps({"sources": [{"name": "memory", "start_url": "http://127.0.0.1/",
                                                "allow_private_network": True}]}))
    with serving(bodies) as base_url:
        event = workdir / "event.json"
        event.write_text(json.dumps(worst_event(base_url, list(bodies))))
        del bodies
        env = {**os.environ, "DATABASE_URL": database_url, "SOURCES_FILE": str(sources),
               "POWERTOOLS_TRACE_DISABLED": "true", "POWERTOOLS_METRICS_NAMESPACE": "OcdsIngestBench",
               "AWS_DEFAULT_REGION": "eu-west-1", "MAX_PAGE_BYTES": str(DEFAULT_MAX_PAGE_BYTES),
               "TIME_SAFETY_MARGIN_MS": "20000"}
        started = time.perf_counter()
        done = subprocess.run([sys.executable, __file__, "probe", str(event), str(timeout_seconds)], env=env,
                              capture_output=True, text=True, timeout=timeout_seconds + 60)
        seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"the probe failed: {done.stderr[-2000:]}")
    probe = json.loads(done.stdout.strip().splitlines()[-1])
    peak_mib = probe["peak_kib"] / 1024
    return {"pages": count, "page_bytes": DEFAULT_MAX_PAGE_BYTES, "releases_per_page": releases,
            "memory_size_mb": MEMORY_SIZE_MB, "limit_mib": round(HEADROOM * MEMORY_SIZE_MB, 1),
            "peak_mib": round(peak_mib, 1), "share_of_memory_size": round(peak_mib / MEMORY_SIZE_MB, 3),
            "pass": peak_mib <= HEADROOM * MEMORY_SIZE_MB, "invoke_seconds": probe["invoke_seconds"],
            "wall_seconds": round(seconds, 1), "failures": probe["failures"]}


def probe(event_path: Path, timeout_seconds: int) -> dict[str, Any]:
    """In a fresh interpreter: the handler, one invocation, the process's peak resident set."""
    sink = open(os.devnull, "w")  # noqa: SIM115 - Powertools' metrics and logs go to stdout; the result last
    with contextlib.redirect_stdout(sink):
        import handler.worker
        from ingest.queue import LocalContext

        event = json.loads(event_path.read_bytes())
        started = time.perf_counter()
        response = handler.worker.lambda_handler(event, LocalContext(timeout_seconds))
        seconds = time.perf_counter() - started
    status = Path("/proc/self/status").read_text()
    peak = int(re.search(r"^VmHWM:\s+(\d+)", status, re.M).group(1))  # type: ignore[union-attr]
    return {"peak_kib": peak, "invoke_seconds": round(seconds, 1),
            "failures": [item["itemIdentifier"] for item in response["batchItemFailures"]]}


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "probe":
        sys.stdout.write(json.dumps(probe(Path(sys.argv[2]), int(sys.argv[3]))) + "\n")
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pages", type=int, default=None, help="messages in the batch (default BATCH_SIZE)")
    parser.add_argument("--same", action="store_true", help="the same page every time (replays: faster)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as directory:
        workdir = Path(directory)
        url = os.environ.get("DATABASE_URL")
        server = None
        if not url:
            from ingest.store import local_server

            server = local_server.start(workdir / "pgdata", fsync=False)
            url = server.url
        try:
            from ingest.store.connection import connect_url
            from ingest.store.migrate import migrate

            db = connect_url(url)
            try:
                migrate(db)
            finally:
                db.close()
            result = measure(url, workdir, pages=args.pages, distinct=not args.same)
        finally:
            if server is not None:
                server.stop(delete=True)
    print(f"worst batch: {result['pages']} pages x {result['page_bytes']:,} bytes "
          f"({result['releases_per_page']:,} releases each): peak RSS {result['peak_mib']} MiB of MemorySize "
          f"{result['memory_size_mb']} MB ({result['share_of_memory_size']:.0%}; limit {result['limit_mib']} MiB): "
          f"{'PASS' if result['pass'] else 'FAIL'}; invocation {result['invoke_seconds']} s")
    sys.stdout.write(json.dumps(result) + "\n")
    return 0 if result["pass"] and not result["failures"] else 1


if __name__ == "__main__":
    sys.exit(main())

"""``ocds-ingest``: migrate, load, demo. The edge: reads the environment, creates the clients, prints."""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

from ingest.errors import ConfigurationError, IngestError, TransientError
from ingest.pages import DEFAULT_BATCH_SIZE, PageResult, load_stream
from ingest.store.connection import Database, connect_url
from ingest.store.migrate import migrate
from ingest.store.writer import DEFAULT_STRATEGY, STRATEGIES

PROJECT_ROOT = Path(__file__).resolve().parents[2]
LOCAL_DATA_DIR = PROJECT_ROOT / ".local" / "pgdata"
SHARED_SAMPLES = PROJECT_ROOT.parent / "shared" / "ocds-samples"
SHIPPED_SAMPLES = PROJECT_ROOT / "samples"


def database_url(*, say: bool = True) -> str:
    """DATABASE_URL, or the embedded PostgreSQL in .local/pgdata (started if needed)."""
    url = os.environ.get("DATABASE_URL")
    if url:
        return url
    from ingest.store import local_server

    server = local_server.start(LOCAL_DATA_DIR)
    if say:
        state = "started" if server.started_here else "already running"
        print(f"DATABASE_URL is not set: using the embedded PostgreSQL {server.version()} ({state}) in "
              f"{server.data_dir}, at {server.url}", file=sys.stderr)
    return server.url


def open_database() -> Database:
    return connect_url(database_url())


def input_files(paths: Sequence[str]) -> list[Path]:
    files: list[Path] = []
    for given in paths:
        path = Path(given)
        if path.is_dir():
            files.extend(sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith(".")
                                and p.suffix.lower() in (".json", ".jsonl", ".ndjson", "")))
        elif path.is_file():
            files.append(path)
        else:
            raise ConfigurationError(f"no such file or folder: {given} (give JSON files or folders of them)")
    return files


class Progress:
    """One status line on a terminal; silent when stderr is not one (CI logs stay readable)."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.enabled = sys.stderr.isatty()
        self.last = 0.0

    def update(self, done: int, result: PageResult, force: bool = False) -> None:
        now = time.monotonic()
        if not self.enabled or (not force and now - self.last < 0.1):
            return
        self.last = now
        width = 30
        filled = width * done // max(self.total, 1)
        print(f"\r[{'#' * filled}{'.' * (width - filled)}] {done}/{self.total} files, "
              f"{result.releases_read} releases", end="", file=sys.stderr, flush=True)

    def finish(self) -> None:
        if self.enabled:
            print(file=sys.stderr)


def load_files(db: Database, files: Sequence[Path], source: str, batch_size: int,
               strategy: str) -> Iterator[tuple[int, PageResult]]:
    for index, path in enumerate(files, start=1):
        with path.open("rb") as binary:
            for result in load_stream(db, binary, path.stat().st_size, source, str(path), batch_size, strategy):
                yield index, result


def summary(result: PageResult, files: int, seconds: float) -> str:
    rate = result.releases_read / seconds if seconds > 0 else 0.0
    lines = [
        f"files            {files}",
        f"releases read    {result.releases_read}",
        f"  inserted       {result.inserted}",
        f"  updated        {result.updated}",
        f"  unchanged      {result.unchanged}  (already stored, older, or repeated in the same page)",
        f"  rejected       {result.rejected_total}",
    ]
    lines += [f"    {reason:<22} {count}" for reason, count in sorted(result.rejected.items())]
    lines += [
        f"compiled releases {result.compiled_releases}",
        f"linked releases  {result.linked_releases}  (references only: url/date/tag)",
        f"empty packages   {result.empty_packages}",
        f"elapsed          {seconds:.2f} s ({rate:,.0f} releases/s, {result.round_trips} database round trips)",
    ]
    return "\n".join(lines)


def cmd_migrate(args: argparse.Namespace) -> int:
    db = open_database()
    try:
        applied = migrate(db)
    finally:
        db.close()
    print("applied: " + ", ".join(applied) if applied else "the schema is up to date")
    return 0


def cmd_load(args: argparse.Namespace) -> int:
    files = input_files(args.paths)
    db = open_database()
    total = PageResult()
    progress = Progress(len(files))
    started = time.perf_counter()
    try:
        migrate(db)
        for done, result in load_files(db, files, args.source, args.batch_size, args.strategy):
            total += result
            progress.update(done, total)
    finally:
        db.close()
    progress.update(len(files), total, force=True)
    progress.finish()
    print(summary(total, len(files), time.perf_counter() - started))
    if args.strict and total.rejected_total:
        print(f"--strict: {total.rejected_total} releases were rejected (see the rejected_releases table)",
              file=sys.stderr)
        return 1
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    samples = SHARED_SAMPLES if SHARED_SAMPLES.is_dir() else SHIPPED_SAMPLES
    print(f"Loading the real OCDS samples in {samples} into PostgreSQL.", file=sys.stderr)
    url = database_url()
    args.paths = [str(samples)]
    args.strict = False
    os.environ["DATABASE_URL"] = url
    status = cmd_load(args)
    print(f"\nQuery it:  psql '{url}' -c 'SELECT source, count(*) FROM releases GROUP BY 1'"
          if not os.environ.get("CI") else "")
    print("  e.g.  SELECT ocid, release_id, release_date, buyer_name, tender_title FROM releases "
          "ORDER BY release_date DESC LIMIT 10;")
    print("        SELECT reason, count(*) FROM rejected_releases GROUP BY 1;")
    return status


def cmd_drain(args: argparse.Namespace) -> int:
    """Run the worker handler over a queue, the way Lambda's event source mapping would."""
    import boto3

    import handler.worker
    from ingest.queue import EventSourceEmulator

    os.environ.setdefault("DATABASE_URL", database_url())
    os.environ.setdefault("POWERTOOLS_METRICS_NAMESPACE", "OcdsIngest")
    sqs = boto3.client("sqs", endpoint_url=args.endpoint_url, region_name=args.region)
    emulator = EventSourceEmulator(sqs, args.queue_url, handler.worker.lambda_handler, batch_size=args.batch_size,
                                   function_timeout_seconds=args.timeout)
    total = emulator.drain()
    print(f"messages received {total.received}, succeeded {total.succeeded}, reported failed {total.failed}, "
          f"invocation errors {total.handler_errors}")
    return 0 if not total.handler_errors else 1


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="ocds-ingest", description=__doc__)
    commands = top.add_subparsers(dest="command", required=True)
    commands.add_parser("migrate", help="create or update the schema").set_defaults(run=cmd_migrate)
    load = commands.add_parser("load", help="load OCDS files or folders (any shape, any size)")
    load.add_argument("paths", nargs="+", help="JSON files or folders")
    load.add_argument("--source", default="files", help="the source name stored with each release")
    load.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE, help="releases per transaction")
    load.add_argument("--strict", action="store_true", help="exit 1 if any release was rejected")
    load.add_argument("--strategy", choices=STRATEGIES, default=DEFAULT_STRATEGY,
                      help="how pages are written (see README, Benchmark)")
    load.set_defaults(run=cmd_load)
    demo = commands.add_parser("demo", help="load the real samples into the embedded PostgreSQL")
    demo.add_argument("--source", default="samples")
    demo.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE)
    demo.add_argument("--strategy", choices=STRATEGIES, default=DEFAULT_STRATEGY)
    demo.set_defaults(run=cmd_demo)
    drain = commands.add_parser("drain", help="feed a queue's messages to the worker handler until it is empty")
    drain.add_argument("--queue-url", required=True)
    drain.add_argument("--endpoint-url", help="an SQS emulator such as moto_server (default: AWS)")
    drain.add_argument("--region", default=os.environ.get("AWS_DEFAULT_REGION", "eu-west-1"))
    drain.add_argument("--batch-size", type=int, default=10)
    drain.add_argument("--timeout", type=float, default=60.0, help="the simulated function timeout, seconds")
    drain.set_defaults(run=cmd_drain)
    return top


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return int(args.run(args))
    except (ConfigurationError, TransientError, IngestError) as error:
        print(f"ocds-ingest {args.command}: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())

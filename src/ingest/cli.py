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
from ingest.sources import Source
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


def _pipeline(sources: list[Source], url: str, served: int = 0) -> int:
    import tempfile

    from ingest.local_pipeline import quiet, run

    quiet()
    import handler.harvest
    import handler.worker

    with tempfile.TemporaryDirectory(prefix="ocds-ingest-") as workdir:
        summary = run(sources, url, handler.harvest.lambda_handler, handler.worker.lambda_handler, Path(workdir),
                      served=served)
    print(summary.text())
    return 0 if summary.dead_letters == 0 and all(h["status"] == "complete" for h in summary.harvests) else 1


def cmd_demo(args: argparse.Namespace) -> int:
    """The main job on embedded defaults: publisher API -> harvest -> SQS -> worker -> PostgreSQL."""
    from ingest.local_publisher import LocalPublisher, releases_from
    from ingest.sources import parse_source

    samples = SHARED_SAMPLES if SHARED_SAMPLES.is_dir() else SHIPPED_SAMPLES
    files = sorted(p for p in samples.rglob("*.json") if _is_publisher_data(p, samples))
    url = database_url()
    served = releases_from(files)
    half = len(served) // 2
    print(f"Serving {len(served)} real releases from {len(files)} files in {samples} through two local OCDS APIs "
          "(one pages with links.next, one with page numbers), then running the harvest and worker handlers as "
          "Lambda would.", file=sys.stderr)
    common = {"allowed_hosts": ["127.0.0.1"], "allow_private_network": True, "page_size": 50}
    with LocalPublisher(served[:half], publisher_name="OCDS samples (A)") as links, \
            LocalPublisher(served[half:], publisher_name="OCDS samples (B)") as numbered:
        sources = [
            parse_source({"name": "samples-links", "pagination": "next_link", "page_size_parameter": "limit",
                          "start_url": f"{links.base_url}/keyset", **common}),
            parse_source({"name": "samples-pages", "pagination": "page_number", "page_size_parameter": "page_size",
                          "start_url": f"{numbered.base_url}/pages", **common}),
        ]
        status = _pipeline(sources, url, served=len(served))
    print(f"\nThe database: {url}")
    print("  psql '" + url + "' -c 'SELECT source, count(*) FROM releases GROUP BY 1'")
    print("  SELECT ocid, release_id, release_date, buyer_name, tender_title FROM releases "
          "ORDER BY release_date DESC LIMIT 10;")
    print("  SELECT reason, count(*) FROM rejected_releases GROUP BY 1;")
    print("To load files instead: .venv/bin/ocds-ingest load PATH...   To harvest an API: .venv/bin/ocds-ingest "
          "harvest --url URL")
    return status


def _is_publisher_data(path: Path, root: Path) -> bool:
    """The real publishers' files (not the schemas, merge fixtures or expected outputs of tools)."""
    relative = path.relative_to(root).as_posix()
    return not relative.startswith(("schema-", "ocds-merge-fixtures/", "standard-merging-examples/",
                                    "invalid-and-awkward/")) and not any(
        word in path.name for word in ("compiled", "versioned", "encoding_encoding"))


def cmd_harvest(args: argparse.Namespace) -> int:
    """Harvest any OCDS API that pages with links.next into DATABASE_URL or the embedded database."""
    from urllib.parse import urlsplit

    from ingest.sources import parse_source

    host = urlsplit(args.url).hostname or ""
    name = args.source or (host.replace("www.", "").split(".")[0] or "api")
    source = parse_source({"name": name, "start_url": args.url, "pagination": "next_link",
                           "next_pointer": args.next_pointer, "allowed_hosts": [host],
                           "allow_private_network": args.allow_private_network})
    return _pipeline([source], database_url())


def cmd_drain(args: argparse.Namespace) -> int:
    """Run the worker handler over a queue, the way Lambda's event source mapping would."""
    import boto3

    import handler.worker
    from ingest.queue import EventSourceEmulator

    os.environ.setdefault("DATABASE_URL", database_url())
    os.environ.setdefault("POWERTOOLS_METRICS_NAMESPACE", "OcdsIngest")
    if args.endpoint_url:  # the handler's own SQS client (messages told to wait go back on this queue) too
        os.environ.setdefault("AWS_ENDPOINT_URL_SQS", args.endpoint_url)
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
    demo = commands.add_parser("demo", help="the whole pipeline on the real samples, locally")
    demo.set_defaults(run=cmd_demo)
    harvest = commands.add_parser("harvest", help="harvest an OCDS API that pages with links.next")
    harvest.add_argument("--url", required=True, help="the first page, e.g. https://…/releases?limit=100")
    harvest.add_argument("--source", help="the source name to store (default: from the host)")
    harvest.add_argument("--next-pointer", default="/links/next", help="JSON pointer to the next page's URL")
    harvest.add_argument("--allow-private-network", action="store_true",
                         help="allow a publisher on a private or loopback address (a local test server)")
    harvest.set_defaults(run=cmd_harvest)
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

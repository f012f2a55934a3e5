"""``ocds-ingest``: the command line. The edge: reads the environment, creates the clients, prints.

Each command is one ``add_*`` function that registers its subparser and sets ``run``; ``COMMANDS`` lists them.
To add a command, write its ``add_*`` function and append it to ``COMMANDS``. A command returns its exit status
and raises ``IngestError`` (ConfigurationError, TransientError …) for anything the user must act on: ``main``
prints it as one line and exits 2. Exit codes: 0 done, 1 done with problems the summary names (``--strict``
rejections, a failed harvest, messages left in the DLQ), 2 nothing or not everything done (one line says why),
130 interrupted (one line says what was committed).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ingest.errors import ConfigurationError, IngestError

PROJECT_ROOT = Path(__file__).resolve().parents[2]
LOCAL_DATA_DIR = PROJECT_ROOT / ".local" / "pgdata"
SHARED_SAMPLES = PROJECT_ROOT.parent / "shared" / "ocds-samples"
SHIPPED_SAMPLES = PROJECT_ROOT / "samples"

DESCRIPTION = """\
Load OCDS data (releases, records, packages; JSON, JSON lines, compressed or archived) into PostgreSQL, harvest
OCDS APIs, and run the whole pipeline on this machine. Without DATABASE_URL, an embedded PostgreSQL is started
and kept in .local/pgdata (see `ocds-ingest server`)."""
EPILOG = """\
examples:
  ocds-ingest demo                                   the whole pipeline on the shipped samples
  ocds-ingest load downloads/ bulk.jsonl.gz          load files and folders
  ocds-ingest harvest --url https://example.org/api/releases
  ocds-ingest server stop                            stop the embedded PostgreSQL

environment: DATABASE_URL (postgresql://user:password@host:5432/dbname), PGPASSWORD (used when the URL has no
password), WRITE_STRATEGY (unnest, json or copy)."""


class Parser(argparse.ArgumentParser):
    """argparse, but a usage mistake is one line (what is wrong, where to read more) and exit 2."""

    def error(self, message: str) -> Any:  # argparse's own signature says NoReturn
        self.exit(2, f"{self.prog}: {message} (see {self.prog} --help)\n")


# --- values checked when parsed: a bad one is a usage mistake, never a traceback or a silent no-op --------------


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a whole number above 0, not {text!r}")
    return value


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be a number of seconds above 0, not {text!r}")
    return value


def source_name(text: str) -> str:
    from ingest.sources import parse_source

    try:
        parse_source({"name": text})
    except ConfigurationError:
        raise argparse.ArgumentTypeError(
            f"must be 1-63 lower-case letters, digits, '.', '-' or '_', starting with a letter or digit, "
            f"not {text!r}") from None
    return text


def write_strategy() -> str:
    """WRITE_STRATEGY, checked as the worker checks it (an unknown one would fail every message)."""
    from handler.environment import write_strategy

    return write_strategy()


def worker_settings() -> None:
    """The worker's settings from the environment (WRITE_STRATEGY, SEND_AHEAD), checked as the worker checks them,
    before a command that runs it starts anything."""
    from handler.environment import send_ahead

    write_strategy()
    send_ahead()


# --- the database ---------------------------------------------------------------------------------------------


def database_url(*, say: bool = True) -> str:
    """DATABASE_URL (with PGPASSWORD when it has no password), or the embedded PostgreSQL, started if needed."""
    from ingest.store.connection import parse_url

    url = os.environ.get("DATABASE_URL")
    if url:
        settings = parse_url(url)  # a malformed URL is one line now rather than a failure per message later
        password = os.environ.get("PGPASSWORD")
        if settings.password is None and password:
            from urllib.parse import urlencode

            url += ("&" if "?" in url else "?") + urlencode({"password": password})
        return url
    from ingest.store import local_server

    server = local_server.start(LOCAL_DATA_DIR)
    if say:
        state = "started" if server.started_here else "already running"
        print(f"DATABASE_URL is not set: using the embedded PostgreSQL {server.version()} ({state}) at {server.url}; "
              "`ocds-ingest server stop` stops it", file=sys.stderr)
    return server.url


def describe(url: str) -> str:
    from ingest.store.connection import parse_url

    return parse_url(url).describe()


def cmd_migrate(args: argparse.Namespace) -> int:
    from ingest.store.connection import connect_url
    from ingest.store.migrate import migrate

    db = connect_url(database_url())
    try:
        applied = migrate(db)
    finally:
        db.close()
    print("applied: " + ", ".join(applied) if applied else "the schema is up to date")
    return 0


def add_migrate(commands: Any) -> None:
    migrate = commands.add_parser("migrate", help="create or update the database schema",
                                  description="Create or update the tables in the database (DATABASE_URL or the "
                                  "embedded one). Safe to run any number of times; `load`, `harvest` and `demo` "
                                  "run it themselves.")
    migrate.set_defaults(run=cmd_migrate)


# --- load -------------------------------------------------------------------------------------------------------


def cmd_load(args: argparse.Namespace) -> int:
    from ingest import compile_cli, file_loader, inputs
    from ingest.store.connection import connect_url
    from ingest.store.migrate import migrate

    strategy = args.strategy or write_strategy()
    files = inputs.find(args.paths)
    if not files:
        raise ConfigurationError(f"nothing to load: no files in {' '.join(args.paths)} look like OCDS data "
                                 f"(looked for {inputs.DESCRIBED}); name a file to read it whatever its name")
    sizes = [inputs.size_on_disk(path) for path in files]
    if all(size == 0 for size in sizes):
        raise ConfigurationError(f"nothing to load: {'the file is' if len(files) == 1 else 'all files are'} empty "
                                 f"(0 bytes): {', '.join(map(str, files[:3]))}{' …' if len(files) > 3 else ''}")
    db = connect_url(database_url())
    loaded = file_loader.Loaded()
    progress = file_loader.Progress(sum(size or 0 for size in sizes) or None, enabled=args.progress)
    try:
        migrate(db)
        # Each batch marks the ocids it changed; they are compiled once, at the end (an ocid whose releases are
        # spread over many batches is merged once, not once per batch).
        file_loader.load(db, files, args.source, args.batch_size, strategy, loaded, progress,
                         compile_releases="deferred")
        progress.close()
        compiled = None if args.no_compile else compile_cli.pending_summary(db)
    except KeyboardInterrupt:
        progress.close()
        result = loaded.result
        print(f"ocds-ingest load: interrupted; committed: {result.inserted} inserted, {result.updated} updated, "
              f"{result.rejected_total} rejected ({result.releases_read} releases read). Run the same command again "
              "to finish: stored releases are skipped, and what is not compiled yet is compiled.", file=sys.stderr)
        return 130
    finally:
        progress.close()
        db.close()
    print(file_loader.summary(loaded))
    print(f"compiling        {compiled}" if compiled else
          "compiling        skipped (--no-compile): run `ocds-ingest compile --pending`")
    if loaded.not_json:
        print(f"not JSON (one invalid_json rejection each): {', '.join(loaded.not_json[:5])}"
              f"{' …' if len(loaded.not_json) > 5 else ''}", file=sys.stderr)
    if loaded.nothing:
        why = "every file is empty" if loaded.empty == loaded.documents else "the files hold no OCDS data"
        raise ConfigurationError(f"nothing was loaded: {why}")
    if args.strict and loaded.result.rejected_total:
        print(f"--strict: {loaded.result.rejected_total} releases were rejected (see the rejected_releases table)",
              file=sys.stderr)
        return 1
    return 0


def add_load(commands: Any) -> None:
    from ingest.inputs import DESCRIBED
    from ingest.pages import DEFAULT_BATCH_SIZE
    from ingest.store.writer import STRATEGIES

    load = commands.add_parser(
        "load", help="load OCDS files or folders (any shape, any size, compressed or not)",
        description=f"Load OCDS files into the database. Folders are searched recursively for {DESCRIBED}. "
        "Any shape is read: release and record packages, bare releases and records, arrays, JSON lines, "
        "concatenated JSON; big files are streamed. What cannot be stored goes to the rejected_releases table "
        "with the reason. Exit 0 when everything was read (rejections included), 1 with --strict and rejections, "
        "2 when nothing was loaded or something failed, 130 on Ctrl-C (committed batches stay).")
    load.add_argument("paths", nargs="+", metavar="PATH", help="files or folders to load; - reads standard input")
    load.add_argument("--source", default="files", type=source_name,
                      help="the source name stored with each release (default: files)")
    load.add_argument("--batch-size", type=positive_int, default=DEFAULT_BATCH_SIZE, metavar="N",
                      help=f"releases per transaction for files larger than one page (default: {DEFAULT_BATCH_SIZE})")
    load.add_argument("--strict", action="store_true", help="exit 1 if any release was rejected")
    load.add_argument("--strategy", choices=STRATEGIES,
                      help="how rows are sent to PostgreSQL (default: WRITE_STRATEGY, else unnest; see README)")
    load.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                      help="show a progress bar (default: only on a terminal)")
    load.add_argument("--no-compile", action="store_true",
                      help="do not compile the loaded contracting processes (run `ocds-ingest compile --pending` "
                      "after)")
    load.set_defaults(run=cmd_load)


# --- compile ----------------------------------------------------------------------------------------------------


def cmd_compile(args: argparse.Namespace) -> int:
    from ingest.compile_cli import run
    from ingest.store.connection import connect_url

    db = connect_url(database_url())
    try:
        return run(db, ocid=args.ocid, source=args.source, versioned=args.versioned, pending=args.pending)
    finally:
        db.close()


def add_compile(commands: Any) -> None:
    compile_ = commands.add_parser(
        "compile", help="compile compiled_releases from the stored releases (all of them, or --pending)",
        description="Re-compile the compiled release of every contracting process (or one --ocid, or those of one "
        "--source) from the stored releases, by the merge rules of their OCDS version: after an upgrade of the "
        "rules. With --pending, compile only the contracting processes whose releases changed since they were last "
        "compiled (what the compile function does; after a load with --no-compile). With --versioned --ocid X, "
        "print X's versioned release instead.")
    compile_.add_argument("--ocid", help="only this contracting process")
    compile_.add_argument("--source", type=source_name, help="only the contracting processes of this source")
    compile_.add_argument("--pending", action="store_true",
                          help="only those whose releases changed since they were last compiled")
    compile_.add_argument("--versioned", action="store_true", help="print the versioned release of --ocid")
    compile_.set_defaults(run=cmd_compile)


def add_invoke(commands: Any) -> None:
    from ingest import invoke

    invoke.register(commands)


# --- the local pipeline: demo and harvest ---------------------------------------------------------------------


def _pipeline(sources: list[Any], url: str, *, served: int = 0, verbose: bool = False) -> Any:
    import tempfile

    from ingest.local_pipeline import quiet, run

    worker_settings()
    with quiet(verbose), tempfile.TemporaryDirectory(prefix="ocds-ingest-") as workdir:
        import handler.compile
        import handler.harvest
        import handler.worker

        return run(sources, url, handler.harvest.lambda_handler, handler.worker.lambda_handler, Path(workdir),
                   compile_step=handler.compile.lambda_handler, served=served)


def _interrupted(command: str, what: str) -> int:
    print(f"ocds-ingest {command}: interrupted; {what}", file=sys.stderr)
    return 130


def cmd_demo(args: argparse.Namespace) -> int:
    """The main job on embedded defaults: publisher API -> harvest -> SQS -> worker -> PostgreSQL."""
    from ingest.local_publisher import LocalPublisher, releases_from
    from ingest.sources import parse_source
    from ingest.store import harvest_state
    from ingest.store.connection import connect_url

    worker_settings()
    samples = SHARED_SAMPLES if SHARED_SAMPLES.is_dir() else SHIPPED_SAMPLES
    files = sorted(p for p in samples.rglob("*.json") if _is_publisher_data(p, samples))
    url = database_url()
    served = releases_from(files)
    half = len(served) // 2
    print(f"Serving {len(served)} real releases from {len(files)} files in {samples} through two local OCDS APIs "
          "(one pages with links.next, one with page numbers), then running the harvest and worker handlers as "
          "Lambda would.", file=sys.stderr)
    common = {"allowed_hosts": ["127.0.0.1"], "allow_private_network": True, "page_size": 50}
    # The packages' uri is the publishers' identity, not the port they happen to listen on this time, so a rerun
    # stores the same rows and writes nothing.
    with LocalPublisher(served[:half], publisher_name="OCDS samples (A)", uri_base="https://samples-a.invalid") \
            as links, LocalPublisher(served[half:], publisher_name="OCDS samples (B)",
                                     uri_base="https://samples-b.invalid") as numbered:
        sources = [
            parse_source({"name": "samples-links", "pagination": "next_link", "page_size_parameter": "limit",
                          "start_url": f"{links.base_url}/keyset", **common}),
            parse_source({"name": "samples-pages", "pagination": "page_number", "page_size_parameter": "page_size",
                          "start_url": f"{numbered.base_url}/pages", **common}),
        ]
        # The demo walks both APIs from their first page every time: a cursor saved by an interrupted run names
        # a port that is gone.
        from ingest.store.migrate import migrate

        db = connect_url(url)
        try:
            migrate(db)
            for source in sources:
                harvest_state.forget(db, source.name)
        finally:
            db.close()
        try:
            summary = _pipeline(sources, url, served=len(served), verbose=args.verbose)
        except KeyboardInterrupt:
            return _interrupted("demo", "the pages written so far are committed, and the next demo walks the APIs "
                                "from their first page again")
    print(summary.text())
    where = url if "DATABASE_URL" not in os.environ else describe(url)
    print(f"\nThe database: {where}")
    print(f"  psql '{where}' -c 'SELECT source, count(*) FROM releases GROUP BY 1'")
    print("  SELECT ocid, release_id, release_date, buyer_name, tender_title FROM releases "
          "ORDER BY release_date DESC LIMIT 10;")
    print("To load files: .venv/bin/ocds-ingest load PATH...   To harvest an API: .venv/bin/ocds-ingest "
          "harvest --url URL   To stop the embedded PostgreSQL: .venv/bin/ocds-ingest server stop")
    return summary.status


def _is_publisher_data(path: Path, root: Path) -> bool:
    """The real publishers' files (not the schemas, merge fixtures or expected outputs of tools)."""
    relative = path.relative_to(root).as_posix()
    return not relative.startswith(("schema-", "ocds-merge-fixtures/", "standard-merging-examples/",
                                    "invalid-and-awkward/")) and not any(
        word in path.name for word in ("compiled", "versioned", "encoding_encoding"))


def add_demo(commands: Any) -> None:
    demo = commands.add_parser(
        "demo", help="run the whole pipeline locally on the real samples",
        description="Serve the real OCDS samples through two local APIs, harvest them with the harvest handler, "
        "queue the pages in a local SQS emulator, write them with the worker handler and compile what changed with "
        "the compile handler, exactly as Lambda would; then print a summary. Running it again writes nothing "
        "(0 inserted, 0 updated).")
    demo.add_argument("--verbose", action="store_true", help="show the handlers' JSON log lines")
    demo.set_defaults(run=cmd_demo)


def cmd_harvest(args: argparse.Namespace) -> int:
    from ingest import cli_harvest

    worker_settings()
    return cli_harvest.run(args, database_url, _pipeline, _interrupted)


def add_harvest(commands: Any) -> None:
    from ingest import cli_harvest

    cli_harvest.add_arguments(commands, source_name, positive_int).set_defaults(run=cmd_harvest)


# --- drain ------------------------------------------------------------------------------------------------------


def cmd_drain(args: argparse.Namespace) -> int:
    from ingest import cli_drain

    worker_settings()
    args.resolved_region = cli_drain.region(args)
    os.environ["DATABASE_URL"] = database_url()
    return cli_drain.run(args)


def add_drain(commands: Any) -> None:
    drain = commands.add_parser(
        "drain", help="feed a queue's messages to the worker handler until it is empty",
        description="Receive messages from an SQS queue (a real one, or an emulator's with --endpoint-url) and "
        "invoke the worker handler with them the way Lambda's event source mapping does, until the queue is "
        "empty; then run the compile handler once, as its schedule would. Exit 1 if an invocation failed or "
        "messages were reported for retry.")
    drain.add_argument("--queue-url", required=True, metavar="URL", help="the queue's URL")
    drain.add_argument("--endpoint-url", metavar="URL", help="an SQS emulator such as moto_server (default: AWS)")
    drain.add_argument("--region", help="the queue's AWS region (default: AWS_REGION, AWS_DEFAULT_REGION, or the "
                       "one in the queue URL)")
    drain.add_argument("--batch-size", type=positive_int, default=10, metavar="N",
                       help="messages per invocation, at most 10 (default: 10)")
    drain.add_argument("--timeout", type=positive_float, default=60.0, metavar="SECONDS",
                       help="the simulated function timeout (default: 60)")
    drain.add_argument("--verbose", action="store_true", help="show the worker's JSON log lines")
    drain.set_defaults(run=cmd_drain)


# --- the embedded server --------------------------------------------------------------------------------------


def cmd_server(args: argparse.Namespace) -> int:
    from ingest.store import local_server

    data_dir = local_server.placed_data_dir(LOCAL_DATA_DIR)
    if args.action in ("start", "url"):
        server = local_server.start(LOCAL_DATA_DIR)
        if args.action == "url":
            print(server.url)
        else:
            print(f"{'started' if server.started_here else 'already running'}: PostgreSQL {server.version()} at "
                  f"{server.url} (data in {server.data_dir})")
        return 0
    running = local_server.running(data_dir)
    if args.action == "status":
        if running is not None:
            print(f"running: PostgreSQL {running.version()} at {running.url} (data in {data_dir})")
            return 0
        exists = (data_dir / "PG_VERSION").exists()
        print(f"not running ({f'data in {data_dir}' if exists else 'no data yet'}); "
              "`ocds-ingest server start` starts it")
        return 3
    stopped = local_server.stop(data_dir)
    print("stopped" if stopped else "not running", end="")
    if args.delete:
        local_server.delete_data(data_dir)
        print(f"; deleted {data_dir}", end="")
        copy = local_server.delete_copy(local_server.wheel_bin_dir())
        if copy is not None:
            print(f" and the copy of the binaries in {copy}", end="")
    print()
    return 0


def add_server(commands: Any) -> None:
    server = commands.add_parser(
        "server", help="start, stop or locate the embedded PostgreSQL",
        description="The embedded PostgreSQL that load, harvest and demo use when DATABASE_URL is not set. It "
        "listens on 127.0.0.1 only, keeps its data between runs (in .local/pgdata; as root, under "
        "/var/tmp/ocds-ingest), and keeps running until stopped. `status` exits 3 when it is not running.")
    server.add_argument("action", choices=("start", "status", "url", "stop"),
                        help="start it (or say it runs), say whether it runs, print its URL (starting it if "
                        "needed), or stop it")
    server.add_argument("--delete", action="store_true", help="with stop: delete its data too (make clean does)")
    server.set_defaults(run=cmd_server)


COMMANDS: list[Callable[[Any], None]] = [add_demo, add_load, add_harvest, add_migrate, add_compile, add_drain,
                                          add_server, add_invoke]


def parser() -> argparse.ArgumentParser:
    top = Parser(prog="ocds-ingest", description=DESCRIPTION, epilog=EPILOG,
                 formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = top.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in COMMANDS:
        add(commands)
    return top


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return int(args.run(args))
    except IngestError as error:
        print(f"ocds-ingest {args.command}: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"ocds-ingest {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())

"""Where the worker's CPU goes, stage by stage: each stage of preparing a message timed alone, no database.

    .venv/bin/python bench/prepare_stages.py            # the worker bench's bodies (~4 KB releases, pages of 200)
    .venv/bin/python bench/prepare_stages.py --rounds 15

Every stage runs over the same inline bodies as ``make bench``'s worker (bench/worker_bench.py), best of
``--rounds`` by process time, its results dropped as it goes (kept, they would cost memory traffic the worker
does not pay). The stages nest: a later one includes the earlier ones it names, so the difference between two is
what the later adds. ``json.loads`` of the same bodies, the issue's divisor, comes first. The figures move with
the machine's load by up to 10%; compare stages of one run, not runs.
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import json
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from data import SOURCE, generate  # noqa: E402
from worker_bench import inline_bodies  # noqa: E402

from ingest import jsontext, messages  # noqa: E402
from ingest.pages import prepare_items  # noqa: E402
from ingest.releases import read_release, to_row  # noqa: E402
from ingest.worker import STREAM_ABOVE_BYTES, Connections, Message, Worker  # noqa: E402


def drained(results: Iterable[object]) -> None:
    """Run a generator of results to its end, keeping none of them."""
    for _ in results:
        pass


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--releases", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=9, help="best of this many passes per stage")
    args = parser.parse_args(argv)

    bodies = inline_bodies(generate(args.releases, 4_000, 0, 20240601), 200, SOURCE)
    pages = [messages.parse(body, None, split_up_to=STREAM_ABOVE_BYTES).page for body in bodies]
    items = [list(page.items()) for page in pages]  # type: ignore[union-attr]
    texts = [bytes(item.raw) for page_items in items for item in page_items]  # type: ignore[union-attr]
    values: list[object] = []

    def decoded_afresh() -> None:
        # Values never encoded: the first encoding of a non-ASCII string also makes its UTF-8 (~4 µs a release
        # here), which the worker pays on every release it reads.
        values[:] = map(jsontext.decode_published, texts)

    worker = Worker(Connections(lambda: None), {})  # type: ignore[arg-type, return-value]
    batch = [Message(f"stage-{number}", body, None, 1, "0" * 32) for number, body in enumerate(bodies)]
    # The inputs stay in memory for every stage: keep the garbage collector from walking them again and again
    # (it would slow most what allocates most, json.loads included), as bench/run.py does.
    gc.collect()
    gc.freeze()

    # (name, what is timed, what runs untimed before each pass)
    stages: list[tuple[str, Callable[[], None], Callable[[], None] | None]] = [
        ("json.loads of the bodies (the divisor)", lambda: drained(json.loads(body) for body in bodies), None),
        ("the bodies' UTF-8", lambda: drained(body.encode() for body in bodies), None),
        ("reading the messages: UTF-8, envelope, split",
         lambda: drained(messages.parse(body, None, split_up_to=STREAM_ABOVE_BYTES) for body in bodies), None),
        ("the exact decode of each release", lambda: drained(map(jsontext.decode_published, texts)), None),
        ("the repeated-key check (a re-encoding)",
         lambda: drained(map(jsontext.has_repeated_key, texts, values, [False] * len(texts))), decoded_afresh),
        ("SHA-256 of each release", lambda: drained(hashlib.sha256(text).digest() for text in texts), None),
        ("read_release: decode, escapes, repeated keys", lambda: drained(map(read_release, texts)), None),
        ("to_row: read_release, columns, hash, row",
         lambda: drained(to_row(item, SOURCE) for page_items in items for item in page_items),  # type: ignore[arg-type]
         None),
        ("prepare_items: to_row, newest per key, parameters",
         lambda: drained(prepare_items(page_items, SOURCE, "c") for page_items in items), None),
        ("Worker.prepare: the message read and prepared", lambda: drained(map(worker.prepare, batch)), None),
    ]
    releases = len(texts)
    print(f"{releases:,} releases of ~4 KB in {len(bodies)} bodies; Python {sys.version.split()[0]}; "
          f"best of {args.rounds} by process time, µs per release")
    divisor = None
    for name, stage, before in stages:
        if before is not None:
            before()
        stage()  # once untimed: caches and lazily made objects, as on a warm worker
        fastest = float("inf")
        for _ in range(args.rounds):
            if before is not None:
                before()
            began = time.process_time()
            stage()
            fastest = min(fastest, time.process_time() - began)
        per_release = fastest / releases * 1e6
        divisor = divisor or per_release
        print(f"{name:<52} {per_release:7.1f}  {per_release / divisor:5.2f}x json.loads")
        values.clear()  # not frozen: kept, the collector would walk them in every later stage
    return 0


if __name__ == "__main__":
    sys.exit(main())

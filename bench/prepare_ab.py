"""A/B of the worker's CPU half: preparing pages (read, validate, hash, build the statement's parameters).

    .venv/bin/python bench/prepare_ab.py be13f05          # this tree against another revision, alternated
    .venv/bin/python bench/prepare_ab.py 8c95e07 357ff9c  # several revisions (each lever's step), alternated
    .venv/bin/python bench/prepare_ab.py --ascii HEAD     # bodies with every non-ASCII character escaped
    .venv/bin/python bench/prepare_ab.py --instructions HEAD  # instructions counted (valgrind), not time

Each side runs in a fresh interpreter on the same bodies (synthetic releases of ~4 KB in pages of 200, the
worker bench's), next to ``json.loads`` of the same bodies; the other revision's ``src`` is taken with
``git archive`` into a temporary folder and put first on ``sys.path``.

By default each side is timed: best of 5 by process time, three rounds alternated. On a shared machine that
moves by up to 2x within minutes, ``--instructions`` counts instead: each side under valgrind's callgrind (about
50x slower), once with one pass over the bodies and once with three, so imports and set-up cancel out; the
difference is two passes' instructions, the same on every run. Instructions are not time (a cache miss counts
as one), and valgrind's CPU has no SHA extensions, so hashing counts several times what it costs natively
(about 5 µs per ~4 KB release): use it to compare revisions, and time to judge the figure.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


def _bodies(bodies_file: str) -> tuple[list[bytes], int, Callable[[bytes], object]]:
    from ingest.pages import prepare_page

    bodies = [body.encode() for body in json.loads(Path(bodies_file).read_text())]
    for body in bodies:
        prepare_page(body, "s", "c")
    return bodies, sum(body.count(b'"ocid"') for body in bodies), lambda body: prepare_page(body, "s", "c")


def measure(bodies_file: str) -> None:
    """Run in a fresh interpreter: the best of 5 process times of preparing the bodies and of json.loads."""
    bodies, releases, prepare_one = _bodies(bodies_file)

    def best(work: Callable[[bytes], object]) -> float:
        fastest = float("inf")
        for _ in range(5):
            started = time.process_time()
            for body in bodies:
                work(body)
            fastest = min(fastest, time.process_time() - started)
        return fastest / releases * 1e6

    prepare = best(prepare_one)
    loads = best(json.loads)
    print(json.dumps({"prepare_us": round(prepare, 1), "json_loads_us": round(loads, 1)}))


def passes(bodies_file: str, what: str, count: int) -> None:
    """Run under valgrind: ``count`` passes of ``what`` (prepare or loads) over the bodies."""
    bodies, releases, prepare_one = _bodies(bodies_file)
    work = prepare_one if what == "prepare" else json.loads
    for _ in range(count):
        for body in bodies:
            work(body)
    print(json.dumps({"releases": releases}))


def _run(src: str, call: str, valgrind: str | None = None) -> subprocess.CompletedProcess[str]:
    code = f"import sys; sys.path.insert(0, {src!r}); sys.path.insert(1, {str(HERE)!r}); import prepare_ab; {call}"
    command = [sys.executable, "-c", code]
    if valgrind is not None:
        command = [valgrind, "--tool=callgrind", "--callgrind-out-file=/dev/null", *command]
    # A fixed hash seed: set and dict layouts, so the instructions, are the same from one run to the next.
    return subprocess.run(command, check=True, capture_output=True, text=True,
                          env={**os.environ, "PYTHONHASHSEED": "0"})


def instructions(src: str, bodies: Path, what: str, valgrind: str) -> float:
    """Instructions per release of ``what``: three passes minus one, over two passes."""
    counted = []
    for count in (1, 3):
        done = _run(src, f"prepare_ab.passes({str(bodies)!r}, {what!r}, {count})", valgrind)
        collected = re.search(r"Collected\s*:\s*(\d+)", done.stderr)
        if collected is None:
            raise SystemExit(f"valgrind gave no instruction count:\n{done.stderr[-2000:]}")
        counted.append(int(collected.group(1)))
        releases = json.loads(done.stdout.strip().splitlines()[-1])["releases"]
    return (counted[1] - counted[0]) / 2 / releases


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("revisions", nargs="*", default=["HEAD"], help="revisions to compare with this tree")
    parser.add_argument("--ascii", action="store_true", help="bodies with every non-ASCII character escaped")
    parser.add_argument("--instructions", action="store_true",
                        help="count instructions under valgrind instead of timing (steady on a busy machine)")
    args = parser.parse_args(argv)
    valgrind = shutil.which("valgrind") if args.instructions else None
    if args.instructions and valgrind is None:
        print("bench/prepare_ab.py: --instructions needs valgrind (apt-get install valgrind); or time without it",
              file=sys.stderr)
        return 2
    sys.path.insert(0, str(HERE))
    from data import generate, paginate

    # Fewer releases under valgrind: instructions do not vary, so one sample of 1,000 says as much as many.
    pages = paginate(generate(1000 if valgrind else 2000, 4096, 1, 7), 200)
    with tempfile.TemporaryDirectory() as folder:
        bodies = Path(folder) / "bodies.json"
        # Compact and UTF-8 like the worker bench's bodies; --ascii escapes every non-ASCII character instead
        # (\u00e9 ...), as publishers whose JSON library defaults to it send.
        bodies.write_text(json.dumps([json.dumps({"uri": "https://example.org/p", "publisher": {"name": "p"},
                                                  "version": "1.1", "releases": page}, separators=(",", ":"),
                                                 ensure_ascii=args.ascii) for page in pages]))
        sides = {}
        for revision in args.revisions:
            other = Path(folder) / revision
            other.mkdir()
            archive = subprocess.run(["git", "-C", str(ROOT), "archive", revision, "src"], check=True,
                                     capture_output=True).stdout
            subprocess.run(["tar", "-x", "-C", str(other)], input=archive, check=True)
            sides[revision] = str(other / "src")
        sides["this tree"] = str(ROOT / "src")
        if valgrind is not None:
            loads = instructions(sides["this tree"], bodies, "loads", valgrind)
            print(f"{'json.loads':>10}: {loads:9,.0f} instructions/release")
            for name, src in sides.items():
                prepare = instructions(src, bodies, "prepare", valgrind)
                print(f"{name:>10}: {prepare:9,.0f} instructions/release, {prepare / loads:.2f}x json.loads")
            return 0
        best: dict[str, tuple[float, float]] = {}
        for _ in range(3):
            for name, src in sides.items():
                done = _run(src, f"prepare_ab.measure({str(bodies)!r})")
                figures = json.loads(done.stdout.strip().splitlines()[-1])
                prepare, loads = figures["prepare_us"], figures["json_loads_us"]
                print(f"{name:>10}: prepare {prepare:6.1f} us/release, json.loads {loads:5.1f} us/release, "
                      f"ratio {prepare / loads:.2f}")
                if name not in best or prepare < best[name][0]:
                    best[name] = (prepare, loads)
        print("best rounds:")
        for name, (prepare, loads) in best.items():
            print(f"{name:>10}: prepare {prepare:6.1f} us/release, json.loads {loads:5.1f} us/release, "
                  f"ratio {prepare / loads:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""A/B of the worker's CPU half: preparing pages (read, validate, hash, build the statement's parameters).

    .venv/bin/python bench/prepare_ab.py be13f05          # this tree against another revision, alternated
    .venv/bin/python bench/prepare_ab.py 8c95e07 357ff9c  # several revisions (each lever's step), alternated
    .venv/bin/python bench/prepare_ab.py --ascii HEAD     # bodies with every non-ASCII character escaped

Each side runs in a fresh interpreter on the same bodies (2,000 synthetic releases of ~4 KB in pages of 200, the
worker bench's), best of 5 by process time, next to ``json.loads`` of the same bodies; the other revision's
``src`` is taken with ``git archive`` into a temporary folder and put first on ``sys.path``.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


def measure(bodies_file: str) -> None:
    from ingest.pages import prepare_page

    bodies = [body.encode() for body in json.loads(Path(bodies_file).read_text())]
    releases = sum(body.count(b'"ocid"') for body in bodies)
    for body in bodies:
        prepare_page(body, "s", "c")

    def best(work: object) -> float:
        fastest = float("inf")
        for _ in range(5):
            started = time.process_time()
            work()  # type: ignore[operator]
            fastest = min(fastest, time.process_time() - started)
        return fastest / releases * 1e6

    prepare = best(lambda: [prepare_page(body, "s", "c") for body in bodies])
    loads = best(lambda: [json.loads(body) for body in bodies])
    print(json.dumps({"prepare_us": round(prepare, 1), "json_loads_us": round(loads, 1)}))


def main(revisions: list[str], ascii: bool = False) -> int:
    sys.path.insert(0, str(HERE))
    from data import generate, paginate

    pages = paginate(generate(2000, 4096, 1, 7), 200)
    with tempfile.TemporaryDirectory() as folder:
        bodies = Path(folder) / "bodies.json"
        # Compact and UTF-8 like the worker bench's bodies; --ascii escapes every non-ASCII character instead
        # (\u00e9 ...), as publishers whose JSON library defaults to it send.
        bodies.write_text(json.dumps([json.dumps({"uri": "https://example.org/p", "publisher": {"name": "p"},
                                                  "version": "1.1", "releases": page}, separators=(",", ":"),
                                                 ensure_ascii=ascii) for page in pages]))
        sides = {}
        for revision in revisions:
            other = Path(folder) / revision
            other.mkdir()
            archive = subprocess.run(["git", "-C", str(ROOT), "archive", revision, "src"], check=True,
                                     capture_output=True).stdout
            subprocess.run(["tar", "-x", "-C", str(other)], input=archive, check=True)
            sides[revision] = str(other / "src")
        sides["this tree"] = str(ROOT / "src")
        best: dict[str, tuple[float, float]] = {}
        for _ in range(3):
            for name, src in sides.items():
                code = f"import sys; sys.path.insert(0, {src!r}); sys.path.insert(1, {str(HERE)!r}); " \
                       f"import prepare_ab; prepare_ab.measure({str(bodies)!r})"
                out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
                figures = json.loads(out.stdout.strip().splitlines()[-1])
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
    arguments = [argument for argument in sys.argv[1:] if argument != "--ascii"]
    sys.exit(main(arguments or ["HEAD"], ascii="--ascii" in sys.argv[1:]))

"""The worker's cold import from the lean package, with X-Ray tracing on as in Lambda:
python bench/cold_start.py [--package build/lambda] [--python PYTHON313] [--repeat 7].

`make build` (or `sam build`, which runs the same build) leaves botocore to the Lambda runtime; with tracing on,
Powertools' Tracer imports the X-Ray SDK and patches botocore and httpx at import time, so that cost lands on
every cold start. This runs fresh CPython 3.13 interpreters on the built package (read-only, as /var/task is:
only the bytecode the build compiled is used), with boto3/botocore installed beside it as the runtime provides
them, and LAMBDA_TASK_ROOT set so that Tracer believes it runs in Lambda. It compares ``import handler.worker``
with importing the libraries it needs (pg8000, Powertools Logger, Metrics, Tracer and batch): the benchmark's
cold-import target is a ratio of at most 1.5. The result is one JSON object on the last line of stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
TARGET_RATIO = 1.5
HANDLER = "import time\n_t = time.perf_counter()\nimport handler.worker\nprint(repr(time.perf_counter() - _t))\n"
LIBRARIES = """\
import time
_t = time.perf_counter()
import pg8000.native
from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
Logger(); Metrics(namespace="x"); Tracer()
print(repr(time.perf_counter() - _t))
"""


def runtime_libraries(python: str, directory: Path) -> Path:
    """boto3 and botocore for CPython 3.13, as the Lambda runtime provides them (installed once)."""
    if not (directory / "botocore").is_dir():
        subprocess.run([python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--target",
                        str(directory), "boto3"], check=True)
    return directory


def once(python: str, code: str, env: dict[str, str]) -> float:
    done = subprocess.run([python, "-c", code], env=env, capture_output=True, text=True, timeout=120, check=False)
    if done.returncode != 0:
        raise SystemExit(f"a cold import failed:\n{done.stderr[-3000:]}")
    return float(done.stdout.strip().splitlines()[-1])


def measure(package: Path, python: str, runtime: Path, repeat: int) -> dict[str, Any]:
    base = {"PATH": os.environ.get("PATH", ""), "PYTHONPATH": f"{package}{os.pathsep}{runtime}",
            "PYTHONDONTWRITEBYTECODE": "1", "AWS_REGION": "eu-west-1", "AWS_DEFAULT_REGION": "eu-west-1",
            "AWS_LAMBDA_FUNCTION_NAME": "WorkerFunction", "POWERTOOLS_SERVICE_NAME": "ocds-worker",
            "POWERTOOLS_METRICS_NAMESPACE": "OcdsIngest"}
    traced = {**base, "LAMBDA_TASK_ROOT": str(package)}  # Tracer on: X-Ray SDK imported, modules patched
    untraced = {**traced, "POWERTOOLS_TRACE_DISABLED": "true"}  # the only difference
    samples: dict[str, list[float]] = {"handler": [], "libraries": [], "handler_untraced": []}
    for env in (traced, untraced):  # warm the page cache
        once(python, HANDLER, env)
    for _ in range(repeat):  # alternated, so drift affects all alike
        samples["handler"].append(once(python, HANDLER, traced))
        samples["libraries"].append(once(python, LIBRARIES, traced))
        samples["handler_untraced"].append(once(python, HANDLER, untraced))
    medians = {name: statistics.median(values) for name, values in samples.items()}
    ratio = medians["handler"] / medians["libraries"]
    return {"package": str(package.relative_to(ROOT)) if package.is_relative_to(ROOT) else str(package),
            "repeat": repeat, "handler_traced_ms": round(medians["handler"] * 1000, 1),
            "libraries_traced_ms": round(medians["libraries"] * 1000, 1),
            "handler_untraced_ms": round(medians["handler_untraced"] * 1000, 1),
            "xray_ms": round((medians["handler"] - medians["handler_untraced"]) * 1000, 1),
            "ratio": round(ratio, 3), "target_ratio": TARGET_RATIO, "pass": ratio <= TARGET_RATIO}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--package", type=Path, default=ROOT / "build" / "lambda")
    parser.add_argument("--python", default=next(iter(sorted(Path.home().glob(".pyenv/versions/3.13*/bin/python3.13"))),
                                                   "python3.13"))
    parser.add_argument("--runtime", type=Path, default=ROOT / "build" / "runtime-py313")
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    if not (args.package / "handler" / "worker.py").is_file():
        print(f"no Lambda package in {args.package}: run `make build` first", file=sys.stderr)
        return 2
    result = measure(args.package.resolve(), str(args.python), runtime_libraries(str(args.python), args.runtime),
                     args.repeat)
    print(f"cold import of handler.worker from {result['package']}, X-Ray tracing on: {result['handler_traced_ms']} "
          f"ms vs {result['libraries_traced_ms']} ms for its libraries (ratio {result['ratio']}, target "
          f"<= {TARGET_RATIO}: {'PASS' if result['pass'] else 'FAIL'}); the X-Ray SDK adds {result['xray_ms']} ms "
          f"({result['handler_untraced_ms']} ms with tracing off)")
    sys.stdout.write(json.dumps(result) + "\n")
    return 0 if result["pass"] else 1


if __name__ == "__main__":
    sys.exit(main())

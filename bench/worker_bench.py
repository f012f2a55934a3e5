"""The worker Lambda's side of the benchmark: SQS events of inline pages, its memory, its cold import.

bench/run.py times ``handler.worker.lambda_handler`` in-process (it needs the bench's server and proxy); this
module builds the events and runs the two measurements that need a fresh interpreter each time:

* memory: bench/worker_probe.py in a subprocess (see its docstring);
* cold import: ``import handler.worker`` against the libraries it cannot do without, in fresh interpreters,
  alternated, plus ``python -X importtime`` for our own modules' self time.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import statistics
import subprocess
import sys
import sysconfig
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ingest.messages import inline_raw
from ingest.queue import lambda_event

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
PROBE = HERE / "worker_probe.py"
QUEUE_ARN = "arn:aws:sqs:eu-west-1:123456789012:ocds-ingest-pages"
REGION = "eu-west-1"
LAMBDA_PAYLOAD_LIMIT = 6 * 1024 * 1024  # synchronous invocation payload (what an SQS batch must fit in)
SQS_MESSAGE_LIMIT = 1024 * 1024
TARGET_ADDED_PEAK_MIB = 64
TARGET_IMPORT_RATIO = 1.5

# What the worker's environment needs for a local run (DATABASE_URL and WRITE_STRATEGY are set per run).
POWERTOOLS_ENV = {
    "POWERTOOLS_METRICS_NAMESPACE": "OcdsIngestBench",
    "POWERTOOLS_SERVICE_NAME": "ocds-worker",
    "POWERTOOLS_TRACE_DISABLED": "true",
    "POWERTOOLS_LOG_LEVEL": "WARNING",
    "TIME_SAFETY_MARGIN_MS": "20000",
}


def _compact(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def package_text(release_texts: Sequence[str], number: int) -> str:
    """A release package around releases already serialised (compact JSON)."""
    head = _compact({"uri": f"https://bench.example.org/packages/{number}.json",
                     "publishedDate": "2024-06-01T00:00:00Z", "publisher": {"name": "Bench Publisher"},
                     "version": "1.1"})
    return head[:-1] + ',"releases":[' + ",".join(release_texts) + "]}"


def sqs_message(number: int, body: str, source: str) -> dict[str, Any]:
    """A message as ReceiveMessage returns it (with AttributeNames and MessageAttributeNames All)."""
    sent = 1_717_200_000_000 + number
    return {
        "MessageId": f"00000000-0000-4000-8000-{number:012d}",
        "ReceiptHandle": f"AQEBbench{number:012d}==",
        "MD5OfBody": hashlib.md5(body.encode("utf-8")).hexdigest(),  # noqa: S324 - SQS's own checksum
        "Body": body,
        "Attributes": {"ApproximateReceiveCount": "1", "SentTimestamp": str(sent), "SenderId": "AIDABENCH",
                       "ApproximateFirstReceiveTimestamp": str(sent + 100)},
        "MessageAttributes": {"source": {"DataType": "String", "StringValue": source}},
    }


def inline_bodies(releases: Sequence[dict[str, Any]], per_message: int, source: str,
                  first_number: int = 0) -> list[str]:
    """Version-1 inline bodies, one release package of ``per_message`` releases each."""
    texts = [_compact(release) for release in releases]
    return [inline_raw(source, package_text(texts[start:start + per_message], first_number + start))
            for start in range(0, len(texts), per_message)]


def bodies_of_size(releases: Sequence[dict[str, Any]], count: int, target_bytes: int, source: str,
                   first_number: int = 0) -> list[str]:
    """``count`` inline bodies of at most ``target_bytes`` (UTF-8) each, filled with consecutive releases."""
    texts = iter(_compact(release) for release in releases)
    bodies = []
    empty = len(inline_raw(source, package_text([], 0)).encode("utf-8"))
    pending: str | None = None
    for index in range(count):
        page: list[str] = []
        size = empty
        while True:
            text = pending if pending is not None else next(texts, None)
            pending = None
            if text is None:
                raise ValueError(f"not enough releases for {count} bodies of {target_bytes} bytes")
            grows = len(text.encode("utf-8")) + (1 if page else 0)
            if size + grows > target_bytes:
                pending = text
                break
            page.append(text)
            size += grows
        bodies.append(inline_raw(source, package_text(page, first_number + index)))
    return bodies


def events(bodies: Sequence[str], per_event: int, source: str, first_number: int = 0) -> list[dict[str, Any]]:
    """Lambda SQS events of ``per_event`` records (the stack's BatchSize) from the bodies."""
    messages = [sqs_message(first_number + index, body, source) for index, body in enumerate(bodies)]
    return [lambda_event(messages[start:start + per_event], QUEUE_ARN, REGION)
            for start in range(0, len(messages), per_event)]


def tiny_event(source: str, number: int) -> dict[str, Any]:
    """One record, one page of one small release: the warm-up invocation."""
    release = {"ocid": f"ocds-warm-{number}", "id": f"ocds-warm-{number}-1", "date": "2024-06-01T00:00:00Z",
               "tag": ["planning"], "buyer": {"id": "XX-WARM-1", "name": "Warm-up Council"}}
    return events([inline_raw(source, package_text([_compact(release)], number))], 1, source, number)[0]


def event_bytes(event: dict[str, Any]) -> bytes:
    """The event as the Lambda runtime receives it: UTF-8 JSON."""
    return json.dumps(event, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


# --- memory -------------------------------------------------------------------------------------------------

_LAUNCHER = "import subprocess, sys; sys.exit(subprocess.call(sys.argv[1:]))"


def probe_memory(workdir: Path, database_url: str, event: dict[str, Any], warm: dict[str, Any], *,
                 name: str = "memory", trace: bool = False, timeout: float = 300) -> dict[str, Any]:
    """Run bench/worker_probe.py memory in a fresh interpreter and return its result."""
    event_path, warm_path = workdir / f"{name}_event.json", workdir / f"{name}_warm.json"
    if not event_path.exists():
        event_path.write_bytes(event_bytes(event))
    warm_path.write_bytes(event_bytes(warm))
    env = {**os.environ, **POWERTOOLS_ENV, "DATABASE_URL": database_url}
    env.pop("WRITE_STRATEGY", None)
    # Through a small launcher: a process exec'd straight from this big one starts with ru_maxrss already at
    # this process's resident set (Linux keeps the pre-exec high-water mark), which would hide the probe's own.
    command = [sys.executable, "-c", _LAUNCHER, sys.executable, str(PROBE), "memory", "--warm", str(warm_path),
               "--event", str(event_path)]
    if trace:
        command.append("--tracemalloc")
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout, check=False)
    if done.returncode != 0:
        raise SystemExit(f"the memory probe failed ({done.returncode}):\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


# --- cold import --------------------------------------------------------------------------------------------

# Both measure in-process from just before the first import to after the objects the handler builds at import.
HANDLER_IMPORT = """\
import time
_t = time.perf_counter()
import handler.worker
_t = time.perf_counter() - _t
print(repr(_t))
"""
LIBRARIES_IMPORT = """\
import time
_t = time.perf_counter()
import pg8000.native
from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
Logger(); Metrics(namespace="x"); Tracer()
_t = time.perf_counter() - _t
print(repr(_t))
"""


def _fresh(code: str, env: dict[str, str], extra: Sequence[str] = ()) -> tuple[float, float, str]:
    """(seconds the code measured itself, wall seconds of the whole interpreter, stderr)."""
    started = time.perf_counter()
    done = subprocess.run([sys.executable, *extra, "-c", code], env=env, capture_output=True, text=True,
                          timeout=120, check=False)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"a cold import failed:\n{done.stderr[-4000:]}")
    return float(done.stdout.strip().splitlines()[-1]), wall, done.stderr


def _importtime(stderr: str) -> dict[str, int]:
    """Self time in microseconds per module, from ``-X importtime`` output."""
    times: dict[str, int] = {}
    for line in stderr.splitlines():
        if not line.startswith("import time:") or "self [us]" in line:
            continue
        self_us, _cumulative, name = line[len("import time:"):].split("|", 2)
        times[name.strip()] = int(self_us)
    return times


def _provided_by_runtime() -> tuple[str, ...]:
    """What tools/build_lambda.py leaves out of the package because the Lambda runtime has it."""
    fallback = ("boto3", "botocore", "s3transfer", "jmespath", "urllib3", "dateutil", "python_dateutil", "six")
    spec = importlib.util.spec_from_file_location("build_lambda", ROOT / "tools" / "build_lambda.py")
    if spec is None or spec.loader is None:
        return fallback
    try:
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return tuple(getattr(module, "PROVIDED_BY_RUNTIME", fallback))
    except (OSError, ImportError):  # noqa: PERF203 - once
        return fallback


def _as_deployed(cache: Path, deployed: Path) -> None:
    """A copy of the bytecode cache without what the deployment package would bring uncompiled.

    tools/build_lambda.py deletes every __pycache__ from the package and /var/task is read-only, so in Lambda
    our modules and the packaged libraries are compiled from source at every cold start; the standard library
    and what the runtime provides (boto3, botocore, ...) keep their bytecode.
    """
    shutil.rmtree(deployed, ignore_errors=True)
    shutil.copytree(cache, deployed)
    shutil.rmtree(deployed / str(ROOT / "src").lstrip(os.sep), ignore_errors=True)
    provided = set(_provided_by_runtime())
    site = deployed / sysconfig.get_paths()["purelib"].lstrip(os.sep)
    if site.is_dir():
        for entry in site.iterdir():
            if entry.name.split(".")[0] not in provided:
                shutil.rmtree(entry, ignore_errors=True) if entry.is_dir() else entry.unlink()


def cold_import(repeat: int, workdir: Path, importtime_runs: int = 3, deployed_repeat: int = 5) -> dict[str, Any]:
    """Fresh interpreters importing the handler or its libraries only, alternated.

    Bytecode goes to a cache of our own (PYTHONPYCACHEPREFIX), so nothing is written next to the sources and
    every run but the first (untimed) finds it; then the same without bytecode for what the deployment
    package brings (see ``_as_deployed``).
    """
    cache = workdir / "pycache"
    env = {**os.environ, **POWERTOOLS_ENV, "PYTHONPYCACHEPREFIX": str(cache)}
    for name in ("DATABASE_URL", "WRITE_STRATEGY", "PYTHONDONTWRITEBYTECODE", "PYTHONPROFILEIMPORTTIME"):
        env.pop(name, None)
    # One untimed run of each first: the bytecode cache written, the files in the page cache.
    _fresh(HANDLER_IMPORT, env)
    _fresh(LIBRARIES_IMPORT, env)
    handler, libraries, handler_wall, libraries_wall = [], [], [], []
    for _ in range(repeat):  # alternated, so drift affects both alike
        seconds, wall, _ = _fresh(HANDLER_IMPORT, env)
        handler.append(seconds)
        handler_wall.append(wall)
        seconds, wall, _ = _fresh(LIBRARIES_IMPORT, env)
        libraries.append(seconds)
        libraries_wall.append(wall)
    samples: dict[str, list[int]] = {}
    cumulative: list[int] = []
    for _ in range(importtime_runs):
        _, _, stderr = _fresh(HANDLER_IMPORT, env, ("-X", "importtime"))
        times = _importtime(stderr)
        for name, value in times.items():
            if name.split(".")[0] in ("ingest", "handler"):
                samples.setdefault(name, []).append(value)
        cumulative.append(_cumulative(stderr, "handler.worker"))
    deployed: dict[str, Any] = {}
    if deployed_repeat > 0:
        _as_deployed(cache, workdir / "pycache-deployed")
        deployed_env = {**env, "PYTHONPYCACHEPREFIX": str(workdir / "pycache-deployed"),
                        "PYTHONDONTWRITEBYTECODE": "1"}
        deployed_handler, deployed_libraries = [], []
        for _ in range(deployed_repeat):
            deployed_handler.append(_fresh(HANDLER_IMPORT, deployed_env)[0])
            deployed_libraries.append(_fresh(LIBRARIES_IMPORT, deployed_env)[0])
        deployed = {"repeat": deployed_repeat, "provided_by_runtime": list(_provided_by_runtime()),
                    "handler_median": round(statistics.median(deployed_handler), 4),
                    "libraries_median": round(statistics.median(deployed_libraries), 4),
                    "ratio_median": round(statistics.median(deployed_handler)
                                          / statistics.median(deployed_libraries), 3)}
    ours = sorted(((name, statistics.median(values)) for name, values in samples.items()),
                  key=lambda item: item[1], reverse=True)
    median_handler, median_libraries = statistics.median(handler), statistics.median(libraries)
    ratio = median_handler / median_libraries
    return {
        "repeat": repeat,
        "handler_seconds": [round(value, 4) for value in handler],
        "libraries_seconds": [round(value, 4) for value in libraries],
        "handler_median": round(median_handler, 4), "handler_min": round(min(handler), 4),
        "libraries_median": round(median_libraries, 4), "libraries_min": round(min(libraries), 4),
        "ratio_median": round(ratio, 3), "ratio_min": round(min(handler) / min(libraries), 3),
        "process_wall_median": {"handler": round(statistics.median(handler_wall), 4),
                                "libraries": round(statistics.median(libraries_wall), 4)},
        "importtime_runs": importtime_runs,
        "importtime_handler_cumulative_us_median": statistics.median(cumulative),
        "our_modules_self_us": [{"module": name, "self_us": int(value)} for name, value in ours],
        "our_modules_self_us_total": int(sum(value for _, value in ours)),
        "without_package_bytecode": deployed,
        "pass": ratio <= TARGET_IMPORT_RATIO,
    }


def _cumulative(stderr: str, module: str) -> int:
    for line in stderr.splitlines():
        if line.startswith("import time:") and line.rsplit("|", 1)[-1].strip() == module:
            return int(line.split("|")[1])
    return 0

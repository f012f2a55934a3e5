"""``ocds-ingest invoke FUNCTION -e EVENT [--env-vars FILE]``: ``sam local invoke`` without Docker.

It reads ``template.yaml`` for the function's Handler, Timeout and MemorySize and its environment (the Globals'
variables, then the function's, then the ``--env-vars`` file's, which like SAM's overrides only variables the
template declares: its ``Parameters`` section for every function, then the function's own section). Values the
template gives by ``!Ref`` of a parameter take the parameter's default; other references (a queue's URL) are
empty, as they are outside AWS. ``host.docker.internal`` becomes ``127.0.0.1``: here the handler runs on the host.

The handler runs in a fresh Python process with exactly that environment (plus PATH, HOME and the AWS_*
variables of this one: credentials, region, endpoint), is killed at its Timeout, and the report says its duration
and peak memory against MemorySize, as Lambda's REPORT line does. Its logs go to stderr; the response (or the
error, as ``{"errorType", "errorMessage"}``) is printed on stdout. Exit 0 when the handler returned within its
timeout and memory, 1 when it raised, timed out or used more memory than its MemorySize, 2 for a usage error.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ingest.errors import ConfigurationError

PASSED_THROUGH = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "VIRTUAL_ENV")
_INTRINSIC_TAGS = ("Ref", "Sub", "GetAtt", "If", "Join", "Select", "Split", "Equals", "Not", "And", "Or",
                   "FindInMap", "ImportValue", "GetAZs", "Base64", "Cidr", "Condition")


@dataclass(frozen=True)
class FunctionSpec:
    """What the template says about one function, resolved for a local run."""

    name: str
    handler: str
    timeout: int
    memory_mb: int
    environment: dict[str, str]


@dataclass(frozen=True)
class Outcome:
    response: Any
    error: dict[str, str] | None
    timed_out: bool
    seconds: float
    peak_mb: float
    memory_mb: int
    timeout: int

    @property
    def ok(self) -> bool:
        return self.error is None and not self.timed_out and self.peak_mb <= self.memory_mb

    def report(self) -> str:
        line = (f"REPORT Duration: {self.seconds * 1000:.0f} ms  Timeout: {self.timeout} s  Memory Size: "
                f"{self.memory_mb} MB  Max Memory Used: {self.peak_mb:.0f} MB ({self.peak_mb / self.memory_mb:.0%})")
        if self.timed_out:
            line += f"\nTask timed out after {self.timeout} seconds"
        if self.peak_mb > self.memory_mb:
            line += "\nMax Memory Used is above MemorySize: Lambda would have stopped this invocation"
        return line


def load_template(path: Path) -> dict[str, Any]:
    """template.yaml with CloudFormation's short tags as their long forms (``!Ref X`` -> ``{"Ref": "X"}``)."""
    try:
        import yaml
    except ImportError:
        raise ConfigurationError("reading template.yaml needs PyYAML: install the dev extras "
                                 "(pip install -e '.[dev]')") from None

    class Loader(yaml.SafeLoader):
        pass

    def construct(tag: str) -> Any:
        def build(loader: Loader, node: Any) -> Any:
            if isinstance(node, yaml.ScalarNode):
                value: Any = loader.construct_scalar(node)
                if tag == "GetAtt":
                    value = value.split(".", 1)
            elif isinstance(node, yaml.SequenceNode):
                value = loader.construct_sequence(node, deep=True)
            else:
                value = loader.construct_mapping(node, deep=True)
            return {"Ref" if tag in ("Ref", "Condition") else f"Fn::{tag}": value}
        return build

    for tag in _INTRINSIC_TAGS:
        Loader.add_constructor(f"!{tag}", construct(tag))
    try:
        return dict(yaml.load(path.read_text("utf-8"), Loader=Loader))  # noqa: S506 - SafeLoader subclass
    except OSError as exc:
        raise ConfigurationError(f"{path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise ConfigurationError(f"{path} is not valid YAML: {exc}") from None


def _resolve(value: Any, parameters: dict[str, Any]) -> str:
    """A template value as the string a local run gets: parameters' defaults; other references empty."""
    if isinstance(value, (str, int, float)) and not isinstance(value, bool):
        return str(value)
    if isinstance(value, dict) and set(value) == {"Ref"} and value["Ref"] in parameters:
        return str(parameters[value["Ref"]].get("Default", ""))
    return ""


def function_spec(template: dict[str, Any], name: str, overrides: dict[str, Any] | None = None) -> FunctionSpec:
    resources = template.get("Resources", {})
    functions = sorted(logical for logical, resource in resources.items()
                       if resource.get("Type") == "AWS::Serverless::Function")
    if name not in functions:
        raise ConfigurationError(f"no function {name!r} in the template (functions: {', '.join(functions)})")
    globals_ = template.get("Globals", {}).get("Function", {})
    properties = resources[name].get("Properties", {})
    parameters = template.get("Parameters", {})
    declared: dict[str, Any] = {**globals_.get("Environment", {}).get("Variables", {}),
                                **properties.get("Environment", {}).get("Variables", {})}
    environment = {key: _resolve(value, parameters) for key, value in declared.items()}
    overrides = overrides or {}
    for section in (overrides.get("Parameters", {}), overrides.get(name, {})):
        if not isinstance(section, dict):
            raise ConfigurationError(f"the env-vars file's {name!r} entry must be an object of variables")
        environment.update({key: str(value) for key, value in section.items() if key in declared})
    environment = {key: value.replace("host.docker.internal", "127.0.0.1") for key, value in environment.items()}
    handler = properties.get("Handler") or globals_.get("Handler")
    if not isinstance(handler, str) or "." not in handler:
        raise ConfigurationError(f"{name} has no Handler of the form module.function")
    return FunctionSpec(name, handler, int(properties.get("Timeout", globals_.get("Timeout", 3))),
                        int(properties.get("MemorySize", globals_.get("MemorySize", 128))), environment)


def child_environment(spec: FunctionSpec) -> dict[str, str]:
    """What the handler's process sees: the function's environment, Lambda's own variables, and from this
    process only what a machine needs to run Python and reach AWS (or an emulator of it)."""
    inherited = {key: value for key, value in os.environ.items()
                 if key in PASSED_THROUGH or key.startswith("AWS_")}
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "eu-west-1"
    return {**inherited, "AWS_REGION": region, "AWS_DEFAULT_REGION": region,
            "AWS_LAMBDA_FUNCTION_NAME": spec.name, "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(spec.memory_mb),
            "AWS_LAMBDA_FUNCTION_TIMEOUT": str(spec.timeout), "PYTHONUNBUFFERED": "1",
            # As sam local sets it: Powertools then leaves X-Ray alone (there is no daemon here).
            "AWS_SAM_LOCAL": "true", **spec.environment}


def invoke(spec: FunctionSpec, event_path: Path, *, python: str = sys.executable) -> Outcome:
    """Run the handler once in a fresh process; kill it at the timeout; measure its peak resident set."""
    with tempfile.TemporaryDirectory(prefix="ocds-invoke-") as directory:
        answer = Path(directory) / "answer.json"
        started = time.monotonic()
        process = subprocess.Popen([python, "-m", "ingest.invoke", "--child", spec.handler, str(event_path),
                                    str(answer), str(spec.timeout), str(spec.memory_mb), spec.name],
                                   env=child_environment(spec), stdout=2)  # its logs to our stderr, like sam
        timed_out = False
        # wait4, not wait: it gives this child's own resource usage, whose ru_maxrss is its peak resident set.
        while True:
            pid, status, usage = os.wait4(process.pid, os.WNOHANG)
            if pid:
                break
            if time.monotonic() - started > spec.timeout:
                process.send_signal(signal.SIGKILL)
                pid, status, usage = os.wait4(process.pid, 0)
                timed_out = True
                break
            time.sleep(0.02)
        process.returncode = os.waitstatus_to_exitcode(status)  # reaped above: Popen must not wait again
        seconds = time.monotonic() - started
        result = json.loads(answer.read_text("utf-8")) if answer.exists() else {}
        # The child's own figure when it answered (see _own_peak_kib); else what wait4 saw (KiB on Linux).
        peak_mb = (result.get("peak_kib") or usage.ru_maxrss) / 1024
    error = result.get("error")
    if not timed_out and not result:
        error = {"errorType": "Runtime.ExitError", "errorMessage": "the handler's process exited without answering"}
    return Outcome(result.get("response"), error, timed_out, seconds, peak_mb, spec.memory_mb, spec.timeout)


def _child(handler: str, event_path: str, answer_path: str, timeout: str, memory_mb: str, name: str) -> int:
    """In the fresh process: import the handler, call it once with the event, write the answer."""
    import importlib

    from ingest.queue import LocalContext

    module_name, function_name = handler.rsplit(".", 1)
    answer: dict[str, Any]
    try:
        event = json.loads(Path(event_path).read_text("utf-8"))
        function = getattr(importlib.import_module(module_name), function_name)
        context = LocalContext(float(timeout), function_name=name, memory_limit_in_mb=int(memory_mb),
                               invoked_function_arn=f"arn:aws:lambda:local:000000000000:function:{name}")
        answer = {"response": function(event, context)}
    except Exception as error:  # noqa: BLE001 - reported as Lambda reports an unhandled error
        answer = {"error": {"errorType": type(error).__name__, "errorMessage": str(error)}}
    answer["peak_kib"] = _own_peak_kib()
    Path(answer_path).write_text(json.dumps(answer, default=str), "utf-8")
    return 0


def _own_peak_kib() -> int | None:
    """This process's peak resident set since its exec (VmHWM). ru_maxrss can also count the pages of the parent
    it was forked from (Linux keeps it across execve), which made a 30 MB migration look like 262 MB."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def register(commands: Any) -> None:
    """Add ``invoke`` to the CLI's subcommands."""
    command = commands.add_parser("invoke", help="run a function of template.yaml on an event, as sam local "
                                  "invoke does, without Docker")
    command.add_argument("function", help="the function's logical id, e.g. WorkerFunction")
    command.add_argument("-e", "--event", required=True, type=Path, help="the event file, e.g. events/…json")
    command.add_argument("--env-vars", type=Path, help="overrides in sam's env.json format (events/env.json)")
    command.add_argument("-t", "--template", type=Path, default=Path("template.yaml"))
    command.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    overrides: dict[str, Any] = {}
    if args.env_vars is not None:
        try:
            overrides = json.loads(args.env_vars.read_text("utf-8"))
        except OSError as exc:
            raise ConfigurationError(f"--env-vars {args.env_vars}: {exc.strerror}") from None
        except ValueError as exc:
            raise ConfigurationError(f"--env-vars {args.env_vars} is not JSON: {exc}") from None
    if not args.event.is_file():
        raise ConfigurationError(f"the event file {args.event} does not exist")
    spec = function_spec(load_template(args.template), args.function, overrides)
    outcome = invoke(spec, args.event.resolve())
    print(outcome.report(), file=sys.stderr)
    print(json.dumps(outcome.error if outcome.error is not None else outcome.response, default=str))
    return 0 if outcome.ok else 1


if __name__ == "__main__":
    if len(sys.argv) == 8 and sys.argv[1] == "--child":
        sys.exit(_child(*sys.argv[2:]))
    print("ingest.invoke is run by `ocds-ingest invoke`; see its --help", file=sys.stderr)
    sys.exit(2)

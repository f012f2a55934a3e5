"""The SAM stack, checked offline: transformed by aws-sam-translator, linted by cfn-lint, wired to the code."""

from __future__ import annotations

import copy
import importlib
import json
import re
from pathlib import Path
from typing import Any

import pytest
from cfnlint.api import lint
from cfnlint.decode import decode_str
from samtranslator.translator.transform import transform

ROOT = Path(__file__).resolve().parents[2]
MANAGED_POLICIES = {name: f"arn:aws:iam::aws:policy/service-role/{name}" for name in (
    "AWSLambdaBasicExecutionRole", "AWSLambdaVPCAccessExecutionRole", "AWSXrayWriteOnlyAccess",
    "AWSLambdaSQSQueueExecutionRole", "AWSXRayDaemonWriteAccess")}
PARAMETERS = {"SubnetIds": "subnet-0123456789abcdef0", "SecurityGroupIds": "sg-0123456789abcdef0",
              "DatabaseHost": "ocds.proxy-abc.eu-west-1.rds.amazonaws.com"}
# Read by the code only when run locally (sam local invoke, tests); the template sets them empty.
LOCAL_ONLY: set[str] = set()


@pytest.fixture(autouse=True)
def region(monkeypatch: pytest.MonkeyPatch) -> None:
    # aws-sam-translator builds ARNs from the boto3 session's region.
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")


class OfflinePolicies:
    """aws-sam-translator asks IAM for managed policy ARNs; offline we name them."""

    def load(self) -> dict[str, str]:
        return MANAGED_POLICIES


def sam_template() -> dict[str, Any]:
    template, problems = decode_str((ROOT / "template.yaml").read_text())
    assert not problems, problems
    return dict(template)


def translated(template: dict[str, Any]) -> dict[str, Any]:
    template = copy.deepcopy(template)
    # `sam package` replaces the local code path with the uploaded artifact's; the translator expects that.
    template["Globals"]["Function"]["CodeUri"] = "s3://ocds-ingest-artifacts/ocds-ingest/src.zip"
    return transform(template, {"AWS::Region": "eu-west-1", "AWS::AccountId": "123456789012",
                                               "AWS::Partition": "aws", **PARAMETERS}, OfflinePolicies())


def lint_errors(template: dict[str, Any]) -> list[str]:
    matches = lint(json.dumps(translated(template), default=str), regions=["eu-west-1"])
    return [f"{match.rule.id} {match.message}" for match in matches if match.rule.id[0] in "EW"]


def test_the_translated_template_is_clean() -> None:
    assert lint_errors(sam_template()) == []


@pytest.mark.parametrize("spoil, expected_rule", [
    (lambda t: t["Globals"]["Function"].__setitem__("Runtime", "python3.99"), "E3030"),
    (lambda t: t["Resources"]["WorkerFunction"]["Properties"]["Events"]["Pages"]["Properties"].__setitem__(
        "FunctionResponseTypes", ["ReportBatchItemFailure"]), "E3030"),
], ids=["bad-runtime", "misspelt-response-type"])
def test_the_check_catches_what_the_issue_names(spoil: Any, expected_rule: str) -> None:
    template = sam_template()
    spoil(template)
    errors = lint_errors(template)
    assert any(error.startswith(expected_rule) for error in errors), errors


def visibility_and_worker_timeout(template: dict[str, Any]) -> tuple[int, int, int]:
    resources = template["Resources"]
    queue = int(resources["PagesQueue"]["Properties"]["VisibilityTimeout"])
    worker = resources["WorkerFunction"]["Properties"]
    window = int(worker["Events"]["Pages"]["Properties"]["MaximumBatchingWindowInSeconds"])
    return queue, int(worker["Timeout"]), window


def test_the_visibility_timeout_covers_six_worker_timeouts_and_the_batching_window() -> None:
    # cfn-lint only checks that the visibility timeout is not below the function timeout; Lambda's own
    # guidance (and ours) is six times it plus the batching window, so a message is not redelivered while a
    # slow invocation still works on it.
    queue, timeout, window = visibility_and_worker_timeout(sam_template())
    assert queue >= 6 * timeout + window


def test_a_visibility_timeout_below_the_worker_timeout_fails_the_lint() -> None:
    spoiled = sam_template()
    spoiled["Resources"]["PagesQueue"]["Properties"]["VisibilityTimeout"] = 60
    assert any("isibility" in error for error in lint_errors(spoiled)), lint_errors(spoiled)


def test_the_worker_reports_partial_batch_failures_and_the_queue_has_a_dlq() -> None:
    resources = translated(sam_template())["Resources"]
    mapping = next(r["Properties"] for r in resources.values() if r["Type"] == "AWS::Lambda::EventSourceMapping")
    assert mapping["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert mapping["BatchSize"] == 5
    assert mapping["ScalingConfig"] == {"MaximumConcurrency": {"Ref": "WorkerMaximumConcurrency"}}
    redrive = resources["PagesQueue"]["Properties"]["RedrivePolicy"]
    assert redrive["maxReceiveCount"] == 5
    assert resources["PagesDLQ"]["Properties"]["MessageRetentionPeriod"] == 1209600


def test_every_function_is_python313_on_arm64_with_tracing() -> None:
    resources = translated(sam_template())["Resources"]
    functions = [r["Properties"] for r in resources.values() if r["Type"] == "AWS::Lambda::Function"]
    assert len(functions) == 3
    for function in functions:
        assert (function["Runtime"], function["Architectures"], function["TracingConfig"]) == \
            ("python3.13", ["arm64"], {"Mode": "Active"})
        assert function["LoggingConfig"] == {"LogFormat": "JSON"}


def test_no_policy_allows_every_action() -> None:
    resources = translated(sam_template())["Resources"]
    text = json.dumps([r for r in resources.values() if r["Type"] == "AWS::IAM::Role"])
    actions = re.findall(r'"Action": (\[[^\]]*\]|"[^"]*")', text)
    assert actions
    for action in actions:
        assert '"*"' not in action and ':*"' not in action, action


@pytest.mark.parametrize("name", ["HarvestFunction", "WorkerFunction", "MigrateFunction"])
def test_every_handler_resolves_to_a_function_in_src_handler(name: str) -> None:
    handler = sam_template()["Resources"][name]["Properties"]["Handler"]
    module_name, function_name = handler.rsplit(".", 1)
    assert module_name.startswith("handler.")
    assert (ROOT / "src" / (module_name.replace(".", "/") + ".py")).is_file()
    assert callable(getattr(importlib.import_module(module_name), function_name))


def environment_variables_read_by_the_handlers() -> set[str]:
    names: set[str] = set()
    pattern = re.compile(r'(?:environ\.get|environ\[|env\.get|env\[|_int)\(?\s*"([A-Z][A-Z0-9_]+)"')
    for path in (ROOT / "src" / "handler").glob("*.py"):
        names.update(pattern.findall(path.read_text()))
    return names


def test_every_environment_variable_the_code_reads_is_set_by_the_template() -> None:
    template = sam_template()
    declared = set(template["Globals"]["Function"]["Environment"]["Variables"])
    for resource in template["Resources"].values():
        declared |= set(resource.get("Properties", {}).get("Environment", {}).get("Variables", {}))
    read = environment_variables_read_by_the_handlers()
    assert {"DATABASE_URL", "DB_SECRET_ARN", "PAGES_QUEUE_URL", "TIME_SAFETY_MARGIN_MS"} <= read
    assert read - declared - LOCAL_ONLY == set()


def test_the_schema_version_names_the_newest_migration() -> None:
    newest = max(path.name.split("_")[0] for path in (ROOT / "src/ingest/store/migrations").glob("*.sql"))
    version = sam_template()["Resources"]["SchemaMigration"]["Properties"]["SchemaVersion"]
    assert version == newest


def test_samconfig_has_default_and_dev_and_lints_on_validate() -> None:
    import tomllib

    config = tomllib.loads((ROOT / "samconfig.toml").read_text())
    assert config["version"] == 0.1
    assert config["default"]["validate"]["parameters"]["lint"] is True
    assert config["dev"]["deploy"]["parameters"]["capabilities"] == "CAPABILITY_IAM"


def test_every_event_file_is_json() -> None:
    for path in (ROOT / "events").glob("*.json"):
        assert isinstance(json.loads(path.read_text()), dict), path

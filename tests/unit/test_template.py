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
              "VpcId": "vpc-0123456789abcdef0", "DatabaseHost": "ocds.proxy-abc.eu-west-1.rds.amazonaws.com"}
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
    assert len(functions) == 4
    for function in functions:
        assert (function["Runtime"], function["Architectures"], function["TracingConfig"]) == \
            ("python3.13", ["arm64"], {"Mode": "Active"})
        assert function["LoggingConfig"]["LogFormat"] == "JSON"


def test_no_policy_allows_every_action() -> None:
    resources = translated(sam_template())["Resources"]
    text = json.dumps([r for r in resources.values() if r["Type"] == "AWS::IAM::Role"])
    actions = re.findall(r'"Action": (\[[^\]]*\]|"[^"]*")', text)
    assert actions
    for action in actions:
        assert '"*"' not in action and ':*"' not in action, action


@pytest.mark.parametrize("name", ["HarvestFunction", "WorkerFunction", "CompileFunction", "MigrateFunction"])
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


def samconfig() -> dict[str, Any]:
    import tomllib

    return tomllib.loads((ROOT / "samconfig.toml").read_text())


def test_samconfig_has_default_and_dev_and_lints_on_validate() -> None:
    config = samconfig()
    assert config["version"] == 0.1
    assert config["default"]["validate"]["parameters"]["lint"] is True
    assert config["dev"]["deploy"]["parameters"]["capabilities"] == "CAPABILITY_IAM"


def test_every_event_file_is_json() -> None:
    for path in (ROOT / "events").glob("*.json"):
        assert isinstance(json.loads(path.read_text()), dict), path


# --- issue 9: what a reviewer checks before a first deploy ------------------------------------------------

def resources_of(template: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    return {name: r for name, r in template["Resources"].items() if r["Type"] == kind}


def role_statements(resources: dict[str, Any], function: str) -> list[dict[str, Any]]:
    role = resources[f"{function}Role"]["Properties"]
    statements = []
    for policy in role.get("Policies", []):
        found = policy
        if isinstance(found, dict) and "Fn::If" in found:
            found = found["Fn::If"][1]
        statements += found["PolicyDocument"]["Statement"]
    return statements


def test_worker_sizing_is_the_code_constants_in_one_place() -> None:
    # GIVEN the worker's sizing constants (bench/worker_memory.py measures the worst batch against them)
    from ingest.worker import BATCH_SIZE, DEFAULT_MAX_PAGE_BYTES, MEMORY_SIZE_MB
    template = sam_template()
    worker = template["Resources"]["WorkerFunction"]["Properties"]
    # THEN the template deploys exactly them
    assert worker["MemorySize"] == MEMORY_SIZE_MB
    assert worker["Events"]["Pages"]["Properties"]["BatchSize"] == BATCH_SIZE
    assert int(template["Globals"]["Function"]["Environment"]["Variables"]["MAX_PAGE_BYTES"]) == \
        DEFAULT_MAX_PAGE_BYTES
    alarm = template["Resources"]["WorkerDurationAlarm"]["Properties"]
    assert alarm["Threshold"] == 0.8 * worker["Timeout"] * 1000


def test_the_database_ca_file_is_a_parameter_defaulting_to_the_shipped_bundles() -> None:
    template = sam_template()
    assert template["Parameters"]["DatabaseCaFile"]["Default"] == ""
    assert template["Globals"]["Function"]["Environment"]["Variables"]["DB_SSLROOTCERT"] == {"Ref": "DatabaseCaFile"}


NAME_PROPERTIES = {"Name", "FunctionName", "QueueName", "BucketName", "RoleName", "TopicName", "AlarmName",
                   "DashboardName", "LogGroupName", "ScheduleName", "TableName", "ManagedPolicyName"}


def test_no_resource_has_a_fixed_physical_name() -> None:
    # A second stack in the same account and region must not collide with the first.
    resources = translated(sam_template())["Resources"]
    named = {(logical, key): value for logical, resource in resources.items()
             for key, value in resource.get("Properties", {}).items()
             if key in NAME_PROPERTIES and isinstance(value, str)}  # a reference to another resource is fine
    assert named == {}
    assert resources_of({"Resources": resources}, "AWS::Scheduler::Schedule")


def test_two_environments_deploy_side_by_side_and_production_is_not_synced() -> None:
    config = samconfig()
    dev, prod = config["dev"], config["prod"]
    assert dev["global"]["parameters"]["stack_name"] != prod["global"]["parameters"]["stack_name"]
    assert dev["deploy"]["parameters"]["s3_prefix"] != prod["deploy"]["parameters"]["s3_prefix"]
    assert "sync" not in prod and "sync" not in config["default"]
    assert prod["deploy"]["parameters"]["confirm_changeset"] is True
    required = {name for name, spec in sam_template()["Parameters"].items() if "Default" not in spec}
    for environment in (dev, prod):
        deploy = environment["deploy"]["parameters"]
        named = {item.split("=", 1)[0] for item in deploy["parameter_overrides"]}
        assert required <= named, required - named
        assert {"DatabaseSecretArn", "SourcesConfiguration", "SourceSecretArns", "AlarmTopicArn"} <= named
        assert "project=ocds-ingest" in deploy["tags"]


def test_source_secrets_are_readable_exactly_as_configured() -> None:
    resources = translated(sam_template())["Resources"]
    for function in ("HarvestFunction", "WorkerFunction"):
        grants = [s for s in role_statements(resources, function) if s.get("Sid") == "ReadSourceSecrets"]
        assert grants == [{"Sid": "ReadSourceSecrets", "Effect": "Allow", "Action": "secretsmanager:GetSecretValue",
                           "Resource": {"Ref": "SourceSecretArns"}}]
    assert not [s for s in role_statements(resources, "MigrateFunction") if s.get("Sid") == "ReadSourceSecrets"]


def test_claim_checks_outlive_queue_dlq_and_a_redriven_life() -> None:
    resources = sam_template()["Resources"]
    queue = resources["PagesQueue"]["Properties"]["MessageRetentionPeriod"]
    dlq = resources["PagesDLQ"]["Properties"]["MessageRetentionPeriod"]
    [rule] = resources["PagesBucket"]["Properties"]["LifecycleConfiguration"]["Rules"]
    margin_days = 3
    # A message lives in the queue, then the DLQ; a redrive gives it a new life in the queue.
    assert rule["ExpirationInDays"] * 86400 >= queue + dlq + queue + margin_days * 86400
    assert rule["Prefix"] == "pages/"


def alarms(resources: dict[str, Any]) -> list[dict[str, Any]]:
    return [r["Properties"] for r in resources.values() if r["Type"] == "AWS::CloudWatch::Alarm"]


def test_failures_throttles_slowness_and_every_dlq_have_alarms() -> None:
    resources = sam_template()["Resources"]
    watched = {(a["Namespace"], a["MetricName"], json.dumps(a["Dimensions"][0]["Value"])) for a in alarms(resources)}
    assert ("OcdsIngest", "HarvestsFailed", '"ocds-harvest"') in watched
    assert ("OcdsIngest", "MessagesFailed", '"ocds-worker"') in watched
    assert ("AWS/Lambda", "Throttles", '{"Ref": "WorkerFunction"}') in watched
    assert ("AWS/Lambda", "Duration", '{"Ref": "WorkerFunction"}') in watched
    for queue in ("PagesDLQ", "ScheduleDLQ", "HarvestFailures"):
        assert ("AWS/SQS", "ApproximateNumberOfMessagesVisible",
                json.dumps({"Fn::GetAtt": [queue, "QueueName"]})) in watched, queue
    # The metric the harvest alarm watches is the one the handler emits, under the service dimension.
    from handler.harvest import metrics
    assert metrics.namespace == "OcdsIngest"


def test_every_function_logs_to_its_own_group_with_the_retention_parameter() -> None:
    template = sam_template()
    assert template["Parameters"]["LogRetentionInDays"]["Default"] == 30
    for name in ("HarvestFunction", "WorkerFunction", "CompileFunction", "MigrateFunction"):
        group = template["Resources"][name]["Properties"]["LoggingConfig"]["LogGroup"]["Ref"]
        assert template["Resources"][group]["Properties"]["RetentionInDays"] == {"Ref": "LogRetentionInDays"}


def test_the_dashboard_is_valid_json_with_the_operator_s_widgets() -> None:
    body, values = sam_template()["Resources"]["Dashboard"]["Properties"]["DashboardBody"]["Fn::Sub"]
    text = re.sub(r"\$\{[^}]+\}", "x", body)
    titles = [widget["properties"]["title"] for widget in json.loads(text)["widgets"]]
    assert len(titles) == 7
    for word in ("per second", "Pages", "Rejections", "queue", "oldest", "Compiling"):
        assert any(word in title for title in titles), word


def test_harvest_retries_are_bounded_and_failures_kept() -> None:
    resources = translated(sam_template())["Resources"]
    [config] = resources_of({"Resources": resources}, "AWS::Lambda::EventInvokeConfig").values()
    assert config["Properties"]["MaximumRetryAttempts"] <= 2
    assert config["Properties"]["DestinationConfig"]["OnFailure"]["Destination"] == \
        {"Fn::GetAtt": ["HarvestFailures", "Arn"]}
    schedules = resources_of({"Resources": resources}, "AWS::Scheduler::Schedule")
    assert schedules["HarvestFunctionSchedule"]["Properties"]["Target"]["DeadLetterConfig"] == \
        {"Arn": {"Fn::GetAtt": ["ScheduleDLQ", "Arn"]}}
    assert resources["ScheduleDLQ"]["Properties"]["MessageRetentionPeriod"] == 1209600


def test_the_compile_function_runs_on_its_own_schedule_and_the_worker_defers_to_it() -> None:
    template = sam_template()
    assert template["Globals"]["Function"]["Environment"]["Variables"]["COMPILE_RELEASES"] == "deferred"
    resources = translated(template)["Resources"]
    schedule = resources_of({"Resources": resources}, "AWS::Scheduler::Schedule")["CompileFunctionSchedule"]
    assert schedule["Properties"]["ScheduleExpression"] == {"Ref": "CompileScheduleExpression"}
    assert template["Parameters"]["CompileScheduleExpression"]["Default"] == "rate(1 minute)"
    # A missed run is made up by the next: no retry piles up on a slow database.
    assert schedule["Properties"]["Target"]["RetryPolicy"]["MaximumRetryAttempts"] == 0
    compile_ = template["Resources"]["CompileFunction"]["Properties"]
    assert compile_["ReservedConcurrentExecutions"] == {"Ref": "CompileMaximumConcurrency"}
    assert template["Parameters"]["CompileMaximumConcurrency"]["Default"] == 2


def test_the_migration_has_a_service_timeout_and_comes_first() -> None:
    resources = translated(sam_template())["Resources"]
    migration = resources["SchemaMigration"]["Properties"]
    assert resources["MigrateFunction"]["Properties"]["Timeout"] < migration["ServiceTimeout"] <= 3600
    for name in ("HarvestFunction", "WorkerFunction", "CompileFunction"):
        assert "SchemaMigration" in resources[name]["DependsOn"]


def test_every_function_is_built_by_the_makefile_s_lean_build() -> None:
    template = sam_template()
    makefile = (ROOT / "Makefile").read_text()
    for name, resource in resources_of(template, "AWS::Serverless::Function").items():
        assert resource["Metadata"]["BuildMethod"] == "makefile"
        assert re.search(rf"^[^#\n]*\bbuild-{name}\b[^\n]*:", makefile, re.M), name


def test_least_privilege() -> None:
    resources = translated(sam_template())["Resources"]
    harvest = role_statements(resources, "HarvestFunction")
    worker = role_statements(resources, "WorkerFunction")
    migrate = role_statements(resources, "MigrateFunction")
    compile_ = role_statements(resources, "CompileFunction")
    s3_of = [s for s in harvest + worker + migrate + compile_ if "s3:" in json.dumps(s.get("Action"))]
    assert [(s["Action"], s["Resource"]) for s in s3_of] == [
        ("s3:PutObject", {"Fn::Sub": "${PagesBucket.Arn}/pages/*"}),
        ("s3:GetObject", {"Fn::Sub": "${PagesBucket.Arn}/pages/*"})]
    assert not [s for s in migrate + compile_ if "ssm:" in json.dumps(s.get("Action"))]
    assert not [s for s in compile_ if "sqs:" in json.dumps(s.get("Action"))]
    for statements in (harvest, worker, migrate, compile_):
        [connect] = [s for s in statements if s.get("Action") == "rds-db:connect"]
        assert "dbuser:${DatabaseResourceId}/${DatabaseIamUser}" in connect["Resource"]["Fn::Sub"]
    denial = resources["PagesBucketPolicy"]["Properties"]["PolicyDocument"]["Statement"][0]
    assert (denial["Effect"], denial["Condition"]) == ("Deny", {"Bool": {"aws:SecureTransport": "false"}})
    for name in ("PagesBucket", "PagesQueue", "PagesDLQ", "ScheduleDLQ", "HarvestFailures", "WorkerLogGroup"):
        assert (resources[name]["DeletionPolicy"], resources[name]["UpdateReplacePolicy"]) == ("Retain", "Retain")


def test_vpc_endpoints_are_offered_with_the_s3_gateway_at_least() -> None:
    template = sam_template()
    assert template["Parameters"]["VpcEndpoints"]["AllowedValues"] == ["none", "s3", "all"]
    endpoints = resources_of(template, "AWS::EC2::VPCEndpoint")
    assert endpoints["S3GatewayEndpoint"]["Properties"]["VpcEndpointType"] == "Gateway"
    assert endpoints["S3GatewayEndpoint"]["Condition"] == "S3Endpoint"
    services = {e["Properties"]["ServiceName"]["Fn::Sub"].rsplit(".", 1)[1] for e in endpoints.values()}
    assert services == {"s3", "sqs", "secretsmanager", "ssm"}


def test_env_json_runs_locally_without_tls_and_gives_the_harvest_its_sources() -> None:
    env = json.loads((ROOT / "events" / "env.json").read_text())
    for function in ("WorkerFunction", "HarvestFunction", "CompileFunction", "MigrateFunction"):
        url = env[function]["DATABASE_URL"]
        assert "host.docker.internal" in url and "sslmode=disable" in url, function
    sources = json.loads(env["HarvestFunction"]["SOURCES_JSON"])["sources"]
    assert [(source["name"], source["allow_private_network"]) for source in sources] == [("local", True)]
    assert "host.docker.internal" in sources[0]["start_url"]


def test_env_json_names_only_variables_the_template_declares() -> None:
    # sam local invoke (and ocds-ingest invoke) override only declared variables: any other would be ignored.
    template = sam_template()
    env = json.loads((ROOT / "events" / "env.json").read_text())
    for function, variables in env.items():
        declared = set(template["Globals"]["Function"]["Environment"]["Variables"]) | \
            set(template["Resources"][function]["Properties"].get("Environment", {}).get("Variables", {}))
        assert set(variables) <= declared, (function, set(variables) - declared)


def test_the_lambda_package_holds_every_runtime_dependency() -> None:
    # GIVEN the project's runtime dependencies and what `make build`/`sam build` install into the package
    import tomllib

    declared = tomllib.loads((ROOT / "pyproject.toml").read_text("utf-8"))["project"]["dependencies"]
    shipped = [line.strip() for line in (ROOT / "src" / "requirements.txt").read_text("utf-8").splitlines()
               if line.strip() and not line.startswith("#")]
    # THEN they are the same, but for boto3, which the Lambda runtime provides
    assert sorted(shipped) == sorted(spec for spec in declared if not spec.startswith("boto3"))

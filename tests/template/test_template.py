"""The template tier: template.yaml as SAM CLI, cfn-lint and checkov see it, as `sam build` packages it,
as SAM transforms it, and the promises in it that a user relies on (keys, the due index, the schedule,
least privilege, authentication, logs).

The tools come from `make test`: .tools/sam and .tools/checkov on PATH, CALLME_PY313 naming a
python3.13 for `sam build` (empty when there is none). Everything here runs offline.
"""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from callme.sealing import MIN_KEY_LENGTH, key_texts
from callme.settings import Settings
from local.gateway import render
from local.template import TEMPLATE, load_template, table_definitions
from tests.conftest import settings
from tests.template.cfn import ACCOUNT, REGION, ROOT, Stack, explain, listed, run, tool, wildcard

pytestmark = pytest.mark.template

FUNCTIONS = ("ApiFunction", "DispatcherFunction")
API_GATEWAY_TIMEOUT = 29  # seconds API Gateway waits for a Lambda integration before answering 504
LAMBDA_UNZIPPED_LIMIT = 250 * 1024 * 1024


# -- helpers --------------------------------------------------------------------------------------


def python313() -> str:
    """CALLME_PY313 as `make test` sets it; outside make, whatever scripts/find-python finds."""
    path = os.environ.get("CALLME_PY313")
    if path is None:
        found = subprocess.run(
            [str(ROOT / "scripts" / "find-python"), "3.13"], capture_output=True, text=True, check=False
        )
        path = found.stdout.strip()
    if not path:
        pytest.skip("python3.13 is missing: `sam build` needs Lambda's runtime (e.g. `pyenv install 3.13`)")
    return path


def arn(value: Any) -> str:
    """An intrinsic as the string Fn::Sub would write: !GetAtt T.Arn -> ${T.Arn}, !Ref S -> ${S}, with
    parameters and conditions at their defaults."""
    return str(Stack(load_template(), symbolic=True).resolve(value))


def grants(statements: list[dict[str, Any]]) -> set[tuple[str, str]]:
    """(action, resource) pairs that the statements allow; every statement must be a plain Allow."""
    pairs = set()
    for statement in statements:
        assert statement["Effect"] == "Allow", statement
        assert not statement.keys() - {"Effect", "Action", "Resource", "Sid"}, statement
        actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        targets = statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
        pairs |= {(action, arn(target)) for action in actions for target in targets}
    return pairs


def inline_statements(function: dict[str, Any], parameters: dict[str, str] | None = None) -> list[dict[str, Any]]:
    """The function's Policies with ``parameters`` (else the defaults), which must all be inline
    statements: a SAM policy template or a managed policy would grant more than the code uses."""
    statements: list[dict[str, Any]] = []
    policies = Stack(load_template(), parameters or {}, symbolic=True).resolve(
        function["Properties"].get("Policies", [])
    )
    for policy in policies:
        assert isinstance(policy, dict), f"only inline policies, not {policy!r}"
        assert set(policy) == {"Statement"}, f"only inline policies, not {policy!r}"
        statements.extend(policy["Statement"])
    return statements


def sample_environment(template: dict[str, Any], function: str) -> dict[str, str]:
    """The function's environment variables as Lambda would see them, intrinsics replaced by
    plausible values (parameter defaults, names for resources)."""
    variables = {
        **template["Globals"]["Function"]["Environment"]["Variables"],
        **template["Resources"][function]["Properties"].get("Environment", {}).get("Variables", {}),
    }
    return {name: str(value) for name, value in Stack(template).resolve(variables).items()}


# -- the linters ----------------------------------------------------------------------------------


def test_sam_validate_lint() -> None:
    result = run([tool("sam"), "validate", "--lint", "--region", REGION, "--template-file", str(TEMPLATE)])
    assert result.returncode == 0, explain(result)
    assert "is a valid SAM Template" in result.stdout, explain(result)


def test_cfn_lint() -> None:
    cfn_lint = [sys.executable, "-c", "import sys; from cfnlint.runner import main; sys.exit(main())"]
    result = run([*cfn_lint, "--", str(TEMPLATE)])
    assert result.returncode == 0, explain(result)


def test_checkov_reports_no_failed_check() -> None:
    checkov = [tool("checkov"), "--file", str(TEMPLATE), "--framework", "cloudformation"]
    result = run([*checkov, "--skip-download", "--output", "json"])  # --skip-download: stay offline
    assert result.stdout.strip(), explain(result)
    report = json.loads(result.stdout)
    summary, results = report["summary"], report["results"]
    failed = [f"{c['check_id']} on {c['resource']}: {c['check_name']}" for c in results["failed_checks"]]
    assert not failed, "fix these, or skip them in template.yaml with a reason:\n" + "\n".join(failed)
    assert summary["parsing_errors"] == 0, explain(result)
    assert summary["passed"] > 0, "checkov checked nothing"
    assert result.returncode == 0, explain(result)
    # Every suppression says why, in the template (Metadata: checkov: skip: [{id, comment}]).
    assert len(results["skipped_checks"]) == summary["skipped"]
    for skipped in results["skipped_checks"]:
        reason = skipped["check_result"].get("suppress_comment") or ""
        assert len(reason) >= 20, f"{skipped['check_id']} on {skipped['resource']} is skipped without a reason"


# -- sam build --------------------------------------------------------------------------------------

# Runs in python3.13 with nothing but the artifact and the standard library importable (-I -S: no
# site-packages, no PYTHONPATH, no current directory), so every third-party import must be vendored.
IMPORT_PROBE = """
import json, sys
artifact = sys.argv[1]
sys.path.insert(0, artifact)
import handlers.api
import handlers.dispatcher
import aws_lambda_powertools.utilities.parameters  # wiring.signer() imports it lazily, in AWS only
from handlers import wiring
wiring.settings()
wiring.task_service()
wiring.dispatch_engine()
modules = {name: getattr(module, "__file__", None) or "" for name, module in list(sys.modules.items())}
print(json.dumps({
    "python": list(sys.version_info[:2]),
    "handlers": handlers.api.__file__,
    "outside": sorted(
        name for name, path in modules.items()
        if path and not path.startswith(artifact) and not path.startswith(sys.base_prefix)
    ),
}))
"""


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`sam build` of the repository's template into a temporary folder, once per session."""
    sam = tool("sam")
    interpreter = python313()
    build_dir = tmp_path_factory.mktemp("sam") / "build"
    result = run(
        [sam, "build", "--template-file", str(TEMPLATE), "--build-dir", str(build_dir), "--no-cached"],
        timeout=600,
        PATH=f"{Path(interpreter).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    )
    assert result.returncode == 0, explain(result)
    return build_dir


def run_in_artifact(artifact: Path, probe: str, *args: str, env: dict[str, str] | None = None) -> Any:
    """The JSON a probe prints last, run by python3.13 in ``artifact`` with nothing else importable."""
    result = subprocess.run(
        [python313(), "-I", "-S", "-c", probe, str(artifact), *args],
        cwd=artifact,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, explain(result)
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("function", FUNCTIONS)
def test_built_artifact_imports_with_only_vendored_dependencies(
    built: Path, template: dict[str, Any], function: str
) -> None:
    artifact = built / function
    assert (artifact / "handlers" / "api.py").is_file(), f"no handlers package in {artifact}"
    env = {
        **sample_environment(template, function),
        "AWS_REGION": REGION,
        "AWS_DEFAULT_REGION": REGION,
        "LANG": "C.UTF-8",
    }
    probe = run_in_artifact(artifact, IMPORT_PROBE, env=env)
    assert probe["python"] == [3, 13]
    assert probe["handlers"].startswith(str(artifact)), probe
    assert probe["outside"] == [], f"modules loaded from outside the artifact: {probe['outside']}"


CONSOLE_PROBE = """
import json, sys
sys.path.insert(0, sys.argv[1])
from handlers import console
page = console.page(None)
served = {name: console.asset(name, None, None) for name in sys.argv[2:]}
print(json.dumps({"page": page.status, "files": {n: a.body if a else None for n, a in served.items()}}))
"""


def test_built_artifact_serves_the_console(built: Path) -> None:
    """The console's files are packaged beside the handlers, and the api function finds them there."""
    artifact = built / "ApiFunction"
    files = sorted(path.name for path in (ROOT / "functions" / "console").iterdir() if path.name != "index.html")
    assert (artifact / "console" / "index.html").is_file()
    probe = run_in_artifact(artifact, CONSOLE_PROBE, *files)
    assert probe["page"] == 200
    for name in files:
        assert probe["files"][name] == (ROOT / "functions" / "console" / name).read_text(), name


@pytest.mark.parametrize("function", FUNCTIONS)
def test_built_artifact_is_lean(built: Path, function: str) -> None:
    """Only runtime code is packaged: no test tooling, no local stack, within Lambda's size limit."""
    artifact = built / function
    for unwanted in ("moto", "pytest", "local", "tests", "hypothesis"):
        assert not (artifact / unwanted).exists(), f"{unwanted} is packaged into {function}"
    size = sum(path.stat().st_size for path in artifact.rglob("*") if path.is_file())
    assert size < LAMBDA_UNZIPPED_LIMIT, f"{function} is {size} bytes unzipped"


# -- what SAM generates ------------------------------------------------------------------------------


def only(resources: dict[str, Any], kind: str) -> dict[str, Any]:
    (found,) = [r for r in resources.values() if r["Type"] == kind]
    return found


def role_grants(role: dict[str, Any]) -> set[tuple[str, str]]:
    policies = Stack(load_template(), symbolic=True).resolve(role["Properties"].get("Policies", []))
    return grants([s for policy in policies for s in policy["PolicyDocument"]["Statement"]])


def test_scheduler_may_invoke_the_dispatcher_and_send_to_the_failure_queue(generated: dict[str, Any]) -> None:
    schedule = only(generated, "AWS::Scheduler::Schedule")["Properties"]
    assert schedule["ScheduleExpression"] == "cron(* * * * ? *)"
    assert schedule["FlexibleTimeWindow"] == {"Mode": "OFF"}
    target = schedule["Target"]
    assert arn(target["Arn"]) == "${DispatcherFunction.Arn}"
    assert arn(target["DeadLetterConfig"]["Arn"]) == "${DispatchFailureQueue.Arn}"
    role = generated[target["RoleArn"]["Fn::GetAtt"][0]]
    assert role["Properties"]["AssumeRolePolicyDocument"]["Statement"][0]["Principal"] == {
        "Service": ["scheduler.amazonaws.com"]
    }
    assert role_grants(role) == {
        ("lambda:InvokeFunction", "${DispatcherFunction.Arn}"),
        ("sqs:SendMessage", "${DispatchFailureQueue.Arn}"),
    }


def test_failed_dispatcher_invocations_are_not_retried_and_land_in_the_queue(generated: dict[str, Any]) -> None:
    (config,) = [
        r["Properties"]
        for r in generated.values()
        if r["Type"] == "AWS::Lambda::EventInvokeConfig"
        and r["Properties"]["FunctionName"] == {"Ref": "DispatcherFunction"}
    ]
    assert config["MaximumRetryAttempts"] == 0  # the next minute's run picks the work up
    assert arn(config["DestinationConfig"]["OnFailure"]["Destination"]) == "${DispatchFailureQueue.Arn}"
    role = generated[generated["DispatcherFunction"]["Properties"]["Role"]["Fn::GetAtt"][0]]
    assert ("sqs:SendMessage", "${DispatchFailureQueue.Arn}") in role_grants(role)


@pytest.mark.parametrize("function", FUNCTIONS)
def test_generated_functions_run_as_designed(generated: dict[str, Any], function: str) -> None:
    props = generated[function]["Properties"]
    assert props["Runtime"] == "python3.13"
    assert props["Architectures"] == ["arm64"]
    assert props["TracingConfig"] == {"Mode": "Active"}
    assert "ReservedConcurrentExecutions" in props
    assert props["LoggingConfig"]["LogGroup"]["Ref"] in generated
    role = generated[props["Role"]["Fn::GetAtt"][0]]["Properties"]
    assert set(role["ManagedPolicyArns"]) <= {
        "arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole",
        "arn:aws:iam::aws:policy/AWSXrayWriteOnlyAccess",
    }


def test_generated_api_role_is_only_the_declared_policy(generated: dict[str, Any], resources: dict[str, Any]) -> None:
    role = generated[generated["ApiFunction"]["Properties"]["Role"]["Fn::GetAtt"][0]]
    assert role_grants(role) == grants(inline_statements(resources["ApiFunction"]))


# -- the tables ---------------------------------------------------------------------------------------


def test_tasks_table_keys(resources: dict[str, Any]) -> None:
    props = resources["TasksTable"]["Properties"]
    attributes = {a["AttributeName"]: a["AttributeType"] for a in props["AttributeDefinitions"]}
    assert attributes == {"task_name": "S", "trigger_at": "N", "due_shard": "N", "due_minute": "N"}
    assert props["KeySchema"] == [
        {"AttributeName": "task_name", "KeyType": "HASH"},
        {"AttributeName": "trigger_at", "KeyType": "RANGE"},
    ]


def test_tasks_table_due_index(resources: dict[str, Any]) -> None:
    (index,) = resources["TasksTable"]["Properties"]["GlobalSecondaryIndexes"]
    assert index["IndexName"] == "due"
    assert index["KeySchema"] == [
        {"AttributeName": "due_shard", "KeyType": "HASH"},
        {"AttributeName": "due_minute", "KeyType": "RANGE"},
    ]
    assert index["Projection"] == {"ProjectionType": "ALL"}


def test_tasks_table_keeps_data_safe_and_expires_finished_entries(resources: dict[str, Any]) -> None:
    table = resources["TasksTable"]
    props = table["Properties"]
    assert props["TimeToLiveSpecification"] == {"AttributeName": "expires_at", "Enabled": True}
    assert props["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}
    assert props["SSESpecification"]["SSEEnabled"] is True
    assert props["DeletionProtectionEnabled"] is True
    assert table["DeletionPolicy"] == "Retain"
    assert table["UpdateReplacePolicy"] == "Retain"


def test_schedules_table_two_items_a_schedule_kept_like_the_tasks(resources: dict[str, Any]) -> None:
    table = resources["SchedulesTable"]
    props = table["Properties"]
    assert props["KeySchema"] == [
        {"AttributeName": "schedule_name", "KeyType": "HASH"},
        {"AttributeName": "part", "KeyType": "RANGE"},
    ]
    assert "GlobalSecondaryIndexes" not in props  # the tasks table's due index is the sweep (callme.schedule)
    assert "TimeToLiveSpecification" not in props  # a schedule lives until DELETE /schedule/<name>
    assert props["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}
    assert props["SSESpecification"]["SSEEnabled"] is True
    assert props["DeletionProtectionEnabled"] is True
    assert (table["DeletionPolicy"], table["UpdateReplacePolicy"]) == ("Retain", "Retain")


def test_leases_table(resources: dict[str, Any]) -> None:
    props = resources["LeasesTable"]["Properties"]
    assert props["AttributeDefinitions"] == [{"AttributeName": "shard", "AttributeType": "N"}]
    assert props["KeySchema"] == [{"AttributeName": "shard", "KeyType": "HASH"}]
    assert props["SSESpecification"]["SSEEnabled"] is True


def test_local_table_definitions_match_the_template(template: dict[str, Any], resources: dict[str, Any]) -> None:
    """The local stack creates its tables from template.yaml: the requests are the template's tables,
    and DynamoDB (moto) accepts them and reports the same keys, index and TTL back."""
    definitions = table_definitions(template)
    assert set(definitions) == {"TasksTable", "LeasesTable", "StatsTable", "SchedulesTable"}
    assert definitions["TasksTable"]["ttl_attribute"] == "expires_at"
    assert definitions["StatsTable"]["ttl_attribute"] == "expires_at", "stats expire with the entries' retention"
    assert definitions["LeasesTable"]["ttl_attribute"] is None
    with mock_aws():
        client = boto3.client("dynamodb", region_name=REGION)
        for logical_id, definition in definitions.items():
            props = resources[logical_id]["Properties"]
            request = definition["create"]
            assert request["KeySchema"] == props["KeySchema"]
            assert request["AttributeDefinitions"] == props["AttributeDefinitions"]
            client.create_table(TableName=logical_id, **request)
            if definition["ttl_attribute"]:
                client.update_time_to_live(
                    TableName=logical_id,
                    TimeToLiveSpecification={"AttributeName": definition["ttl_attribute"], "Enabled": True},
                )
            described = client.describe_table(TableName=logical_id)["Table"]
            assert described["KeySchema"] == props["KeySchema"]
            indexes = [
                {"IndexName": i["IndexName"], "KeySchema": i["KeySchema"], "Projection": i["Projection"]}
                for i in described.get("GlobalSecondaryIndexes", [])
            ]
            assert indexes == [
                {k: v for k, v in i.items() if k in ("IndexName", "KeySchema", "Projection")}
                for i in props.get("GlobalSecondaryIndexes", [])
            ]
        ttl = client.describe_time_to_live(TableName="TasksTable")["TimeToLiveDescription"]
        assert ttl["AttributeName"] == "expires_at"
        assert ttl["TimeToLiveStatus"] == "ENABLED"


# -- the functions ------------------------------------------------------------------------------------


def test_handlers_and_code(template: dict[str, Any], resources: dict[str, Any]) -> None:
    globals_ = template["Globals"]["Function"]
    assert globals_["Runtime"] == "python3.13"
    assert globals_["Architectures"] == ["arm64"]
    assert globals_["Tracing"] == "Active"
    code = ROOT / globals_["CodeUri"]
    for function, module in (("ApiFunction", "api"), ("DispatcherFunction", "dispatcher")):
        props = resources[function]["Properties"]
        assert "CodeUri" not in props  # both functions are one codebase
        assert props["Handler"] == f"handlers.{module}.lambda_handler"
        assert "def lambda_handler(" in (code / "handlers" / f"{module}.py").read_text()


def test_environment_names_are_the_ones_the_code_reads(template: dict[str, Any], resources: dict[str, Any]) -> None:
    read = set(re.findall(r'"(CALLME_[A-Z0-9_]+)"', (ROOT / "functions" / "callme" / "settings.py").read_text()))
    common = template["Globals"]["Function"]["Environment"]["Variables"]
    assert common["CALLME_TABLE_NAME"] == {"Ref": "TasksTable"}
    assert common["CALLME_LEASE_TABLE_NAME"] == {"Ref": "LeasesTable"}
    assert common["CALLME_STATS_TABLE_NAME"] == {"Ref": "StatsTable"}
    assert common["CALLME_SCHEDULE_TABLE_NAME"] == {"Ref": "SchedulesTable"}
    for function in FUNCTIONS:
        variables = {**common, **resources[function]["Properties"].get("Environment", {}).get("Variables", {})}
        unknown = {name for name in variables if name.startswith("CALLME_")} - read
        assert not unknown, f"{function} sets variables that callme never reads: {sorted(unknown)}"
    own = resources["DispatcherFunction"]["Properties"]["Environment"]["Variables"]
    assert own["CALLME_FANOUT"] == "lambda"
    # It fans out to itself under the name the Lambda context gives: naming it here would take a fixed
    # FunctionName (too long for long stack names) or a Ref to itself (a circular dependency).
    assert "CALLME_DISPATCHER_FUNCTION" not in own
    assert own["CALLME_SIGNING_SECRET_ID"] == {
        "Fn::If": ["CreateSigningSecret", {"Ref": "SigningSecret"}, {"Ref": "ExistingSigningSecretArn"}]
    }
    assert resources["SigningSecret"]["Type"] == "AWS::SecretsManager::Secret"


def test_the_slice_count_is_a_parameter_both_functions_read(template: dict[str, Any]) -> None:
    """The api spreads new entries over the slices, the dispatcher covers them: both read the count,
    within the bounds the settings check."""
    parameter = template["Parameters"]["DispatchSlices"]
    assert (parameter["Default"], parameter["MinValue"], parameter["MaxValue"]) == (1, 1, 100)
    assert template["Globals"]["Function"]["Environment"]["Variables"]["CALLME_DISPATCH_SLICES"] == {
        "Ref": "DispatchSlices"
    }
    for function in FUNCTIONS:
        assert sample_environment(template, function)["CALLME_DISPATCH_SLICES"] == "1"
    environment = sample_environment(template, "DispatcherFunction")
    assert Settings.from_environ({**environment, "CALLME_DISPATCH_SLICES": "100"}).dispatch_slices == 100
    with pytest.raises(ValueError, match="CALLME_DISPATCH_SLICES must be between 1 and 100"):
        Settings.from_environ({**environment, "CALLME_DISPATCH_SLICES": "101"})


def test_api_function_grants(resources: dict[str, Any]) -> None:
    """The API reads and writes entries of the tasks table and schedules, reads the stats and the headers key (to
    seal the header values it stores), and nothing else: no leases, no index beyond the table, no
    signing key, no invoking anything."""
    assert grants(inline_statements(resources["ApiFunction"])) == {
        *((f"dynamodb:{operation}", "${TasksTable.Arn}") for operation in ("GetItem", "PutItem", "Query", "Scan")),
        *(
            (f"dynamodb:{operation}", "${SchedulesTable.Arn}")
            for operation in ("PutItem", "DeleteItem", "Query", "Scan")
        ),
        ("dynamodb:Query", "${StatsTable.Arn}"),
        ("secretsmanager:GetSecretValue", "${HeadersKeySecret}"),
    }


DEFAULT_BUS = "arn:${AWS::Partition}:events:${AWS::Region}:${AWS::AccountId}:event-bus/default"


@pytest.mark.parametrize("outcome_events", ["Disabled", "Enabled"])
def test_dispatcher_grants(resources: dict[str, Any], outcome_events: str) -> None:
    """Storage, its leases and the signing key; PutEvents on the default bus only with OutcomeEvents."""
    statements = inline_statements(resources["DispatcherFunction"], {"OutcomeEvents": outcome_events})
    assert grants(statements) == {
        ("dynamodb:Query", "${TasksTable.Arn}/index/due"),
        ("dynamodb:BatchGetItem", "${TasksTable.Arn}"),
        ("dynamodb:PutItem", "${TasksTable.Arn}"),
        ("dynamodb:GetItem", "${LeasesTable.Arn}"),  # the most shards ever used (callme.ports.LeaseStore.widest)
        ("dynamodb:PutItem", "${LeasesTable.Arn}"),
        ("dynamodb:Query", "${SchedulesTable.Arn}"),
        ("dynamodb:PutItem", "${SchedulesTable.Arn}"),
        ("dynamodb:Scan", "${SchedulesTable.Arn}"),
        ("dynamodb:PutItem", "${StatsTable.Arn}"),
        ("secretsmanager:GetSecretValue", "${SigningSecret}"),
        ("secretsmanager:GetSecretValue", "${HeadersKeySecret}"),
    } | ({("events:PutEvents", DEFAULT_BUS)} if outcome_events == "Enabled" else set())


def test_outcome_events_are_off_unless_asked_for(template: dict[str, Any], translated: dict[str, Any]) -> None:
    parameter = template["Parameters"]["OutcomeEvents"]
    assert (parameter["Default"], sorted(parameter["AllowedValues"])) == ("Disabled", ["Disabled", "Enabled"])
    for value, bus in (("Disabled", "log"), ("Enabled", "eventbridge")):
        stack = Stack(translated, parameters={"OutcomeEvents": value})
        dispatcher = stack.resolve(translated["Resources"]["DispatcherFunction"]["Properties"])
        assert dispatcher["Environment"]["Variables"]["CALLME_OUTCOME_EVENTS"] == bus
        role = stack.resolve(translated["Resources"]["DispatcherFunctionRole"]["Properties"])
        actions = {
            a for policy in role["Policies"] for s in policy["PolicyDocument"]["Statement"] for a in listed(s["Action"])
        }
        assert ("events:PutEvents" in actions) is (value == "Enabled")
    api = Stack(translated, parameters={"OutcomeEvents": "Enabled"}).resolve(translated["Resources"]["ApiFunction"])
    assert "CALLME_OUTCOME_EVENTS" not in api["Properties"]["Environment"]["Variables"]


def test_the_dispatcher_may_invoke_itself_and_no_other_function(generated: dict[str, Any]) -> None:
    """Its own Policies cannot name its ARN (a circular dependency), so a policy attached to the role
    SAM generates does, and names nothing else."""
    role = generated["DispatcherFunction"]["Properties"]["Role"]["Fn::GetAtt"][0]
    attached = [
        statement
        for resource in generated.values()
        if resource["Type"] == "AWS::IAM::Policy" and {"Ref": role} in resource["Properties"]["Roles"]
        for statement in resource["Properties"]["PolicyDocument"]["Statement"]
    ]
    assert grants(attached) == {("lambda:InvokeFunction", "${DispatcherFunction.Arn}")}
    invokes = {action for action, _ in role_grants(generated[role]) if action.startswith("lambda:")}
    assert invokes == set(), "the role's own policies must not invoke functions by a name pattern"


def test_dispatcher_schedule(resources: dict[str, Any]) -> None:
    dispatcher = resources["DispatcherFunction"]["Properties"]
    ((name, event),) = dispatcher["Events"].items()
    assert event["Type"] == "ScheduleV2", f"{name}: EventBridge Scheduler, not a legacy scheduled rule"
    props = event["Properties"]
    cron = re.fullmatch(r"cron\((.+)\)", props["ScheduleExpression"])
    assert cron, props["ScheduleExpression"]
    minutes, *rest = cron.group(1).split()
    assert minutes == "*", "the dispatcher must run every minute"
    assert len(rest) == 5
    assert set(rest) <= {"*", "?"}, "the dispatcher must run every minute"
    assert props["FlexibleTimeWindow"] == {"Mode": "OFF"}  # a flexible window would delay callbacks
    assert arn(props["DeadLetterConfig"]["Arn"]) == "${DispatchFailureQueue.Arn}"
    assert resources["DispatchFailureQueue"]["Type"] == "AWS::SQS::Queue"
    invoke = dispatcher["EventInvokeConfig"]
    assert invoke["MaximumRetryAttempts"] == 0
    assert invoke["DestinationConfig"]["OnFailure"]["Type"] == "SQS"
    assert arn(invoke["DestinationConfig"]["OnFailure"]["Destination"]) == "${DispatchFailureQueue.Arn}"


def test_timeouts_fit_the_dispatch_lease_and_api_gateway(resources: dict[str, Any]) -> None:
    dispatcher_timeout = resources["DispatcherFunction"]["Properties"]["Timeout"]
    # A run's last call starts run_seconds in, ends within its budget and is recorded before the
    # function times out (its shard lease is renewed while it runs, so the lease does not bound it).
    assert dispatcher_timeout >= settings().dispatcher_run_seconds
    assert resources["ApiFunction"]["Properties"]["Timeout"] < API_GATEWAY_TIMEOUT


def test_concurrency_reservations_are_optional_and_off_by_default(
    template: dict[str, Any], resources: dict[str, Any]
) -> None:
    parameters = template["Parameters"]
    conditions = template["Conditions"]
    for function, parameter, condition in (
        ("ApiFunction", "ApiReservedConcurrency", "ReserveApiConcurrency"),
        ("DispatcherFunction", "DispatcherReservedConcurrency", "ReserveDispatcherConcurrency"),
    ):
        reserved = resources[function]["Properties"]["ReservedConcurrentExecutions"]
        # 0 reserves nothing, so that a new account (concurrency quota 10) can deploy.
        assert reserved == {"Fn::If": [condition, {"Ref": parameter}, {"Ref": "AWS::NoValue"}]}
        assert conditions[condition] == {"Fn::Not": [{"Fn::Equals": [{"Ref": parameter}, 0]}]}
        assert parameters[parameter]["MinValue"] == 0
        # Lambda keeps 100 of an account's concurrency unreserved and a new account's quota is 10:
        # any reservation fails the first deploy there.
        assert parameters[parameter]["Default"] == 0, f"{parameter} must reserve nothing by default"
    # The description says what to reserve once the quota allows: a coordinator and one invocation per
    # shard each minute, with room for an overlapping minute.
    assert "2 x (DueShards + 1)" in parameters["DispatcherReservedConcurrency"]["Description"]


def test_api_access_logs_get_their_account_role_when_asked(template: dict[str, Any], resources: dict[str, Any]) -> None:
    assert template["Parameters"]["ApiGatewayCloudWatchRole"]["Default"] == "create"
    assert resources["ApiGatewayAccount"]["Condition"] == "CreateApiGatewayAccount"
    assert resources["Api"]["DependsOn"] == "ApiLoggingReady"
    assert resources["ApiLoggingReady"]["Metadata"]["Account"]["Fn::If"][1] == {"Ref": "ApiGatewayAccount"}


def test_deleting_the_stack_leaves_the_account_wide_api_gateway_role(generated: dict[str, Any]) -> None:
    """API Gateway has one CloudWatch role per account and region, which every API's logs go through:
    deleting this stack (or replacing the role) must not take it from the others."""
    accounts = [r for r in generated.values() if r["Type"] == "AWS::ApiGateway::Account"]
    assert accounts
    for account in accounts:
        role = account["Properties"]["CloudWatchRoleArn"]["Fn::GetAtt"][0]
        for kept in (account, generated[role]):
            assert (kept.get("DeletionPolicy"), kept.get("UpdateReplacePolicy")) == ("Retain", "Retain"), kept


def test_log_groups_have_retention(template: dict[str, Any], resources: dict[str, Any]) -> None:
    retention = template["Parameters"]["LogRetentionDays"]
    assert retention["Default"] in retention["AllowedValues"]
    groups = [resources[f]["Properties"]["LoggingConfig"]["LogGroup"]["Ref"] for f in FUNCTIONS]
    assert groups == ["ApiLogGroup", "DispatcherLogGroup"]
    access_log = arn(resources["Api"]["Properties"]["AccessLogSetting"]["DestinationArn"])
    assert access_log == "${ApiAccessLogGroup.Arn}"
    for group in [*groups, "ApiAccessLogGroup"]:
        assert resources[group]["Type"] == "AWS::Logs::LogGroup"
        assert resources[group]["Properties"]["RetentionInDays"] == {"Ref": "LogRetentionDays"}


# -- the API --------------------------------------------------------------------------------------------


def test_auth_mode(template: dict[str, Any], resources: dict[str, Any]) -> None:
    """API_KEY by default, IAM as the alternative, and no method of the API without one of them."""
    parameter = template["Parameters"]["AuthMode"]
    assert parameter["Default"] == "API_KEY"
    assert set(parameter["AllowedValues"]) == {"API_KEY", "IAM"}
    assert template["Conditions"]["UseApiKey"] == {"Fn::Equals": [{"Ref": "AuthMode"}, "API_KEY"]}
    for name in ("ApiKey", "ApiUsagePlan", "ApiUsagePlanKey"):
        assert resources[name]["Condition"] == "UseApiKey"
    body = resources["Api"]["Properties"]["DefinitionBody"]
    schemes = body["components"]["securitySchemes"]
    assert schemes["api_key"] == {"type": "apiKey", "name": "x-api-key", "in": "header"}
    assert schemes["sigv4"]["x-amazon-apigateway-authtype"] == "awsSigv4"
    assert body["x-amazon-apigateway-api-key-source"] == "HEADER"
    methods = [(path, method, spec) for path, item in body["paths"].items() for method, spec in item.items()]
    assert {path for path, _, _ in methods} == {"/", "/{proxy+}", *CONSOLE_PATHS}
    for path, method, spec in methods:
        required = [] if path in CONSOLE_PATHS else {"Fn::If": ["UseApiKey", [{"api_key": []}], [{"sigv4": []}]]}
        assert spec["security"] == required, (path, method)
        integration = spec["x-amazon-apigateway-integration"]
        assert integration["type"] == "aws_proxy"
        assert "${ApiFunction.Arn}" in arn(integration["uri"])


CONSOLE_PATHS = {"/console", "/console/{file+}"}


@pytest.mark.parametrize(("auth_mode", "scheme"), [("API_KEY", "api_key"), ("IAM", "sigv4")])
def test_only_the_console_files_are_open(translated: dict[str, Any], auth_mode: str, scheme: str) -> None:
    """In the API SAM deploys, every path needs the key (or a signature) but the console's page and files,
    which hold no data: the page asks for the key and sends it to the data routes."""
    stack = Stack(translated, parameters={"AuthMode": auth_mode})
    body = stack.resolve(translated["Resources"]["Api"]["Properties"]["Body"])
    for path, item in body["paths"].items():
        for method, spec in item.items():
            if path in CONSOLE_PATHS:
                assert spec.get("security", []) == [], (path, method)
            else:
                assert spec["security"] == [{scheme: []}], (path, method)
            assert ":ApiFunction/Arn/invocations" in spec["x-amazon-apigateway-integration"]["uri"], (path, method)
    assert set(body["paths"]) >= CONSOLE_PATHS
    env = translated["Resources"]["ApiFunction"]["Properties"]["Environment"]["Variables"]
    assert stack.resolve(env["CALLME_AUTH_MODE"]) == auth_mode


def test_alarms_notify_and_watch_this_stack(resources: dict[str, Any]) -> None:
    api_name = resources["Api"]["Properties"]["Name"]
    alarms = {name: r["Properties"] for name, r in resources.items() if r["Type"] == "AWS::CloudWatch::Alarm"}
    assert alarms
    for name, alarm in alarms.items():
        assert alarm["AlarmActions"] == [{"Ref": "AlarmTopic"}], name
        for dimension in alarm.get("Dimensions", []):
            if dimension["Name"] == "ApiName":
                assert dimension["Value"] == api_name, name
            if dimension["Name"] == "FunctionName":
                assert dimension["Value"]["Ref"] in FUNCTIONS, name


def test_alarm_topic_key_lets_cloudwatch_alarms_publish(template: dict[str, Any], resources: dict[str, Any]) -> None:
    """CloudWatch may not use the AWS managed key alias/aws/sns: every alarm action on a topic encrypted
    with it fails, and no e-mail is ever sent. The topic's key must be one of this stack, whose policy
    lets CloudWatch use it, and that the account can still administer."""
    key_id = resources["AlarmTopic"]["Properties"]["KmsMasterKeyId"]
    assert isinstance(key_id, dict) and "Ref" in key_id, f"the topic's key must be a key of this template: {key_id}"
    key = resources[key_id["Ref"]]
    assert key["Type"] == "AWS::KMS::Key"
    assert key["Properties"]["EnableKeyRotation"] is True
    policy = Stack(template).resolve(key["Properties"]["KeyPolicy"])

    def granted(principal: dict[str, str], action: str) -> list[dict[str, Any]]:
        return [
            s
            for s in policy["Statement"]
            if s["Effect"] == "Allow"
            and s["Principal"] == principal
            and any(wildcard(a, action, ignore_case=True) for a in listed(s["Action"]))
            and "*" in listed(s["Resource"])
        ]

    cloudwatch = {"Service": "cloudwatch.amazonaws.com"}
    for action in ("kms:Decrypt", "kms:GenerateDataKey"):
        statements = granted(cloudwatch, action)
        assert statements, f"CloudWatch may not {action} with the alarm topic's key"
        for statement in statements:  # scoped to this account's alarms, and by nothing CloudWatch does not send
            assert statement.get("Condition", {}) in ({}, {"StringEquals": {"aws:SourceAccount": ACCOUNT}})
    assert granted({"AWS": f"arn:aws:iam::{ACCOUNT}:root"}, "kms:PutKeyPolicy"), "the account must keep the key"
    assert not [s for s in policy["Statement"] if s["Principal"] in ("*", {"AWS": "*"})]


def test_the_api_has_one_stage_with_throttling_and_access_logs(generated: dict[str, Any]) -> None:
    """Without OpenApiVersion SAM's deployment also creates a stage named "Stage": live (in IAM mode),
    unthrottled and without access logs."""
    stages = [r["Properties"]["StageName"] for r in generated.values() if r["Type"] == "AWS::ApiGateway::Stage"]
    stages += [
        r["Properties"]["StageName"]
        for r in generated.values()
        if r["Type"] == "AWS::ApiGateway::Deployment" and "StageName" in r["Properties"]
    ]
    assert stages == [{"Ref": "StageName"}]
    stage = only(generated, "AWS::ApiGateway::Stage")["Properties"]
    assert arn(stage["AccessLogSetting"]["DestinationArn"]) == "${ApiAccessLogGroup.Arn}"
    (settings,) = stage["MethodSettings"]
    assert (settings["ResourcePath"], settings["HttpMethod"]) == ("/*", "*")
    assert settings["ThrottlingRateLimit"] == {"Ref": "ThrottleRateLimit"}
    assert settings["ThrottlingBurstLimit"] == {"Ref": "ThrottleBurstLimit"}


LAMBDA_LOG_LEVELS = {"TRACE", "DEBUG", "INFO", "WARN", "ERROR", "FATAL"}


@pytest.mark.parametrize("level", load_template()["Parameters"]["LogLevel"]["AllowedValues"])
@pytest.mark.parametrize("function", FUNCTIONS)
def test_lambda_filters_logs_at_the_log_level(translated: dict[str, Any], function: str, level: str) -> None:
    """With JSON logs Lambda drops every line below its ApplicationLogLevel (INFO when unset), and its
    level wins over POWERTOOLS_LOG_LEVEL: both must say LogLevel, each in its own words."""
    stack = Stack(translated, parameters={"LogLevel": level})
    props = translated["Resources"][function]["Properties"]
    config = stack.resolve(props["LoggingConfig"])
    assert config["LogFormat"] == "JSON"
    assert config["ApplicationLogLevel"] in LAMBDA_LOG_LEVELS
    assert logging.getLevelName(config["ApplicationLogLevel"]) == logging.getLevelName(level)
    assert config["SystemLogLevel"] in {"DEBUG", "INFO", "WARN"}
    assert stack.resolve(props["Environment"]["Variables"])["POWERTOOLS_LOG_LEVEL"] == level


# Longest names each service takes, for every name the template builds from the stack's name.
NAME_LIMITS: dict[tuple[str, str], int | None] = {
    ("AWS::Lambda::Function", "FunctionName"): 64,
    ("AWS::IAM::Role", "RoleName"): 64,
    ("AWS::IAM::Policy", "PolicyName"): 128,
    ("AWS::Logs::LogGroup", "LogGroupName"): 512,
    ("AWS::DynamoDB::Table", "TableName"): 255,
    ("AWS::SQS::Queue", "QueueName"): 80,
    ("AWS::SNS::Topic", "TopicName"): 256,
    ("AWS::Scheduler::Schedule", "Name"): 64,
    ("AWS::SecretsManager::Secret", "Name"): 512,
    ("AWS::KMS::Alias", "AliasName"): 256,
    ("AWS::CloudWatch::Alarm", "AlarmName"): 255,
    # API Gateway's metrics carry the API's name as a dimension, and CloudWatch takes 255 characters.
    ("AWS::ApiGateway::RestApi", "Name"): 255,
    ("AWS::CloudWatch::Alarm", "Dimensions.Value"): 255,
    # Not a name: the JSON names the API in its metrics' dimensions, checked in test_dashboard.py.
    ("AWS::CloudWatch::Dashboard", "DashboardBody"): None,
}
LONGEST_STACK_NAME = "c" + "-x" * 63 + "y"  # CloudFormation takes 128 characters


def names_built_from_the_stack_name(value: Any, path: str = "") -> list[tuple[str, Any]]:
    """(property path, value) for every string the template builds with AWS::StackName."""
    if isinstance(value, list):
        return [found for item in value for found in names_built_from_the_stack_name(item, path)]
    if not isinstance(value, dict):
        return []
    if ("Fn::Sub" in value or "Fn::Join" in value) and "AWS::StackName" in json.dumps(value):
        return [(path, value)]
    return [
        found
        for key, item in value.items()
        for found in names_built_from_the_stack_name(item, f"{path}.{key}" if path else key)
    ]


def test_every_name_fits_its_service_with_the_longest_stack_name(translated: dict[str, Any]) -> None:
    """A fixed `${AWS::StackName}-dispatcher` broke every stack name over 53 characters."""
    assert len(LONGEST_STACK_NAME) == 128
    stack = Stack(translated, name=LONGEST_STACK_NAME)
    checked, problems = [], []
    for logical_id, resource in translated["Resources"].items():
        for path, value in names_built_from_the_stack_name(resource.get("Properties", {})):
            if (resource["Type"], path) in NAME_LIMITS and NAME_LIMITS[(resource["Type"], path)] is None:
                continue
            limit = NAME_LIMITS.get((resource["Type"], path))
            if limit is None:
                problems.append(f"{logical_id}.{path} ({resource['Type']}): add the service's limit to NAME_LIMITS")
                continue
            name = stack.resolve(value)
            checked.append(name)
            if len(name) > limit:
                problems.append(f"{logical_id}.{path} is {len(name)} characters, over {limit}: {name}")
    assert not problems, "\n".join(problems)
    assert checked, "the template builds no name from the stack name: is this test still looking?"


def test_a_new_stack_can_use_the_kept_signing_secret(translated: dict[str, Any]) -> None:
    """The secret is kept when the stack goes (receivers verify with it); a new stack given its ARN
    creates none, and signs and reads with that one (the IAM proof runs the dispatcher so)."""
    for logical_id in ("SigningSecret", "TasksTable"):
        kept = translated["Resources"][logical_id]
        assert (kept["DeletionPolicy"], kept["UpdateReplacePolicy"]) == ("Retain", "Retain"), logical_id
    parameter = translated["Parameters"]["ExistingSigningSecretArn"]
    existing = f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:callme-signing-AbC123"
    assert re.fullmatch(parameter["AllowedPattern"], existing)
    assert re.fullmatch(parameter["AllowedPattern"], "")
    # IAM matches the full ARN, so a name or an ARN without its random suffix would lock the dispatcher out.
    for partial in ("callme-signing", f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:callme-signing"):
        assert not re.fullmatch(parameter["AllowedPattern"], partial), partial

    stack = Stack(translated, parameters={"ExistingSigningSecretArn": existing})
    assert not stack.exists("SigningSecret")
    created = {k: v for k, v in translated["Resources"].items() if stack.exists(k)}
    stack.resolve(created)  # no resource refers to the secret that is not created
    dispatcher = stack.resolve(created["DispatcherFunction"]["Properties"])
    assert dispatcher["Environment"]["Variables"]["CALLME_SIGNING_SECRET_ID"] == existing
    assert stack.resolve(translated["Outputs"]["SigningSecretArn"]["Value"]) == existing


# API Gateway's own answers callme must shape; REQUEST_TOO_LARGE is not among them: API Gateway does
# not let its 413 be customised.
GATEWAY_RESPONSES = {
    "DEFAULT_4XX",
    "DEFAULT_5XX",
    "INVALID_API_KEY",
    "MISSING_AUTHENTICATION_TOKEN",
    "THROTTLED",
    "INTEGRATION_FAILURE",
    "INTEGRATION_TIMEOUT",
}


def render_gateway_response(template: str, response_type: str) -> str:
    """A gateway response's mapping template as API Gateway fills it in (the local gateway's own
    rendering), with an awkward message; no variable may be left unfilled."""
    message = 'User: arn:aws:iam::1:user/a "quoted" \\ name is not authorized'
    rendered = render(template, message, response_type)
    assert "$context" not in rendered, f"{response_type}: a variable this test does not fill in: {rendered}"
    return rendered


@pytest.mark.parametrize("auth_mode", ["API_KEY", "IAM"])
def test_api_gateway_errors_answer_in_callme_shape(translated: dict[str, Any], auth_mode: str) -> None:
    """A missing key, throttling or a failed function answer {"error": "..."} like callme's own errors,
    not API Gateway's {"message": ...}."""
    stack = Stack(translated, parameters={"AuthMode": auth_mode})
    body = stack.resolve(translated["Resources"]["Api"]["Properties"]["Body"])
    responses = body["x-amazon-apigateway-gateway-responses"]
    assert responses.keys() >= GATEWAY_RESPONSES
    for response_type, response in responses.items():
        assert response["responseParameters"]["gatewayresponse.header.Content-Type"] == "'application/json'"
        assert list(response["responseTemplates"]) == ["application/json"], response_type
        answer = json.loads(render_gateway_response(response["responseTemplates"]["application/json"], response_type))
        assert list(answer) == ["error"], response_type
        assert isinstance(answer["error"], str) and len(answer["error"]) > 10, response_type
    assert responses["THROTTLED"]["responseParameters"]["gatewayresponse.header.Retry-After"] == "'1'"
    missing = json.loads(responses["MISSING_AUTHENTICATION_TOKEN"]["responseTemplates"]["application/json"])
    assert ("x-api-key" in missing["error"]) == (auth_mode == "API_KEY"), missing


def test_the_headers_key_is_a_kept_secret_whose_generated_key_opens_with_callme(translated: dict[str, Any]) -> None:
    """The key sealing header values outlives the stack like the table whose values only it opens;
    the document CloudFormation generates is one callme.sealing reads (a key of at least 32 characters)."""
    secret = translated["Resources"]["HeadersKeySecret"]
    assert secret["Type"] == "AWS::SecretsManager::Secret"
    assert (secret["DeletionPolicy"], secret["UpdateReplacePolicy"]) == ("Retain", "Retain")
    generated = secret["Properties"]["GenerateSecretString"]
    document = json.loads(generated["SecretStringTemplate"])
    document[generated["GenerateStringKey"]] = "k" * generated["PasswordLength"]
    assert key_texts(json.dumps(document)) == ["k" * generated["PasswordLength"]]
    assert generated["PasswordLength"] >= MIN_KEY_LENGTH
    for function in ("ApiFunction", "DispatcherFunction"):
        environment = translated["Resources"][function]["Properties"]["Environment"]["Variables"]
        assert environment["CALLME_HEADERS_KEY_ID"] == {"Ref": "HeadersKeySecret"}, function

"""The IAM proof: each function's real code paths run with only the permissions SAM generates for it.

moto can enforce IAM, but (moto 5.2) it judges a request's resource only for S3, SQS, IAM and STS; for
DynamoDB, Lambda and Secrets Manager it checks the action against "*", so a policy scoped to a table,
an index or one function cannot be proven there. Instead, every AWS call the code makes is recorded
through botocore's `before-parameter-build` event, registered for every botocore session (the
repository's client, the fan-out's Lambda client, Powertools' secrets provider alike), and each call's
IAM action and resource ARN is checked against the statements of the calling function's role in the
SAM-translated template, resolved to the ARNs of the moto resources the code runs against.

The calls come from running the code, not from a list: a new call (a transaction, a batch write, another
index, another service) is judged the first time the code makes it, and a call this module cannot map
to an IAM action fails until it is taught.
"""

from __future__ import annotations

import io
import json
import re
import threading
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import boto3
import botocore.handlers
import pytest
from aws_lambda_powertools.utilities.parameters.constants import DEFAULT_PROVIDERS
from moto import mock_aws

from callme.clock import FixedClock
from handlers import api, dispatcher, eventbridge, fanout, wiring
from local.lambda_context import LocalContext
from local.template import table_definitions
from tests.conftest import Sink, api_event, load_event
from tests.template.cfn import ACCOUNT, REGION, Stack, allows, listed

pytestmark = pytest.mark.template

# AWS managed policies SAM attaches to function roles, as AWS publishes them.
MANAGED_POLICIES = {
    "arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole": [
        {
            "Effect": "Allow",
            "Action": ["logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents"],
            "Resource": "*",
        }
    ],
    "arn:aws:iam::aws:policy/AWSXrayWriteOnlyAccess": [
        {
            "Effect": "Allow",
            "Action": [
                "xray:PutTraceSegments",
                "xray:PutTelemetryRecords",
                "xray:GetSamplingRules",
                "xray:GetSamplingTargets",
                "xray:GetSamplingStatisticSummaries",
            ],
            "Resource": "*",
        }
    ],
}


@dataclass(frozen=True)
class Call:
    function: str
    service: str
    operation: str
    params: dict[str, Any]

    def __str__(self) -> str:
        return f"{self.function}: {self.service}.{self.operation}"


@dataclass
class Recorder:
    """Every AWS call made while a function runs, by whichever client and thread."""

    calls: list[Call] = field(default_factory=list)
    function: str | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, params: dict[str, Any], model: Any, **_: Any) -> None:
        if self.function is None:
            return
        call = Call(self.function, model.service_model.service_name, model.name, dict(params))
        with self.lock:
            self.calls.append(call)


# -- what IAM checks for a call --------------------------------------------------------------------

_TRANSACTION_ACTIONS = {
    "Put": "PutItem",
    "Update": "UpdateItem",
    "Delete": "DeleteItem",
    "ConditionCheck": "ConditionCheckItem",
    "Get": "GetItem",
}


def _table_arn(table: str) -> str:
    return table if table.startswith("arn:") else f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/{table}"


def _dynamodb(operation: str, params: dict[str, Any]) -> list[tuple[str, str]]:
    if operation in ("TransactWriteItems", "TransactGetItems"):  # IAM checks each item's own action
        return [
            (f"dynamodb:{_TRANSACTION_ACTIONS[kind]}", _table_arn(request["TableName"]))
            for item in params["TransactItems"]
            for kind, request in item.items()
        ]
    if operation in ("BatchGetItem", "BatchWriteItem"):
        return [(f"dynamodb:{operation}", _table_arn(table)) for table in params["RequestItems"]]
    if "TableName" in params:
        resource = _table_arn(params["TableName"])
        if params.get("IndexName"):
            resource += f"/index/{params['IndexName']}"
        return [(f"dynamodb:{operation}", resource)]
    raise AssertionError(f"dynamodb.{operation}: teach test_iam.py what IAM checks for it")


def _bus_arn(name: str) -> str:
    return f"arn:aws:events:{REGION}:{ACCOUNT}:event-bus/{name}"


def _function_arn(name: str, qualifier: str | None) -> str:
    if not name.startswith("arn:"):
        assert ":" not in name, f"teach test_iam.py the function name form {name!r}"
        name = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{name}"
    return f"{name}:{qualifier}" if qualifier else name


def authorizations(call: Call) -> list[tuple[str, str]]:
    """The (IAM action, resource ARN) pairs AWS checks before it serves ``call``."""
    if call.service == "dynamodb":
        return _dynamodb(call.operation, call.params)
    if call.service == "lambda" and call.operation == "Invoke":
        return [("lambda:InvokeFunction", _function_arn(call.params["FunctionName"], call.params.get("Qualifier")))]
    if call.service == "events" and call.operation == "PutEvents":  # each entry's bus, the default if none
        buses = {entry.get("EventBusName", "default") for entry in call.params["Entries"]}
        return [("events:PutEvents", bus if bus.startswith("arn:") else _bus_arn(bus)) for bus in sorted(buses)]
    if call.service == "secretsmanager" and call.operation == "GetSecretValue":
        secret = call.params["SecretId"]
        assert secret.startswith("arn:"), f"a secret named {secret!r}: IAM would judge its full ARN"
        return [("secretsmanager:GetSecretValue", secret)]
    raise AssertionError(f"{call}: teach test_iam.py which IAM action and resource this call needs")


# -- a deployed stack in moto ---------------------------------------------------------------------------


@dataclass
class Deployment:
    """The SAM-translated template deployed into moto: its tables, its secret (or a kept one), its
    functions, each run with the environment and the permissions the template gives it."""

    translated: dict[str, Any]
    stack: Stack
    recorder: Recorder
    monkeypatch: pytest.MonkeyPatch

    @property
    def resources(self) -> dict[str, Any]:
        found: dict[str, Any] = self.translated["Resources"]
        return found

    @contextmanager
    def running(self, function: str) -> Iterator[LocalContext]:
        """The function's environment from the template, fresh clients, and its calls recorded."""
        props = self.stack.resolve(self.resources[function]["Properties"])
        with self.monkeypatch.context() as scope:
            for name, value in props["Environment"]["Variables"].items():
                scope.setenv(name, str(value))
            forget_clients()
            self.recorder.function = function
            try:
                yield LocalContext.for_function(self.stack.ref(function), timeout_seconds=props["Timeout"])
            finally:
                self.recorder.function = None
                forget_clients()

    def statements(self, function: str) -> list[dict[str, Any]]:
        """Every statement the function's role carries: its own policies, the policies attached to it,
        and the managed policies SAM adds."""
        role_id = self.resources[function]["Properties"]["Role"]["Fn::GetAtt"][0]
        role = self.resources[role_id]["Properties"]
        documents = [policy["PolicyDocument"] for policy in self.stack.resolve(role.get("Policies", []))]
        documents += [
            resource["Properties"]["PolicyDocument"]
            for logical_id, resource in self.resources.items()
            if resource["Type"] in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy")
            and self.stack.exists(logical_id)
            and {"Ref": role_id} in resource["Properties"].get("Roles", [])
        ]
        statements = [s for document in self.stack.resolve(documents) for s in listed(document["Statement"])]
        for managed in role.get("ManagedPolicyArns", []):
            assert managed in MANAGED_POLICIES, f"{function}: describe the managed policy {managed} in test_iam.py"
            statements += MANAGED_POLICIES[managed]
        return statements

    def refused(self) -> list[str]:
        """Every recorded call that the calling function's permissions do not allow."""
        statements = {function: self.statements(function) for function in {c.function for c in self.recorder.calls}}
        return sorted(
            {
                f"{call}: {action} on {resource}"
                for call in self.recorder.calls
                for action, resource in authorizations(call)
                if not allows(statements[call.function], action, resource)
            }
        )


def forget_clients() -> None:
    """Drop every cached client and setting, so the next ones are built from the current environment
    by sessions that carry the recorder."""
    wiring.reset()
    fanout.lambda_client.cache_clear()
    eventbridge.events_client.cache_clear()
    DEFAULT_PROVIDERS.clear()


def _function_zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("index.py", "def handler(event, context):\n    return event\n")
    return buffer.getvalue()


@pytest.fixture(params=["created secret"])
def deployment(
    request: pytest.FixtureRequest, translated: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> Iterator[Deployment]:
    for name, value in {
        "AWS_DEFAULT_REGION": REGION,
        "AWS_REGION": REGION,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "CALLME_ALLOW_NETWORKS": "127.0.0.0/8,::1/128",  # the test's callback receiver is on loopback
        "POWERTOOLS_METRICS_DISABLED": "true",
    }.items():
        monkeypatch.setenv(name, value)
    for name in (
        "CALLME_DYNAMODB_ENDPOINT",
        "CALLME_SIGNING_SECRET",
        "CALLME_DISPATCHER_FUNCTION",
        "CALLME_HEADERS_KEY",
    ):
        monkeypatch.delenv(name, raising=False)
    with mock_aws(config={"lambda": {"use_docker": False}}):
        stack = Stack(translated, name="callme-iam")
        _create_resources(translated, stack, kept_secret=request.param == "kept secret")
        if request.param == "outcome events":
            stack.parameters["OutcomeEvents"] = "Enabled"
        if request.param == "sliced":  # one shard of 3 slices, split past 2 entries due: a run per slice
            stack.parameters.update({"DueShards": 1, "DispatchSlices": 3})
            monkeypatch.setenv("CALLME_DISPATCH_SPLIT_AT", "2")
        # From here on every new botocore session records its calls; the clients made above are not reused.
        recorder = Recorder()
        handlers = [*botocore.handlers.BUILTIN_HANDLERS, ("before-parameter-build", recorder.record)]
        monkeypatch.setattr(botocore.handlers, "BUILTIN_HANDLERS", handlers)
        monkeypatch.setattr(boto3, "DEFAULT_SESSION", None)
        forget_clients()
        yield Deployment(translated, stack, recorder, monkeypatch)
    forget_clients()


def _create_resources(translated: dict[str, Any], stack: Stack, kept_secret: bool) -> None:
    """The stack's tables, signing secret and functions in moto, their names and ARNs in ``stack``."""
    resources = translated["Resources"]
    dynamodb = boto3.client("dynamodb", region_name=REGION)
    for logical_id, definition in table_definitions({"Resources": resources}).items():
        name = f"{stack.name}-{logical_id}"
        table = dynamodb.create_table(TableName=name, **definition["create"])["TableDescription"]
        stack.refs[logical_id] = name
        stack.attributes[(logical_id, "Arn")] = table["TableArn"]
    document = json.dumps({"current": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "previous": ""})
    secret = boto3.client("secretsmanager", region_name=REGION).create_secret(
        Name=f"{stack.name}-signing", SecretString=document
    )
    if kept_secret:
        stack.parameters["ExistingSigningSecretArn"] = secret["ARN"]
    else:
        stack.refs["SigningSecret"] = secret["ARN"]
    headers_key = json.dumps({"current": "k" * 64, "previous": ""})  # as the template generates it
    stack.refs["HeadersKeySecret"] = boto3.client("secretsmanager", region_name=REGION).create_secret(
        Name=f"{stack.name}-headers-key", SecretString=headers_key
    )["ARN"]
    role = boto3.client("iam", region_name=REGION).create_role(
        RoleName=f"{stack.name}-lambda", AssumeRolePolicyDocument="{}"
    )["Role"]["Arn"]
    functions = boto3.client("lambda", region_name=REGION)
    for logical_id, resource in resources.items():
        if resource["Type"] == "AWS::Lambda::Function":  # named as CloudFormation names them, unless told
            name = stack.resolve(resource["Properties"].get("FunctionName", f"{stack.name}-{logical_id}-0A1B2C3D"))
            created = functions.create_function(
                FunctionName=name,
                Runtime="python3.13",
                Role=role,
                Handler="index.handler",
                Code={"ZipFile": _function_zip()},
            )
            stack.refs[logical_id] = name
            stack.attributes[(logical_id, "Arn")] = created["FunctionArn"]


# -- the code paths -----------------------------------------------------------------------------------


def call_api(context: LocalContext, method: str, target: str, body: Any = None) -> tuple[int, Any]:
    raw = None if body is None else json.dumps(body)
    response = api.lambda_handler(api_event(method, target, raw), context)
    return response["statusCode"], json.loads(response["body"])


def register(deployment: Deployment, name: str, trigger_at: str, callback: str, **fields: Any) -> dict[str, Any]:
    with deployment.running("ApiFunction") as context:
        status, entry = call_api(
            context, "PUT", f"/task/{name}", {"trigger_at": trigger_at, "callback": callback, **fields}
        )
    assert status == 201, entry
    return dict(entry)


def walk_every_route(context: LocalContext) -> list[tuple[str, str]]:
    """Every route of the API, by name and by entry, through create, replace, read, list, cancel and
    reschedule; the (method, path) of each request."""
    callback = "https://example.com/run-it"
    requests: list[tuple[str, str, Any]] = [
        ("PUT", "/task/proof", {"trigger_at": "+1h", "callback": callback}),
        ("PUT", "/task/proof", {"trigger_at": "+1h", "callback": callback, "payload": "replaced"}),
        ("PUT", "/task/proof", {"trigger_at": "+2h", "callback": callback}),
        ("PUT", "/task/proof", {"trigger_at": "+3h", "callback": callback}),
        ("GET", "/task/proof", None),
        ("GET", "/status/proof?limit=1", None),
        ("GET", "/task/", None),
        ("GET", "/status/?future_only=true&limit=2", None),
    ]
    seen: list[tuple[str, str]] = []
    created: list[int] = []
    for method, target, body in requests:
        status, answer = call_api(context, method, target, body)
        assert status < 300, (method, target, status, answer)
        if method == "PUT" and status == 201:
            created.append(answer["trigger_at"])
        seen.append((method, target))
    first, second, _ = created
    follow_ups: list[tuple[str, str, Any, int]] = [
        ("GET", f"/task/proof@{first}", None, 200),
        ("GET", f"/status/proof@{first}", None, 200),
        ("GET", "/status/nothing-here", None, 404),
        ("DELETE", f"/task/proof@{first}", None, 200),
        ("DELETE", "/task/proof", None, 200),
        ("POST", f"/reschedule/proof@{first}?all=true", {"trigger_at": "+4h"}, 201),
        ("POST", "/reschedule/proof?all=true", None, 201),
        ("GET", f"/status/proof@{second}", None, 200),
        ("GET", "/openapi.json", None, 200),
        ("GET", "/stats?minutes=15", None, 200),
        ("PUT", "/task/sealed", {"trigger_at": "+1h", "callback": callback, "headers": {"Authorization": "x"}}, 201),
        ("POST", "/tasks", {"tasks": [{"task_name": "batch", "trigger_at": "+1h", "callback": callback}] * 2}, 200),
        ("PUT", "/schedule/proof-schedule", {"every": "1h", "callback": callback}, 201),
        ("PUT", "/schedule/proof-schedule", {"every": "2h", "callback": callback}, 200),
        ("PUT", "/schedule/proof-schedule", {"every": "2h", "callback": callback, "paused": True}, 200),
        ("GET", "/schedule/proof-schedule", None, 200),
        ("GET", "/schedule/?limit=1", None, 200),
        ("DELETE", "/schedule/proof-schedule", None, 200),
        ("GET", "/schedule/proof-schedule", None, 404),
    ]
    for method, target, body, expected in follow_ups:
        status, answer = call_api(context, method, target, body)
        assert status == expected, (method, target, status, answer)
        if target == "/tasks":  # each task written as a PUT would write it: created, then replaced
            assert sorted(result["status"] for result in answer["results"]) == [200, 201], answer
        seen.append((method, target))
    return seen


def routes_of_the_api(context: LocalContext) -> set[tuple[str, str]]:
    """(method, path pattern) of every route the API's own OpenAPI document describes."""
    _, document = call_api(context, "GET", "/openapi.json")
    methods = {"get", "put", "post", "delete", "patch", "head", "options"}
    return {
        (method.upper(), "^" + re.sub(r"\{[^}]+\}", "[^/]+", path) + "$")
        for path, item in document["paths"].items()
        for method in item
        if method in methods
    }


# -- the proofs -------------------------------------------------------------------------------------------


def test_the_api_function_may_make_every_call_its_routes_make(deployment: Deployment) -> None:
    with deployment.running("ApiFunction") as context:
        seen = walk_every_route(context)
        routes = routes_of_the_api(context)
    untried = sorted(
        f"{method} {pattern}"
        for method, pattern in routes
        if not any(m == method and re.match(pattern, target.split("?")[0]) for m, target in seen)
    )
    assert not untried, f"the walk above must also take these routes: {untried}"
    assert {call.service for call in deployment.recorder.calls} == {"dynamodb", "secretsmanager"}
    secrets = {c.params["SecretId"] for c in deployment.recorder.calls if c.service == "secretsmanager"}
    assert secrets == {deployment.stack.ref("HeadersKeySecret")}, "the api reads the headers key, only it"
    assert stats_calls(deployment, "ApiFunction") == {"Query"}
    assert not deployment.refused(), "\n".join(deployment.refused())


@pytest.mark.parametrize("deployment", ["created secret", "kept secret", "outcome events", "sliced"], indirect=True)
def test_the_dispatcher_may_make_every_call_a_minute_makes(deployment: Deployment, sink: Sink) -> None:
    """The scheduled run fans out one invocation per busy shard (sliced: per slice of it, counted
    first); each run leases its shard or slices, reads what is due, calls it (signed with the key from
    Secrets Manager), retries, records every outcome (and, with OutcomeEvents=Enabled, publishes it);
    a second round right after reads entries again from the table."""
    for round_ in range(2):
        for i in range(12):
            register(deployment, f"job{round_}-{i}", "+0m", sink.on(f"/job{round_}-{i}"))
        register(
            deployment,
            f"fails{round_}",
            "+0m",
            sink.on(f"/fails{round_}", 500),
            retry=0,
            headers={"Authorization": f"Bearer {round_}"},
            on_failure=sink.on(f"/failed{round_}", 204),
        )
        register(deployment, f"retries{round_}", "+0m", sink.on(f"/retries{round_}", 503, 200), retry=1)
        with deployment.running("DispatcherFunction") as context:
            before = len(deployment.recorder.calls)
            answer = dispatcher.lambda_handler(load_event("dispatcher-scheduled"), context)
            invocations = [
                call.params
                for call in deployment.recorder.calls[before:]
                if (call.service, call.operation) == ("lambda", "Invoke")
            ]
            runs = [
                {"shard": e["shard"], "slices": e["slices"]}
                for e in map(json.loads, (i["Payload"] for i in invocations))
            ]
            assert sorted(answer["fanned_out"], key=str) == sorted(runs, key=str)
            if deployment.stack.parameters.get("DispatchSlices") == 3:
                assert sorted(runs, key=str) == [{"shard": 0, "slices": [part]} for part in range(3)], "split"
            assert {i["FunctionName"] for i in invocations} == {context.function_name}
            for invocation in invocations:
                report = dispatcher.lambda_handler(json.loads(invocation["Payload"]), context)
                assert report["calls"] >= 1, report
        assert len(sink.calls(f"/retries{round_}")) == 2
        assert all(len(sink.calls(f"/job{round_}-{i}")) == 1 for i in range(12))
        [failing] = sink.calls(f"/fails{round_}")
        assert failing.headers["authorization"] == f"Bearer {round_}", "the headers key opened the values"
        assert len(sink.calls(f"/failed{round_}")) == 1, "the failure hook's call and its record are allowed"
    assert "webhook-signature" in sink.received[0].headers
    operations = {
        (call.service, call.operation) for call in deployment.recorder.calls if call.function != "ApiFunction"
    }
    assert {("lambda", "Invoke"), ("secretsmanager", "GetSecretValue"), ("dynamodb", "BatchGetItem")} <= operations
    assert stats_calls(deployment, "DispatcherFunction") == {"PutItem"}, "each shard run stores its stats"
    read = {
        c.params["SecretId"]
        for c in deployment.recorder.calls
        if c.service == "secretsmanager" and c.function == "DispatcherFunction"
    }
    assert deployment.stack.ref("HeadersKeySecret") in read
    publishes = deployment.stack.parameters.get("OutcomeEvents") == "Enabled"
    assert (("events", "PutEvents") in operations) == publishes
    assert not deployment.refused(), "\n".join(deployment.refused())


def test_the_dispatcher_may_make_every_call_a_schedule_s_runs_make(deployment: Deployment, sink: Sink) -> None:
    """A schedule's runs at their minute (the chain moved on, the next run made, the call) and after an
    outage (missed runs recorded skipped, the latest called), through the fan-out, on a chosen clock."""
    with deployment.running("ApiFunction") as context:
        status, schedule = call_api(context, "PUT", "/schedule/proof", {"every": "1m", "callback": sink.on("/proof")})
    assert status == 201, schedule
    first = schedule["next_runs"][0]
    for at in (first + 2, first + 6 * 60 + 2):  # its first minute, then after five missed minutes
        with deployment.running("DispatcherFunction") as context:
            clock = FixedClock(at)
            before = len(deployment.recorder.calls)
            answer = dispatcher.dispatch(load_event("dispatcher-scheduled"), context, clock)
            invocations = [
                json.loads(call.params["Payload"])
                for call in deployment.recorder.calls[before:]
                if (call.service, call.operation) == ("lambda", "Invoke")
            ]
            assert answer["fanned_out"] == [{"shard": i["shard"], "slices": i["slices"]} for i in invocations]
            for invocation in invocations:
                dispatcher.dispatch(invocation, context, clock)
    assert [call.headers["callme-entry"] for call in sink.calls("/proof")] == [f"proof@{first}", f"proof@{first + 360}"]
    with deployment.running("ApiFunction") as context:
        status, runs = call_api(context, "GET", "/status/proof")
    assert status == 200, runs
    states = [run["task_state"] for run in runs["tasks"]]
    assert states == ["successful", *["skipped"] * 5, "successful", "pending"], states
    # The sweep, at its minute, makes a next run that was lost (deleted here behind the code's back).
    lost = {"task_name": {"S": "proof"}, "trigger_at": {"N": str(first + 420)}}
    boto3.client("dynamodb", region_name=REGION).delete_item(TableName=deployment.stack.refs["TasksTable"], Key=lost)
    sweep_minute = (first + 420) // 900 * 900 + 900
    with deployment.running("DispatcherFunction") as context:
        dispatcher.dispatch(load_event("dispatcher-scheduled"), context, FixedClock(sweep_minute + 2))
    with deployment.running("ApiFunction") as context:
        assert call_api(context, "GET", f"/status/proof@{first + 420}")[0] == 200
    operations = {(c.service, c.operation) for c in deployment.recorder.calls if c.function == "DispatcherFunction"}
    assert {("dynamodb", "Query"), ("dynamodb", "PutItem"), ("dynamodb", "BatchGetItem")} <= operations
    assert ("dynamodb", "Scan") in operations
    assert not deployment.refused(), "\n".join(deployment.refused())


def stats_calls(deployment: Deployment, function: str) -> set[str]:
    """The operations ``function`` made on the stats table."""
    table = deployment.stack.ref("StatsTable")
    return {
        call.operation
        for call in deployment.recorder.calls
        if call.function == function and call.service == "dynamodb" and call.params.get("TableName") == table
    }


def test_a_grant_on_a_table_does_not_cover_its_index() -> None:
    """The check itself: IAM judges a query on an index against the index's ARN."""
    table = f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/tasks"
    on_table = [{"Effect": "Allow", "Action": "dynamodb:Query", "Resource": table}]
    assert allows(on_table, "dynamodb:Query", table)
    assert allows(on_table, "DynamoDB:query", table)  # actions ignore case
    assert not allows(on_table, "dynamodb:Query", f"{table}/index/due")
    assert not allows(on_table, "dynamodb:Scan", table)
    assert allows([{**on_table[0], "Resource": f"{table}/index/*"}], "dynamodb:Query", f"{table}/index/due")
    assert not allows([{**on_table[0], "Resource": f"{table}/index/*"}], "dynamodb:Query", table)

"""The CloudWatch dashboard and the DynamoDB errors alarm: what they name exists.

A dashboard accepts any metric name and dimension and draws an empty graph for a wrong one, so each
metric is checked here: callme's own against what the dispatcher really emits (run against moto, its
EMF output read back), AWS's against the metrics and dimensions each service publishes and the
resources of this template, with the template's intrinsic functions resolved as a stack would.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import pytest

from callme.clock import OffsetClock
from handlers import api, dispatcher, wiring
from tests.conftest import Sink, api_event
from tests.template.cfn import REGION, Stack

pytestmark = pytest.mark.template

# The metrics of AWS services the dashboard may draw, with the dimension sets each is published with
# (AWS's documentation of each service's CloudWatch metrics).
AWS_METRICS: dict[str, dict[str, set[tuple[str, ...]]]] = {
    "AWS/Lambda": {
        name: {("FunctionName",)} for name in ("Duration", "Errors", "Throttles", "Invocations", "ConcurrentExecutions")
    },
    "AWS/ApiGateway": {
        name: {("ApiName",), ("ApiName", "Stage")}
        for name in ("Count", "4XXError", "5XXError", "Latency", "IntegrationLatency")
    },
    "AWS/DynamoDB": {
        "ReadThrottleEvents": {("TableName",), ("TableName", "GlobalSecondaryIndexName")},
        "WriteThrottleEvents": {("TableName",), ("TableName", "GlobalSecondaryIndexName")},
        "SystemErrors": {("TableName", "Operation")},
        "UserErrors": {()},
    },
    "AWS/SQS": {"ApproximateNumberOfMessagesVisible": {("QueueName",)}},
}
STATISTICS = re.compile(r"^(Sum|Average|Minimum|Maximum|SampleCount|p\d{1,2}(\.\d+)?)$")


@pytest.fixture(scope="module")
def stack(template: dict[str, Any]) -> Stack:
    return Stack(template)


@pytest.fixture(scope="module")
def dashboard(stack: Stack, template: dict[str, Any]) -> dict[str, Any]:
    body = stack.resolve(template["Resources"]["Dashboard"]["Properties"]["DashboardBody"])
    assert "${" not in body, "a variable of the dashboard body was left unresolved"
    parsed: dict[str, Any] = json.loads(body)
    return parsed


def metric_lines(dashboard: dict[str, Any]) -> Iterator[tuple[str, list[Any]]]:
    """(widget title, metric line) of every metric graph."""
    for widget in dashboard["widgets"]:
        if widget["type"] == "metric":
            for line in widget["properties"]["metrics"]:
                yield widget["properties"]["title"], line


def parse(line: list[Any]) -> tuple[str, str, dict[str, str], dict[str, Any]]:
    """A metric line [namespace, name, dimension, value, ..., {options}] as its parts."""
    options = line[-1] if isinstance(line[-1], dict) else {}
    plain = line[:-1] if options else line
    assert "." not in plain[:2], f"spell every line out, no '.' shorthand: {line}"
    namespace, name, *pairs = plain
    assert len(pairs) % 2 == 0, f"a dimension without a value: {line}"
    return namespace, name, dict(zip(pairs[::2], pairs[1::2], strict=True)), options


def test_the_dashboard_body_is_json_on_one_grid(dashboard: dict[str, Any]) -> None:
    taken: set[tuple[int, int]] = set()
    for widget in dashboard["widgets"]:
        assert widget["type"] in ("metric", "text")
        x, y, width, height = widget["x"], widget["y"], widget["width"], widget["height"]
        assert x >= 0 and x + width <= 24 and width > 0 and height > 0, widget
        cells = {(col, row) for col in range(x, x + width) for row in range(y, y + height)}
        assert not cells & taken, f"widgets overlap: {widget.get('properties', {}).get('title')}"
        taken |= cells
        if widget["type"] == "metric":
            assert widget["properties"]["region"] == REGION


def test_with_the_longest_stack_name_every_dimension_fits(template: dict[str, Any]) -> None:
    """CloudWatch takes dimension values of up to 255 characters; the API's name is the stack's plus -api."""
    longest = "c" + "-x" * 63 + "y"  # CloudFormation takes 128 characters
    body = Stack(template, name=longest).resolve(template["Resources"]["Dashboard"]["Properties"]["DashboardBody"])
    values = [
        value
        for _, line in metric_lines(json.loads(body))
        if isinstance(line[0], str)
        for value in parse(line)[2].values()
    ]
    assert values and max(len(value) for value in values) <= 255
    assert any(longest in value for value in values)


def test_the_dashboard_shows_what_issue_13_asks_for(dashboard: dict[str, Any]) -> None:
    drawn = {
        (namespace, name, tuple(sorted(dims)))
        for _, line in metric_lines(dashboard)
        if isinstance(line[0], str)
        for namespace, name, dims, _ in [parse(line)]
    }
    callme = {name for namespace, name, _ in drawn if namespace == "callme"}
    outcomes = {"calls", "succeeded", "failed", "skipped", "retried", "lateness"}
    assert callme == outcomes | {"hooks_delivered", "hooks_failed"}  # and the failure hooks' (issue 12)
    assert {("AWS/Lambda", name) for name in ("Duration", "Errors", "Throttles")} <= {(n, m) for n, m, _ in drawn}
    assert {"4XXError", "5XXError", "Latency"} <= {m for n, m, _ in drawn if n == "AWS/ApiGateway"}
    throttles = {(m, d) for n, m, d in drawn if n == "AWS/DynamoDB" and "Throttle" in m}
    for metric in ("ReadThrottleEvents", "WriteThrottleEvents"):
        assert (metric, ("TableName",)) in throttles
        assert (metric, ("GlobalSecondaryIndexName", "TableName")) in throttles, "the due index's throttling"
    lateness = [parse(line)[3]["stat"] for _, line in metric_lines(dashboard) if line[:2] == ["callme", "lateness"]]
    assert sorted(lateness) == ["p50", "p99"]


def test_every_aws_metric_exists_for_a_resource_of_this_template(
    dashboard: dict[str, Any], stack: Stack, template: dict[str, Any]
) -> None:
    functions = {stack.ref(name) for name in ("ApiFunction", "DispatcherFunction")}
    tables = {stack.ref(name): name for name in ("TasksTable", "LeasesTable", "StatsTable", "SchedulesTable")}
    indexes = {
        stack.ref(name): {index["IndexName"] for index in resource["Properties"].get("GlobalSecondaryIndexes", [])}
        for name, resource in template["Resources"].items()
        if resource["Type"] == "AWS::DynamoDB::Table"
    }
    api_name = stack.resolve(template["Resources"]["Api"]["Properties"]["Name"])
    queue = stack.get_att("DispatchFailureQueue", "QueueName")
    checked = 0
    for title, line in metric_lines(dashboard):
        if isinstance(line[0], dict):
            continue
        namespace, name, dims, options = parse(line)
        if "stat" in options:
            assert STATISTICS.match(options["stat"]), (title, line)
        if namespace == "callme":
            continue
        assert namespace in AWS_METRICS and name in AWS_METRICS[namespace], f"{title}: no such metric {line}"
        assert tuple(dims) in AWS_METRICS[namespace][name], f"{title}: {name} has no dimensions {list(dims)}"
        for dimension, value in dims.items():
            valid = {
                "FunctionName": value in functions,
                "ApiName": value == api_name,
                "TableName": value in tables,
                "GlobalSecondaryIndexName": value in indexes.get(dims.get("TableName", ""), set()),
                "Operation": re.fullmatch(r"[A-Z][A-Za-z]+", value) is not None,
                "QueueName": value == queue,
            }
            assert valid.get(dimension), f"{title}: {dimension}={value!r} names nothing in this template"
        checked += 1
    assert checked > 10


def test_expressions_use_metrics_of_their_own_graph(dashboard: dict[str, Any]) -> None:
    for widget in dashboard["widgets"]:
        if widget["type"] != "metric":
            continue
        lines = widget["properties"]["metrics"]
        ids = {line[-1]["id"] for line in lines if isinstance(line[-1], dict) and "id" in line[-1]}
        for line in lines:
            if isinstance(line[0], dict):
                used = set(re.findall(r"\b[a-z][A-Za-z0-9_]*\b", line[0]["expression"])) - {"SUM"}
                assert used and used <= ids, (widget["properties"]["title"], used - ids)


def test_callme_metrics_are_the_ones_the_dispatcher_emits(
    dashboard: dict[str, Any],
    template: dict[str, Any],
    aws: Any,
    lambda_context: Any,
    sink: Sink,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A minute with every outcome, dispatched against moto; the EMF documents it prints name the metrics."""
    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "false")
    monkeypatch.setenv("CALLME_SIGNING_SECRET", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
    wiring.reset()
    entries = {
        "succeeds": {"callback": sink.on("/ok", 200)},
        "fails": {"callback": sink.on("/gone", 404), "retry": 0, "on_failure": sink.on("/told", 204)},
        "retries": {"callback": sink.on("/flaky", 503, 503, 200), "retry": 3},
        "too-late": {"callback": sink.on("/late", 200), "max_delay": 2, "on_failure": sink.on("/refused", 410)},
    }
    for name, fields in entries.items():
        body = json.dumps({"trigger_at": "+0m", **fields})
        response = api.lambda_handler(api_event("PUT", f"/task/{name}", body), lambda_context)
        assert response["statusCode"] == 201, response["body"]
    capsys.readouterr()
    # Five minutes on: "too-late" (max_delay 2) is past its window and skipped; the others are called.
    report = dispatcher.dispatch({"scheduled_time": "now"}, lambda_context, OffsetClock(300))
    dispatcher.metrics.flush_metrics()
    assert (report["succeeded"], report["failed"], report["skipped"]) == (2, 1, 1), report
    assert (report["hooks_delivered"], report["hooks_failed"]) == (1, 1), report  # a 410 is not retried
    documents = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"_aws"' in line]
    emitted = {
        (directive["Namespace"], metric["Name"], tuple((d, doc[d]) for names in directive["Dimensions"] for d in names))
        for doc in documents
        for directive in doc["_aws"]["CloudWatchMetrics"]
        for metric in directive["Metrics"]
    }
    assert emitted, "the dispatcher emitted no metric"
    for title, line in metric_lines(dashboard):
        if isinstance(line[0], str) and line[0] == "callme":
            namespace, name, dims, _ = parse(line)
            assert (namespace, name, tuple(dims.items())) in emitted, f"{title}: the dispatcher never emits {line}"
    for alarm in ("LateCallbacksAlarm", "FailureHooksAlarm"):  # they watch callme's metrics too
        props = template["Resources"][alarm]["Properties"]
        watched = (props["Namespace"], props["MetricName"], tuple((d["Name"], d["Value"]) for d in props["Dimensions"]))
        assert watched in emitted, f"{alarm}: the dispatcher never emits {watched}"


def system_errors_of(stack: Stack, metrics: list[dict[str, Any]]) -> set[tuple[str, str]]:
    found = set()
    for query in metrics:
        if "MetricStat" not in query:
            continue
        metric = stack.resolve(query["MetricStat"]["Metric"])
        assert (metric["Namespace"], metric["MetricName"]) == ("AWS/DynamoDB", "SystemErrors"), metric
        dims = {d["Name"]: d["Value"] for d in metric["Dimensions"]}
        found.add((dims["TableName"], dims["Operation"]))
    return found


def test_the_dynamodb_errors_alarm_adds_up_every_operation_callme_makes(
    template: dict[str, Any], stack: Stack, dashboard: dict[str, Any]
) -> None:
    """SystemErrors exist per table and operation only; one missing operation would go unwatched. The
    operations are the ones the functions are granted (the IAM proof shows the code makes no other), and
    TransactWriteItems, which IAM authorises as its PutItems. The stats and schedules tables' have an
    alarm each of their own (an alarm takes at most 10 metrics)."""
    watched: set[tuple[str, str]] = set()
    for name in ("DynamoDBErrorsAlarm", "StatsErrorsAlarm", "DynamoDBScheduleErrorsAlarm"):
        alarm = template["Resources"][name]["Properties"]
        assert alarm["AlarmActions"] == [{"Ref": "AlarmTopic"}]
        assert alarm["TreatMissingData"] == "notBreaching"
        [total] = [query for query in alarm["Metrics"] if query.get("ReturnData", True)]
        assert total["Expression"] == "SUM(METRICS())"
        assert len(alarm["Metrics"]) <= 10, "CloudWatch takes at most 10 metrics in an alarm"
        watched |= system_errors_of(stack, alarm["Metrics"])
    granted = set()
    tables = {name: stack.ref(name) for name in ("TasksTable", "LeasesTable", "StatsTable", "SchedulesTable")}
    for function in ("ApiFunction", "DispatcherFunction"):
        for policy in stack.resolve(template["Resources"][function]["Properties"]["Policies"]):
            for statement in policy["Statement"]:
                resource = json.dumps(statement["Resource"])
                for action in statement["Action"]:
                    service, operation = action.split(":")
                    if service != "dynamodb":
                        continue
                    table = next(logical for logical in tables if logical in resource)
                    granted.add((tables[table], operation))
                    if operation == "PutItem" and function == "ApiFunction":
                        granted.add((tables[table], "TransactWriteItems"))
    assert granted and granted <= watched, f"unwatched: {sorted(granted - watched)}"
    # The dashboard's graph of DynamoDB errors adds up the same ones.
    drawn = {
        (dims["TableName"], dims["Operation"])
        for _, line in metric_lines(dashboard)
        if isinstance(line[0], str)
        for namespace, name, dims, _ in [parse(line)]
        if name == "SystemErrors"
    }
    assert drawn == watched

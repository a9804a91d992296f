"""The dispatcher Lambda handler in-process against moto, calling a real loopback server."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from typing import Any

import boto3
import pytest

from callme.clock import minute_of
from handlers import api, dispatcher, eventbridge, fanout, wiring
from tests.conftest import Sink, api_event, load_event


@pytest.fixture
def dispatch_env(aws: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CALLME_SIGNING_SECRET", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "false")
    monkeypatch.setenv("POWERTOOLS_LOG_LEVEL", "INFO")
    dispatcher.logger.setLevel("INFO")
    wiring.reset()


LogLines = Callable[[], list[dict[str, Any]]]


class _CurrentStdout:
    """sys.stdout as it is when written to (capsys replaces it only while the test runs)."""

    def write(self, text: str) -> int:
        return sys.stdout.write(text)

    def flush(self) -> None:
        sys.stdout.flush()


@pytest.fixture
def log_lines(dispatch_env: None, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> LogLines:
    """The JSON lines the handlers log, as a reader of what was logged so far."""
    for handler in dispatcher.logger.handlers:  # the logger keeps the stdout it was created with
        monkeypatch.setattr(handler, "stream", _CurrentStdout())
    return lambda: [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]


def register(context: Any, name: str, callback: str, **fields: Any) -> dict[str, Any]:
    body = json.dumps({"trigger_at": "+0m", "callback": callback, **fields})
    response = api.lambda_handler(api_event("PUT", f"/task/{name}", body), context)
    assert response["statusCode"] == 201, response["body"]
    created: dict[str, Any] = json.loads(response["body"])
    return created


def test_a_scheduled_invocation_calls_what_is_due_and_reports_it(
    dispatch_env: None, lambda_context: Any, sink: Sink, log_lines: LogLines
) -> None:
    task = register(lambda_context, "now", sink.on("/now", 204), expected_http_status=204)
    report = dispatcher.lambda_handler(load_event("dispatcher-scheduled"), lambda_context)
    assert (report["calls"], report["succeeded"]) == (1, 1)
    [call] = sink.calls("/now")
    assert call.headers["webhook-id"] == task["webhook_id"]

    lines = log_lines()
    called = [line for line in lines if line.get("message") == "callback called"]
    assert called and called[0]["entry"] == f"now@{task['trigger_at']}"
    assert called[0]["status"] == 204
    emf = [line for line in lines if "_aws" in line]
    metric_names = {m["Name"] for doc in emf for d in doc["_aws"]["CloudWatchMetrics"] for m in d["Metrics"]}
    assert {"calls", "succeeded", "lateness"} <= metric_names
    lateness = next(doc["lateness"] for doc in emf if "lateness" in doc)
    assert 0 <= (lateness if isinstance(lateness, float | int) else lateness[0]) < 60


def twelve_due(context: Any, sink: Sink, monkeypatch: pytest.MonkeyPatch, **env: str) -> None:
    """Twelve entries due now, on a stack set up with ``env`` (CALLME_ variables, without the prefix)."""
    for name, value in env.items():
        monkeypatch.setenv(f"CALLME_{name}", value)
    wiring.reset()
    for i in range(12):
        register(context, f"job{i}", sink.on(f"/job{i}"))


def each_called_once(sink: Sink) -> bool:
    return [len(sink.calls(f"/job{i}")) for i in range(12)] == [1] * 12


def lambda_invocations(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """The events of the asynchronous invocations the fan-out makes (to a stub Lambda client)."""
    invoked: list[dict[str, Any]] = []

    class LambdaStub:
        def invoke(self, **request: Any) -> None:
            assert (request["FunctionName"], request["InvocationType"]) == ("callme-dispatcher", "Event")
            invoked.append(json.loads(request["Payload"]))

    monkeypatch.setattr(fanout, "lambda_client", LambdaStub)
    return invoked


def test_in_aws_a_scheduled_invocation_fans_out_one_invocation_per_busy_shard(
    dispatch_env: None, lambda_context: Any, sink: Sink, monkeypatch: pytest.MonkeyPatch
) -> None:
    twelve_due(lambda_context, sink, monkeypatch, FANOUT="lambda", DISPATCHER_FUNCTION="callme-dispatcher")
    invoked = lambda_invocations(monkeypatch)
    answer = dispatcher.lambda_handler(load_event("dispatcher-scheduled"), lambda_context)
    shards = sorted(e["shard"] for e in invoked)
    assert sorted(answer["fanned_out"], key=lambda run: run["shard"]) == [{"shard": s, "slices": [0]} for s in shards]
    assert len(shards) == len(set(shards)) > 1
    assert sink.received == [], "the coordinator calls nothing itself"

    for event in invoked:
        dispatcher.lambda_handler(event, lambda_context)
    assert each_called_once(sink)


def test_in_aws_a_shard_with_more_than_one_run_s_work_is_fanned_out_one_invocation_per_slice(
    dispatch_env: None, lambda_context: Any, sink: Sink, monkeypatch: pytest.MonkeyPatch
) -> None:
    sliced = {"DUE_SHARDS": "1", "DISPATCH_SLICES": "3", "DISPATCH_SPLIT_AT": "2"}
    twelve_due(lambda_context, sink, monkeypatch, FANOUT="lambda", DISPATCHER_FUNCTION="callme-dispatcher", **sliced)
    invoked = lambda_invocations(monkeypatch)
    answer = dispatcher.lambda_handler(load_event("dispatcher-scheduled"), lambda_context)
    runs = [{"shard": 0, "slices": [part]} for part in range(3)]
    assert sorted(answer["fanned_out"], key=str) == runs
    assert sorted(({"shard": e["shard"], "slices": e["slices"]} for e in invoked), key=str) == runs
    for event in invoked + invoked:  # each invocation twice: the second finds its slice's work done
        dispatcher.lambda_handler(event, lambda_context)
    assert each_called_once(sink)


def test_locally_a_scheduled_invocation_runs_every_busy_slice_itself(
    dispatch_env: None, lambda_context: Any, sink: Sink, monkeypatch: pytest.MonkeyPatch
) -> None:
    twelve_due(lambda_context, sink, monkeypatch, DISPATCH_SLICES="3", DISPATCH_SPLIT_AT="2")
    report = dispatcher.lambda_handler(load_event("dispatcher-scheduled"), lambda_context)
    assert any(slot >= 1000 for slot in report["busy_shards"]), "slots of slices past the first"
    assert each_called_once(sink)


def test_an_invocation_for_a_shard_without_slices_dispatches_all_of_them(
    dispatch_env: None, lambda_context: Any, sink: Sink, monkeypatch: pytest.MonkeyPatch
) -> None:
    twelve_due(lambda_context, sink, monkeypatch, DUE_SHARDS="1", DISPATCH_SLICES="3")
    report = dispatcher.lambda_handler({"shard": 0}, lambda_context)  # as fanned out before slices existed
    assert sorted(report["shards"]) == [0, 1000, 2000]
    assert each_called_once(sink)


def test_an_invocation_for_one_shard_dispatches_only_that_shard(
    dispatch_env: None, lambda_context: Any, sink: Sink
) -> None:
    for i in range(12):
        register(lambda_context, f"job{i}", sink.on(f"/job{i}"))
    engine = wiring.dispatch_engine()
    busy = engine.busy_shards(minute_of(engine.clock.now()))
    event = {**load_event("dispatcher-shard"), "shard": busy[0]}
    report = dispatcher.lambda_handler(event, lambda_context)
    assert report["shards"] == [busy[0]]
    assert 0 < len(sink.received) < 12


def test_the_signing_keys_come_from_secrets_manager_with_rotation(aws: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    secrets = boto3.client("secretsmanager", region_name="us-east-1")
    arn = secrets.create_secret(
        Name="callme-signing",
        SecretString=json.dumps({"current": "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "previous": "whsec_b2xkb2xkb2xkb2xk"}),
    )["ARN"]
    monkeypatch.setenv("CALLME_SIGNING_SECRET_ID", arn)
    wiring.reset()
    signer = wiring.signer()
    assert signer is not None
    assert signer.secrets == ("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "whsec_b2xkb2xkb2xkb2xk")
    assert len(signer.headers("msg_1", 1795750000, "body")["webhook-signature"].split(" ")) == 2


def test_a_busy_minute_s_metrics_go_out_in_documents_of_at_most_100_values(
    dispatch_env: None, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from callme.ports import CallResult
    from callme.task import Task, TaskDefinition, TaskKey, Verdict

    dispatcher.metrics.clear_metrics()
    capsys.readouterr()
    task = Task.new(TaskKey("job", 1858809600), TaskDefinition("https://example.com/"), 1858809000)
    observer = dispatcher.MetricsObserver()
    monkeypatch.setattr(dispatcher.logger, "info", lambda *_, **__: None)  # only the metrics' output
    for i in range(250):
        observer.attempted(task, CallResult(1858809601, 5, status=200), Verdict.SUCCESS, i / 100)
    dispatcher.metrics.flush_metrics()
    documents = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"_aws"' in line]
    lateness = [doc["lateness"] if isinstance(doc["lateness"], list) else [doc["lateness"]] for doc in documents]
    assert all(len(values) <= 100 for values in lateness)
    assert sorted(v for values in lateness for v in values) == [i / 100 for i in range(250)], "every value, once"


def test_with_outcome_events_enabled_a_run_publishes_each_finished_entry_to_the_default_bus(
    dispatch_env: None, lambda_context: Any, sink: Sink, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CALLME_OUTCOME_EVENTS", "eventbridge")
    wiring.reset()
    sqs = boto3.client("sqs", region_name="us-east-1")
    queue_url = sqs.create_queue(QueueName="outcomes")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    events = boto3.client("events", region_name="us-east-1")
    events.put_rule(Name="callme-outcomes", EventPattern=json.dumps({"source": ["callme"]}))
    events.put_targets(Rule="callme-outcomes", Targets=[{"Id": "queue", "Arn": queue_arn}])
    ok = register(lambda_context, "ok", sink.on("/ok", 200), payload="secret-1")
    register(lambda_context, "gone", sink.on("/gone", 404), payload="secret-2", retry=0)

    report = dispatcher.lambda_handler(load_event("dispatcher-scheduled"), lambda_context)

    assert (report["succeeded"], report["failed"]) == (1, 1)
    assert report["outcome_events"] == {"published": 2, "failed": 0, "puts": 1}
    messages = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10)["Messages"]
    delivered = {event["detail"]["task_name"]: event for event in (json.loads(m["Body"]) for m in messages)}
    assert {name: event["detail-type"] for name, event in delivered.items()} == {
        "ok": "Task Succeeded",
        "gone": "Task Failed",
    }
    assert delivered["ok"]["source"] == "callme"
    assert delivered["ok"]["detail"]["webhook_id"] == ok["webhook_id"]
    assert delivered["gone"]["detail"]["response_status"] == 404
    assert not any("secret-" in m["Body"] for m in messages), "events never carry the payload"


def test_without_outcome_events_a_run_logs_them_and_calls_no_aws_bus(
    dispatch_env: None,
    lambda_context: Any,
    sink: Sink,
    log_lines: LogLines,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    register(lambda_context, "ok", sink.on("/ok", 200))
    monkeypatch.setattr(eventbridge, "events_client", None)  # an EventBridge client made now fails the run
    report = dispatcher.lambda_handler(load_event("dispatcher-scheduled"), lambda_context)
    assert report["outcome_events"]["published"] == 1
    [logged] = [line["event"] for line in log_lines() if line.get("message") == "outcome event"]
    assert (logged["source"], logged["detail-type"]) == ("callme", "Task Succeeded")
    assert logged["detail"]["task_name"] == "ok"
